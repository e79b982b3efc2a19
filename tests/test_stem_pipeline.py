"""Tiny end-to-end ``python -m launch.stem`` run (stem_tiny config) and its outputs; KT reuse; bad input."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("stem_tiny"))
    proc = subprocess.run([sys.executable, "-m", "launch.stem", "--config=launch/configs/stem_tiny.py",
                           f"--workdir={workdir}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir, proc.stdout


def test_tiny_run_writes_everything(tiny_run):
    workdir, stdout = tiny_run
    assert "acceptance" in stdout
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    table = pd.read_csv(os.path.join(workdir, "classify", "results.csv"))
    cells = set(zip(table["feature_set"], table["model"]))
    for fs in ("SP", "DKT", "DKT+", "DKT&SP", "DKT+&SP"):
        assert {(fs, "lr"), (fs, "lda")} <= cells
    baseline = table[table["feature_set"] == "baseline"].iloc[0]
    assert baseline["auc_mean"] == 0.5
    prevalence = results["num_stem"] / results["num_labelled"]
    assert abs(baseline["rmse_mean"] - np.sqrt(prevalence * (1 - prevalence))) < 0.03
    # Knowledge states: one row per labelled or submission student, one column per skill.
    ks = pd.read_csv(os.path.join(workdir, "knowledge_states", "knowledge_states_dkt_plus.csv"))
    assert ks.shape[1] == 1 + results["num_skills"]
    assert ks["student_id"].is_unique and len(ks) >= results["num_labelled"]
    values = ks.drop(columns="student_id").to_numpy()
    assert ((values > 0) & (values < 1)).all()
    # Submission in validation_test_label.csv order, one probability per row.
    sub = pd.read_csv(os.path.join(workdir, "classify", "submission.csv"))
    labels = pd.read_csv(os.path.join(workdir, "raw", "validation_test_label.csv"))
    assert sub["ITEST_id"].tolist() == labels["ITEST_id"].tolist()
    with open(os.path.join(workdir, "classify", "submission.txt"), encoding="utf-8") as f:
        assert len(f.read().strip().split(",")) == len(labels)
    for png in ("classify/roc_curves.png", "analyses/nlg_dkt_plus.png", "analyses/skill_correlation_heatmap.png"):
        assert os.path.getsize(os.path.join(workdir, png)) > 1000
    nlg = results["analyses"]["nlg"]["dkt_plus"]
    assert nlg["stem_n"] + nlg["non_stem_n"] == results["num_labelled"]
    assert results["analyses"]["ground_truth"]["labels_match"]
    report = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
    assert "## isSTEM classification" in report and "## The comparison" in report and "(oracle)" in report
    assert os.path.getsize(os.path.join(workdir, "classify", "paired_differences.png")) > 1000
    # 2 x 3 repeated outer folds: every cell has 6 splits; oracle and BKT rows are there.
    assert results["outer_repeats"] == 2 and results["outer_folds"] == 3
    selected = pd.read_csv(os.path.join(workdir, "classify", "selected_by_inner_cv.csv"))
    assert (selected["num_splits"] == 6).all()
    assert {"BKT&SP", "oracle:SP+true_mastery", "oracle:SP+true_latents"} <= set(selected["feature_set"])


def test_same_config_and_seed_give_the_same_tables(tiny_run, tmp_path):
    """A second run of the tiny config (same data and trained KT models, fresh sklearn stage, no cache) gives
    the same per-model table, the same per-feature-set selection and the same paired comparison."""
    workdir, _ = tiny_run
    for sub in ("raw", "ground_truth", "tfds", "kt"):
        shutil.copytree(os.path.join(workdir, sub), tmp_path / sub)
    proc = subprocess.run([sys.executable, "-m", "launch.stem", "--config=launch/configs/stem_tiny.py",
                           f"--workdir={tmp_path}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("results.csv", "selected_by_inner_cv.csv"):
        first = pd.read_csv(os.path.join(workdir, "classify", name))
        pd.testing.assert_frame_equal(first, pd.read_csv(tmp_path / "classify" / name))
    comparisons = [json.load(open(os.path.join(d, "results.json"), encoding="utf-8"))["comparison"]
                   for d in (workdir, str(tmp_path))]
    assert comparisons[0] == comparisons[1]
    key = "DKT+&SP \u2212 SP"
    assert {"delta_auc", "ci95", "p"} <= set(comparisons[0][key]) and len(comparisons[0][key]["ci95"]) == 2
    assert {"DKT&SP \u2212 SP", "oracle:SP+true_mastery \u2212 SP"} <= set(comparisons[0])


def test_trained_models_are_reused(tiny_run):
    from launch.configs import stem_tiny
    from launch import train_stem
    from launch.runtime.workdir import Workdir

    workdir, _ = tiny_run
    params_file = os.path.join(workdir, "kt", "dkt", "best_params.msgpack")
    before = os.path.getmtime(params_file)
    params, info = train_stem.train_or_reuse(stem_tiny.get_config(), "dkt", os.path.join(workdir, "tfds"),
                                           Workdir(workdir))
    assert os.path.getmtime(params_file) == before and info["best_epoch"] == 1
    assert params["output"]["kernel"].shape[1] == 12


def test_missing_release_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "launch.stem", "--config=launch/configs/stem_tiny.py",
                           f"--workdir={tmp_path}", "--config.generate=False",
                           f"--config.manual_dir={tmp_path / 'nowhere'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "nowhere" in proc.stderr and "Traceback" not in proc.stderr
