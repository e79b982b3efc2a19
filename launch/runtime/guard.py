"""Divergence guard for the training loops: stop at the first non-finite or exploding step, without a host
sync per step.

    guard = DivergenceGuard(max_loss=config.max_loss, where="fold 07")
    for step in ...:
        state, metrics = train_step(state, batch, rng)
        guard.update(step + 1, metrics)          # device ops only
        if logging_or_checkpointing_now:
            guard.check()                        # one host read; raises NonFiniteError naming step and terms
            ckpt.save(...)                       # so only good states are saved

The flag and the metrics of the first bad step are accumulated on the device; ``check`` reads them at the
loop's own logging / checkpoint cadence. The loop lets ``NonFiniteError`` propagate: no report or results
are written, the latest checkpoint on disk stays the last good one, and the main exits non-zero.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from launch.runtime.mesh import local_copy

DEFAULT_MAX_LOSS = 1e6
WATCHED = ("loss", "grad_norm")  # a step is bad when one of these is non-finite or the loss > max_loss


class NonFiniteError(RuntimeError):
    """Training produced a non-finite (or exploding) loss or gradient."""


@jax.jit
def _accumulate(record: Any, step: jax.Array, metrics: Mapping[str, jax.Array], max_loss: jax.Array) -> Any:
    bad_now = jnp.logical_not(jnp.all(jnp.array([jnp.all(jnp.isfinite(metrics[k])) for k in WATCHED
                                                  if k in metrics])))
    bad_now = bad_now | (metrics["loss"] > max_loss)
    first = jnp.logical_not(record["bad"]) & bad_now
    return {"bad": record["bad"] | bad_now,
            "step": jnp.where(first, step, record["step"]),
            "metrics": jax.tree.map(lambda old, new: jnp.where(first, new, old), record["metrics"],
                                    {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()})}


class DivergenceGuard:
    """See the module docstring. ``where`` (e.g. ``'fold 07'``) is named in the error message."""

    def __init__(self, max_loss: float = DEFAULT_MAX_LOSS, where: str = ""):
        if not max_loss > 0:
            raise ValueError(f"max_loss must be > 0, got {max_loss}")
        self.max_loss = jnp.float32(max_loss)
        self.where = where
        self._record: Any = None

    def update(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Folds one step's scalar metrics (must hold 'loss') into the on-device record."""
        metrics = {k: v for k, v in local_copy(metrics).items() if np.ndim(v) == 0}
        if self._record is None:
            self._record = {"bad": jnp.array(False), "step": jnp.array(-1, jnp.int32),
                            "metrics": {k: jnp.float32(0) for k in metrics}}
        self._record = _accumulate(self._record, jnp.int32(step), metrics, self.max_loss)

    def check(self) -> None:
        """Raises ``NonFiniteError`` (step, terms) if any step since the start was bad; one host read."""
        if self._record is None:
            return
        record = jax.device_get(self._record)
        if not bool(record["bad"]):
            return
        values = {k: float(v) for k, v in record["metrics"].items()}
        terms = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        what = (f"non-finite {', '.join(bad)}" if bad
                else f"loss {values['loss']:.4g} above max_loss {float(self.max_loss):.4g}")
        where = f"{self.where}, " if self.where else ""
        raise NonFiniteError(f"training diverged at {where}step {int(record['step'])}: {what} ({terms}). The "
                             "latest checkpoint is the last good one; no results were written. Lower the "
                             "learning rate or check the data.")
