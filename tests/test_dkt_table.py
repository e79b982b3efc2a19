"""launch.dkt_table end to end on tiny 3-line files written here: 2 datasets x DKT/DKT+ x 1 seed, 1 epoch; the
outputs (table.md/json/png), the published anchors, and resuming (finished runs are not trained again)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from launch import dkt_table
from tests.conftest import REPO_ROOT


def _three_line(n_students: int, skill_ids: list[int], seed: int, trailing: bool = False) -> str:
    rng = np.random.default_rng(seed)
    tail = "," if trailing else ""
    out = []
    for _ in range(n_students):
        t = int(rng.integers(2, 14))
        q = rng.choice(skill_ids, t)
        a = rng.integers(0, 2, t)
        out.append(f"{t}\n" + ",".join(map(str, q)) + tail + "\n" + ",".join(map(str, a)) + tail + "\n")
    return "".join(out)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def test_dkt_table_tiny_two_datasets_and_resume(tmp_path):
    data = tmp_path / "clone" / "data"
    _write(str(data / "skill_id_train.csv"), _three_line(60, [0, 3, 7, 12], 0))
    _write(str(data / "skill_id_test.csv"), _three_line(12, [0, 3, 7, 12], 1))
    _write(str(data / "STATICS" / "STATICS_train.csv"), _three_line(60, [5, 40, 900], 2, trailing=True))
    _write(str(data / "STATICS" / "STATICS_test.csv"), _three_line(12, [5, 40, 900], 3, trailing=True))
    wd = tmp_path / "table"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "launch.dkt_table", f"--manual_dir={tmp_path / 'clone'}", f"--workdir={wd}",
           "--datasets=assist2009,statics2011", "--seeds=1", "--num_epochs=1", "--hidden_size=8", "--batch_size=8"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.load(open(wd / "table.json"))
    for ds in ("assist2009", "statics2011"):
        for model in ("dkt", "dktplus"):
            cell = table[ds][model]
            assert cell["n"] == 1 and 0.0 <= cell["mean"]["auc_n"] <= 1.0 and cell["std"]["auc_n"] == 0.0
            assert os.path.exists(wd / ds / model / "seed0" / "results.json")
            cfg = json.load(open(wd / ds / model / "seed0" / "config.json"))["config"]
            assert cfg["model"]["hidden_size"] == 8 and cfg["num_epochs"] == 1 and cfg["batch_size"] == 8
            assert (cfg["loss"]["lambda_w2"] > 0) == (model == "dktplus")
    assert table["assist2009"]["dkt"]["anchor_auc_n"] == 0.8214
    md = (wd / "table.md").read_text()
    assert "| ASSIST2009 | DKT | 1/1 |" in md and "deepknowledgetracing" in md and "pyKT paper" in md
    assert "0.8214 [1]" in md and "STATICS2011: ΔAUC(N)" in md
    assert (wd / "table.png").stat().st_size > 0 and "AUC(N)" in proc.stdout
    # resume: nothing left to train, so no run starts; a third dataset not run shows as such
    before = os.path.getmtime(wd / "assist2009" / "dkt" / "seed0" / "results.json")
    dkt_table.run_table(str(wd), str(tmp_path / "clone"), ["assist2009", "statics2011"], ["dkt", "dktplus"], 1,
                        num_epochs=1, hidden_size=8, batch_size=8)
    assert os.path.getmtime(wd / "assist2009" / "dkt" / "seed0" / "results.json") == before
    out = dkt_table.write_outputs(str(wd), ["assist2009", "assist2015"], ["dkt"], 3)
    assert out["assist2009"]["dkt"]["n"] == 1 and out["assist2015"]["dkt"]["n"] == 0
    assert "| ASSIST2015 | DKT | 0/3 | not run" in (wd / "table.md").read_text()
