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
