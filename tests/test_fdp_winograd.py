"""fdp_jax.winograd (Winograd F(m x m, 3 x 3) convolution) and its use by fdp_jax.conv.Conv."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdp_jax
from fdp_jax import conv as conv_lib
from fdp_jax import winograd
from fdp_jax.configs import get_model_config
from fdp_jax.models import build_model


def _xla_conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision="highest")


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape,out", [((2, 8, 8, 8), 24), ((3, 4, 12, 5), 7), ((1, 4, 4, 16), 16)])
def test_winograd_matches_xla_conv_values_and_gradients(m, shape, out):
    """Several tiles, C != O, non-square maps; single tile (4x4 map, m=4). F(4,3) rounds ~10x more than F(2,3)."""
    assert winograd.supports(shape, m)
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, shape[-1], out)) / np.sqrt(9 * shape[-1])
    tol = 1e-5 if m == 2 else 1e-4
    assert _rel(jax.jit(winograd.winograd_conv3x3, static_argnums=2)(x, k, m), _xla_conv(x, k)) < tol
    r = jax.random.normal(jax.random.PRNGKey(2), shape[:3] + (out,))
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)) * r)
    ours = jax.grad(loss(lambda x, k: winograd.winograd_conv3x3(x, k, m)), (0, 1))(x, k)
    ref = jax.grad(loss(_xla_conv), (0, 1))(x, k)
    for a, b in zip(ours, ref):
        assert _rel(a, b) < tol


def test_winograd_transforms_are_adjoint():
    """<T v, w> = <v, T^T w> for the kernel and output transforms the backward pass writes out by hand."""
    rng = np.random.default_rng(0)
    for m in winograd.TILE_SIZES:
        a = m + 2
        k = jnp.asarray(rng.standard_normal((3, 3, 4, 5)))
        u = jnp.asarray(rng.standard_normal((a * a, 4, 5)))
        np.testing.assert_allclose(jnp.vdot(winograd.kernel_transform(k, m), u),
                                   jnp.vdot(k, winograd.kernel_transform_t(u, m)), rtol=1e-4)
        mm = jnp.asarray(rng.standard_normal((a * a, 2 * 2 * 3, 5)))
        dy = jnp.asarray(rng.standard_normal((2, 2 * m, 3 * m, 5)))
        np.testing.assert_allclose(jnp.vdot(winograd.output_transform(mm, m, (2, 2 * m, 3 * m)), dy),
                                   jnp.vdot(mm, winograd.output_transform_t(dy, m)), rtol=1e-4)


def test_winograd_rejects_indivisible_maps():
    with pytest.raises(ValueError, match="divisible"):
        winograd.winograd_conv3x3(jnp.zeros((1, 6, 6, 2)), jnp.zeros((3, 3, 2, 2)), 4)


def test_winograd_tile_rule():
    """CPU only; >= 64 channels in and out; maps 4x4..64x64 divisible by 4; >= 128 tiles; F(2, 3) on 4x4 maps
    of < 256 images."""
    rule = conv_lib.winograd_tile
    assert rule((288, 4, 4, 384), 384, "cpu") == 4     # encoder stage 3 at batch 36 x 8 frames
    assert rule((288, 8, 8, 192), 192, "cpu") == 4
    assert rule((288, 16, 16, 96), 96, "cpu") == 4
    assert rule((36, 64, 64, 64), 64, "cpu") == 4      # SegNet
    assert rule((36, 4, 4, 512), 512, "cpu") == 2      # few 4x4 maps
    assert rule((288, 16, 16, 96), 96, "gpu") == 0
    assert rule((36, 64, 64, 64), 1, "cpu") == 0       # SegNet's last conv: one output channel
    assert rule((288, 32, 32, 64), 32, "cpu") == 0     # stem
    assert rule((288, 2, 2, 768), 768, "cpu") == 0     # 2x2 maps: the im2col path
    assert rule((288, 6, 6, 128), 128, "cpu") == 0     # not divisible by 4
    assert rule((4, 128, 128, 64), 64, "cpu") == 0     # larger than measured
    assert rule((2, 8, 8, 512), 512, "cpu") == 0       # batch 2: 8 tiles, the kernel transforms dominate
    assert rule((16, 16, 16, 96), 96, "cpu") == 4      # 256 tiles


def test_model_with_winograd_convs_matches_xla_convs(monkeypatch):
    """The Winograd path inside the model (forced on for the tiny reference_compat model): train-mode logits and
    dynamic images equal the XLA-conv ones up to float rounding, and the path is taken (the last bits differ).

    Gradients are compared per convolution above: the whole tiny random model's gradient is ill-conditioned
    (max-pool argmax / ReLU ties flip under last-bit changes; scaling every weight by 1 + 1e-6 moves some
    gradient leaves by > 100% with XLA's own convolutions), so a model-level gradient comparison would test that."""
    cfg = get_model_config("tiny", "reference_compat", platform="cpu")
    model = build_model(cfg)
    clips = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 32, 32, 1))
    v = fdp_jax.init(jax.random.PRNGKey(1), cfg)
    run = jax.jit(lambda v: model.apply(v, clips, train=True, mutable=["batch_stats"],
                                        rngs={"droppath": jax.random.PRNGKey(2)})[0])
    monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_CHANNELS", 10 ** 9)
    logits_xla, di_xla = run(v)
    monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_CHANNELS", 1)
    logits_w, di_w = jax.jit(lambda v: model.apply(v, clips, train=True, mutable=["batch_stats"],
                                                   rngs={"droppath": jax.random.PRNGKey(2)})[0])(v)
    assert not np.array_equal(np.asarray(logits_w), np.asarray(logits_xla))
    assert _rel(logits_w, logits_xla) < 1e-4
    assert _rel(di_w, di_xla) < 1e-3   # forced into all ~20 SegNet convs: F(4, 3) rounding ~1e-5 each (1.4e-4 measured)


def test_winograd_config_switch(monkeypatch):
    """``model.winograd=False`` keeps XLA's convolutions on the CPU path (the fast-compile choice)."""
    monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_CHANNELS", 1)   # the rule picks Winograd wherever it can
    clips = jax.ShapeDtypeStruct((2, 8, 32, 32, 1), np.float32)
    texts = {}
    for on in (True, False):
        cfg = get_model_config("tiny", "reference_compat", platform="cpu", winograd=on)
        model = build_model(cfg)
        variables = jax.eval_shape(lambda: fdp_jax.init(jax.random.PRNGKey(1), cfg))
        texts[on] = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, clips).as_text(
            debug_info=True)
    assert "cpu_winograd" in texts[True]
    assert "cpu_winograd" not in texts[False] and "cpu_conv2d" in texts[False]
