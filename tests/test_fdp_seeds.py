"""Training seeds, the bootstrap interval and the mean-DI baseline of the FDP LOSO loop (launch.train_fdp,
fdp_jax.metrics, fdp_jax.report), and the bitwise determinism of a run on this machine.

The loop runs are the real thing on ``launch/configs/fdp_tiny.py`` restricted to one LOSO fold (``sub01``) and
3 steps; every run of this module shares one generated + built synthetic release (``data_root``) and the
compiled steps (same shapes as ``fdp_tiny``, so they come from the test session's compilation cache).
"""
from __future__ import annotations

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from fdp_jax import input_pipeline, metrics, report
from launch import train_fdp
from launch.configs import fdp_tiny

SUBJECT = "sub01"
ARRAYS = ("logits", "predictions", "labels", "di_pred", "di_target", "di_baseline_sse", "di_baseline_count", "step")


def seeds_config(data_root: str, **overrides) -> ml_collections.ConfigDict:
    """``fdp_tiny`` on the release under ``data_root``: one fold (``sub01``), 3 steps, a checkpoint at the end."""
    c = fdp_tiny.get_config()
    c.data.synthetic.out_dir = os.path.join(data_root, "synthetic")
    c.data.data_dir = os.path.join(data_root, "tfds")
    c.data.subjects = (SUBJECT,)
    c.num_steps = 3
    c.log_every = 3
    c.checkpoint_every = 100
    for key, value in overrides.items():
        c[key] = value
    return c


def load_fold(workdir, subject: str = SUBJECT) -> dict:
    with np.load(os.path.join(workdir, "folds", subject, "predictions.npz")) as z:
        return dict(z)


