"""The FDP benchmark runs end to end on the tiny model under both host-allocator settings (no timing asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_fdp_benchmark_smoke(tmp_path):
    out = tmp_path / "fdp.json"
    cmd = [sys.executable, "-m", "launch.benchmark", "--model=fdp", "--fdp_size=tiny", "--fdp_batch_sizes=1",
           "--fdp_modes=reference_compat", "--fdp_repeats=1", "--fdp_host_malloc=keep,default", f"--fdp_out={out}"]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["mode"], r["host_malloc"]) for r in rows] == [("reference_compat", "keep"),
                                                             ("reference_compat", "default")], rows
    assert all(r["median_s"] > 0 and r["flops"] > 0 and 0 < r["mfu"] and r["peak_rss_mb"] > 0 for r in rows)
    assert result["flags"]["host_malloc"] == ["keep", "default"]
    assert "FAILED" not in proc.stdout


def test_decoder_oracles_on_hand_made_targets():
    """fdp_decoder's oracle PSNRs: a clip-constant target is reproduced exactly by its median (PSNR capped by
    float64 only), the class oracle by the class means, and the baseline matches the direct formula."""
    import numpy as np

    from launch.benchmarks.fdp_decoder import oracle_psnrs, psnr

    rng = np.random.default_rng(0)
    levels = np.array([0.3, 0.5, 0.7, 0.4])
    targets = levels[:, None, None] + 0.01 * rng.standard_normal((4, 8, 8))
    mean = np.full((8, 8), 0.5)
    labels = np.array([0, 1, 1, 0])
    class_means = {0: np.full((8, 8), 0.35), 1: np.full((8, 8), 0.6)}
    out = oracle_psnrs(targets, mean, class_means, labels, decoder=np.full_like(targets, 0.5))
    assert out["mean baseline"] == out["decoder"] == psnr(np.full_like(targets, 0.5), targets)
    np.testing.assert_allclose(out["mean baseline"], 10 * np.log10(1 / np.mean((targets - 0.5) ** 2)))
    assert out["oracle: clip's median"] > out["oracle: true class's mean"] > out["mean baseline"]
    assert out["oracle: clip's median"] > 38  # residual noise 0.01 -> ~40 dB


def test_decoder_frames_probe_and_reconstructions_figure(tmp_path):
    """The frames probe trains the SegNet on (B, H, W, T) frames and scores the held-out clips."""
    import types

    import ml_collections
    import numpy as np

    import fdp_jax
    from launch.benchmarks.fdp_decoder import _frames_probe, _reconstructions_figure

    rng = np.random.default_rng(0)
    frames = rng.random((4, 8, 64, 64, 1)).astype(np.float32)
    target = fdp_jax.dynamic_image_target_np(frames, time_axis=1).astype(np.float32) / 255.0
    batch = {"frames": frames, "di_target": target, "mask": np.array([1, 1, 1, 0], np.float32)}
    fold = types.SimpleNamespace(test_batches=[batch], train_iter=iter([batch] * 3),
                                 info={"train_indices": [0, 1, 2, 3]})
    clips = types.SimpleNamespace(di_target=(target * 255).astype(np.uint8))
    config = ml_collections.ConfigDict({"optimizer": {"learning_rate": 1e-3}})
    model_config = fdp_jax.get_model_config("tiny", "paper", num_classes=3)
    curve, held_out = _frames_probe(config, model_config, fold, clips, steps=3)
    assert [row["step"] for row in curve] == [1, 2, 3] and all(np.isfinite(r["test_gain_db"]) for r in curve)
    assert held_out["di_pred"].shape == (3, 64, 64) and held_out["di_target"].shape == (3, 64, 64)
    assert 0.0 <= held_out["di_pred"].min() and held_out["di_pred"].max() <= 1.0
    path = tmp_path / "recon.png"
    _reconstructions_figure(str(path), {"di_pred": held_out["di_target"]}, held_out, 3, "sub01")
    assert path.stat().st_size > 1000
