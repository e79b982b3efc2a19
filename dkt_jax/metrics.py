"""DKT+ evaluation metrics, pooled over all test interactions (dkt_spec §2.6, reference ``utils.py``).

With ``y_t`` the full-history prediction after step t (B, T, M) and a row of length L:

* AUC(N): ``y_t[q_{t+1}]`` vs ``a_{t+1}`` for t in [0, L-2]; one pooled ``sklearn.metrics.roc_auc_score``.
* AUC(C): ``y_t[q_t]`` vs ``a_t`` for t in [0, L-2] (the reference scores the shifted batches).
* w1 = sum_{t=1}^{L-1} ||y_t - y_{t-1}||_1 / (M * N),  w2 = sqrt(sum ||y_t - y_{t-1}||_2^2 / (M * N)).
* m1 = sum_{t=1}^{L-1} s_t sign(D_t) / N,  m2 = sum s_t D_t / N,  with D_t = (y_t - y_{t-1})[q_t] and
  s_t = +1 if a_t = 1 else -1.
* N = sum over rows of (L - 1).

:func:`batch_statistics` is jittable and returns per-batch pieces; :class:`MetricAccumulator` pools them
on the host across batches (and across chunks of a long sequence, when given the previous chunk's last
output via ``prev``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dkt_jax.losses import gather_skill

METRIC_NAMES = ("auc_n", "auc_c", "w1", "w2", "m1", "m2")


def batch_statistics(probs: jax.Array, skills: jax.Array, correct: jax.Array, lengths: jax.Array,
                     segments: jax.Array | None = None) -> dict[str, jax.Array]:
    """Per-batch metric pieces from predictions ``probs`` (B, T, M) in (0, 1).

    ``segments`` (optional, (B, T)): packed rows; pairs (t, t + 1) of different students are left out.
    Returns arrays: ``next_pred/next_label/next_mask`` (B, T-1), ``curr_pred/curr_label`` (B, T-1)
    (same mask), and scalars ``w1_sum, w2_sum, m1_sum, m2_sum, n_steps``.
    """
    t = jnp.arange(probs.shape[1] - 1)
    out_mask = t[None, :] < (lengths[:, None] - 1)  # (B, T-1): t in [0, L-2]
    if segments is not None:
        out_mask = out_mask & (segments[:, 1:] == segments[:, :-1])
    pair_mask = out_mask.astype(probs.dtype)  # pair (t-1, t) for t in [1, L-1], indexed t-1
    diff = probs[:, 1:] - probs[:, :-1]  # (B, T-1, M), index t-1 <-> (y_t - y_{t-1})
    delta = gather_skill(diff, skills[:, 1:])  # (y_t - y_{t-1})[q_t]
    sign_answer = jnp.where(correct[:, 1:] == 1, 1.0, -1.0)
    return {
        "next_pred": gather_skill(probs[:, :-1], skills[:, 1:]),
        "next_label": correct[:, 1:],
        "curr_pred": gather_skill(probs[:, :-1], skills[:, :-1]),
        "curr_label": correct[:, :-1],
        "next_mask": out_mask,
        "w1_sum": (jnp.abs(diff).sum(-1) * pair_mask).sum(),
        "w2_sum": (jnp.square(diff).sum(-1) * pair_mask).sum(),
        "m1_sum": (sign_answer * jnp.sign(delta) * pair_mask).sum(),
        "m2_sum": (sign_answer * delta * pair_mask).sum(),
        "n_steps": pair_mask.sum(),
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Pooled ROC AUC; NaN when only one class is present (instead of raising)."""
    from sklearn import metrics as skm  # lazy: ~1 s of every launcher's start-up
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return float("nan")
    return float(skm.roc_auc_score(labels, np.asarray(scores, np.float64)))


@dataclasses.dataclass
class MetricAccumulator:
    """Pools :func:`batch_statistics` over batches; ``result()`` gives the §2.6 metrics."""

    num_skills: int
    next_preds: list = dataclasses.field(default_factory=list)
    next_labels: list = dataclasses.field(default_factory=list)
    curr_preds: list = dataclasses.field(default_factory=list)
    curr_labels: list = dataclasses.field(default_factory=list)
    sums: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(
        ("w1_sum", "w2_sum", "m1_sum", "m2_sum", "n_steps"), 0.0))

    def add(self, stats: dict) -> None:
        stats = jax.device_get(stats)
        mask = np.asarray(stats["next_mask"], bool)
        self.next_preds.append(np.asarray(stats["next_pred"])[mask])
        self.next_labels.append(np.asarray(stats["next_label"])[mask])
        self.curr_preds.append(np.asarray(stats["curr_pred"])[mask])
        self.curr_labels.append(np.asarray(stats["curr_label"])[mask])
        for k in self.sums:
            self.sums[k] += float(stats[k])

    def extra_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """The pooled next-step (labels, scores) in the order added (for oracle rows, plots)."""
        return np.concatenate(self.next_labels), np.concatenate(self.next_preds)

    def result(self) -> dict[str, float]:
        n = self.sums["n_steps"]
        m = float(self.num_skills)
        labels_n, preds_n = self.extra_scores() if self.next_labels else (np.zeros(0), np.zeros(0))
        labels_c = np.concatenate(self.curr_labels) if self.curr_labels else np.zeros(0)
        preds_c = np.concatenate(self.curr_preds) if self.curr_preds else np.zeros(0)
        safe = max(n, 1.0)
        return {
            "auc_n": roc_auc(labels_n, preds_n),
            "auc_c": roc_auc(labels_c, preds_c),
            "w1": self.sums["w1_sum"] / (m * safe),
            "w2": float(np.sqrt(self.sums["w2_sum"] / (m * safe))),
            "m1": self.sums["m1_sum"] / safe,
            "m2": self.sums["m2_sum"] / safe,
            "num_targets": int(n),
        }


def reference_aucs(seqs: Any) -> dict[str, float]:
    """Oracle / Bayes-optimal AUC over the next-step targets of ``seqs`` (an ``input_pipeline.Sequences``),
    from its ``p_true`` / ``p_bayes`` extras (simulated data only); {} when it has none."""
    out = {}
    if not len(seqs):
        return out
    labels = np.concatenate([c[1:] for c in seqs.correct])
    for name, key in (("oracle_auc", "p_true"), ("bayes_auc", "p_bayes")):
        if key in seqs.extras:
            scores = np.concatenate([np.asarray(p)[1:] for p in seqs.extras[key]])
            out[name] = roc_auc(labels, scores)
    return out
