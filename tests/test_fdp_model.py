"""FDP model family: structure/parameter counts, layers, layouts, dynamic images, public API (tiny configs)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdp_jax
from fdp_jax.configs import get_model_config, model_spec
from fdp_jax.convert import check_structure, from_torch_state_dict
from fdp_jax.decoder import max_pool_with_indices, max_unpool
from fdp_jax.encoder import block_plan
from fdp_jax.losses import fdp_loss, fdp_loss_sums
from fdp_jax.models import build_model, dummy_clips
from fdp_jax.rank_pooling import features_to_volume


def _count(config, part=None):
    model = build_model(config)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, dummy_clips(model.spec, 1)))
    tree = shapes["params"] if part is None else shapes["params"][part]
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_parameter_counts():
    assert _count(get_model_config("full", "reference_compat")) == 85_304_206
    assert _count(get_model_config("full", "reference_compat"), "frame_rep") == 54_952_448
    assert _count(get_model_config("full", "reference_compat"), "mer") == 905_293
    assert _count(get_model_config("full", "reference_compat"), "dyimg_net") == 29_446_465
    # spec: the dropped GFA blocks, if built (dense MHCA, widths 128..1024), give a 65,899,584-param encoder
    assert _count(get_model_config("full", "paper", mhca="dense"), "frame_rep") == 65_899_584
    assert _count(get_model_config("full", "paper")) == 68_770_254  # reported in docs/fdp_model.md
    assert _count(get_model_config("small", "paper")) < 10_000_000


def test_block_plans():
    ref = block_plan(model_spec(get_model_config("full", "reference_compat")))
    assert [k for k, *_ in ref] == ["lfa"] * 20
    assert [i for i, b in enumerate(ref) if b[3] == 2] == [3, 7, 17]
    paper = block_plan(model_spec(get_model_config("full", "paper")))
    assert [k for k, *_ in paper].count("gfa") == 4 and len(paper) == 24
    assert [b[2] for b in paper if b[0] == "gfa"] == [128, 256, 512, 1024]


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="GFA width"):
        model_spec(get_model_config("tiny", "paper", gfa_widths=(96, 96, 96, 96)))
    with pytest.raises(KeyError):
        get_model_config("tiny", "paper", not_a_field=1)
    model = build_model(get_model_config("tiny", "paper"))
    with pytest.raises(ValueError, match="expects clips"):
        jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 8, 64, 64, 1))))


def test_max_pool_indices_and_unpool_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 4, 3)).astype(np.float32)
    x[0, 0:2, 0:2, 0] = 5.0  # tie: first (top-left) wins, as in PyTorch
    pooled, idx = max_pool_with_indices(jnp.asarray(x))
    win = x.reshape(2, 3, 2, 2, 2, 3).transpose(0, 1, 3, 5, 2, 4).reshape(2, 3, 2, 3, 4)
    np.testing.assert_array_equal(np.asarray(pooled), win.max(-1))
    np.testing.assert_array_equal(np.asarray(idx), win.argmax(-1))
    assert int(idx[0, 0, 0, 0]) == 0
    up = np.asarray(max_unpool(pooled, idx))
    expected = np.where(x == np.repeat(np.repeat(win.max(-1), 2, 1), 2, 2), x, 0.0)
    expected[0, 0:2, 0:2, 0] = [[5.0, 0.0], [0.0, 0.0]]
    np.testing.assert_array_equal(up, expected)
    g = jax.grad(lambda a: jnp.sum(max_unpool(*max_pool_with_indices(a)) * 2.0))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(g) != 0, expected != 0)


def test_features_to_volume_layouts():
    b, t, s = 2, 8, 16
    feats = np.arange(b * t * s * s, dtype=np.float32).reshape(b, t, s * s)
    raw = np.asarray(features_to_volume(jnp.asarray(feats), "raw"))
    band = s // t  # rows per frame in the official raw reshape
    for (bb, h, w, tt) in [(0, 0, 0, 0), (1, 5, 7, 3), (1, 15, 15, 7), (0, 9, 2, 6)]:
        assert raw[bb, h, w, tt] == feats[bb, h // band, (h % band) * s * t + w * t + tt]
    tm = np.asarray(features_to_volume(jnp.asarray(feats), "time_major"))
    for (bb, h, w, tt) in [(0, 0, 0, 0), (1, 5, 7, 3), (1, 15, 15, 7)]:
        assert tm[bb, h, w, tt] == feats[bb, tt, h * s + w]


def test_dynamic_image_jit_vmap_grad():
    rng = np.random.default_rng(1)
    frames = jnp.asarray(rng.uniform(size=(3, 8, 16, 16, 1)).astype(np.float32))
    alpha = fdp_jax.rank_pooling_coefficients(8)
    assert abs(alpha.sum()) < 1e-12 and np.all(np.diff(alpha) > 0) is not None
    want = np.einsum("t,bthwc->bhwc", alpha, np.asarray(frames, np.float64))
    np.testing.assert_allclose(jax.jit(fdp_jax.dynamic_image)(frames), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(fdp_jax.dynamic_image)(frames), want, rtol=1e-5, atol=1e-5)
    g = jax.grad(lambda f: jnp.sum(fdp_jax.dynamic_image(f)))(frames)
    np.testing.assert_allclose(g[0, :, 0, 0, 0], alpha, rtol=1e-6)  # d DI / d frame_t = alpha_t
    target = np.asarray(fdp_jax.dynamic_image_target(frames))
    assert target.shape == (3, 16, 16) and target.min() == 0.0 and target.max() == 1.0
    assert np.allclose(target * 255, np.round(target * 255))  # uint8 levels


def test_losses_match_manual():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 3, 4, 1], np.int32)
    pred, target = rng.uniform(size=(2, 4, 8, 8)).astype(np.float32)
    loss, m = fdp_loss(logits, pred, labels, target)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -logp[np.arange(4), labels].mean()
    mse = np.mean((pred - target) ** 2)
    np.testing.assert_allclose(float(loss), ce + 100 * mse, rtol=1e-5)
    np.testing.assert_allclose(float(m["accuracy"]), np.mean(logits.argmax(1) == labels))
    # a zero mask removes an example exactly
    mask = np.array([1, 1, 1, 0], np.float32)
    loss_m, _ = fdp_loss(logits, pred, labels, target, mask)
    loss_3, _ = fdp_loss(logits[:3], pred[:3], labels[:3], target[:3])
    np.testing.assert_allclose(float(loss_m), float(loss_3), rtol=1e-6)
    s, sums = fdp_loss_sums(logits, pred, labels, target, mask, ce_weight=2.0, mse_weight=0.0)
    np.testing.assert_allclose(float(s), 2.0 * float(sums["ce"]), rtol=1e-6)


def test_converter_rejects_bad_state_dicts():
    with pytest.raises(ValueError, match="missing"):
        from_torch_state_dict({"frame_rep.stem.0.conv.weight": np.zeros((64, 1, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="unsupported shape"):
        from_torch_state_dict({"mer.fc1.weight": np.zeros((3,), np.float32)}, check=False)
    with pytest.raises(ValueError, match="shape mismatches"):
        cfg = get_model_config("tiny", "reference_compat")
        v = jax.eval_shape(lambda: fdp_jax.init(jax.random.PRNGKey(0), cfg))
        v = jax.tree.map(lambda x: np.zeros(x.shape, np.float32), v)
        v["params"]["mer"]["fc2"]["bias"] = np.zeros(7, np.float32)
        check_structure(v, cfg)


@pytest.fixture(scope="module")
def tiny_paper():
    cfg = get_model_config("tiny", "paper", num_classes=3)
    variables = fdp_jax.init(jax.random.PRNGKey(0), cfg)
    clips = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 32, 32, 1))
    return cfg, variables, clips


def test_public_api_jit_vmap_grad(tiny_paper):
    cfg, variables, clips = tiny_paper
    assert fdp_jax.spec_from_variables(variables) == model_spec(cfg)
    logits, di = jax.jit(lambda v, x: fdp_jax.apply(v, x))(variables, clips)
    assert logits.shape == (3, 3) and di.shape == (3, 32, 32)
    assert np.all((np.asarray(di) > 0) & (np.asarray(di) < 1))
    # vmap over single clips == batched eval (eval-mode BN makes examples independent)
    single = jax.jit(jax.vmap(lambda c: fdp_jax.apply(variables, c[None])[0][0]))(clips)
    np.testing.assert_allclose(single, logits, rtol=2e-4, atol=2e-4)
    # grad w.r.t. params and input
    def loss(params, x):
        lg, d = fdp_jax.apply({"params": params, "batch_stats": variables["batch_stats"]}, x)
        return jnp.mean(jax.nn.log_softmax(lg)[:, 0]) + jnp.mean(d)
    gp, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], clips)
    assert gx.shape == clips.shape and float(jnp.abs(gx).sum()) > 0
    leaves = jax.tree.leaves(gp)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert float(jnp.abs(gp["frame_rep"]["features_1"]["e_mhsa"]["q"]["kernel"]).sum()) > 0  # attention used


def test_train_mode_droppath_and_per_frame_encoder():
    cfg = get_model_config("tiny", "reference_compat", path_dropout=0.5)
    variables = fdp_jax.init(jax.random.PRNGKey(0), cfg)
    clips = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 32, 32, 1))
    folded = build_model(cfg)
    per_frame = build_model(cfg, per_frame_encoder=True)
    run = lambda m, r: m.apply(variables, clips, train=True, rngs={"droppath": r}, mutable=["batch_stats"])
    run_folded = jax.jit(lambda r: run(folded, r))
    (la, _), sa = run_folded(jax.random.PRNGKey(2))
    (lb, _), _ = run_folded(jax.random.PRNGKey(3))
    assert not np.allclose(la, lb)  # DropPath active in train mode
    (lc, _), sc = jax.jit(lambda r: run(per_frame, r))(jax.random.PRNGKey(2))
    stem = lambda s: np.asarray(s["batch_stats"]["frame_rep"]["stem_0"]["norm"]["mean"])
    # folded: one BN update with all 16 frames; per frame: 8 sequential updates (momentum 0.1 each)
    assert not np.allclose(stem(sa), stem(sc))
    from fdp_jax.encoder import FrameEncoder
    e = FrameEncoder(model_spec(cfg))
    params = variables["params"]["frame_rep"]
    one_frame = jax.jit(lambda s, x: e.apply({"params": params, "batch_stats": s}, x, True,
                                             rngs={"droppath": jax.random.PRNGKey(9)}, mutable=["batch_stats"]))
    stats = variables["batch_stats"]["frame_rep"]
    for t in range(8):  # replay the official per-frame loop with the encoder alone
        stats = one_frame(stats, clips[:, t])[1]["batch_stats"]
    np.testing.assert_allclose(stem(sc), np.asarray(stats["stem_0"]["norm"]["mean"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("platform", ["cpu", "generic"])
def test_grouped_conv_matches_flax_grouped_conv(platform):
    """'cpu': the im2col matmul; 'generic': XLA's grouped convolution."""
    import flax.linen as nn
    from fdp_jax.encoder import GroupedConv3x3
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 32))
    ours = GroupedConv3x3(model_spec(get_model_config("tiny", "paper", platform=platform)), 4)
    variables = ours.init(jax.random.PRNGKey(1), x)
    ref = nn.Conv(32, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=4, use_bias=False)
    np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=1e-5)
    grads = [jax.grad(lambda v, x: jnp.sum(jnp.sin(m.apply(v, x))), argnums=(0, 1))(variables, x) for m in (ours, ref)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_per_frame_remat_matches_per_frame_and_folded_eval():
    """Frame-level remat changes memory, not maths: same outputs, BN updates and gradients."""
    cfg = get_model_config("tiny", "reference_compat", path_dropout=0.0)
    variables = fdp_jax.init(jax.random.PRNGKey(0), cfg)
    clips = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 32, 32, 1))
    target = jax.random.uniform(jax.random.PRNGKey(2), (2, 32, 32))

    def loss_and_stats(model):
        def loss(params):
            (logits, di), upd = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, clips,
                                            train=True, mutable=["batch_stats"])
            return jnp.sum(logits ** 2) + jnp.mean((jax.nn.sigmoid(di) - target) ** 2), upd["batch_stats"]
        return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

    (la, sa), ga = loss_and_stats(build_model(cfg, per_frame_encoder=True))
    (lb, sb), gb = loss_and_stats(build_model(cfg, per_frame_encoder=True, remat=True))
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    for x, y in zip(jax.tree.leaves((sa, ga)), jax.tree.leaves((sb, gb))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
    folded = jax.jit(lambda v: build_model(cfg).apply(v, clips))(variables)
    scanned = jax.jit(lambda v: build_model(cfg, per_frame_encoder=True, remat=True).apply(v, clips))(variables)
    for x, y in zip(folded, scanned):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel,hw,bias", [(3, (2, 2), False), (3, (1, 2), True), (3, (4, 4), False),
                                             (1, (5, 6), True), (1, (2, 2), False)])
