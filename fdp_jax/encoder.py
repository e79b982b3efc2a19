"""Per-frame encoder of FDP (the "local-global feature-aware transformer"), NHWC, Flax Linen.

Stem (4 ConvBNReLU) -> stages of LFA blocks (+ one GFA block per stage in `paper` mode) -> BN -> global
average pool -> Dense(feature_dim). Submodule names mirror the PyTorch state-dict names of the official
``frame_rep`` (``stem_0``, ``features_N``, ``norm``, ``proj_head_0``) so :mod:`fdp_jax.convert` is a rename.
Also holds the shared layers (:class:`BatchNorm` with PyTorch semantics, DropPath, conv helpers).
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fdp_jax.configs import ModelSpec, make_divisible
from fdp_jax.conv import Conv  # noqa: F401  (re-exported: the shared conv helper)
# PyTorch-like init for the official encoder: trunc_normal(std .02) kernels, zero biases; the decoder and MER
# head keep PyTorch's default init (all in fdp_jax.initializers).
from fdp_jax.initializers import (ONES, TORCH_DEFAULT_KERNEL, TRUNC_NORMAL, ZEROS,  # noqa: F401
                                  param_init, torch_default_bias, variable_init)
from fdp_jax.lean_vjp import batch_norm_train, batch_statistics, mlp_relu, remat_after_cotangent


def compute_dtype(spec: ModelSpec) -> Any:
    return jnp.dtype(spec.dtype)


def precision(spec: ModelSpec) -> Any:
    return lax.Precision.HIGHEST if spec.precision == "highest" else None


class BatchNorm(nn.Module):
    """BatchNorm over all but the last axis with PyTorch semantics.

    ``momentum`` is PyTorch's (new = (1-m) old + m batch), the running variance is updated with the
    unbiased batch variance (as torch does), statistics are float32, and ``axis_name`` averages the batch
    statistics across ``pmap`` devices. Variables: params ``scale``/``bias``, batch_stats ``mean``/``var``.
    Train mode is :func:`fdp_jax.lean_vjp.batch_norm_train` (keeps the input, not the centred input, for the
    backward pass).
    """
    momentum: float = 0.1
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = jnp.float32
    platform: str = "generic"  # 'cpu': the backward pass's recomputation pinned after the cotangent
    deferred_init: bool = False  # ModelSpec.deferred_init (fdp_jax.initializers)

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        c = x.shape[-1]
        d = self.deferred_init
        scale = self.param("scale", param_init(self, ONES), (c,), jnp.float32)
        bias = self.param("bias", param_init(self, ZEROS), (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", variable_init(d, ZEROS, (c,)))
        ra_var = self.variable("batch_stats", "var", variable_init(d, ONES, (c,)))
        if use_running_average:
            inv = lax.rsqrt(ra_var.value + self.epsilon) * scale
            y = (x.astype(jnp.float32) - ra_mean.value) * inv + bias
            return y.astype(self.dtype)
        if not self.is_initializing():
            mean, var = lax.stop_gradient(batch_statistics(x, self.axis_name))
            n = float(np.prod(x.shape[:-1]))
            if self.axis_name is not None:
                n = n * lax.psum(1, self.axis_name)
            m = self.momentum
            ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
            ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / jnp.maximum(n - 1.0, 1.0))
        return batch_norm_train(x, scale, bias, self.epsilon, self.axis_name, jnp.dtype(self.dtype),
                                self.platform == "cpu")


class DropPath(nn.Module):
    """Stochastic depth: drops whole samples with probability ``rate`` (rng stream ``'droppath'``)."""
    rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("droppath"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


def conv(spec: ModelSpec, features: int, kernel: int, *, stride: int = 1, groups: int = 1,
         use_bias: bool = False, name: str | None = None, kernel_init: Any = TRUNC_NORMAL) -> nn.Conv:
    """Conv with PyTorch padding (kernel // 2 on each side) in the spec's dtype/precision/platform."""
    pad = kernel // 2
    return Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, use_bias=use_bias, dtype=compute_dtype(spec),
                   precision=precision(spec), kernel_init=param_init(spec, kernel_init),
                   bias_init=param_init(spec, ZEROS), platform=spec.platform, winograd=spec.winograd, name=name)