def canonical(value) -> str:
    """Exact (repr-level) text of a results dict: float bits compare equal, NaN == NaN."""
    return json.dumps(value, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    """Where the module's runs share the synthetic release and its TFDS build (made by the first run)."""
    return str(tmp_path_factory.mktemp("fdp_seeds_data"))


@pytest.fixture(scope="module")
def plain(data_root, tmp_path_factory):
    """One single-seed run (seed 0): (workdir, results)."""
    workdir = tmp_path_factory.mktemp("plain")
    return workdir, train_fdp.train_and_evaluate(seeds_config(data_root), str(workdir))


@pytest.fixture(scope="module")
def two_seeds(data_root, tmp_path_factory):
    """``seeds=(0, 1)``: its seed_0 is the same config as ``plain`` (seed 0, seeds ()) run again in this process by
    ``train_and_evaluate`` into another workdir, with its own trace and compilation of every step."""
    workdir = tmp_path_factory.mktemp("two_seeds")
    return workdir, train_fdp.train_and_evaluate(seeds_config(data_root, seeds=(0, 1)), str(workdir))


# ------------------------------------------------------------------------------------------ the loop
def test_same_config_and_seed_twice_is_bitwise_identical(plain, two_seeds):
    (wd_a, res_a), (wd_seeds, _) = plain, two_seeds
    wd_b = wd_seeds / "seed_0"
    config_a, config_b = (json.loads((wd / "config.json").read_text())["config"] for wd in (wd_a, wd_b))
    assert config_a == config_b  # the same run, twice
    fold_a, fold_b = load_fold(wd_a), load_fold(wd_b)
    for key in ARRAYS:
        assert fold_a[key].dtype == fold_b[key].dtype and fold_a[key].shape == fold_b[key].shape, key
        assert fold_a[key].tobytes() == fold_b[key].tobytes(), f"{key} differs between two identical runs"
    pooled_b = json.loads((wd_b / "results.json").read_text())["pooled"]
    assert canonical(json.loads((wd_a / "results.json").read_text())["pooled"]) == canonical(pooled_b)
    assert canonical(res_a["pooled"]) == canonical(pooled_b)


def test_single_seed_run_reports_bootstrap_interval_and_di_baseline(plain, data_root):
    workdir, results = plain
    pooled = results["pooled"]
    ci = pooled["bootstrap_ci95"]
    assert ci["resamples"] == metrics.BOOTSTRAP_RESAMPLES and ci["method"] == "percentile"
    for key in ("uf1", "uar"):
        assert 0.0 <= ci[key][0] <= ci[key][1] <= 1.0
    # The baseline stored by the loop is the fold's mean training DI target scored on its test targets.
    clips, _ = input_pipeline.load_dataset("casme2/5class", os.path.join(data_root, "tfds"))
    train_di = clips.di_target[clips.subject != SUBJECT].astype(np.float32) / 255.0
    fold = load_fold(workdir)
    expected = metrics.mean_di_baseline(train_di, fold["di_target"])
    assert float(fold["di_baseline_sse"]) == pytest.approx(float(expected["di_baseline_sse"]), rel=1e-12)
    assert int(fold["di_baseline_count"]) == fold["di_target"].size
    assert pooled["di_baseline_mse"] == pytest.approx(float(expected["di_baseline_sse"]) / fold["di_target"].size)
    assert pooled["di_psnr_gain_db"] == pytest.approx(pooled["di_psnr"] - pooled["di_baseline_psnr"])
    on_disk = json.loads((workdir / "results.json").read_text())["pooled"]
    assert on_disk["bootstrap_ci95"] == ci and on_disk["di_baseline_mse"] == pooled["di_baseline_mse"]
    text = (workdir / "report.md").read_text()
    assert "95% bootstrap interval" in text and "DI PSNR gain over the mean baseline (dB)" in text


def test_old_predictions_without_baseline_still_load(plain, data_root, tmp_path):
    """A workdir whose predictions.npz predates the baseline resumes (nothing retrained): baseline 'missing'."""
    old = tmp_path / "old"
    shutil.copytree(plain[0], old, ignore=shutil.ignore_patterns(".lock"))
    arrays = {k: v for k, v in load_fold(old).items() if not k.startswith("di_baseline")}
    np.savez(old / "folds" / SUBJECT / "predictions.npz", **arrays)
    results = train_fdp.train_and_evaluate(seeds_config(data_root), str(old))
    pooled = results["pooled"]
    assert pooled["di_baseline_mse"] is None and pooled["di_baseline_missing"] == [SUBJECT]
    assert "di_psnr_gain_db" not in pooled and pooled["uf1"] == plain[1]["pooled"]["uf1"]
    assert "Baseline missing" in (old / "report.md").read_text()


def test_two_seeds_write_per_seed_runs_the_aggregate_and_resume_without_training(two_seeds, data_root, monkeypatch):
    workdir, results = two_seeds
    assert results["seeds"] == [0, 1]
    per_seed = {}
    for seed in (0, 1):
        seed_dir = workdir / f"seed_{seed}"
        assert (seed_dir / "report.md").exists() and (seed_dir / "folds" / SUBJECT / "predictions.npz").exists()
        on_disk = json.loads((seed_dir / "results.json").read_text())
        assert on_disk["config"]["seed"] == seed and on_disk["config"]["seeds"] == []
        per_seed[seed] = on_disk["pooled"]
    assert not (workdir / "seed_0" / "tfds").exists()  # the seeds share one release (here: the module's)
    assert load_fold(workdir / "seed_0")["logits"].tobytes() != load_fold(workdir / "seed_1")["logits"].tobytes()
    summary = results["summary"]
    assert summary["std_ddof"] == 1 and summary["num_seeds"] == 2
    for key in ("uf1", "uar", "accuracy", "di_mse", "di_psnr", "di_baseline_psnr", "di_psnr_gain_db"):
        values = np.array([per_seed[0][key], per_seed[1][key]])
        assert summary[key]["mean"] == np.mean(values), key
        assert summary[key]["std"] == np.std(values, ddof=1), key
    rows = {row["seed"]: row for row in results["per_seed"]}
    assert rows[1]["uf1"] == per_seed[1]["uf1"] and rows[1]["bootstrap_ci95"] == per_seed[1]["bootstrap_ci95"]
    aggregate = json.loads((workdir / "results.json").read_text())
    assert canonical(aggregate["summary"]) == canonical(summary) and aggregate["seeds"] == [0, 1]
    text = (workdir / "report.md").read_text()
    assert "mean ± std (ddof=1)" in text and "seed_1/report.md" in text

    def no_training(*args, **kwargs):
        raise AssertionError("a finished several-seed workdir must not be retrained")

    monkeypatch.setattr(train_fdp, "train_fold", no_training)
    resumed = train_fdp.train_and_evaluate(seeds_config(data_root, seeds=(0, 1)), str(workdir))
    assert canonical(resumed["summary"]) == canonical(summary)


def test_bad_seeds_are_config_errors(tmp_path):
    from launch.runtime.cli import ConfigError

    for seeds in ((0, 0), (-1,), ("a",)):
        with pytest.raises(ConfigError, match="config.seeds"):
            train_fdp.seed_list(ml_collections.ConfigDict({"seeds": seeds}))
    assert train_fdp.seed_list(ml_collections.ConfigDict({"seeds": ()})) == []


# ------------------------------------------------------------------------------------------ units
def _noisy_predictions(n: int = 90, num_classes: int = 3, accuracy: float = 0.7, seed: int = 1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    wrong = rng.random(n) > accuracy
    predictions = np.where(wrong, (labels + rng.integers(1, num_classes, n)) % num_classes, labels)
    return labels, predictions


def test_bootstrap_is_deterministic_and_contains_the_point_estimate():
    labels, predictions = _noisy_predictions()
    ci = metrics.bootstrap_ci(labels, predictions, 3)
    assert ci == metrics.bootstrap_ci(labels, predictions, 3)  # fixed numpy Generator seed
    assert ci["uf1"] != metrics.bootstrap_ci(labels, predictions, 3, seed=1)["uf1"]
    point = metrics.classification_metrics(labels, predictions, 3)
    for key in ("uf1", "uar"):
        assert ci[key][0] < point[key] < ci[key][1]
        assert ci[key][1] - ci[key][0] < 0.4
    assert ci["resamples"] == 1000 and ci["level"] == 0.95


def test_bootstrap_scores_each_resample_like_classification_metrics():
    labels, predictions = _noisy_predictions(n=40, num_classes=4, accuracy=0.5)
    resamples = 40
    indices = metrics.bootstrap_indices(len(labels), resamples)
    by_sklearn = [metrics.classification_metrics(labels[i], predictions[i], 4) for i in indices]
    ci = metrics.bootstrap_ci(labels, predictions, 4, resamples=resamples)
    for key in ("uf1", "uar"):
        np.testing.assert_allclose(ci[key], np.percentile([m[key] for m in by_sklearn], [2.5, 97.5]), rtol=1e-12)


def test_bootstrap_degenerate_all_correct():
    labels = np.repeat([0, 1, 2], 40)
    ci = metrics.bootstrap_ci(labels, labels, 3)
    assert ci["uf1"] == [1.0, 1.0] and ci["uar"] == [1.0, 1.0]
    # One class only, 3 configured: UF1 counts the 2 absent classes as 0 (as classification_metrics does).
    single = metrics.bootstrap_ci(np.zeros(10, np.int64), np.zeros(10, np.int64), 3)
    assert single["uf1"] == pytest.approx([1 / 3, 1 / 3]) and single["uar"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="outside"):
        metrics.bootstrap_ci([0, 3], [0, 1], 3)


def test_mean_di_baseline_by_hand_and_pooled_like_di_mse():
    train = np.array([[[0.0, 1.0]], [[1.0, 1.0]]])        # mean image [[0.5, 1.0]]
    test = np.array([[[0.5, 0.0]]])                         # errors 0 and 1 -> SSE 1 over 2 pixels
    fold_a = metrics.mean_di_baseline(train, test)
    assert float(fold_a["di_baseline_sse"]) == 1.0 and int(fold_a["di_baseline_count"]) == 2
    fold_b = metrics.mean_di_baseline(np.zeros((3, 1, 2)), np.full((2, 1, 2), 0.5))  # SSE 4 * 0.25 = 1 over 4
    assert float(fold_b["di_baseline_sse"]) == 1.0 and int(fold_b["di_baseline_count"]) == 4
    folds = [{"subject": "a", "labels": [0], "predictions": [0], "di_pred": test, "di_target": test, **fold_a},
             {"subject": "b", "labels": [1, 1], "predictions": [1, 0], "di_pred": np.full((2, 1, 2), 0.4),
              "di_target": np.full((2, 1, 2), 0.5), **fold_b}]
    pooled = metrics.pooled_results(folds, 2)
    assert pooled["di_baseline_mse"] == pytest.approx(2.0 / 6.0)  # (1 + 1) / (2 + 4): pixels pooled, not folds
    assert pooled["di_mse"] == pytest.approx(4 * 0.01 / 6)
    assert pooled["di_baseline_psnr"] == pytest.approx(10 * np.log10(3.0))
    assert pooled["di_psnr_gain_db"] == pytest.approx(pooled["di_psnr"] - pooled["di_baseline_psnr"])
    assert [r["di_baseline_mse"] for r in pooled["per_fold"]] == [0.5, 0.25]
    # A fold stored before the baseline existed: reported as missing, nothing crashes.
    old = {k: v for k, v in folds[1].items() if not k.startswith("di_baseline")}
    pooled_old = metrics.pooled_results([folds[0], old], 2)
    assert pooled_old["di_baseline_mse"] is None and pooled_old["di_baseline_missing"] == ["b"]
    assert "Baseline missing" in "\n".join(report.di_baseline_lines(pooled_old))
    assert "DI PSNR gain over the mean baseline (dB)" in "\n".join(report.di_baseline_lines(pooled))


def test_seed_summary_and_its_report():
    rows = [{"seed": 0, "workdir": "seed_0", "uf1": 0.5, "uar": 0.4, "num_samples": 6},
            {"seed": 3, "workdir": "seed_3", "uf1": 0.7, "uar": 0.8, "num_samples": 6}]
    summary = metrics.seed_summary(rows)
    assert summary["uf1"] == {"mean": pytest.approx(0.6), "std": pytest.approx(np.sqrt(0.02))}
    assert "di_mse" not in summary and summary["std_ddof"] == 1
    assert metrics.seed_summary(rows[:1])["uf1"]["std"] is None
    text = report.render_seeds_markdown({"dataset": "casme2/5class", "seeds": [0, 3], "per_seed": rows,
                                         "summary": summary})
    assert "0.6000 ± 0.1414" in text and "(seed_3/report.md)" in text
