"""A masked LSTM recurrence with a hand-written VJP (the ``lstm_impl='fused'`` path of ``DKT``).

Forward: ``z_t = x_t + h_{t-1} W + b`` (x_t are precomputed input projections), gates (i, f, g, o) as in
``nn.OptimizedLSTMCell``; where ``mask_t`` is False the carry passes through unchanged (padding, or rows
whose sequence ended), so the final carry is each row's state after its last valid step. Where the optional
``reset_t`` is True the incoming carry is zeroed before step t: a new student starts there (packed rows,
several students per row, ``dkt_jax.input_pipeline.pack_chunks``), so no state and no gradient crosses
a student boundary.

Backward: the reverse scan only propagates ``dh``/``dc`` (one ``dz @ W^T`` per step); the recurrent weight
gradient ``dW = sum_t h_{t-1}^T dz_t`` is one large matmul after the scan instead of a small matmul
accumulated in every step (what autodiff of ``lax.scan`` does). ``tests/test_dkt_model.py`` checks values
and gradients against autodiff of the plain recurrence. Forward-mode AD (``jax.jvp``) is not defined for
this path; use ``lstm_impl='hoisted'`` for that.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _gates(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    i, f, g, o = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def _forward(xs, kernel, bias, mask, reset, c0, h0, unroll):
    def step(carry, inp):
        c, h = carry
        x, m, r = inp
        if r is not None:  # a new segment starts: zero state
            keep = jnp.logical_not(r)[:, None]
            c, h = jnp.where(keep, c, 0.0), jnp.where(keep, h, 0.0)
        i, f, g, o = _gates(x + h @ kernel + bias)
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        m = m[:, None]
        c_out, h_out = jnp.where(m, c_new, c), jnp.where(m, h_new, h)
        return (c_out, h_out), (h_out, c_out, c_new, jnp.concatenate([i, f, g, o], -1))
    (c, h), (hs, cs_out, cs_new, gates) = jax.lax.scan(step, (c0, h0), (xs, mask, reset), unroll=unroll)
    return (c, h), hs, cs_out, cs_new, gates


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def masked_lstm(xs: jax.Array, kernel: jax.Array, bias: jax.Array, mask: jax.Array, reset: jax.Array | None,
                c0: jax.Array, h0: jax.Array, unroll: int = 1) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Runs the recurrence over time-major inputs.

    Args:
      xs: (T, B, 4H) input projections per step; kernel: (H, 4H); bias: (4H,).
      mask: (T, B) bool, True where the step is valid.
      reset: (T, B) bool or None; True where the carry is zeroed before the step (a new student).
      c0, h0: (B, H) initial state.
    Returns:
      ``hs`` (T, B, H) hidden outputs (the held state at masked steps) and the final ``(c, h)``.
    """
    (c, h), hs, _, _, _ = _forward(xs, kernel, bias, mask, reset, c0, h0, unroll)
    return hs, (c, h)


def _fwd(xs, kernel, bias, mask, reset, c0, h0, unroll):
    (c, h), hs, cs_out, cs_new, gates = _forward(xs, kernel, bias, mask, reset, c0, h0, unroll)
    return (hs, (c, h)), (kernel, mask, reset, hs, cs_out, cs_new, gates, c0, h0)


def _bwd(unroll, res, cotangents):
    kernel, mask, reset, hs, cs_out, cs_new, gates, c0, h0 = res
    d_hs, (d_c_final, d_h_final) = cotangents
    hdim = kernel.shape[0]
    # state entering step t (after masking and resetting): c_prev_t / h_prev_t
    m_f = mask[..., None].astype(hs.dtype)
    h_prev = jnp.concatenate([h0[None], hs[:-1]], 0)
    c_prev = jnp.concatenate([c0[None], cs_out[:-1]], 0)
    keep_f = None
    if reset is not None:
        keep_f = 1.0 - reset[..., None].astype(hs.dtype)
        h_prev, c_prev = h_prev * keep_f, c_prev * keep_f
    kernel_t = kernel.T

    def step(carry, inp):
        dc_next, dh_next = carry
        dh_out, m, c_new, c_p, gz, keep = inp
        i, f, g, o = jnp.split(gz, 4, axis=-1)
        dh_total = dh_out + dh_next
        dh = dh_total * m
        dc_in = dc_next * m
        tc = jnp.tanh(c_new)
        dc = dc_in + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_p * f * (1.0 - f), dc * i * (1.0 - g * g),
                              dh * tc * o * (1.0 - o)], -1)
        dh_prev = dz @ kernel_t + dh_total * (1.0 - m)
        dc_prev = dc * f + dc_next * (1.0 - m)
        if keep is not None:  # no gradient flows into the previous student's state
            dh_prev, dc_prev = dh_prev * keep, dc_prev * keep
        return (dc_prev, dh_prev), dz

    (dc0, dh0), dzs = jax.lax.scan(step, (d_c_final, d_h_final), (d_hs, m_f, cs_new, c_prev, gates, keep_f),
                                   reverse=True, unroll=unroll)
    d_kernel = h_prev.reshape(-1, hdim).T @ dzs.reshape(-1, 4 * hdim)
    d_bias = dzs.sum((0, 1))
    return dzs, d_kernel, d_bias, None, None, dc0, dh0


masked_lstm.defvjp(_fwd, _bwd)