def batch_norm(spec: ModelSpec, name: str | None = None) -> BatchNorm:
    return BatchNorm(axis_name=spec.bn_axis_name, dtype=compute_dtype(spec), platform=spec.platform,
                     deferred_init=spec.deferred_init, name=name)


def avg_pool_ceil(x: jax.Array) -> jax.Array:
    """AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) on NHWC."""
    pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding=pad, count_include_pad=False)


class ConvBNReLU(nn.Module):
    spec: ModelSpec
    features: int
    stride: int

    @nn.compact
    def __call__(self, x, train: bool):
        x = conv(self.spec, self.features, 3, stride=self.stride, name="conv")(x)
        return nn.relu(batch_norm(self.spec, "norm")(x, not train))


class PatchEmbed(nn.Module):
    """Stride 2: avg-pool then 1x1 conv + BN; channel change: 1x1 conv + BN; otherwise identity."""
    spec: ModelSpec
    features: int
    stride: int

    @nn.compact
    def __call__(self, x, train: bool):
        if self.stride == 2:
            x = avg_pool_ceil(x)
        elif x.shape[-1] == self.features:
            return x
        x = conv(self.spec, self.features, 1, name="conv")(x)
        return batch_norm(self.spec, "norm")(x, not train)


class GroupedConv3x3(nn.Module):
    """Bias-free grouped 3x3 conv (stride 1, padding 1), kernel (3, 3, C/groups, C) like ``nn.Conv``.

    Platform 'cpu' (``jax.named_scope('cpu_grouped_im2col')``): computed group-major as one batched im2col
    matmul, (G, N*H*W, 9*d) x (G, 9*d, d): XLA:CPU's grouped convolution is 20-90x slower (fwd+bwd at the
    FDP stage shapes), and 9 per-tap batched einsums in the channel-last layout were 2-3x slower inside MHCA
    (fwd+bwd of grouped conv -> BN -> ReLU -> 1x1 at (288, 16, 16, 96): 1012 ms vs 315 ms). Same result up
    to float rounding. Other platforms: XLA's grouped convolution (``feature_group_count``).
    """
    spec: ModelSpec
    groups: int

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        g, d = self.groups, c // self.groups
        kernel = self.param("kernel", param_init(self.spec, TRUNC_NORMAL), (3, 3, d, c), jnp.float32).astype(x.dtype)
        if self.spec.platform != "cpu":
            return lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g,
                                            precision=precision(self.spec))
        with jax.named_scope("cpu_grouped_im2col"):
            return self._im2col(x, kernel, g, d)

    def _im2col(self, x: jax.Array, kernel: jax.Array, g: int, d: int) -> jax.Array:
        n, h, w, c = x.shape
        k = kernel.reshape(3, 3, d, g, d).transpose(3, 0, 1, 2, 4).reshape(g, 9 * d, d)  # (G, taps*d_in, d_out)
        xg = jnp.pad(x.reshape(n, h, w, g, d).transpose(3, 0, 1, 2, 4), ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate([xg[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)
        y = lax.dot_general(patches.reshape(g, n * h * w, 9 * d), k, (((2,), (1,)), ((0,), (0,))),
                            precision=precision(self.spec))  # (G, N*H*W, d_out)
        return y.reshape(g, n, h, w, d).transpose(1, 2, 3, 0, 4).reshape(n, h, w, c)


class MHCA(nn.Module):
    """Multi-head convolutional attention. 'dense': the official single dense bias-free 3x3 conv.
    'grouped' (Next-ViT / paper): grouped 3x3 (groups = C/head_dim) -> BN -> ReLU -> 1x1 projection."""
    spec: ModelSpec

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        if self.spec.mhca == "dense":
            return conv(self.spec, c, 3, name="group_conv3x3")(x)
        x = GroupedConv3x3(self.spec, c // self.spec.head_dim, name="group_conv3x3")(x)
        x = nn.relu(batch_norm(self.spec, "norm")(x, not train))
        return conv(self.spec, c, 1, name="projection")(x)


class Conv1x1Params(nn.Module):
    """The variables of a 1x1 ``Conv`` with bias (kernel (1, 1, C, O), bias (O,)), for fused layers."""
    features: int
    deferred_init: bool = False  # ModelSpec.deferred_init (fdp_jax.initializers)

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", param_init(self, TRUNC_NORMAL), (1, 1, in_features, self.features),
                            jnp.float32)
        return kernel[0, 0], self.param("bias", param_init(self, ZEROS), (self.features,), jnp.float32)


class Mlp(nn.Module):
    """1x1 conv (C -> hidden, bias) -> ReLU -> Dropout -> 1x1 conv (hidden -> C, bias) -> Dropout.

    Without active dropout this is :func:`fdp_jax.lean_vjp.mlp_relu` (one hidden-size tensor kept for the
    backward pass instead of two)."""
    spec: ModelSpec
    mlp_ratio: float

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        hidden = make_divisible(c * self.mlp_ratio, 32)
        if not train or self.spec.drop == 0.0:
            w1, b1 = Conv1x1Params(hidden, self.spec.deferred_init, name="conv1")(c)
            w2, b2 = Conv1x1Params(c, self.spec.deferred_init, name="conv2")(hidden)
            x, w1, b1, w2, b2 = nn.dtypes.promote_dtype(x, w1, b1, w2, b2, dtype=compute_dtype(self.spec))
            return mlp_relu(x, w1, b1, w2, b2, precision(self.spec), self.spec.platform == "cpu")
        x = nn.relu(conv(self.spec, hidden, 1, use_bias=True, name="conv1")(x))
        x = nn.Dropout(self.spec.drop, deterministic=not train)(x)
        x = conv(self.spec, c, 1, use_bias=True, name="conv2")(x)
        return nn.Dropout(self.spec.drop, deterministic=not train)(x)


class LFA(nn.Module):
    """Local feature-aware block (Next-ViT NCB): x = PE(x); x += DP(MHCA(x)); x += DP(MLP(BN(x)))."""
    spec: ModelSpec
    features: int
    stride: int
    drop_path: float

    @nn.compact
    def __call__(self, x, train: bool):
        x = PatchEmbed(self.spec, self.features, self.stride, name="patch_embed")(x, train)
        x = x + DropPath(self.drop_path)(MHCA(self.spec, name="mhca")(x, train), not train)
        y = Mlp(self.spec, self.spec.lfa_mlp_ratio, name="mlp")(batch_norm(self.spec, "norm")(x, not train), train)
        return x + DropPath(self.drop_path)(y, not train)


class EMHSA(nn.Module):
    """Efficient multi-head self-attention on tokens (B, N, C); keys/values from tokens average-pooled
    over the flattened sequence with kernel = stride = sr_ratio**2, then BN (Next-ViT E_MHSA)."""
    spec: ModelSpec
    sr_ratio: int

    @nn.compact
    def __call__(self, x, train: bool):
        b, n, c = x.shape
        heads = c // self.spec.head_dim
        dense = lambda name: nn.Dense(c, dtype=compute_dtype(self.spec), precision=precision(self.spec),
                                      kernel_init=param_init(self.spec, TRUNC_NORMAL),
                                      bias_init=param_init(self.spec, ZEROS), name=name)
        q = dense("q")(x).reshape(b, n, heads, -1)
        kv = x
        if self.sr_ratio > 1:
            k_size = self.sr_ratio ** 2
            if n < k_size:
                raise ValueError(f"E-MHSA: {n} tokens < pooling kernel {k_size} (sr_ratio {self.sr_ratio}); "
                                 "use a smaller sr_ratio for this image size.")
            m = n // k_size
            kv = x[:, : m * k_size].reshape(b, m, k_size, c).mean(axis=2)
            kv = batch_norm(self.spec, "norm")(kv, not train)
        k = dense("k")(kv).reshape(b, kv.shape[1], heads, -1)
        v = dense("v")(kv).reshape(b, kv.shape[1], heads, -1)
        attn = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=precision(self.spec)) * self.spec.head_dim ** -0.5
        attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(q.dtype)
        attn = nn.Dropout(self.spec.attn_drop, deterministic=not train)(attn)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, v, precision=precision(self.spec)).reshape(b, n, c)
        out = dense("proj")(out)
        return nn.Dropout(self.spec.drop, deterministic=not train)(out)


class GFA(nn.Module):
    """Global feature-aware block (Next-ViT NTB): E-MHSA branch on C_sa channels, MHCA branch on the
    remaining C_ca, concatenated, then MLP (ratio 2); DropPath rates 0.75p / 0.25p / p."""
    spec: ModelSpec
    features: int
    stride: int
    sr_ratio: int
    drop_path: float

    @nn.compact
    def __call__(self, x, train: bool):
        r = self.spec.mix_block_ratio
        c_sa = make_divisible(int(self.features * r), 32)
        c_ca = self.features - c_sa
        x = PatchEmbed(self.spec, c_sa, self.stride, name="patch_embed")(x, train)
        b, h, w, c = x.shape
        tokens = batch_norm(self.spec, "norm1")(x, not train).reshape(b, h * w, c)
        out = EMHSA(self.spec, self.sr_ratio, name="e_mhsa")(tokens, train)
        x = x + DropPath(self.drop_path * r)(out.reshape(b, h, w, c), not train)
        o = PatchEmbed(self.spec, c_ca, 1, name="projection")(x, train)
        o = o + DropPath(self.drop_path * (1 - r))(MHCA(self.spec, name="mhca")(o, train), not train)
        x = jnp.concatenate([x, o], axis=-1)
        y = Mlp(self.spec, self.spec.gfa_mlp_ratio, name="mlp")(batch_norm(self.spec, "norm2")(x, not train), train)
        return x + DropPath(self.drop_path)(y, not train)


def block_plan(spec: ModelSpec) -> list[tuple[str, int, int, int, int]]:
    """(kind, stage, width, stride, sr_ratio) for every block in order."""
    plan = []
    for s, depth in enumerate(spec.depths):
        for i in range(depth):
            plan.append(("lfa", s, spec.lfa_widths[s], spec.strides[s] if i == 0 else 1, spec.sr_ratios[s]))
        if spec.use_gfa:
            plan.append(("gfa", s, spec.gfa_widths[s], 1, spec.sr_ratios[s]))
    return plan


@functools.lru_cache(maxsize=None)
def _remat_block(block_class: type, platform: str) -> type:
    """``remat=True`` blocks (built once per class and platform): for platform 'cpu'
    :func:`fdp_jax.lean_vjp.remat_after_cotangent` (XLA:CPU merges ``nn.remat``'s recomputation into the
    forward pass: no memory saved); otherwise ``nn.remat``."""
    if platform == "cpu":
        return remat_after_cotangent(block_class)
    return nn.remat(block_class, static_argnums=(2,))


class FrameEncoder(nn.Module):
    """Frames (N, H, W, C_in) -> features (N, feature_dim). Sows 'stem', 'stage{1..4}', 'pooled'
    into the ``intermediates`` collection when it is mutable."""
    spec: ModelSpec

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        spec = self.spec
        x = x.astype(compute_dtype(spec))
        for i, (ch, stride) in enumerate(zip(tuple(spec.stem_chs) + (spec.stem_chs[-1],), (2, 1, 1, 2))):
            x = ConvBNReLU(spec, ch, stride, name=f"stem_{i}")(x, train)
        self.sow("intermediates", "stem", x)
        plan = block_plan(spec)
        rates = np.linspace(0.0, spec.path_dropout, len(plan)) if plan else []
        block_remat = spec.remat and not spec.per_frame_encoder  # per-frame: the frame scan is remat'ed
        for idx, (kind, stage, width, stride, sr) in enumerate(plan):
            remat_here = block_remat and stage + 1 in spec.remat_stages
            lfa_cls, gfa_cls = ((_remat_block(LFA, spec.platform), _remat_block(GFA, spec.platform)) if remat_here
                                else (LFA, GFA))
            if kind == "lfa":
                x = lfa_cls(spec, width, stride, float(rates[idx]), name=f"features_{idx}")(x, train)
            else:
                x = gfa_cls(spec, width, stride, sr, float(rates[idx]), name=f"features_{idx}")(x, train)
            if idx + 1 == len(plan) or plan[idx + 1][1] != stage:
                self.sow("intermediates", f"stage{stage + 1}", x)
        x = batch_norm(spec, "norm")(x, not train)
        if spec.head_pool == "flatten":  # NOT in the paper: keep where on the face (final map, row-major)
            x = x.reshape(x.shape[0], -1)
        else:  # the paper's and the official global average pool
            x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)
        self.sow("intermediates", "pooled", x)
        return nn.Dense(spec.feature_dim, dtype=compute_dtype(spec), precision=precision(spec),
                        kernel_init=param_init(spec, TRUNC_NORMAL), bias_init=param_init(spec, ZEROS),
                        name="proj_head_0")(x)
