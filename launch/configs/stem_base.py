r"""The STEM base config: every field of ``launch.stem`` with its default, sized for the full-size
synthetic ASSISTments 2017 release. ``stem_synthetic``, ``stem_tiny`` and ``stem_assistments2017`` call
``get_config()`` and override a few fields.

Sized for ~10 minutes on 2 CPU cores: LR + LDA with the 'fast' grids, no RFECV, 5 x 5 repeated outer
splits (``:paper`` selects the six models, the full grids of dkt_spec.md §6.4, RFECV with one-feature steps
and 10 x 5 splits, many times slower), 4 DKT epochs on 200-step chunks. See docs/stem.md for the measured
times and results.
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

    # state_feature: the per-skill summary the classifiers get. 'final' = the paper's (output after the last
    # interaction); options beyond the paper: 'last_practice' (each skill's output right after its last
    # practice), 'mean' (output averaged over the sequence). See docs/stem.md for the measurements.
    c.export = ml_collections.ConfigDict({"chunk_len": 64, "batch_size": 128, "state_feature": "final"})

    # The classic baseline: a standard per-skill BKT fitted by EM on kt_train (dkt_jax/stem/bkt.py), whose
    # final mastery forms the BKT&SP feature set.
    c.bkt = ml_collections.ConfigDict({"enabled": True, "num_iters": 30})

    c.sklearn = ml_collections.ConfigDict()
    c.sklearn.feature_sets = ("SP", "DKT", "DKT+", "DKT&SP", "DKT+&SP", "BKT&SP")
    # Ceilings, evaluated in the same protocol only where the generator's ground truth exists.
    c.sklearn.oracle_feature_sets = ("oracle:SP+true_mastery", "oracle:SP+true_latents")
    # The demo preset ('fast') is sized for ~10 minutes on 2 cores with 5 x 5 repeated outer splits: LR and
    # LDA only, no RFECV (measured to keep 2 of the 112 DKT+&SP features, i.e. to drop the knowledge states;
    # docs/stem.md). ':paper' restores the six models, the §6.4 grids, RFECV with one-feature steps, 10 x 5.
    c.sklearn.models = ("lr", "lda")
    c.sklearn.grid = "fast"            # 'paper' (dkt_spec §6.4), 'fast', 'tiny'
    c.sklearn.outer_folds = 5
    c.sklearn.outer_repeats = 5        # RepeatedStratifiedKFold(outer_folds, outer_repeats): the paired test
    c.sklearn.inner_folds = 5
    c.sklearn.rfecv = False
    c.sklearn.rfecv_step = 0.05        # fraction of the features removed per RFE round (1 = one at a time)
    c.sklearn.rfecv_folds = 5
    c.sklearn.rfecv_estimator = "lr"   # 'lr' or 'same' (the model itself where it has importances)
    c.sklearn.cache = True             # joblib.Memory for scale+RFECV (shared by all grid points)
    c.sklearn.resume = True            # each finished (cell, outer split) kept in classify/cv_tasks/: re-runs resume
    c.sklearn.n_jobs = 2
    c.sklearn.seed = 0

    c.analyses = ml_collections.ConfigDict({"nlg_window": 10})
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base_config()
    if arg == "paper":
        c.sklearn.models = ("lr", "svm", "gbdt", "mlp", "lda", "qda")
        c.sklearn.grid = "paper"
        c.sklearn.rfecv = True
        c.sklearn.rfecv_step = 1
        c.sklearn.outer_repeats = 10
    elif arg == "signal":
        # Beyond the paper (docs/stem.md, "Why the knowledge states carried almost no signal"): per-skill
        # states at the last practice, and DKT+ waviness weights 10x smaller than ADM2017's.
        c.export.state_feature = "last_practice"
        c.kt_models.dkt_plus.lambda_w1 = 0.03
        c.kt_models.dkt_plus.lambda_w2 = 0.3
    elif arg:
        raise ValueError(f"unknown config argument {arg!r} (use ':paper', ':signal' or nothing)")
    return c
