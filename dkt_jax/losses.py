"""DKT / DKT+ objective (dkt_spec §1.4, §2.1-2.4), masked pyKT-style.

The model output at step t, ``y_t = sigmoid(logits[:, t])`` (B, T, M), predicts step t + 1. For a row of
length L the training outputs are ``y_0 .. y_{L-2}`` (the last output has no next-step target), and

* ``bce_next`` = mean over t in [0, L-2] of BCE(y_t[q_{t+1}], a_{t+1})            (L, next step)
* ``bce_curr`` = mean over t in [0, L-2] of BCE(y_t[q_t], a_t)                    (r, reconstruction)
* ``w1``       = mean over t in [1, L-2] of ||y_t - y_{t-1}||_1 / M                (waviness L1)
* ``w2``       = mean over t in [1, L-2] of ||y_t - y_{t-1}||_2^2 / M              (squared waviness L2)

``total = bce_next + lambda_r * bce_curr + lambda_w1 * w1 + lambda_w2 * w2`` (DKT: all lambdas 0).
Means are pooled over every valid position of the batch (not per row), exactly as pyKT's ``cal_loss``.

Packed rows (several students per row, ``segments`` (B, T): 1, 2, ... per student, 0 on padding): an output
has a next-step target only when step t + 1 belongs to the same student, and a waviness pair only when both
of its outputs do, so no term crosses a student boundary and every sum and count equals the unpacked one.

Each term is returned as a ``(sum, count)`` pair so that data-parallel code can pool counts across
devices before dividing (``pmap`` path), which keeps the loss and gradients identical to one device.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

TERMS = ("bce_next", "bce_curr", "w1", "w2")


def gather_skill(values: jax.Array, skills: jax.Array) -> jax.Array:
    """``values[b, t, skills[b, t]]``: (B, T, M), (B, T) -> (B, T). Negative (padded) ids read skill 0."""
    return jnp.take_along_axis(values, jnp.maximum(skills, 0)[..., None], axis=-1)[..., 0]


def step_masks(lengths: jax.Array, num_steps: int, segments: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Masks over output positions: ``(out_mask (B, T-1), diff_mask (B, T-2))``.

    ``out_mask[b, t]`` is True for t <= L_b - 2 (outputs with a next-step target) and, with ``segments``
    (B, T), step t + 1 in the same segment as step t; ``diff_mask[b, t-1]`` is True where outputs t - 1
    and t both have one (for one student per row: 1 <= t <= L_b - 2).
    """
    t = jnp.arange(num_steps - 1)
    out_mask = t[None, :] < (lengths[:, None] - 1)
    if segments is not None:
        out_mask = out_mask & (segments[:, 1:] == segments[:, :-1])
    return out_mask, out_mask[:, 1:] & out_mask[:, :-1]


def loss_terms(logits: jax.Array, skills: jax.Array, correct: jax.Array, lengths: jax.Array,
               segments: jax.Array | None = None) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Per-term ``(sum, count)`` over the batch.

    Args:
      logits: (B, T, M) model logits.
      skills: (B, T) int skill ids (padding arbitrary).
      correct: (B, T) int 0/1.
      lengths: (B,) valid steps per row.
      segments: optional (B, T) student number per step of packed rows (0 on padding).
    """
    num_skills = logits.shape[-1]
    out_mask, diff_mask = step_masks(lengths, logits.shape[1], segments)
    out_mask_f = out_mask.astype(logits.dtype)
    logits_out = logits[:, :-1]
    labels_next = correct[:, 1:].astype(logits.dtype)
    labels_curr = correct[:, :-1].astype(logits.dtype)
    bce_next = optax.sigmoid_binary_cross_entropy(gather_skill(logits_out, skills[:, 1:]), labels_next)
    bce_curr = optax.sigmoid_binary_cross_entropy(gather_skill(logits_out, skills[:, :-1]), labels_curr)
    n_out = out_mask_f.sum()

    probs = jax.nn.sigmoid(logits_out)
    diff = probs[:, 1:] - probs[:, :-1]  # (B, T-2, M)
    diff_mask_f = diff_mask.astype(logits.dtype)
    n_diff = diff_mask_f.sum()
    w1 = (jnp.abs(diff).sum(-1) * diff_mask_f).sum() / num_skills
    w2 = (jnp.square(diff).sum(-1) * diff_mask_f).sum() / num_skills
    return {
        "bce_next": ((bce_next * out_mask_f).sum(), n_out),
        "bce_curr": ((bce_curr * out_mask_f).sum(), n_out),
        "w1": (w1, n_diff),
        "w2": (w2, n_diff),
    }


def combine(terms: Mapping[str, tuple[jax.Array, jax.Array]], lambdas: Mapping[str, float]
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(total, per-term means)`` from :func:`loss_terms`. ``lambdas`` has keys r, w1, w2."""
    means = {k: s / jnp.maximum(n, 1.0) for k, (s, n) in terms.items()}
    total = (means["bce_next"] + lambdas.get("r", 0.0) * means["bce_curr"]
             + lambdas.get("w1", 0.0) * means["w1"] + lambdas.get("w2", 0.0) * means["w2"])
    return total, means


def dkt_loss(logits: jax.Array, skills: jax.Array, correct: jax.Array, lengths: jax.Array,
             lambda_r: float = 0.0, lambda_w1: float = 0.0, lambda_w2: float = 0.0,
             segments: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The DKT+ objective (a scalar) and its terms; DKT when all lambdas are 0."""
    return combine(loss_terms(logits, skills, correct, lengths, segments),
                   {"r": lambda_r, "w1": lambda_w1, "w2": lambda_w2})
