"""Layers with hand-written VJPs that keep PyTorch's residuals, for less activation memory under XLA.

JAX's autodiff plus XLA's fusion and scheduling keep more than the backward pass needs: the MLP's
``relu(x @ w1 + b1)`` kept both the pre-activation and the activation (XLA duplicated the ReLU into the
backward mask, reading the pre-activation), and the backward pass's recomputations (the normalised input of
BatchNorm, a rematerialised block) were scheduled right after their forward inputs and so lived through the
whole forward pass (XLA:CPU drops JAX's optimisation barriers). Here each backward pass keeps exactly the
residuals PyTorch keeps, and every recomputation in it takes a data dependency on the incoming cotangent
(:func:`after_cotangent`: ``x + 0 * g[0]``) so that it runs in the backward pass, not earlier.

* :func:`mlp_relu`: ``relu(x @ w1 + b1) @ w2 + b2`` keeping ``x`` and the pre-activation (the activation is
  rebuilt in the backward pass).
* :func:`batch_norm_train`: BatchNorm with batch statistics keeping its input, mean, ``1/sqrt(var + eps)``
  and scale (the centred input is rebuilt); ``axis_name`` for cross-device statistics under ``pmap``.
* :func:`remat_after_cotangent`: a Flax block transform like ``nn.remat`` (keep the block's input, recompute
  the block in the backward pass) whose recomputation XLA:CPU cannot merge into the forward pass.

The cotangent dependency is an XLA:CPU scheduling trick: it is added only where asked for (``cpu_schedule=True``,
which the model passes for ``ModelSpec.platform == 'cpu'``; never chosen from the running backend) and runs
inside ``jax.named_scope('cpu_after_cotangent')``; :func:`remat_after_cotangent` (a CPU-only block remat)
inside ``jax.named_scope('cpu_remat_after_cotangent')``.

Same values and gradients as autodiff up to float rounding (tested). ``jax.custom_vjp``: reverse mode
(``grad``/``vjp``) under ``jit``/``vmap``/``pmap``; no forward-mode ``jvp``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import lift
from jax import lax


def after_cotangent(x: jax.Array, g: jax.Array, enabled: bool = True) -> jax.Array:
    """``x`` plus a zero computed from the cotangent ``g``: same values, but XLA cannot compute what
    depends on it before ``g`` exists (a NaN/inf in ``g``'s first element propagates; the gradient is
    not finite then anyway). For XLA:CPU only (the scheduling it works around was measured there): with
    ``enabled=False`` ``x`` unchanged, so a batch sharded over accelerators gets no extra scalar broadcast."""
    if not enabled:
        return x
    with jax.named_scope("cpu_after_cotangent"):
        return x + (g.reshape(-1)[0] * 0).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def mlp_relu(x: jax.Array, w1: jax.Array, b1: jax.Array, w2: jax.Array, b2: jax.Array,
             precision=None, cpu_schedule: bool = False) -> jax.Array:
    """(..., C) -> (..., O): ``relu(x @ w1 + b1) @ w2 + b2`` with w1 (C, H), b1 (H,), w2 (H, O), b2 (O,).
    ``cpu_schedule``: pin the backward pass's recomputation after the cotangent (:func:`after_cotangent`)."""
    return _mlp_forward(x, w1, b1, w2, b2, precision, cpu_schedule)[0]


def _dot(a, b, precision):
    return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), precision=precision)


def _mlp_forward(x, w1, b1, w2, b2, precision, cpu_schedule=False):
    z = _dot(x, w1, precision) + b1
    y = _dot(jnp.maximum(z, jnp.zeros((), z.dtype)), w2, precision) + b2
    return y, (x, z, w1, w2)


def _mlp_backward(precision, cpu_schedule, residuals, g):
    x, z, w1, w2 = residuals
    z = after_cotangent(z, g, cpu_schedule)
    positive = z > 0
    a = jnp.where(positive, z, jnp.zeros((), z.dtype))
    rows = lambda t: t.reshape(-1, t.shape[-1])
    dw2 = lax.dot_general(rows(a), rows(g), (((0,), (0,)), ((), ())), precision=precision)
    dz = jnp.where(positive, _dot(g, w2.T, precision), jnp.zeros((), g.dtype))
    dw1 = lax.dot_general(rows(x), rows(dz), (((0,), (0,)), ((), ())), precision=precision)
    dx = _dot(dz, w1.T, precision)
    return dx, dw1, rows(dz).sum(0), dw2, rows(g).sum(0)


mlp_relu.defvjp(_mlp_forward, _mlp_backward)


def _pmean(x: jax.Array, axis_name: str | None) -> jax.Array:
    return x if axis_name is None else lax.pmean(x, axis_name)


