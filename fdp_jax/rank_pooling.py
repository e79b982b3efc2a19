"""Rank scorer + temporal pooling + MER head, and approximate rank pooling (dynamic images).

* :class:`MERHead` (official ``CLS_Net``): Conv3d(1 -> 8, kernel (3, 3, T), padding (1, 1, 0)) over the
  (S, S, T) volume of frame features ("rank scorer"), MaxPool3d((3, 3, 1)), FC -> ReLU -> FC(num_classes).
  The Conv3d's kernel depth spans the whole T axis, so it is computed as a 3x3 conv with T input channels
  (identical maths, much faster); the parameter keeps the Conv3d layout (3, 3, T, 1, 8).
* :func:`features_to_volume`: (B, T, F) frame features -> (B, S, S, T), F = S*S. ``'raw'`` is the official
  ``reshape(-1, 1, 64, 64, 8)`` (its last axis is NOT time: element [b, h, w, t] = F[b, h // (S/T),
  (h % (S/T))*S*T + w*T + t]); ``'time_major'`` puts each frame's S x S map on the T axis (paper intent).
* :func:`dynamic_image`: Bilen et al. approximate rank pooling, sum_t alpha_t frame_t (jittable,
  differentiable); :func:`dynamic_image_target` / :func:`dynamic_image_target_np`: the official target
  recipe (per-image min-max to 0..255, uint8 truncation, / 255).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fdp_jax.configs import ModelSpec
from fdp_jax.encoder import compute_dtype, precision
from fdp_jax.initializers import TORCH_DEFAULT_KERNEL, param_init, torch_default_bias


def rank_pooling_coefficients(num_frames: int) -> np.ndarray:
    """alpha_t (float64, shape (T,)) of approximate rank pooling: alpha[n] = sum_{i=n+1..T} (2i - T - 1)/i."""
    t = num_frames
    return np.array([sum((2 * i - t - 1) / i for i in range(n + 1, t + 1)) for n in range(t)], np.float64)


def dynamic_image(frames: jax.Array, time_axis: int = -4) -> jax.Array:
    """Approximate-rank-pooled dynamic image: sum_t alpha_t * frames[t] over ``time_axis``.

    ``frames``: (..., T, H, W, C) by default (e.g. (T, 64, 64, 1) or (B, T, 64, 64, 1)); returns the input
    without the time axis, in the input's float dtype (float32 for integer input).
    """
    frames = jnp.asarray(frames)
    if not jnp.issubdtype(frames.dtype, jnp.floating):
        frames = frames.astype(jnp.float32)
    axis = time_axis % frames.ndim
    alpha = jnp.asarray(rank_pooling_coefficients(frames.shape[axis]), frames.dtype)
    shape = [1] * frames.ndim
    shape[axis] = -1
    return jnp.sum(frames * alpha.reshape(shape), axis=axis)


def _minmax_uint8_scale(raw, xp):
    axes = tuple(range(raw.ndim - 2, raw.ndim)) if raw.ndim >= 2 else None
    lo = raw.min(axis=axes, keepdims=True)
    hi = raw.max(axis=axes, keepdims=True)
    scale = 255.0 / xp.where(hi > lo, hi - lo, 1.0)
    return xp.clip(xp.trunc(raw * scale + (0.0 - lo * scale)), 0, 255)


def dynamic_image_target(frames: jax.Array, time_axis: int = -4) -> jax.Array:
    """Official target recipe in JAX: DI (channel axis dropped if 1), per-image min-max to [0, 255]
    (cv2 NORM_MINMAX), truncation to uint8 values, / 255. (..., T, H, W[, 1]) -> (..., H, W) float in [0, 1].

    Computed in the input precision (float32 by default); differs from the float64 numpy recipe
    (:func:`dynamic_image_target_np`) by 1/255 only at pixels within ~1e-4 of an integer level.
    """
    di = dynamic_image(frames, time_axis)
    if di.shape[-1] == 1:
        di = di[..., 0]
    return _minmax_uint8_scale(di, jnp) / 255.0


def dynamic_image_target_np(frames: np.ndarray, time_axis: int = -4) -> np.ndarray:
    """Bit-exact float64 numpy version of the official ``get_dynamic_image``: returns uint8 (..., H, W)."""
    frames = np.asarray(frames, np.float64)
    axis = time_axis % frames.ndim
    alpha = rank_pooling_coefficients(frames.shape[axis])
    raw = np.tensordot(np.moveaxis(frames, axis, -1), alpha, axes=([-1], [0]))
    if raw.shape[-1] == 1:
        raw = raw[..., 0]
    return _minmax_uint8_scale(raw, np).astype(np.uint8)


def features_to_volume(features: jax.Array, layout: str) -> jax.Array:
    """(B, T, F) -> (B, S, S, T) with S = sqrt(F); see the module docstring for the two layouts."""
    b, t, f = features.shape
    s = int(round(f ** 0.5))
    if s * s != f:
        raise ValueError(f"frame feature size {f} is not a square (needs F = S*S).")
    if layout == "raw":
        return features.reshape(b, s, s, t)
    if layout == "time_major":
        return features.reshape(b, t, s, s).transpose(0, 2, 3, 1)
    raise ValueError(f"unknown temporal layout {layout!r}")


class MERHead(nn.Module):
    """(B, S, S, T) volume -> (logits (B, num_classes) float32, rank features (B, S, S, rank_channels))."""
    spec: ModelSpec

    @nn.compact
    def __call__(self, volume: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        spec = self.spec
        dtype = compute_dtype(spec)
        b, s, _, t = volume.shape
        fan_in = 3 * 3 * t
        kernel = self.param("conv3d_kernel", param_init(spec, TORCH_DEFAULT_KERNEL), (3, 3, t, 1, spec.rank_channels),
                            jnp.float32)
        bias = self.param("conv3d_bias", param_init(spec, torch_default_bias(fan_in)), (spec.rank_channels,),
                          jnp.float32)
        feat = lax.conv_general_dilated(
            volume.astype(dtype), kernel.reshape(3, 3, t, spec.rank_channels).astype(dtype), (1, 1),
            ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision(spec))
        feat = feat + bias.astype(dtype)
        k = spec.pool_size
        pooled = nn.max_pool(feat, (k, k), strides=(k, k), padding="VALID")
        flat = pooled.transpose(0, 3, 1, 2).reshape(b, -1)  # PyTorch flatten order (C, H, W)
        dense = lambda n, name, fan: nn.Dense(n, dtype=dtype, precision=precision(spec), name=name,
                                              kernel_init=param_init(spec, TORCH_DEFAULT_KERNEL),
                                              bias_init=param_init(spec, torch_default_bias(fan)))
        h = nn.relu(dense(spec.mer_hidden, "fc1", flat.shape[-1])(flat))
        logits = dense(spec.num_classes, "fc2", spec.mer_hidden)(h)
        return logits.astype(jnp.float32), feat
