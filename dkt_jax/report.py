"""Reports of a DKT run: the markdown results table, a knowledge-state heatmap (as in the DKT+ paper) and
training curves."""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import dkt_jax  # noqa: E402


def knowledge_heatmap(states: np.ndarray, skills: np.ndarray, correct: np.ndarray, path: str, *,
                      title: str = "", max_skills: int = 20) -> str:
    """Heatmap of one student's predictions (skills x steps), answered skill and correctness marked.

    Args:
      states: (T, M) predictions after each step; skills, correct: (T,) the interactions.
      max_skills: rows shown: the answered skills (up to this many, most frequent first).
    """
    t = len(skills)
    answered, counts = np.unique(skills, return_counts=True)
    shown = answered[np.argsort(-counts, kind="stable")][:max_skills]
    shown = np.sort(shown)
    row_of = {s: i for i, s in enumerate(shown)}
    fig, ax = plt.subplots(figsize=(min(2 + 0.22 * t, 30), 1.2 + 0.35 * len(shown)))
    im = ax.imshow(states[:, shown].T, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    for step, (q, a) in enumerate(zip(skills, correct)):
        if q in row_of:
            ax.scatter(step, row_of[q], marker="o" if a == 1 else "x", s=28,
                       c="tab:green" if a == 1 else "tab:red", linewidths=1.5)
    ax.set_yticks(range(len(shown)), [str(s) for s in shown])
    ax.set_xticks(range(t), [f"{q},{a}" for q, a in zip(skills, correct)], rotation=90, fontsize=6)
    ax.set_xlabel("step (answered skill, correct)  -  o correct, x wrong")
    ax.set_ylabel("skill")
    ax.set_title(title or "knowledge state after each step")
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01, label="P(correct next)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(history: Sequence[dict], path: str) -> str:
    """Train loss and validation AUC(N)/AUC(C)/w1 per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    axes[0].plot(epochs, [h.get("train_loss", np.nan) for h in history], label="train loss")
    axes[0].plot(epochs, [h.get("train_bce_next", np.nan) for h in history], label="train BCE(next)")
    for key, ax in (("auc", axes[1]), ("w", axes[2])):
        names = ("val_auc_n", "val_auc_c") if key == "auc" else ("val_w1", "val_w2")
        for n in names:
            ax.plot(epochs, [h.get(n, np.nan) for h in history], label=n)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(plots_dir: str, params: Any, seqs: Any, history: Sequence[dict], config: Any) -> list[str]:
    """Writes ``knowledge_state.png`` (first test student, up to 60 steps) and ``training.png`` into
    ``plots_dir``; returns their paths."""
    os.makedirs(plots_dir, exist_ok=True)
    out = []
    if len(seqs):
        i = 0
        n = min(len(seqs.skills[i]), 60)
        skills, correct = seqs.skills[i][:n], seqs.correct[i][:n]
        states, _ = dkt_jax.knowledge_states(params, skills[None], correct[None], np.array([n], np.int32))
        lam = config.loss
        out.append(knowledge_heatmap(np.asarray(states[0]), skills, correct,
                                     os.path.join(plots_dir, "knowledge_state.png"),
                                     title=f"{config.dataset} student {seqs.ids[i]} (lambda_r={lam.lambda_r}, "
                                           f"w1={lam.lambda_w1}, w2={lam.lambda_w2})"))
    if history:
        out.append(training_curves(history, os.path.join(plots_dir, "training.png")))
    return out


def results_table(results: Mapping[str, Any]) -> str:
    """Markdown table of the test metrics, plus oracle / Bayes-optimal AUC rows when known."""
    t = results["test"]
    lines = ["| metric | value |", "|---|---|"]
    for key, label in (("auc_n", "AUC(N)"), ("auc_c", "AUC(C)"), ("w1", "w1"), ("w2", "w2"), ("m1", "m1"),
                       ("m2", "m2")):
        lines.append(f"| {label} | {t[key]:.4f} |")
    for key, label in (("oracle_auc", "oracle AUC (true p)"), ("bayes_auc", "Bayes-optimal AUC")):
        if key in results:
            lines.append(f"| {label} | {results[key]:.4f} |")
    lines.append(f"| test targets | {t['num_targets']} |")
    return "\n".join(lines)
