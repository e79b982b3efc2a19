"""The DKT benchmark runs end to end on a tiny shape (JAX only; no timing asserted)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_dkt_benchmark_smoke(tmp_path):
    out = tmp_path / "dkt.json"
    cmd = [sys.executable, "-m", "launch.benchmark", "--model=dkt", "--dkt_shapes=4x6x5", "--dkt_hidden=8",
           "--dkt_repeats=1", "--dkt_warmup=1", "--dkt_peer=off", "--dkt_impls=fused,flax", f"--dkt_out={out}"]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "JAX fused" in proc.stdout and "interactions_per_s" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["impl"] for r in rows] == ["JAX fused", "JAX flax"]
    assert all(r["interactions_per_s"] > 0 and 0 < r["mfu"] for r in rows)


def test_dkt_data_benchmark_smoke(tmp_path):
    """launch.benchmark --model=dkt_data on tiny 3-line files (needs the optional torch extra)."""
    import numpy as np
    import pytest
    pytest.importorskip("torch")
    pytest.importorskip("pykt.models.dkt_plus")
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 10)):
        lines = []
        for _ in range(n):
            t = int(rng.integers(3, 30))
            lines += [str(t), ",".join(map(str, rng.integers(0, 6, t))), ",".join(map(str, rng.integers(0, 2, t)))]
        (tmp_path / f"skill_id_{split}.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "data.json"
    cmd = [sys.executable, "-m", "launch.benchmark", "--model=dkt_data", "--dataset=kt_csv/assist2009",
           f"--manual_dir={tmp_path}", f"--data_dir={tmp_path / 'tfds'}", "--epochs=2", "--hidden_size=8",
           "--batch_size=2", "--threads=1", f"--json={out}"]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and res["speedup_epoch"] > 0
    for side in ("ours", "pykt"):
        for k in ("epoch_s", "test_auc_n", "time_to_best_val_s", "mfu_real", "mfu_padded"):
            assert np.isfinite(res[side][k]), (side, k)
    assert res["ours"]["packed"] and not res["pykt"]["packed"] and "dktplus" in res
    assert res["ours"]["test"]["num_targets"] == res["pykt"]["test"]["num_targets"] > 0  # same targets
