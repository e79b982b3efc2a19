"""Multi-process training on JAX's own distributed runtime: 2 CPU processes on 127.0.0.1 (gloo collectives)
train the tiny DKT+ config with the same global batch as 1 process and reach the same metrics; the workdir
is written once (metrics, results) and checkpoints are saved cooperatively."""
from __future__ import annotations

import json
import os
import socket
import sys

import numpy as np
import pytest

from tests import multidevice
from tests.conftest import REPO_ROOT

# Dropout off: its masks follow an example's position in the global batch, which interleaves the processes'
# rows (the batch holds the same examples in another order), so only the dropout-free step is comparable.
DKT_FLAGS = ["--config=launch/configs/dkt_tiny.py", "--config.model.dropout_rate=0.0", "--config.num_epochs=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(module: str, flags: list[str], workdir: str, num_processes: int, timeout: int = 600) -> list:
    """Runs ``python -m module`` as ``num_processes`` cooperating processes (1 CPU device each).

    Outputs go to files (:class:`tests.multidevice.Background`), not pipes: a process that fills a pipe
    nobody reads yet would stall in a collective and hang the others."""
    flags_xla = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1").strip()
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu", XLA_FLAGS=flags_xla)
    if num_processes > 1:
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES=str(num_processes))
    jobs = [multidevice.start([sys.executable, "-m", module, *flags, f"--workdir={workdir}"],
                              env=dict(env, JAX_PROCESS_ID=str(i)) if num_processes > 1 else env,
                              timeout=timeout)
            for i in range(num_processes)]
    try:
        outs = [(p.returncode, p.stdout, p.stderr) for p in (job.result() for job in jobs)]
    finally:
        for job in jobs:
            job.kill()
    for rc, _, err in outs:
        assert rc == 0, err[-4000:]
    return outs


@pytest.fixture(scope="module")
def dkt_runs(tmp_path_factory):
    one = str(tmp_path_factory.mktemp("dkt_1proc"))
    two = str(tmp_path_factory.mktemp("dkt_2proc"))
    data = str(tmp_path_factory.mktemp("dkt_data"))  # one built dataset for both runs
    flags = DKT_FLAGS + [f"--config.data_dir={data}/tfds", f"--config.manual_dir={data}/raw"]
    run_processes("launch.dkt", flags, one, 1)
    run_processes("launch.dkt", flags, two, 2)
    return one, two


def test_two_processes_match_one(dkt_runs):
    one, two = dkt_runs
    r1 = json.load(open(os.path.join(one, "results.json")))
    r2 = json.load(open(os.path.join(two, "results.json")))
    assert "2 process(es)" in r2["mesh"] and "1 process(es)" in r1["mesh"]
    for key in ("auc_n", "auc_c", "w1", "w2", "m1", "m2"):
        np.testing.assert_allclose(r2["test"][key], r1["test"][key], rtol=2e-4, atol=1e-5)
    for h1, h2 in zip(r1["history"], r2["history"]):
        np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=2e-4)
        np.testing.assert_allclose(h2["val_auc_n"], h1["val_auc_n"], rtol=2e-4)


def test_two_processes_write_once(dkt_runs):
    _, two = dkt_runs
    with open(os.path.join(two, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    epochs = [r["epoch"] for r in rows if "epoch" in r and "train_loss" in r]
    assert epochs == [1, 2]  # one row per epoch, not one per process
    steps = sorted(int(d) for d in os.listdir(os.path.join(two, "checkpoints")) if d.isdigit())
    assert len(steps) == 2  # keep_checkpoints = 2, saved together


def test_fdp_fold_two_processes_match_one(tmp_path):
    """One LOSO fold of the tiny FDP config (DropPath off: its per-example masks follow batch positions).

    Learning rate 1e-5 as in tests/test_fdp_steps.py's device-count parity: Adam turns the rounding-level
    gradient differences of BN-cancelled parameters (the global batch's rows come in another order) into
    lr-sized steps, so at 1e-3 the two runs drift apart by ~1% after a few steps."""
    flags = ["--config=launch/configs/fdp_tiny.py", "--config.model.path_dropout=0.0",
             "--config.optimizer.learning_rate=1e-5",
             "--config.data.subjects=('sub01',)", f"--config.data.synthetic.out_dir={tmp_path / 'raw'}",
             f"--config.data.data_dir={tmp_path / 'tfds'}"]
    run_processes("launch.fdp", flags, str(tmp_path / "one"), 1)
    run_processes("launch.fdp", flags, str(tmp_path / "two"), 2)
    r1 = json.load(open(tmp_path / "one" / "results.json"))
    r2 = json.load(open(tmp_path / "two" / "results.json"))
    assert "2 process(es)" in r2["mesh"]
    p1 = np.load(tmp_path / "one" / "folds" / "sub01" / "predictions.npz")
    p2 = np.load(tmp_path / "two" / "folds" / "sub01" / "predictions.npz")
    np.testing.assert_array_equal(p2["labels"], p1["labels"])
    np.testing.assert_allclose(p2["logits"], p1["logits"], rtol=2e-3, atol=2e-3 * np.abs(p1["logits"]).max())
    np.testing.assert_allclose(r2["pooled"]["di_mse"], r1["pooled"]["di_mse"], rtol=2e-3)
    rows = [json.loads(line) for line in open(tmp_path / "two" / "metrics.jsonl")]
    train_rows = [r for r in rows if r.get("prefix") == "fold_sub01/train"]
    assert len(train_rows) == 3  # num_steps=3, log_every=1: one row per step, not one per process
