"""A tiny DKT+ config for tests and smoke runs (seconds on CPU): 60 generated students, 12 exercises."""
from __future__ import annotations

import ml_collections

from launch.configs import dkt_base


def get_config() -> ml_collections.ConfigDict:
    c = dkt_base.get_config()
    c.simulated5 = ml_collections.ConfigDict({"num_students": 60, "num_train": 40, "num_exercises": 12,
                                              "num_concepts": 3, "seed": 0, "alpha_grid_size": 21,
                                              "gain_grid_size": 2})
    c.model.hidden_size = 16
    c.model.dropout_rate = 0.1
    c.loss.lambda_r = 0.1
    c.loss.lambda_w1 = 0.03
    c.loss.lambda_w2 = 3.0
    c.max_len = 8
    c.batch_size = 8
    c.num_epochs = 2
    c.patience = 5
    c.val_fraction = 0.2
    c.eval_batch_size = 16
    c.eval_chunk_len = 8
    return c
