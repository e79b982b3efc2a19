"""DKT+ on ASSISTChall (ASSISTments 2017, 102 skills), lambdas of the authors' ADM2017 checkpoint.

    python -m launch.dkt --config=launch/configs/dktplus_assistchall.py --workdir=workdirs/dktplus_achall \
        --config.manual_dir=PATH --config.data_dir=data/tfds
Set ``--config.dataset=assistments2017 --config.train_split=kt_train --config.test_split=kt_test`` for the
STEM pipeline's splits.
"""
from __future__ import annotations

import ml_collections

from launch.configs import dkt_base


def get_config() -> ml_collections.ConfigDict:
    c = dkt_base.get_config()
    c.dataset = "kt_csv/assistchall"
    c.loss.lambda_r = 0.1
    c.loss.lambda_w1 = 0.3
    c.loss.lambda_w2 = 3.0
    c.model.dropout_rate = 0.667       # keep_prob 0.333 (ADM2017 notebooks)
    c.max_len = 500                    # pyKT's maxlen for assist2017; sequences up to ~3,000 steps
    c.eval_chunk_len = 500
    c.eval_batch_size = 64
    return c