def test_matmul_conv_paths_match_flax_conv(kernel, hw, bias):
    """encoder.Conv's matmul paths (3x3 on H*W <= 4 as im2col, every 1x1) have nn.Conv's variables and outputs."""
    from fdp_jax.encoder import Conv
    import flax.linen as nn
    x = jax.random.normal(jax.random.PRNGKey(0), (3,) + hw + (16,))
    pad = ((kernel // 2, kernel // 2),) * 2
    ours = Conv(24, (kernel, kernel), padding=pad, use_bias=bias, platform="cpu")
    ref = nn.Conv(24, (kernel, kernel), padding=pad, use_bias=bias)
    v = ref.init(jax.random.PRNGKey(1), x)
    if bias:
        v = jax.tree.map(lambda a: a + 0.5, v)
    assert jax.tree.structure(ours.init(jax.random.PRNGKey(1), x)) == jax.tree.structure(v)
    np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,chunks", [(1, 4), (2, 8), (1, 1)])
def test_chunked_weight_gradient_conv_matches_xla_conv(stride, chunks):
    """conv.conv2d (the weight gradient summed over batch chunks) = XLA's convolution: outputs and gradients."""
    from fdp_jax.conv import conv2d
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 12, 12, 5))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5, 7))
    pad = ((1, 1), (1, 1))
    ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (stride, stride), pad,
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours = lambda x, k: conv2d(x, k, (stride, stride), pad, None, chunks)
    np.testing.assert_allclose(ours(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    for a, b in zip(jax.grad(loss(ours), (0, 1))(x, k), jax.grad(loss(ref), (0, 1))(x, k)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_weight_gradient_chunk_rule():
    """Chunks only on CPU, for maps >= 8x8 with >= 8 MiB of input; power-of-two chunks of <= 4 MiB."""
    from fdp_jax.conv import weight_grad_chunks
    assert weight_grad_chunks((288, 16, 16, 96), 4, "cpu") == 9        # 32 samples (3 MiB) per chunk
    assert weight_grad_chunks((36, 64, 64, 64), 4, "cpu") == 9         # 4 samples of 1 MiB
    assert weight_grad_chunks((18, 128, 128, 64), 4, "cpu") == 18      # one 4 MiB sample per chunk
    assert weight_grad_chunks((288, 16, 16, 96), 4, "gpu") == 1
    assert weight_grad_chunks((288, 4, 4, 384), 4, "cpu") == 1         # tiny maps: XLA's conv is faster
    assert weight_grad_chunks((36, 8, 8, 512), 4, "cpu") == 1          # small input
    assert weight_grad_chunks((9, 64, 64, 64), 4, "cpu") == 9          # odd batch: one sample per chunk


def test_encoder_and_segnet_gradients_with_chunked_convs_match_unchunked(monkeypatch):
    """The chunked path inside the model (forced on for small shapes) leaves the gradients unchanged."""
    from fdp_jax import conv as conv_lib
    cfg = get_model_config("tiny", "reference_compat", platform="cpu")
    model = build_model(cfg)
    clips = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 32, 32, 1))
    v = fdp_jax.init(jax.random.PRNGKey(1), cfg)

    def grads():
        def loss(p):
            (logits, di), _ = model.apply({"params": p, "batch_stats": v["batch_stats"]}, clips, train=True,
                                          mutable=["batch_stats"], rngs={"droppath": jax.random.PRNGKey(2)})
            return jnp.sum(logits ** 2) + jnp.sum(jax.nn.sigmoid(di))
        return jax.jit(jax.grad(loss))(v["params"])

    monkeypatch.setattr(conv_lib, "WEIGHT_GRAD_MIN_PIXELS", 10 ** 9)
    plain = grads()
    monkeypatch.setattr(conv_lib, "WEIGHT_GRAD_MIN_PIXELS", 1)
    monkeypatch.setattr(conv_lib, "WEIGHT_GRAD_MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(conv_lib, "WEIGHT_GRAD_CHUNK_BYTES", 1)
    chunked = grads()
    worst = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12))
                for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(plain)))
    assert worst < 1e-4, worst   # float summation order only (measured ~1e-6)


