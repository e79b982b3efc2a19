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
