"""LOSO report: results.json, report.md and PNG figures (matplotlib, Agg backend).

Files written into the output directory (a launch.fdp workdir):

    results.json                 pooled metrics, per-fold table, config, code version, timing
    report.md                    the same as a human-readable page (links the PNGs)
    plots/confusion_matrix.png   pooled confusion matrix (counts and row-normalised recall)
    plots/dynamic_images.png     dynamic-image targets (top) vs reconstructions (bottom)
    plots/training_curves.png    train loss / CE / DI-MSE per fold (and validation score, if any)

With several training seeds (``config.seeds``) each ``seed_<s>/`` subfolder holds those files of one seed and
``write_results(..., render=render_seeds_markdown)`` writes the aggregate results.json / report.md (per-seed
table, mean ± std) above them.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_METRIC_NAMES = {"uf1": "UF1", "uar": "UAR", "accuracy": "accuracy", "weighted_f1": "weighted F1"}


def leaky_note(selection_metric: str = "uf1") -> str:
    """The bold warning of a ``select_on_test=True`` report; ``selection_metric`` is the config's
    (the step of each fold was picked by that score on the test subject)."""
    metric = _METRIC_NAMES.get(selection_metric, selection_metric)
    return ("**LEAKY protocol (select_on_test=True):** each fold's reported model was chosen by its "
            f"{metric} (`selection_metric`) on the held-out test subject, as in the official FDP code (which "
            "picks by accuracy). These numbers are optimistic and are only for a like-for-like comparison with "
            "the paper; do not report them as LOSO results.")


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str,
                          title: str = "Pooled LOSO confusion matrix") -> str:
    """Saves a (C, C) confusion matrix (rows = true class) with counts and row-normalised colours."""
    cm = np.asarray(confusion, dtype=np.int64)
    row_sums = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, np.maximum(row_sums, 1))
    size = 1.2 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{normalised[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if normalised[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=35, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="recall (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dynamic_images(targets: np.ndarray, predictions: np.ndarray, path: str,
                        captions: Sequence[str] | None = None, max_columns: int = 8) -> str:
    """Saves a 2-row grid: DI targets (top) and reconstructions (bottom), each (N, H, W) in [0, 1]."""
    n = min(len(targets), max_columns)
    if n == 0:
        raise ValueError("No dynamic images to plot.")
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for j in range(n):
        for row, (images, name) in enumerate(((targets, "target"), (predictions, "reconstruction"))):
            ax = axes[row, j]
            ax.imshow(np.asarray(images[j]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
        if captions is not None:
            axes[0, j].set_title(captions[j], fontsize=7)
    fig.suptitle("Dynamic images of test clips: target vs reconstruction")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curves(records: Sequence[Mapping[str, Any]], path: str,
                         keys: Sequence[str] = ("loss", "ce", "mse"), max_folds: int = 30) -> str:
    """Saves one panel per metric key with one line per fold from metrics.jsonl ``records``.

    Records are the MetricWriter rows; training rows have prefix ``fold_<subject>/train`` and
    selection rows ``fold_<subject>/select`` (key ``score``); ``mse`` is the DI reconstruction MSE.
    """
    panels = [(k, "train") for k in keys] + [("score", "select")]
    series: dict[tuple[str, str], dict[str, tuple[list, list]]] = {p: {} for p in panels}
    for record in records:
        prefix = record.get("prefix", "")
        if not prefix.startswith("fold_") or "/" not in prefix:
            continue
        fold, kind = prefix[len("fold_"):].split("/", 1)
        for key, panel_kind in panels:
            if panel_kind == kind and key in record:
                xs, ys = series[(key, panel_kind)].setdefault(fold, ([], []))
                xs.append(record["step"])
                ys.append(record[key])
    panels = [p for p in panels if series[p]]
    if not panels:
        raise ValueError("No per-fold training records to plot.")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for fold, (xs, ys) in sorted(series[panel].items())[:max_folds]:
            order = np.argsort(xs, kind="stable")
            ax.plot(np.asarray(xs)[order], np.asarray(ys)[order], lw=1, alpha=0.7, label=fold)
        key, kind = panel
        ax.set_title(f"{kind}: {key}")
        ax.set_xlabel("step")
        if key in ("loss", "ce", "mse"):
            ax.set_yscale("log")
    if len(series[panels[0]]) <= 12:
        axes[0, -1].legend(fontsize=6, title="fold", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of ``rows`` restricted to ``columns`` (missing cells are blank)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]) if c in row else "" for c in columns) + " |")
    return "\n".join(lines)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The report.md text for a ``results`` dict as written by ``write_results``."""
    pooled = results["pooled"]
    config = results.get("config", {})
    model = config.get("model", {})
    lines = [f"# FDP LOSO report: {results.get('dataset', '?')}", ""]
    if results.get("select_on_test"):
        lines += [leaky_note(config.get("selection_metric", "uf1")), ""]
    lines += [
        f"- code version: `{results.get('code_version', 'unknown')}`",
        f"- model: mode `{model.get('mode', '?')}`, size `{model.get('size', '?')}`",
        f"- folds: {len(pooled['per_fold'])} subjects, {pooled['num_samples']} test clips in total",
        f"- model selection: {results.get('selection', '?')}",
        f"- devices: {results.get('mesh', '?')}",
        f"- wall time: {_fmt(results.get('wall_time_s', float('nan')), 1)} s",
        "",
        "## Pooled metrics (predictions of all folds concatenated, then scored once)",
        "",
        markdown_table([{k: pooled[k] for k in ("uf1", "uar", "accuracy", "weighted_f1", "di_mse", "di_psnr")
                         if k in pooled}], [k for k in ("uf1", "uar", "accuracy", "weighted_f1", "di_mse", "di_psnr")
                                            if k in pooled]),
        "",
        f"For contrast only: the mean of per-fold macro F1 is {_fmt(pooled['fold_mean_macro_f1'])}; the "
        "reported UF1 is the pooled one.",
        "",
        *bootstrap_lines(pooled),
        *di_baseline_lines(pooled),
        "## Per class",
        "",
        markdown_table([{"class": name, "support": pooled["support"][i], "f1": pooled["per_class_f1"][i],
                         "recall": pooled["per_class_recall"][i]}
                        for i, name in enumerate(results.get("class_names", []))],
                       ["class", "support", "f1", "recall"]),
        "",
        "## Figures",
        "",
    ]
    for name, rel in sorted(results.get("plots", {}).items()):
        lines += [f"![{name}]({rel})", ""]
    lines += ["## Per fold", "",
              markdown_table(pooled["per_fold"], ["subject", "n", "accuracy", "macro_f1", "weighted_f1", "di_mse",
                                                  "di_baseline_mse", "selected_step"]), "",
              "## Config", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def _interval(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def bootstrap_lines(pooled: Mapping[str, Any]) -> list[str]:
    """The report.md sentence on the pooled metrics' bootstrap interval (none without ``bootstrap_ci95``)."""
    ci = pooled.get("bootstrap_ci95")
    if not ci:
        return []
    return [f"{100 * ci.get('level', 0.95):.0f}% bootstrap interval over the {pooled['num_samples']} pooled test "
            f"clips ({ci.get('method', 'percentile')}, {ci['resamples']} resamples, numpy seed {ci.get('seed', 0)}): "
            f"UF1 {_interval(ci['uf1'])}, UAR {_interval(ci['uar'])}. It covers which clips were tested, not the "
            "training seed (`--config.seeds=0,1,2` measures that).", ""]


def di_baseline_lines(pooled: Mapping[str, Any]) -> list[str]:
    """The report.md section comparing the decoder's pooled DI error with the "predict the training mean"
    baseline (each fold's mean training DI target), or saying why the baseline is missing."""
    if "di_mse" not in pooled:
        return []
    lines = ["## Dynamic images vs the mean baseline", "",
             "Baseline: for each fold, the pixelwise mean DI target of its training clips, predicted for every test "
             "clip; pooled over folds like the decoder's error (all test pixels of all folds).", ""]
    if pooled.get("di_baseline_mse") is None:
        missing = ", ".join(pooled.get("di_baseline_missing", [])) or "?"
        return lines + [f"Baseline missing: the predictions of fold(s) {missing} were written before it was "
                        "recorded (delete their predictions.npz to retrain them with it).", ""]
    rows = [{"predictor": "FDP decoder", "di_mse": pooled["di_mse"], "di_psnr": pooled["di_psnr"]},
            {"predictor": "training-mean DI (baseline)", "di_mse": pooled["di_baseline_mse"],
             "di_psnr": pooled["di_baseline_psnr"]}]
    return lines + [markdown_table(rows, ["predictor", "di_mse", "di_psnr"]), "",
                    f"DI PSNR gain over the mean baseline (dB): {pooled['di_psnr_gain_db']:+.2f}", ""]


def _mean_std(summary: Mapping[str, Any], key: str) -> str:
    if key not in summary:
        return "missing"
    entry = summary[key]
    return f"{entry['mean']:.4f} ± " + ("n/a" if entry["std"] is None else f"{entry['std']:.4f}")


def render_seeds_markdown(results: Mapping[str, Any]) -> str:
    """The aggregate report.md of a several-seed run (``write_results``): one row per seed, then the
    mean ± sample std (ddof=1) over seeds."""
    summary = results["summary"]
    columns = ["seed", "uf1", "uf1 95% CI", "uar", "uar 95% CI", "accuracy", "di_mse", "di_psnr", "di_baseline_psnr",
               "di_psnr_gain_db"]
    rows = []
    for row in results["per_seed"]:
        ci = row.get("bootstrap_ci95") or {}
        rows.append({**row, "seed": f"[{row['seed']}]({row['workdir']}/report.md)",
                     **{f"{k} 95% CI": _interval(ci[k]) if ci else "" for k in ("uf1", "uar")}})
    rows.append({"seed": f"**mean ± std (ddof={summary['std_ddof']})**",
                 **{k: _mean_std(summary, k) for k in columns if k not in ("seed", "uf1 95% CI", "uar 95% CI")}})
    lines = [f"# FDP LOSO report over {summary['num_seeds']} training seeds: {results.get('dataset', '?')}", ""]
    if results.get("select_on_test"):
        lines += [leaky_note(results.get("config", {}).get("selection_metric", "uf1")), ""]
    lines += [
        f"- code version: `{results.get('code_version', 'unknown')}`",
        f"- seeds: {', '.join(str(s) for s in results['seeds'])} (each a whole LOSO run in `seed_<s>/`: its own "
        "initialisations, data order and dropout keys; one data release)",
        f"- model selection: {results.get('selection', '?')}",
        f"- wall time: {_fmt(results.get('wall_time_s', float('nan')), 1)} s",
        "",
        "## Pooled metrics per seed",
        "",
        "Each seed's metrics pool the predictions of all its folds; the CIs are that seed's percentile bootstrap "
        "over test clips. The last row is the mean and the sample standard deviation (ddof=1) over seeds.",
        "",
        markdown_table(rows, columns),
        "",
        "## Config", "", "```json", json.dumps(results.get("config", {}), indent=2, default=str), "```", "",
    ]
    return "\n".join(lines)


def write_results(out_dir: str, results: dict, code_version: str,
                  render: Callable[[dict], str] | None = None) -> dict:
    """Writes ``out_dir``/results.json and report.md (``render``, default :func:`render_markdown`; a several-seed
    aggregate passes :func:`render_seeds_markdown`); returns ``results`` with ``code_version`` added (the
    caller's, e.g. the git commit; kept when ``results`` already has one)."""
    results = dict(results)
    results.setdefault("code_version", code_version)
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, default=str)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write((render or render_markdown)(results))
    return results


def write_plots(out_dir: str, pooled: Mapping[str, Any], class_names: Sequence[str],
                folds: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                num_di_columns: int = 8) -> dict[str, str]:
    """Writes the three PNGs into ``out_dir``/plots; returns {name: path relative to ``out_dir``} for the report.

    ``folds``: per fold 'subject', 'labels' (N,), optional 'di_pred' / 'di_target' (N, H, W); ``records``:
    metrics.jsonl rows (see ``plot_training_curves``)."""
    plots_dir = os.path.join(out_dir, "plots")
    os.makedirs(plots_dir, exist_ok=True)
    plots = {"confusion_matrix": plot_confusion_matrix(pooled["confusion_matrix"], class_names,
                                                       os.path.join(plots_dir, "confusion_matrix.png"))}
    # One DI example per fold (round-robin), so the grid shows several subjects.
    targets, preds, captions = [], [], []
    for index in range(num_di_columns):
        for fold in folds:
            if len(targets) >= num_di_columns:
                break
            if fold.get("di_pred") is not None and index < len(fold["di_pred"]):
                targets.append(fold["di_target"][index])
                preds.append(fold["di_pred"][index])
                label = int(fold["labels"][index])
                captions.append(f"{fold['subject']} {class_names[label] if label < len(class_names) else label}")
    if targets:
        plots["dynamic_images"] = plot_dynamic_images(np.stack(targets), np.stack(preds),
                                                      os.path.join(plots_dir, "dynamic_images.png"), captions)
    try:
        plots["training_curves"] = plot_training_curves(records, os.path.join(plots_dir, "training_curves.png"))
    except ValueError:
        pass  # no training records (e.g. every fold restored from an older run without metrics.jsonl)
    return {name: os.path.relpath(path, out_dir) for name, path in plots.items()}
