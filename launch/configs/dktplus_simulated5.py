"""DKT+ on Simulated-5: DKT plus reconstruction and waviness regularisers (lambdas tuned on validation).

    python -m launch.dkt --config=launch/configs/dktplus_simulated5.py --workdir=workdirs/dktplus_simulated5
"""
from __future__ import annotations

import ml_collections

from launch.configs import dkt_simulated5


def get_config() -> ml_collections.ConfigDict:
    c = dkt_simulated5.base_config()
    c.loss.lambda_r = 0.1
    c.loss.lambda_w1 = 0.03
    c.loss.lambda_w2 = 3.0
    return c
