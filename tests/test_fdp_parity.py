"""Numerical parity with the official PyTorch FDP (github.com/CYF-cuber/FDP @ 7ad36d9) via the golden
vectors in tests/data/fdp_golden_seed20251.npz.

Weights are regenerated with the documented numpy recipe (tests/data/README.md), converted with
``fdp_jax.convert.from_torch_state_dict`` and run in eval mode, float32, highest precision.
"""
from __future__ import annotations

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdp_jax
from fdp_jax.configs import get_model_config
from fdp_jax.convert import from_torch_state_dict
from fdp_jax.models import build_model

SEED = 20251


def regenerate_state_dict(manifest: list[dict]) -> dict[str, np.ndarray]:
    """The README's recipe: one default_rng(SEED) draw per manifest entry, in order."""
    rng = np.random.default_rng(SEED)
    out = {}
    for entry in manifest:
        shape, kind = tuple(entry["shape"]), entry["kind"]
        if kind in ("conv_weight", "linear_weight"):
            value = rng.standard_normal(shape) * np.sqrt(1.0 / np.prod(shape[1:]))
        elif kind == "bias":
            value = rng.standard_normal(shape) * 0.02
        elif kind == "bn_weight":
            value = 1.0 + rng.standard_normal(shape) * 0.1
        elif kind in ("bn_bias", "bn_running_mean"):
            value = rng.standard_normal(shape) * 0.1
        elif kind == "bn_running_var":
            value = rng.uniform(0.5, 1.5, shape)
        elif kind == "bn_num_batches_tracked":
            out[entry["name"]] = np.array(0, np.int64)
            continue
        else:
            raise ValueError(f"unknown manifest kind {kind!r} for {entry['name']}")
        out[entry["name"]] = value.astype(np.float32)
    return out


@pytest.fixture(scope="module")
def golden(fdp_golden_path):
    return dict(np.load(fdp_golden_path))


@pytest.fixture(scope="module")
def reference_run(golden):
    """Converted weights + one eval-mode forward of the full reference_compat model (one compile)."""
    manifest = json.loads(str(golden["manifest"]))
    meta = json.loads(str(golden["meta"]))
    state_dict = regenerate_state_dict(manifest)
    config = get_model_config("full", "reference_compat", precision="highest")
    variables = from_torch_state_dict(state_dict, config)
    model = build_model(config)
    clips = jnp.asarray(golden["x"]).transpose(0, 1, 3, 4, 2)  # (B, T, 1, H, W) -> (B, T, H, W, 1)
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))
    (logits, di_logits), inter = fwd(variables, clips)
    return dict(manifest=manifest, meta=meta, state_dict=state_dict, variables=variables, logits=logits,
                di_logits=di_logits, inter=jax.tree.map(np.asarray, inter["intermediates"]))


