"""FDP losses: ce_weight * CE(logits, label) + mse_weight * MSE(sigmoid DI, target), with optional masks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(sum of values * mask, number of valid examples); values (B,)."""
    if mask is None:
        mask = jnp.ones(values.shape[:1], jnp.float32)
    return jnp.sum(values * mask), jnp.sum(mask)


def per_example_losses(logits: jax.Array, di_pred: jax.Array, labels: jax.Array,
                       di_target: jax.Array) -> dict[str, jax.Array]:
    """Per-example CE (B,), MSE (B,) (mean over the H*W pixels) and correctness (B,).

    logits (B, K); di_pred, di_target (B, H, W) in [0, 1]; labels int (B,).
    """
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    mse = jnp.mean(jnp.square(di_pred.astype(jnp.float32) - di_target.astype(jnp.float32)).reshape(
        di_pred.shape[0], -1), axis=-1)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {"ce": ce, "mse": mse, "correct": correct}


def fdp_loss_sums(logits, di_pred, labels, di_target, mask=None, *, ce_weight: float = 1.0,
                  mse_weight: float = 100.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked sums (loss_sum, {'ce','mse','correct','count'}): divide by a (global) count for means.

    With all-ones mask, loss_sum / count equals the official ``100 * MSELoss(mean) + 1 * nll_loss``.
    """
    parts = per_example_losses(logits, di_pred, labels, di_target)
    sums = {}
    for name, values in parts.items():
        sums[name], count = _masked_mean(values, mask)
    sums["count"] = count
    loss_sum = ce_weight * sums["ce"] + mse_weight * sums["mse"]
    return loss_sum, sums


def fdp_loss(logits, di_pred, labels, di_target, mask=None, *, ce_weight: float = 1.0,
             mse_weight: float = 100.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over valid examples and its metrics (loss, ce, mse, accuracy)."""
    loss_sum, sums = fdp_loss_sums(logits, di_pred, labels, di_target, mask, ce_weight=ce_weight,
                                   mse_weight=mse_weight)
    n = jnp.maximum(sums["count"], 1.0)
    return loss_sum / n, {"loss": loss_sum / n, "ce": sums["ce"] / n, "mse": sums["mse"] / n,
                          "accuracy": sums["correct"] / n}
