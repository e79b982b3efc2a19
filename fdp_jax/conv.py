"""Convolution paths for XLA:CPU, numerically the same as ``nn.Conv`` (same variables, float rounding only).

Only with ``platform='cpu'`` (:class:`Conv`'s attribute, set from ``ModelSpec.platform``; never read from the
running backend): every other platform gets ``nn.Conv``'s plain convolution. The CPU paths run inside
``jax.named_scope`` s named ``cpu_conv_matmul``, ``cpu_im2col_conv``, ``cpu_winograd`` and ``cpu_conv2d``
(``cpu_chunked_weight_grad`` in its backward pass), so a lowered step can be checked for them.

Found by timing single layers of the FDP train step against PyTorch/oneDNN at the step's shapes:

* 1x1 stride-1 convs are one (N*H*W, C) x (C, O) matmul: XLA:CPU's weight gradient of the 1x1 convolution
  took 210 ms at (288, 16, 16, 96) -> 288 channels, the matmul 51 ms.
* stride-1 dense 3x3 convs on tiny maps (H*W <= 4) are one im2col matmul: XLA:CPU's convolution took 2.3 s
  forward for (288, 2, 2, 768) -> 768 channels, the (N*H*W, 9*C) x (9*C, C) matmul milliseconds.
* stride-1 dense 3x3 convs with >= 64 input and output channels on maps of 4x4 to 64x64 are **Winograd
  convolutions** (:mod:`fdp_jax.winograd`: forward and backward as batched matmuls; CPU backend only):
  F(4x4, 3x3) (4x fewer multiplies), except on 4x4 maps of fewer than 256 images, where F(2x2, 3x3) is
  faster. Fwd+bwd (conv -> ReLU): encoder (288, 4, 4, 384) 116 -> 55 ms, (288, 8, 8, 192) 140 -> 71 ms,
  (288, 16, 16, 96) 192 -> 128 ms; SegNet (36, 64, 64, 64) 198 -> 157 ms, (36, 16, 16, 256) 107 -> 54 ms,
  (36, 8, 8, 512) 99 -> 62 ms, (36, 4, 4, 512) 27 -> 14-18 ms (F(2, 3)). With fewer channels the tile
  transforms cost more than they save (e.g. (36, 64, 64, 64) -> 1: 78 -> 100 ms), and with fewer than 128
  tiles (small batches) the kernel transforms do (batch-2 step 0.50 -> 0.70 s without that limit), hence the rule.
* other dense convs on maps >= 8x8 with >= 8 MiB of input compute their **weight gradient in batch chunks
  of <= 4 MiB of input** (:func:`conv2d`, a ``custom_vjp``; CPU backend only): XLA:CPU's weight-gradient
  convolution over the whole batch was 2-3x slower than the sum of per-chunk ones (weight gradient alone:
  (36, 64, 64, 64) -> 64: 210 -> 67 ms; (288, 32, 32, 64) -> 32: 247 -> 71 ms). Forward and input gradient
  stay XLA's convolutions. Whole FDP batch-36 step: 7.8 -> 6.9 s; 4 MiB chunks were as fast as 1 MiB ones
  with 0.6 GB less peak RSS (XLA:CPU's per-op memory grows with the number of chunk convolutions).
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from fdp_jax import winograd

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Chunked weight gradient: the most input bytes per chunk, and the smallest map (H*W) and input that use it.
WEIGHT_GRAD_CHUNK_BYTES = 4 << 20
WEIGHT_GRAD_MIN_PIXELS = 64
WEIGHT_GRAD_MIN_INPUT_BYTES = 8 << 20
CHUNK_LAYOUT = "strided"  # or "contiguous" (same speed on one device; strided keeps split batches balanced)
# Winograd convolutions: fewest input/output channels, map sizes (H*W) that use them, and how many 4x4 maps a
# batch needs for F(4x4, 3x3) rather than F(2x2, 3x3) on them.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_PIXELS = (16, 4096)
WINOGRAD_F4_MIN_IMAGES_4X4 = 256
WINOGRAD_MIN_TILES = 128  # fewer: the kernel transforms cost more than the smaller matmuls save (small batches)


def weight_grad_chunks(x_shape: tuple[int, ...], itemsize: int, platform: str = "generic") -> int:
    """Number of batch chunks for the weight gradient of a conv with NHWC input ``x_shape`` (1 = unchunked).

    Chunks only for ``platform='cpu'``, for maps with H*W >= WEIGHT_GRAD_MIN_PIXELS and inputs of at least
    WEIGHT_GRAD_MIN_INPUT_BYTES; a chunk holds the most samples (a power of two dividing N) whose input fits
    in WEIGHT_GRAD_CHUNK_BYTES (at least one sample).
    """
    n, h, w, c = x_shape
    per_sample = h * w * c * itemsize
    if (platform != "cpu" or h * w < WEIGHT_GRAD_MIN_PIXELS
            or n * per_sample < WEIGHT_GRAD_MIN_INPUT_BYTES):
        return 1
    size = 1  # power-of-two chunk sizes: odd ones (3, 9 samples) measured up to 1.6x slower
    while n % (2 * size) == 0 and 2 * size * per_sample <= WEIGHT_GRAD_CHUNK_BYTES:
        size *= 2
    return n // size


def winograd_tile(x_shape: tuple[int, ...], features: int, platform: str = "generic") -> int:
    """Winograd output tile size (4 or 2) for a stride-1, padding-1 dense 3x3 conv of NHWC ``x_shape`` ->
    ``features`` channels for ``platform='cpu'`` inside the measured-faster range (module docstring), else 0."""
    n, h, w, c = x_shape
    lo, hi = WINOGRAD_PIXELS
    if (platform != "cpu" or min(c, features) < WINOGRAD_MIN_CHANNELS
            or not lo <= h * w <= hi or not winograd.supports(x_shape, 4)):
        return 0
    m = 2 if h * w == 16 and n < WINOGRAD_F4_MIN_IMAGES_4X4 else 4
    return m if n * (h // m) * (w // m) >= WINOGRAD_MIN_TILES else 0


def _conv(x, kernel, strides, padding, precision):
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMENSION_NUMBERS,
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: tuple[tuple[int, int], ...],
           precision: Any = None, chunks: int = 1) -> jax.Array:
    """NHWC x HWIO -> NHWC convolution whose weight gradient is summed over ``chunks`` batch chunks (strided:
    chunk i holds samples i, i + chunks, ..., so a batch split over devices stays balanced)."""
    return _conv(x, kernel, strides, padding, precision)


def _conv2d_fwd(x, kernel, strides, padding, precision, chunks):
    return _conv(x, kernel, strides, padding, precision), (x, kernel)


def _conv2d_bwd(strides, padding, precision, chunks, residuals, g):
    x, kernel = residuals
    conv = lambda x_, k_: _conv(x_, k_, strides, padding, precision)
    dx = jax.vjp(lambda x_: conv(x_, kernel), x)[1](g)[0]
    if chunks == 1:
        return dx, jax.vjp(lambda k_: conv(x, k_), kernel)[1](g)[0]
    with jax.named_scope("cpu_chunked_weight_grad"):
        return dx, _chunked_weight_grad(conv, x, kernel, g, chunks)


def _chunked_weight_grad(conv, x, kernel, g, chunks):
    size = x.shape[0] // chunks
    if CHUNK_LAYOUT == "strided":
        xs, gs = x.reshape(size, chunks, *x.shape[1:]), g.reshape(size, chunks, *g.shape[1:])
        parts = [(xs[:, i], gs[:, i]) for i in range(chunks)]
    else:
        parts = [(x[i * size:(i + 1) * size], g[i * size:(i + 1) * size]) for i in range(chunks)]
    dk = None
    for xi, gi in parts:
        part = jax.vjp(lambda k_: conv(xi, k_), kernel)[1](gi)[0]
        dk = part if dk is None else dk + part
    return dk


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


class Conv(nn.Conv):
    """``nn.Conv`` (same variables and outputs); with ``platform='cpu'`` the faster XLA:CPU paths of this
    module's docstring, otherwise exactly ``nn.Conv``."""
    platform: str = "generic"
    winograd: bool = True  # with platform 'cpu': Winograd 3x3 convs where ``winograd_tile`` picks them

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.platform != "cpu":
            return super().__call__(x)
        n, h, w, c = x.shape
        strides = self.strides or 1
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        ksize = tuple(self.kernel_size)
        dense = self.feature_group_count == 1
        plain = dense and strides == (1, 1)
        explicit_pad = isinstance(self.padding, (tuple, list)) and all(
            isinstance(p, (tuple, list)) and len(p) == 2 for p in self.padding)
        if plain and ksize == (1, 1) and self.padding in ("SAME", "VALID", ((0, 0), (0, 0))):
            kernel, bias, x = self._variables(x, c)
            with jax.named_scope("cpu_conv_matmul"):
                y = lax.dot_general(x, kernel[0, 0], (((3,), (0,)), ((), ())), precision=self.precision)
        elif plain and ksize == (3, 3) and h * w <= 4 and self.padding == ((1, 1), (1, 1)):
            kernel, bias, x = self._variables(x, c)
            with jax.named_scope("cpu_im2col_conv"):
                xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
                patches = jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)],
                                          axis=-1)
                y = lax.dot_general(patches, kernel.reshape(9 * c, self.features), (((3,), (0,)), ((), ())),
                                    precision=self.precision)
        elif plain and ksize == (3, 3) and self.padding == ((1, 1), (1, 1)) \
                and self.kernel_dilation in (None, 1, (1, 1)) and self.input_dilation in (None, 1, (1, 1)) \
                and self.winograd and (tile := winograd_tile(x.shape, self.features, self.platform)):
            kernel, bias, x = self._variables(x, c)
            with jax.named_scope("cpu_winograd"):
                y = winograd.winograd_conv3x3(x, kernel, tile, self.precision)
        elif dense and explicit_pad and len(ksize) == 2 and (self.kernel_dilation in (None, 1, (1, 1))) \
                and (self.input_dilation in (None, 1, (1, 1))):
            kernel, bias, x = self._variables(x, c)
            chunks = weight_grad_chunks(x.shape, x.dtype.itemsize, self.platform)
            with jax.named_scope("cpu_conv2d"):
                y = conv2d(x, kernel, strides, tuple(tuple(p) for p in self.padding), self.precision, chunks)
        else:
            return super().__call__(x)
        return y + bias if bias is not None else y

    def _variables(self, x: jax.Array, c: int) -> tuple[jax.Array, jax.Array | None, jax.Array]:
        kernel = self.param("kernel", self.kernel_init, (*tuple(self.kernel_size), c, self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return kernel, bias, x
