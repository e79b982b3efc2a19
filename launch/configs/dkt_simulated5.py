"""DKT on Simulated-5 (2,000 train / 2,000 test students, 50 exercises): the default demo.

    python -m launch.dkt --config=launch/configs/dkt_simulated5.py --workdir=workdirs/dkt_simulated5
"""
from __future__ import annotations

import ml_collections

from launch.configs import dkt_base


def get_config() -> ml_collections.ConfigDict:
    c = dkt_base.get_config()
    c.dataset = "simulated5"
    return c
