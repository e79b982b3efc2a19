"""Ground-truth summaries of the synthetic release: learning gain and the planted effect sizes."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def nlg_of_trajectory(trajectory: np.ndarray, sidx: np.ndarray, pos: np.ndarray, lengths: np.ndarray,
                      window: int = 10) -> np.ndarray:
    """Normalised learning gain (post - pre) / (1 - pre) per student (S,), as in the STEM paper's analysis:
    pre/post are the first/last values of the ``window``-step moving average of the mean-mastery trajectory (N,)
    (the whole sequence when shorter than ``window``)."""
    w = np.minimum(lengths, window)
    pre = np.bincount(sidx, trajectory * (pos < w[sidx]), minlength=len(lengths)) / w
    post = np.bincount(sidx, trajectory * (pos >= (lengths - w)[sidx]), minlength=len(lengths)) / w
    return (post - pre) / (1.0 - pre)


def cohens_d(x: np.ndarray, group: np.ndarray) -> float:
    """Standardised mean difference (group 1 minus group 0, pooled SD)."""
    a, b = x[group == 1], x[group == 0]
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled)


def _cv_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, solver="liblinear"))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, y, cv=folds, scoring="roc_auc").mean())


def effect_summary(table: pd.DataFrame, final_mastery: np.ndarray, sp_columns: Sequence[str], *,
                   seed: int = 0, with_cv: bool = True) -> dict[str, Any]:
    """Planted effect sizes: STEM vs non-STEM differences and how much the true knowledge state adds to SP.

    ``table`` has one row per student (isSTEM, p_stem, mastery / gain columns, SP columns); ``final_mastery``
    is (S, K). CV AUCs (skipped unless ``with_cv``) use a 5-fold logistic regression on the true features
    (an upper reference for what a pipeline on estimated knowledge states can recover).
    """
    y = table["isSTEM"].to_numpy()
    sp = table[list(sp_columns)].to_numpy(np.float64)
    out: dict[str, Any] = {"num_students": int(len(y)), "stem_rate": float(y.mean()),
                           "oracle_auc_p_stem": float(roc_auc_score(y, table["p_stem"]))}
    for column in ("mean_final_mastery", "stem_mastery", "learning_gain"):
        x = table[column].to_numpy()
        out[column] = {"stem_mean": float(x[y == 1].mean()), "non_stem_mean": float(x[y == 0].mean()),
                       "cohens_d": cohens_d(x, y)}
    planted = table[["stem_mastery", "learning_gain"]].to_numpy()
    feature_sets = {"SP": sp, "SP+true_final_mastery": np.hstack([sp, final_mastery]),
                    "SP+planted_latents": np.hstack([sp, planted])}
    labeled = table["in_training_label"].to_numpy()
    subsets = (("cv_auc_all_students", np.ones(len(y), bool)), ("cv_auc_training_label_students", labeled))
    for name, rows in subsets if with_cv else ():
        if rows.sum() >= 20 and min(np.bincount(y[rows], minlength=2)) >= 5:
            out[name] = {k: _cv_auc(x[rows], y[rows], seed) for k, x in feature_sets.items()}
    return out
