"""Winograd convolution F(m x m, 3 x 3) (Lavin & Gray 2016) for stride-1, padding-1 dense 3x3 convs, NHWC x HWIO.

The input is cut into overlapping (m+2) x (m+2) tiles (stride m), each tile and the kernel are transformed
(``B^T d B``, ``G g G^T``), the (m+2)^2 transformed positions become one batched matmul over channels, and the
inverse transform (``A^T M A``) gives m x m outputs per tile: (m+2)^2 / m^2 multiplies per output pixel and
channel pair instead of 9 (F(2, 3): 2.25x fewer FLOPs, F(4, 3): 4x). The same maths as the convolution up to
float rounding (float32 relative error ~1e-6 for F(2, 3), ~1e-5 for F(4, 3); tested).

:func:`winograd_conv3x3` is a ``custom_vjp`` whose backward pass is again batched matmuls plus the transposed
transforms (input gradient through the adjoint of the tile transform, weight gradient ``G^T dU G``). It keeps
the input and the kernel for the backward pass and transforms both again there, after the cotangent exists
(:func:`fdp_jax.lean_vjp.after_cotangent`): keeping the transformed input instead (2.25x the input for F(4, 3),
4x for F(2, 3)) cost ~1.7 GB of the batch-36 FDP step's peak, the transformed kernels (4x the kernel for
F(4, 3)) ~0.29 GB, and a plain recomputation was merged with the forward one by XLA. Building the transposed
kernel transform in the backward pass instead was ~1.4x slower per layer (its (m+2)^2 strided-read slabs
dominated on wide layers).
Used by :class:`fdp_jax.conv.Conv` on the CPU backend, where XLA's convolutions (above all their weight
gradient) are slower than these matmuls; see that module for the rule and the per-layer timings.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fdp_jax.lean_vjp import after_cotangent

# (B^T, G, A^T) per output tile size m (Lavin & Gray 2016, interpolation points 0, +-1, +-2, inf for m = 4).
_MATRICES = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                 np.float64)),
}
TILE_SIZES = tuple(_MATRICES)


def _combine(coefficients: Sequence[float], parts: Sequence[jax.Array]) -> jax.Array:
    """sum_i coefficients[i] * parts[i], skipping zeros (fused by XLA into one elementwise op)."""
    out = None
    for coef, part in zip(coefficients, parts):
        if coef == 0:
            continue
        term = part if coef == 1 else (-part if coef == -1 else part * jnp.asarray(coef, part.dtype))
        out = term if out is None else out + term
    return out


def input_transform(x: jax.Array, m: int) -> jax.Array:
    """(N, H, W, C) -> (a*a, N*(H/m)*(W/m), C), a = m + 2: ``B^T d B`` of every zero-padded input tile."""
    bt = _MATRICES[m][0]
    a = m + 2
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = [xp[:, p:p + h:m] for p in range(a)]                       # (N, H/m, W+2, C) each
    row_t = jnp.stack([_combine(bt[i], rows) for i in range(a)])      # (a, N, H/m, W+2, C)
    cols = [row_t[:, :, :, q:q + w:m] for q in range(a)]              # (a, N, H/m, W/m, C) each
    v = jnp.stack([_combine(bt[j], cols) for j in range(a)], axis=1)  # (a, a, N, H/m, W/m, C)
    return v.reshape(a * a, -1, c)


def kernel_transform(kernel: jax.Array, m: int) -> jax.Array:
    """(3, 3, C, O) -> (a*a, C, O): ``G g G^T``."""
    g = _MATRICES[m][1]
    a = m + 2
    rows = [_combine(g[i], [kernel[k] for k in range(3)]) for i in range(a)]
    return jnp.stack([_combine(g[j], [rows[i][k] for k in range(3)]) for i in range(a) for j in range(a)])


def kernel_transform_t(du: jax.Array, m: int) -> jax.Array:
    """Adjoint of :func:`kernel_transform`: (a*a, C, O) -> (3, 3, C, O)."""
    g = _MATRICES[m][1]
    a = m + 2
    du = du.reshape(a, a, *du.shape[1:])
    cols = [[_combine(g[:, k], [du[i, j] for j in range(a)]) for k in range(3)] for i in range(a)]
    return jnp.stack([jnp.stack([_combine(g[:, r], [cols[i][k] for i in range(a)]) for k in range(3)])
                      for r in range(3)])


def output_transform(mm: jax.Array, m: int, shape: tuple[int, int, int]) -> jax.Array:
    """(a*a, N*(H/m)*(W/m), O) -> (N, H, W, O): ``A^T M A`` per tile, tiles put back in place."""
    at = _MATRICES[m][2]
    a = m + 2
    n, h, w = shape
    o = mm.shape[-1]
    mm = mm.reshape(a, a, n, h // m, w // m, o)
    out_rows = []
    for r in range(m):
        t = [_combine(at[r], [mm[i, j] for i in range(a)]) for j in range(a)]
        out_rows.append(jnp.stack([_combine(at[s], t) for s in range(m)], axis=3))  # (N, H/m, W/m, m, O)
    return jnp.stack(out_rows, axis=2).reshape(n, h, w, o)                          # (N, H/m, m, W/m, m, O)


def output_transform_t(dy: jax.Array, m: int) -> jax.Array:
    """Adjoint of :func:`output_transform`: (N, H, W, O) -> (a*a, N*(H/m)*(W/m), O)."""
    at = _MATRICES[m][2]
    a = m + 2
    n, h, w, o = dy.shape
    d = dy.reshape(n, h // m, m, w // m, m, o)
    per_col = [[_combine(at[:, i], [d[:, :, r, :, s] for r in range(m)]) for s in range(m)] for i in range(a)]
    return jnp.stack([_combine(at[:, j], per_col[i]) for i in range(a) for j in range(a)]).reshape(a * a, -1, o)


def _bmm(lhs: jax.Array, rhs: jax.Array, precision=None) -> jax.Array:
    """(T, P, C) x (T, C, O) -> (T, P, O)."""
    return lax.dot_general(lhs, rhs, (((2,), (1,)), ((0,), (0,))), precision=precision)


def supports(x_shape: Sequence[int], m: int) -> bool:
    """Whether an NHWC input of this shape can use tile size m (H and W divisible by m)."""
    return m in _MATRICES and x_shape[1] % m == 0 and x_shape[2] % m == 0


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def winograd_conv3x3(x: jax.Array, kernel: jax.Array, m: int = 4, precision=None) -> jax.Array:
    """Stride-1 3x3 convolution with padding 1: (N, H, W, C) x (3, 3, C, O) -> (N, H, W, O); H, W % m == 0."""
    return _forward(x, kernel, m, precision)[0]


def _forward(x, kernel, m, precision):
    if not supports(x.shape, m):
        raise ValueError(f"winograd_conv3x3: tile size m={m} needs H and W divisible by m and m in "
                         f"{TILE_SIZES}; got input {x.shape}")
    u = kernel_transform(kernel, m)
    y = output_transform(_bmm(input_transform(x, m), u, precision), m, x.shape[:3])
    return y, (x, kernel)


def _backward(m, precision, residuals, dy):
    x, kernel = residuals
    x_shape = x.shape
    # both transforms recomputed in the backward pass (lean_vjp docstring): the residuals are the layer's
    # input and kernel, not the transformed input ((m+2)^2/m^2 = 2.25-4x larger) and kernel ((m+2)^2/9 = 1.8-4x)
    v = input_transform(after_cotangent(x, dy), m)
    u = kernel_transform(after_cotangent(kernel, dy), m)
    dm = output_transform_t(dy, m)
    dv = lax.dot_general(dm, u, (((2,), (2,)), ((0,), (0,))), precision=precision)  # dM U^T: (a*a, P, C)
    du = lax.dot_general(v, dm, (((1,), (1,)), ((0,), (0,))), precision=precision)  # (a*a, C, O)
    dx = jax.vjp(lambda x_: input_transform(x_, m), jnp.zeros(x_shape, dy.dtype))[1](dv)[0]
    return dx, kernel_transform_t(du, m)


winograd_conv3x3.defvjp(_forward, _backward)
