"""Dynamic-image decoder: SegNet (VGG16-style encoder-decoder with max-pool indices / max-unpool), NHWC.

Layer names mirror the official ``SegNet`` (``conv11`` ... ``conv53``, ``conv53d`` ... ``conv11d`` with
``bnXY``/``bnXYd``). ``width`` scales every channel count (1.0 = the official 64/128/256/512/512).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdp_jax.configs import ModelSpec
from fdp_jax.conv import Conv
from fdp_jax.encoder import batch_norm, compute_dtype, precision
from fdp_jax.initializers import TORCH_DEFAULT_KERNEL, param_init, torch_default_bias

# (name, out_channels at width 1.0); encoder stages end with a 2x2 max-pool.
ENCODER_STAGES = (("11", 64), ("12", 64)), (("21", 128), ("22", 128)), \
    (("31", 256), ("32", 256), ("33", 256)), (("41", 512), ("42", 512), ("43", 512)), \
    (("51", 512), ("52", 512), ("53", 512))
# Decoder stages start with a max-unpool; the last conv (11d) has no BN/ReLU.
DECODER_STAGES = (("53d", 512), ("52d", 512), ("51d", 512)), (("43d", 512), ("42d", 512), ("41d", 256)), \
    (("33d", 256), ("32d", 256), ("31d", 128)), (("22d", 128), ("21d", 64)), (("12d", 64), ("11d", None))


def max_pool_with_indices(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """2x2/stride-2 max pool on NHWC returning (pooled (N,H/2,W/2,C), argmax in window (N,H/2,W/2,C) int8).

    The window index is row-major (0: top-left .. 3: bottom-right); ties pick the first maximum, as
    PyTorch's ``max_pool2d(return_indices=True)`` does.
    """
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"max_pool_with_indices needs even spatial sizes, got {h}x{w}")
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
    idx = jnp.argmax(windows, axis=-1)
    pooled = jnp.take_along_axis(windows, idx[..., None], axis=-1)[..., 0]
    return pooled, idx.astype(jnp.int8)


def max_unpool(x: jax.Array, idx: jax.Array) -> jax.Array:
    """Inverse of :func:`max_pool_with_indices`: (N,h,w,C) values placed at their argmax -> (N,2h,2w,C)."""
    n, h, w, c = x.shape
    onehot = jax.nn.one_hot(idx, 4, dtype=x.dtype)  # (n,h,w,c,4)
    out = (onehot * x[..., None]).reshape(n, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return out.reshape(n, 2 * h, 2 * w, c)


def _width(channels: int, width: float) -> int:
    return max(8, int(round(channels * width)))


class SegNet(nn.Module):
    """(N, H, W, C_in) -> (N, H, W, out_channels) logits; H and W must be multiples of 32."""
    spec: ModelSpec
    out_channels: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        spec = self.spec
        if x.shape[1] % 32 or x.shape[2] % 32:
            raise ValueError(f"SegNet input spatial size {x.shape[1:3]} must be a multiple of 32.")
        x = x.astype(compute_dtype(spec))

        def conv3x3(x, name, ch):  # PyTorch default init (the official SegNet keeps it)
            return Conv(ch, (3, 3), padding=((1, 1), (1, 1)), dtype=compute_dtype(spec),
                        precision=precision(spec), kernel_init=param_init(spec, TORCH_DEFAULT_KERNEL),
                        platform=spec.platform, winograd=spec.winograd,
                        bias_init=param_init(spec, torch_default_bias(9 * x.shape[-1])),
                        name=f"conv{name}")(x)

        def conv_bn_relu(x, name, ch):
            x = conv3x3(x, name, ch)
            return nn.relu(batch_norm(spec, f"bn{name}")(x, not train))

        indices = []
        for stage in ENCODER_STAGES:
            for name, ch in stage:
                x = conv_bn_relu(x, name, _width(ch, spec.segnet_width))
            x, idx = max_pool_with_indices(x)
            indices.append(idx)
        for stage in DECODER_STAGES:
            x = max_unpool(x, indices.pop())
            for name, ch in stage:
                if ch is None:
                    x = conv3x3(x, name, self.out_channels)
                else:
                    x = conv_bn_relu(x, name, _width(ch, spec.segnet_width))
        return x