def assert_close(got, want, name, rel=1e-4, atol=1e-4):
    """|got - want| <= max(atol, rel * max|want|) elementwise (relative to the array's scale)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    scale = float(np.max(np.abs(want)))
    err = float(np.max(np.abs(got - want)))
    tol = max(atol, rel * scale)
    print(f"PARITY {name}: max abs err {err:.3g}, rel {err / max(scale, 1e-30):.3g}, tol {tol:.3g}")
    assert err <= tol, f"{name}: max abs err {err:.3g} > tol {tol:.3g} (scale {scale:.3g})"


def test_regenerated_weights_match_checksums(golden, reference_run):
    sd, manifest = reference_run["state_dict"], reference_run["manifest"]
    sums = np.array([np.sum(sd[e["name"]], dtype=np.float64) for e in manifest])
    abs_sums = np.array([np.sum(np.abs(sd[e["name"]]), dtype=np.float64) for e in manifest])
    np.testing.assert_allclose(sums, golden["weights_sum"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(abs_sums, golden["weights_abs_sum"], rtol=1e-12)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(sd[e["name"]], dtype=(
        "<i8" if e["kind"] == "bn_num_batches_tracked" else "<f4")).tobytes() for e in manifest)).hexdigest()
    assert digest == reference_run["meta"]["weights_sha256_f32_le_concat"]


def test_parameter_count_reference_compat_full(reference_run):
    trainable = sum(int(np.prod(e["shape"])) for e in reference_run["manifest"]
                    if e["kind"] in ("conv_weight", "linear_weight", "bias", "bn_weight", "bn_bias"))
    ours = sum(int(np.size(x)) for x in jax.tree.leaves(reference_run["variables"]["params"]))
    assert ours == trainable == 85_304_206


def _frame0(inter_leaf, batch):
    """Sown encoder outputs over B*T frames (b-major) -> frame 0 of every clip, NCHW like the reference."""
    x = np.asarray(inter_leaf[0])[:: inter_leaf[0].shape[0] // batch]
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def test_encoder_intermediates_match(golden, reference_run):
    enc = reference_run["inter"]["frame_rep"]
    b = golden["x"].shape[0]
    for ours in ("stem", "stage1", "stage2", "stage3", "stage4", "pooled"):
        ref = f"dbg_frame0_{ours}"
        assert_close(_frame0(enc[ours], b), golden[ref], ref)


def test_frame_features_conv3d_logits_match(golden, reference_run):
    feats = reference_run["inter"]["frame_feats"][0]
    assert_close(feats, golden["frame_feats"], "frame_feats")
    # input-dependent part (the encoder output is dominated by a constant component)
    assert_close(feats - feats.mean(axis=(0, 1)), golden["frame_feats"] - golden["frame_feats"].mean(axis=(0, 1)),
                 "frame_feats_centered")
    feat = reference_run["inter"]["feat"][0]  # (B, H, W, 8) -> reference (B, 8, H, W, 1)
    assert_close(feat.transpose(0, 3, 1, 2)[..., None], golden["feat"], "feat (conv3d)")
    logits = np.asarray(reference_run["logits"])
    assert_close(logits, golden["logits"], "logits")
    assert_close(logits - logits.mean(0), golden["logits"] - golden["logits"].mean(0), "logits_centered")


def test_dynamic_image_prediction_matches(golden, reference_run):
    assert_close(reference_run["di_logits"], golden["di_pred_logits"], "di_pred_logits")
    assert_close(jax.nn.sigmoid(reference_run["di_logits"]), golden["di_pred"], "di_pred")
    centred = lambda a: np.asarray(a) - np.asarray(a).mean(0)
    assert_close(centred(reference_run["di_logits"]), centred(golden["di_pred_logits"]), "di_pred_logits_centered",
                 atol=1e-5)


def test_dynamic_image_target_recipe_matches(golden):
    frames = golden["di_target_frames"]  # (8, 64, 64, 1) in [0, 1]
    raw = np.asarray(fdp_jax.dynamic_image(jnp.asarray(frames, jnp.float32)))[..., 0]
    assert_close(raw, golden["di_target_raw"], "di_target_raw", rel=1e-6)
    np.testing.assert_array_equal(fdp_jax.dynamic_image_target_np(frames), golden["di_target"])
    jax_target = np.asarray(fdp_jax.dynamic_image_target(jnp.asarray(frames)))
    diff = np.abs(np.round(jax_target * 255).astype(int) - golden["di_target"].astype(int))
    assert diff.max() <= 1 and (diff > 0).sum() <= 6  # float32 vs float64 at integer boundaries
    np.testing.assert_allclose(fdp_jax.rank_pooling_coefficients(8),
                               [-8.460714, -1.460714, 1.039286, 2.039286, 2.289286, 2.089286, 1.589286, 0.875],
                               atol=1e-6)


def test_load_torch_checkpoint_roundtrip(reference_run, tmp_path):
    torch = pytest.importorskip("torch")  # the optional `torch` extra; skipped where it is not installed
    from fdp_jax.convert import load_torch_checkpoint
    path = str(tmp_path / "fdp.pth")
    torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v)) for k, v in reference_run["state_dict"].items()}},
               path)
    loaded = load_torch_checkpoint(path)
    want = reference_run["variables"]
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), loaded, want)
    assert all(jax.tree.leaves(same))
