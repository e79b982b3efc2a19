"""``launch.stem`` with 2 cooperating CPU processes (JAX's distributed runtime on 127.0.0.1, gloo): the same
results.json numbers as 1 process with the same flags, and every file written once, by process 0.

The 2-process run goes first, into a fresh data folder, so it also builds the data (process 0 alone, the other
waits); the 1-process run then reuses that build."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from tests.test_multiprocess import run_processes

# stem_tiny shrunk to what still runs every stage. Dropout off: its masks follow an example's position in the
# global batch, which interleaves the processes' rows (see tests/test_multiprocess.py).
STEM_FLAGS = ["--config=launch/configs/stem_tiny.py", "--config.dkt.model.dropout_rate=0.0",
              "--config.sklearn.models=('lr',)", "--config.sklearn.rfecv=False",
              "--config.sklearn.outer_folds=2", "--config.sklearn.outer_repeats=1",
              "--config.sklearn.inner_folds=2", "--config.sklearn.feature_sets=('SP','DKT+','DKT&SP','DKT+&SP')",
              "--config.sklearn.oracle_feature_sets=()", "--config.bkt.enabled=False"]


@pytest.fixture(scope="module")
def stem_runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("stem_data")  # one built dataset for both runs
    flags = STEM_FLAGS + [f"--config.data_dir={data / 'tfds'}", f"--config.manual_dir={data / 'raw'}",
                          f"--config.ground_truth_dir={data / 'ground_truth'}"]
    two = str(tmp_path_factory.mktemp("stem_2proc"))
    one = str(tmp_path_factory.mktemp("stem_1proc"))
    outs = run_processes("launch.stem", flags, two, 2)
    run_processes("launch.stem", flags, one, 1)
    return one, two, outs


def _results(workdir: str) -> dict:
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        return json.load(f)


def test_two_processes_match_one(stem_runs):
    one, two, _ = stem_runs
    r1, r2 = _results(one), _results(two)
    for name in ("dkt", "dkt_plus"):
        with open(os.path.join(two, "kt", name, "results.json"), encoding="utf-8") as f:
            assert "2 process(es)" in json.load(f)["mesh"]
        for key in ("auc_n", "auc_c", "w1", "w2"):
            np.testing.assert_allclose(r2["kt"][name]["test"][key], r1["kt"][name]["test"][key],
                                       rtol=2e-4, atol=1e-5)
    assert set(r2["comparison"]) == set(r1["comparison"]) == {f"{fs} \u2212 SP" for fs in ("DKT+", "DKT&SP",
                                                                                          "DKT+&SP")}
    for key, test in r1["comparison"].items():
        for field in ("delta_auc", "ci95"):
            np.testing.assert_allclose(r2["comparison"][key][field], test[field], atol=2e-3, err_msg=key)
    for a, b in zip(r1["selected_by_inner_cv"], r2["selected_by_inner_cv"]):
        assert a["feature_set"] == b["feature_set"]
        np.testing.assert_allclose(b["auc_mean"], a["auc_mean"], atol=2e-3)
    s1 = pd.read_csv(os.path.join(one, "knowledge_states", "knowledge_states_dkt_plus.csv"))
    s2 = pd.read_csv(os.path.join(two, "knowledge_states", "knowledge_states_dkt_plus.csv"))
    np.testing.assert_array_equal(s2["student_id"], s1["student_id"])
    np.testing.assert_allclose(s2.to_numpy(), s1.to_numpy(), atol=1e-4)


def test_two_processes_write_once(stem_runs):
    one, two, outs = stem_runs
    for name in ("dkt", "dkt_plus"):
        with open(os.path.join(two, "kt", name, "metrics.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        assert [r["epoch"] for r in rows if "train_loss" in r] == [1]  # one row per epoch, not one per process
    for path in ("classify/results.csv", "classify/submission.csv", "knowledge_states/knowledge_states_dkt.csv"):
        assert len(pd.read_csv(os.path.join(two, path))) == len(pd.read_csv(os.path.join(one, path))), path
    assert os.path.getsize(os.path.join(two, "report.md")) > 0
    assert not os.path.exists(os.path.join(two, "previous"))  # config.json written once, not moved aside
    (_, out0, _), (_, out1, _) = outs
    assert out0.count("acceptance:") == 1 and "acceptance" not in out1  # process 0 prints the summary