def batch_statistics(x: jax.Array, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Float32 batch mean and biased variance over all but the last axis (cross-device with ``axis_name``)."""
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = _pmean(xf.mean(axes), axis_name)
    var = _pmean(jnp.square(xf - mean).mean(axes), axis_name)
    return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                     axis_name: str | None = None, out_dtype=None, cpu_schedule: bool = False) -> jax.Array:
    """Train-mode BatchNorm with batch statistics: (..., C) x (C,) x (C,) -> (..., C) in ``out_dtype``
    (default ``x.dtype``); statistics in float32 over all but the last axis. ``cpu_schedule``: as
    :func:`mlp_relu`."""
    return _bn_forward(x, scale, bias, epsilon, axis_name, out_dtype, cpu_schedule)[0]


def _bn_forward(x, scale, bias, epsilon, axis_name, out_dtype, cpu_schedule=False):
    mean, var = batch_statistics(x, axis_name)
    inv = lax.rsqrt(var + epsilon)
    y = (x.astype(jnp.float32) - mean) * (inv * scale) + bias
    return y.astype(out_dtype or x.dtype), (x, mean, inv, scale)


def _bn_backward(epsilon, axis_name, out_dtype, cpu_schedule, residuals, g):
    x, mean, inv, scale = residuals
    x = after_cotangent(x, g, cpu_schedule)
    axes = tuple(range(x.ndim - 1))
    gf = g.astype(jnp.float32)
    xhat = (x.astype(jnp.float32) - mean) * inv
    dbias = gf.sum(axes)
    dscale = (gf * xhat).sum(axes)
    n = x.size // x.shape[-1]
    mean_g = _pmean(dbias / n, axis_name)
    mean_gx = _pmean(dscale / n, axis_name)
    dx = (inv * scale) * (gf - mean_g - xhat * mean_gx)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


batch_norm_train.defvjp(_bn_forward, _bn_backward)


def _copy_counters(counters: dict) -> dict:
    return {k: _copy_counters(v) if isinstance(v, dict) else v for k, v in counters.items()}


def _set_counters(counters: dict, values: dict) -> None:
    """Overwrite flax's (nested) per-scope rng counter dict in place."""
    counters.clear()
    counters.update(_copy_counters(values))


def _lifted_remat_after_cotangent(fn: Callable[..., Any], grad_vars="params") -> Callable[..., Any]:
    """``flax.core.lift`` transform behind :func:`remat_after_cotangent` (all arguments after the first are
    static Python values)."""
    def inner(scope_fn, repack_fn, variable_groups, rng_groups, x, *static):
        grad_variables, other_variables = variable_groups
        counters_at_start = []

        def run(grad_variables, x):
            scopes = scope_fn((grad_variables, other_variables), rng_groups)
            # flax's rng counters (advanced by make_rng) are shared with the enclosing scopes. jax traces this
            # function more than once (primal, forward, the backward's recomputation); each trace starts from
            # the counters the first one saw, so all draw the same keys (DropPath masks) as the plain module.
            counters = [s.rng_counters for s in jax.tree.leaves(scopes)]
            if not counters_at_start:
                counters_at_start.extend(_copy_counters(c) for c in counters)
            for c, values in zip(counters, counters_at_start):
                _set_counters(c, values)
            y = fn(scopes, x, *static)
            return y, repack_fn(scopes)

        @jax.custom_vjp
        def block(grad_variables, x):
            return run(grad_variables, x)

        def block_fwd(grad_variables, x):
            return run(grad_variables, x), (grad_variables, x)

        def block_bwd(residuals, g):
            grad_variables, x = residuals
            g_y, _ = g  # no gradient flows through the returned variables (as in flax's lifted custom_vjp)
            # the parameters too: what depends on them alone (e.g. Winograd-transformed kernels) is recomputed
            # here, not kept from the forward pass
            with jax.named_scope("cpu_remat_after_cotangent"):
                grad_variables, x = jax.tree.map(lambda a: after_cotangent(a, g_y), (grad_variables, x))
                _, vjp = jax.vjp(lambda v, x: run(v, x)[0], grad_variables, x)
                return vjp(g_y)

        block.defvjp(block_fwd, block_bwd)
        with jax.named_scope("cpu_remat_after_cotangent"):
            return block(grad_variables, x)

    return lift.pack(inner, (grad_vars, True), (grad_vars, True), (True,), name="remat_after_cotangent")


def remat_after_cotangent(module_class: type) -> type:
    """Rematerialise a Flax module whose ``__call__(x, *static)`` takes one array and static Python values.

    Like ``nn.remat``, the backward pass keeps only the block's input (and its parameters) and recomputes
    the block, but the recomputation runs on :func:`after_cotangent` ``(x, dy)``, so on XLA:CPU it really
    happens in the backward pass (``nn.remat``'s optimisation barriers are dropped by XLA:CPU, which then
    shares the recomputation with the forward pass: no memory saved). The same rng streams are replayed
    (same DropPath masks); mutable collections (BatchNorm ``batch_stats``) are updated by the forward pass
    only. Variable names are those of ``module_class``. Reverse mode only (``jax.custom_vjp``)."""
    return nn.transforms.lift_transform(_lifted_remat_after_cotangent, module_class)
