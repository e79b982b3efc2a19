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
        fs = str(r["feature_set"]) + (" (oracle)" if bool(r.get("oracle", False)) else "")
        cells = [fs, str(r["model"]),
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
    ax.set_ylabel(f"{_HEAD[metric]} (outer splits, ± 2 std)")
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


def _fmt(v) -> str:
    if isinstance(v, dict):
        return "; ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def comparison_markdown(selected: pd.DataFrame, comparison: dict) -> str:
    """One row per feature set: AUC of the inner-CV-selected model per split (mean ± 2 std), the models
    chosen, and the paired difference to SP with its Nadeau-Bengio 95 % interval and p."""
    from dkt_jax.stem.compare import comparison_key

    head = ["feature set", "AUC (selected model)", "models chosen (splits)", "Δ AUC vs SP", "95 % CI", "p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in selected.iterrows():
        name = f"{r['feature_set']} **(oracle)**" if r["oracle"] else str(r["feature_set"])
        test = comparison.get(comparison_key(str(r["feature_set"]), "SP"))
        delta = ["-", "-", "-"] if test is None else [
            f"{test['delta_auc']:+.3f}", f"[{test['ci95'][0]:+.3f}, {test['ci95'][1]:+.3f}]", f"{test['p']:.2g}"]
        lines.append(f"| {name} | {r['auc_mean']:.3f} ± {r['auc_2std']:.3f} | {r['models_chosen']} | "
                     + " | ".join(delta) + " |")
    return "\n".join(lines)


def markdown_report(results: dict, frame: pd.DataFrame, selected: pd.DataFrame | None = None) -> str:
    """The human-readable report.md of one launch.stem run."""
    lines = ["# STEM prediction from DKT / DKT+ knowledge states", "",
             f"{results['num_labelled']} labelled students ({results['num_stem']} STEM), "
             f"{results['num_submission']} submission rows, {results['num_skills']} skills.", "",
             "## Knowledge-tracing models (kt_test split)", "",
             "| model | AUC(N) | AUC(C) | w1 | w2 | best epoch | epochs run |", "|---|---|---|---|---|---|---|"]
    for name, kt in results["kt"].items():
        t = kt.get("test") or {}
        lines.append(f"| {name} | {_fmt(t.get('auc_n'))} | {_fmt(t.get('auc_c'))} | {_fmt(t.get('w1'))} | "
                     f"{_fmt(t.get('w2'))} | {_fmt(kt.get('best_epoch'))} | {_fmt(kt.get('epochs_run'))} |")
    kind = results.get("state_feature", "final")
    lines += ["", f"Knowledge-state features of DKT / DKT+: **{kind}** "
              + ("(the paper's: output after the last interaction)." if kind == "final"
                 else "(an option beyond the paper; see docs/stem.md).")]
    k, reps = results["outer_folds"], results.get("outer_repeats", 1)
    if selected is not None and len(selected):
        lines += ["", f"## The comparison (RepeatedStratifiedKFold({k}, {reps}): {k * reps} outer splits, the same "
                  "for every feature set and model)", "",
                  "Per feature set and outer split, the model with the best inner-CV score (GridSearchCV on the "
                  "outer training fold) is taken, so the choice never looks at the outer test fold. Δ AUC is the "
                  "mean paired per-split difference to SP; the 95 % interval and p are from the Nadeau-Bengio "
                  "corrected resampled t-test (variance factor 1/J + n_test/n_train, df J-1). **Oracle** rows use "
                  "the generator's ground truth (ceilings, not estimators). Picture: classify/paired_differences.png.",
                  "", comparison_markdown(selected, results.get("comparison", {}))]
    select = "RFECV + GridSearchCV" if results.get("rfecv", True) else "GridSearchCV (RFECV off)"
    lines += ["", f"## isSTEM classification per model (mean ± 2 std over the {k * reps} outer splits; {select} "
              f"on inner StratifiedKFold({results['inner_folds']}) of the outer training fold only)",
              "", markdown_table(frame), "",
              *[f"- FAILED {r['feature_set']} / {r['model']}: {r['failed_folds']} outer fold(s): {r['errors']}"
                for _, r in frame.iterrows() if r.get("failed_folds", 0)],
              f"Submission model: {' / '.join(results['submission_cell'])} (best mean AUC+(1-RMSE), oracles "
              "excluded); "
              "files classify/submission.txt and classify/submission.csv.", "",
              "## Acceptance checks", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in results["acceptance"].items()]
    ana = results["analyses"]
    effects = (ana.get("ground_truth") or {}).get("effects_all_students") or {}
    reference = effects.get("cv_auc_training_label_students")
    if reference:
        lines += ["", "Generator reference (effects.json, 5-fold LR AUC on the labelled students): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in reference.items())]
    lines += ["", "## Normalized learning gain (10-step moving average of mean mastery)", "",
              "| source | STEM mean ± std | non-STEM mean ± std | Welch t | p | Cohen's d |",
              "|---|---|---|---|---|---|"]
    rows = dict(ana["nlg"])
    gt = ana.get("ground_truth") or {}
    if "learning_gain" in gt:
        rows["generator truth (latent)"] = gt["learning_gain"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['stem_mean']:.4f} ± {r['stem_std']:.4f} | {r['non_stem_mean']:.4f} ± "
                     f"{r['non_stem_std']:.4f} | {r['welch_t']:.2f} | {r['welch_p']:.2g} | {r['cohens_d']:.2f} |")
    lines += ["", "## Final mean mastery, STEM vs non-STEM", "",
              "| source | STEM mean | non-STEM mean | Welch p | Cohen's d |", "|---|---|---|---|---|"]
    rows = dict(ana["final_mastery"])
    if "mean_final_mastery" in gt:
        rows["generator truth (latent)"] = gt["mean_final_mastery"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['stem_mean']:.4f} | {r['non_stem_mean']:.4f} | {r['welch_p']:.2g} | "
                     f"{r['cohens_d']:.2f} |")
    lines += ["", "## Per-skill Pearson r of final mastery with isSTEM, and tracking of the true mastery", "",
              "r with true profile: Pearson r between the estimator's per-skill r(isSTEM) and the true one. "
              "Tracks true mastery: per-skill Pearson r across students of the estimated vs the generator's true "
              "final mastery, mean over skills (all / planted STEM skills).", "",
              "| source | mean r (all skills) | share r > 0 | mean r (planted STEM skills) | r with true profile "
              "| tracks true mastery (all / STEM skills) |",
              "|---|---|---|---|---|---|"]
    for name, r in ana["correlation"].items():
        planted = r.get("planted_stem_skills", {}).get("mean_r")
        lines.append(f"| {name} | {r['all_skills']['mean_r']:.3f} | {r['all_skills']['share_positive']:.2f} | "
                     f"{_fmt(planted)} | {_fmt(r.get('pearson_with_true_profile'))} | "
                     f"{_fmt(r.get('tracks_true_mastery'))} / {_fmt(r.get('tracks_true_mastery_stem_skills'))} |")
    lines += ["", "## Timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in results["timings"].items()]
    lines += ["", "Figures: classify/paired_differences.png, classify/roc_curves.png (repeat 0), "
              "classify/auc_by_feature_set.png, analyses/nlg_*.png, "
              "analyses/skill_correlation_heatmap.png.", ""]
    return "\n".join(lines)
