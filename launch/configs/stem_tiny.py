"""A tiny STEM run for the test suite and smoke checks (about a minute on CPU): 240 synthetic students with
short sequences, a 16-unit DKT trained for one epoch, tiny sklearn grids, 2 x 3 repeated outer folds."""
from __future__ import annotations

import ml_collections

from launch.configs import stem_base


def get_config() -> ml_collections.ConfigDict:
    c = stem_base.base_config()
    c.synthetic = ml_collections.ConfigDict({"num_students": 240, "seed": 0, "length_median": 40.0,
                                             "max_length": 120, "num_skills": 12, "num_stem_skills": 3,
                                             "num_log_files": 2, "num_problems": 60})
    c.dkt.model.hidden_size = 16
    c.dkt.max_len = 32
    c.dkt.batch_size = 16
    c.dkt.num_epochs = 1
    c.dkt.eval_batch_size = 64
    c.dkt.eval_chunk_len = 32
    c.export.chunk_len = 32
    c.export.batch_size = 32
    c.sklearn.models = ("lr", "lda")
    c.sklearn.grid = "tiny"
    c.sklearn.outer_folds = 3
    c.sklearn.outer_repeats = 2
    c.sklearn.inner_folds = 3
    c.sklearn.rfecv = True             # exercised here although the demo preset turns it off
    c.sklearn.rfecv_step = 0.2
    c.sklearn.rfecv_folds = 3
    c.sklearn.n_jobs = 1
    return c