def test_head_pool_flatten_keeps_positions():
    """head_pool='flatten' (NOT in the paper) feeds the final map's positions (row-major) to the Dense head;
    averaging them gives exactly the paper's global-average-pooled vector (same encoder weights)."""
    from fdp_jax.encoder import FrameEncoder
    frames = jax.random.normal(jax.random.PRNGKey(0), (3, 64, 64, 1))
    pooled, kernels = {}, {}
    for pool in ("avg", "flatten"):
        spec = model_spec(get_model_config("tiny", "paper", image_size=64, head_pool=pool))
        enc = FrameEncoder(spec)
        v = jax.jit(enc.init)(jax.random.PRNGKey(1), frames)
        feats, inter = jax.jit(lambda v: enc.apply(v, frames, mutable=["intermediates"]))(v)  # noqa: B023
        pooled[pool] = np.asarray(inter["intermediates"]["pooled"][0])
        kernel = v["params"]["proj_head_0"]
        np.testing.assert_allclose(feats, pooled[pool] @ kernel["kernel"] + kernel["bias"], rtol=1e-4, atol=1e-4)
        kernels[pool] = kernel["kernel"].shape
    c = get_model_config("tiny", "paper").gfa_widths[-1]
    assert kernels == {"avg": (c, 64 * 64), "flatten": (2 * 2 * c, 64 * 64)}   # final map 2x2
    np.testing.assert_allclose(pooled["flatten"].reshape(3, 2, 2, c).mean((1, 2)), pooled["avg"],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="head_pool"):
        model_spec(get_model_config("tiny", "paper", head_pool="max"))


def test_platform_is_explicit_and_defaults_to_generic():
    """The code paths follow the config's platform (never the running backend): default 'generic'."""
    from fdp_jax.configs import normalize_platform, with_platform
    from fdp_jax.train_steps import compiler_options
    cfg = get_model_config("tiny", "paper")
    assert cfg.platform == "generic" and model_spec(cfg).platform == "generic" and not model_spec(cfg).cpu_paths
    assert with_platform(cfg, "cuda").platform == "gpu" and cfg.platform == "generic"  # a copy
    assert model_spec(with_platform(cfg, jax.devices()[0])).cpu_paths                   # a Device (CPU here)
    assert with_platform(model_spec(cfg), "tpu").platform == "tpu"
    assert with_platform(dict(cfg), "rocm")["platform"] == "gpu"
    assert normalize_platform(None) == "generic"
    with pytest.raises(ValueError, match="platform"):
        get_model_config("tiny", "paper", platform="metal")
    assert compiler_options("gpu") is None and compiler_options(None) is None
    assert compiler_options("cpu") in ({"xla_cpu_use_fusion_emitters": False}, None)
