"""The comparison that decides: paired per-split differences between feature sets with the Nadeau-Bengio
corrected resampled t-test.

Every feature set is evaluated on the same outer splits (``evaluate.outer_splits``, R repeats x K folds).
Per feature set and split the model is chosen by its inner-CV score (``FoldResult.inner_best_score``, the
GridSearchCV best score on the outer training fold): the outer test fold never takes part in the choice.
The paired difference of feature sets A and B on split j is d_j = AUC_j(A) - AUC_j(B).

Nadeau & Bengio (2003), "Inference for the generalization error" (corrected resampled t-test; Bouckaert &
Frank 2004 for repeated k-fold): with J splits, mean d and sample variance s^2 (ddof 1),

    t = mean(d) / sqrt((1/J + n_test/n_train) * s^2),   df = J - 1,

which widens the naive 1/J variance to account for the overlap of the training sets across splits.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

MINUS = "\u2212"   # the key of a comparison is f"{a} {MINUS} {b}", e.g. 'DKT+&SP − SP'


def comparison_key(a: str, b: str) -> str:
    """'A − B' (U+2212 minus), the key of the comparison A vs B in results.json."""
    return f"{a} {MINUS} {b}"


def corrected_resampled_ttest(diffs: Sequence[float], n_train: float, n_test: float,
                              confidence: float = 0.95) -> dict[str, float | list[float]]:
    """Nadeau-Bengio corrected resampled t-test of paired per-split differences ``diffs`` (J,).

    n_train, n_test: training / test set sizes of a split (mean over splits when they differ by one).
    Returns mean difference, its corrected standard error, t, df, two-sided p and the ``confidence``
    interval ``mean ± t_{df, (1+confidence)/2} * se``.
    """
    d = np.asarray(diffs, np.float64)
    j = len(d)
    if j < 2:
        raise ValueError(f"need at least 2 paired splits, got {j}")
    mean, var = float(d.mean()), float(d.var(ddof=1))
    se = float(np.sqrt((1.0 / j + n_test / n_train) * var))
    df = j - 1
    quantile = float(stats.t.ppf(0.5 + confidence / 2, df))
    if se > 0:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    else:   # identical differences on every split
        t, p = (float("inf") if mean != 0 else float("nan")), (0.0 if mean != 0 else 1.0)
    return {"delta_auc": mean, "ci95": [mean - quantile * se, mean + quantile * se], "p": p, "t": float(t),
            "df": df, "se": se, "num_splits": j, "naive_se": float(np.sqrt(var / j))}


def select_per_split(scores: dict[str, Sequence[float]], inner: dict[str, Sequence[float]],
                     order: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per split, the test score of the model with the highest inner-CV score.

    scores, inner: model -> (J,) outer-test metric / inner-CV best score per split. Ties and nan inner scores
    are resolved by ``order`` (first wins; nan counts as -inf). Returns ((J,) selected scores, chosen models).
    """
    models = [m for m in order if m in scores]
    inner_m = np.array([[(-np.inf if v is None or not np.isfinite(v) else v) for v in inner[m]] for m in models])
    score_m = np.array([list(scores[m]) for m in models], np.float64)
    pick = np.argmax(inner_m, axis=0)                      # first maximum = config order on ties
    cols = np.arange(score_m.shape[1])
    return score_m[pick, cols], [models[i] for i in pick]


def plot_paired_differences(diffs: dict[str, np.ndarray], tests: dict[str, dict], path: str,
                            outer_folds: int) -> str:
    """Per-split paired AUC differences (dots, one colour per repeat) with the mean and the corrected 95 %
    interval (bar), one row per comparison; writes a PNG."""
    names = list(diffs)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(names)))
    rng = np.random.default_rng(0)
    for row, name in enumerate(names):
        d = np.asarray(diffs[name])
        repeat = np.arange(len(d)) // outer_folds
        ax.scatter(d, row + rng.uniform(-0.18, 0.18, len(d)), c=repeat, cmap="tab10", s=12, alpha=0.7,
                   vmin=0, vmax=9)
        t = tests[name]
        lo, hi = t["ci95"]
        ax.errorbar([t["delta_auc"]], [row], xerr=[[t["delta_auc"] - lo], [hi - t["delta_auc"]]], fmt="kD",
                    ms=5, capsize=4, lw=1.6)
        ax.text(1.01, row, f"{t['delta_auc']:+.3f} [{lo:+.3f}, {hi:+.3f}] p={t['p']:.2g}",
                transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("paired AUC difference per outer split (colour: repeat); bar: Nadeau-Bengio 95 % CI")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
