"""STEM results: the (feature set, model) table (markdown + CSV), ROC curves and the submission file."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

METRICS = ("auc", "rmse", "score", "ap")
_HEAD = {"auc": "AUC", "rmse": "RMSE", "score": "AUC+(1-RMSE)", "ap": "AP"}


def results_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """One row per (feature set, model) with <metric>_mean / <metric>_2std columns."""
    return pd.DataFrame(list(rows))


def markdown_table(frame: pd.DataFrame) -> str:
    """Markdown table 'mean ± 2std' per metric, one row per (feature set, model)."""
    head = ["feature set", "model", "RFECV features (median)"] + [_HEAD[m] for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        nf = r.get("num_features_median")
        cells = [str(r["feature_set"]), str(r["model"]),
                 "" if nf is None or not np.isfinite(nf) else f"{nf:g}"]
        cells += [f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_2std']:.3f}" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(frame: pd.DataFrame, out_dir: str) -> dict[str, str]:
    """Writes results.csv and results.md; returns the paths."""
    csv_path, md_path = os.path.join(out_dir, "results.csv"), os.path.join(out_dir, "results.md")
    frame.to_csv(csv_path, index=False, float_format="%.5f")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(markdown_table(frame) + "\n")
    return {"csv": csv_path, "md": md_path}


def plot_roc(labels: np.ndarray, oof: dict[tuple[str, str], np.ndarray], feature_sets: Sequence[str],
             path: str) -> str:
    """ROC curves of the pooled out-of-fold probabilities: one panel per feature set, one line per model."""
    n = len(feature_sets)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.4), squeeze=False)
    for ax, fs in zip(axes[0], feature_sets):
        for (cell_fs, model), proba in oof.items():
            if cell_fs != fs or np.isnan(proba).any():
                continue
            fpr, tpr, _ = roc_curve(labels, proba)
            auc = np.trapezoid(tpr, fpr)
            ax.plot(fpr, tpr, lw=1.2, label=f"{model} {auc:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(fs, fontsize=10)
        ax.set_xlabel("false positive rate")
        ax.legend(fontsize=7, loc="lower right", title="pooled OOF AUC", title_fontsize=7)
    axes[0][0].set_ylabel("true positive rate")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_feature_set_bars(frame: pd.DataFrame, path: str, metric: str = "auc") -> str:
    """Grouped bars of ``metric`` mean ± 2std per model and feature set."""
    models = list(dict.fromkeys(frame["model"]))
    sets = list(dict.fromkeys(frame["feature_set"]))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(models), 3.5))
    width = 0.8 / max(1, len(sets))
    for k, fs in enumerate(sets):
        sub = frame[frame["feature_set"] == fs].set_index("model")
        xs = [i + k * width for i, m in enumerate(models) if m in sub.index]
        ys = [sub.loc[m, f"{metric}_mean"] for m in models if m in sub.index]
        es = [sub.loc[m, f"{metric}_2std"] for m in models if m in sub.index]
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=fs)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))], models)
    ax.set_ylabel(f"{_HEAD[metric]} (outer 5-fold, ± 2 std)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_submission(student_ids: np.ndarray, proba: np.ndarray, out_dir: str) -> dict[str, str]:
    """The competition submission: ``submission.txt`` (comma-joined P(isSTEM) at 5 decimals, in
    validation_test_label.csv row order, as the authors submitted) and ``submission.csv``
    (ITEST_id, isSTEM_probability) with the same order."""
    txt, csv = os.path.join(out_dir, "submission.txt"), os.path.join(out_dir, "submission.csv")
    with open(txt, "w", encoding="utf-8") as f:
        f.write(",".join(f"{p:.5f}" for p in proba) + "\n")
    pd.DataFrame({"ITEST_id": student_ids, "isSTEM": np.round(proba, 5)}).to_csv(csv, index=False)
    return {"txt": txt, "csv": csv}
