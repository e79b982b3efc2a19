"""DKT+ on ASSIST2009 (DKT+ repo ``skill_id`` split, 124 skills), lambdas of the authors' checkpoint.

    python -m launch.build --dataset=kt_csv/assist2009 --manual_dir=PATH --data_dir=data/tfds
    python -m launch.dkt --config=launch/configs/dktplus_assist2009.py --workdir=workdirs/dktplus_a2009 \
        --config.manual_dir=PATH --config.data_dir=data/tfds
"""
from __future__ import annotations

import ml_collections

from launch.configs import dkt_base


def get_config() -> ml_collections.ConfigDict:
    c = dkt_base.get_config()
    c.dataset = "kt_csv/assist2009"
    c.loss.lambda_r = 0.1
    c.loss.lambda_w1 = 0.003
    c.loss.lambda_w2 = 3.0
    c.model.dropout_rate = 0.667       # keep_prob 0.333 of the authors' ASSIST2009 checkpoints
    c.max_len = 200
    return c
