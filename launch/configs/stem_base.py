r"""The STEM base config: every field of ``launch.stem`` with its default, sized for the full-size
synthetic ASSISTments 2017 release. ``stem_synthetic``, ``stem_tiny`` and ``stem_assistments2017`` call
``get_config()`` and override a few fields.

Sized for <= 15 minutes on 2 CPU cores: the 'fast' sklearn grids and RFECV removing 5% of the features
per round (``:paper`` selects the full grids of dkt_spec.md §6.4 and one-feature RFECV steps, many times
slower), 4 DKT epochs on 200-step chunks. See docs/stem.md for the measured times.
"""
from __future__ import annotations

import ml_collections

from launch.configs import dkt_base


def base_config() -> ml_collections.ConfigDict:
    """Fields shared by the STEM configs (without the ``:paper`` argument)."""
    c = ml_collections.ConfigDict()
    c.dataset = "assistments2017"
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)        # default <workdir>/raw
    c.data_dir = ml_collections.FieldReference(None, field_type=str)          # default <workdir>/tfds
    c.ground_truth_dir = ml_collections.FieldReference(None, field_type=str)  # default <workdir>/ground_truth
    c.generate = True                  # write the synthetic release into manual_dir when it has no CSVs
    c.synthetic = ml_collections.ConfigDict({"num_students": 1709, "seed": 0})
    c.kt_train_split = "kt_train"
    c.kt_test_split = "kt_test"
    c.labelled_split = "labeled"
    c.submission_split = "submission"

    # The launch.dkt config shared by both KT models; each model sets the lambdas (kt_models), the STEM
    # loop sets the dataset and splits. keep_prob 0.333 as in the authors' ADM2017 notebooks.
    c.dkt = dkt_base.get_config()
    c.dkt.dataset = "assistments2017"
    c.dkt.model.dropout_rate = 0.667
    c.dkt.max_len = 200
    c.dkt.batch_size = 32
    c.dkt.num_epochs = 4
    c.dkt.patience = 2
    c.dkt.eval_batch_size = 128
    c.dkt.eval_chunk_len = 128
    c.kt_models = ml_collections.ConfigDict({
        "dkt": {"lambda_r": 0.0, "lambda_w1": 0.0, "lambda_w2": 0.0},
        "dkt_plus": {"lambda_r": 0.1, "lambda_w1": 0.3, "lambda_w2": 3.0},   # ADM2017 checkpoint
    })

    c.export = ml_collections.ConfigDict({"chunk_len": 64, "batch_size": 128})

    c.sklearn = ml_collections.ConfigDict()
    c.sklearn.feature_sets = ("SP", "DKT", "DKT+", "DKT&SP", "DKT+&SP")
    c.sklearn.models = ("lr", "svm", "gbdt", "mlp", "lda", "qda")
    c.sklearn.grid = "fast"            # 'paper' (dkt_spec §6.4), 'fast', 'tiny'
    c.sklearn.outer_folds = 5
    c.sklearn.inner_folds = 5
    c.sklearn.rfecv = True
    c.sklearn.rfecv_step = 0.05        # fraction of the features removed per RFE round (1 = one at a time)
    c.sklearn.rfecv_folds = 5
    c.sklearn.rfecv_estimator = "lr"   # 'lr' or 'same' (the model itself where it has importances)
    c.sklearn.cache = True             # joblib.Memory for scale+RFECV (shared by all grid points)
    c.sklearn.n_jobs = 2
    c.sklearn.seed = 0

    c.analyses = ml_collections.ConfigDict({"nlg_window": 10})
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    if arg == "paper":
        c.sklearn.grid = "paper"
        c.sklearn.rfecv_step = 1
    elif arg:
        raise ValueError(f"unknown config argument {arg!r} (use ':paper' or nothing)")
    return c
