"""LOSO loop of fdp_jax.train: end to end, resume (between and within folds), 8 vs 1 devices.

The loop's own behaviour is tested with small stand-ins (tests/fdp_standins.py); the end-to-end run
with the real builders, pipeline and FDP model is ``test_tiny_config_end_to_end``.
"""
from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
import pytest

from fdp_jax import train as fdp_train
from tests import fdp_standins
from tests.multidevice import run_with_devices


def standin_config(**overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_steps = 12
    c.eval_every = 0
    c.log_every = 2
    c.checkpoint_every = 4
    c.async_checkpointing = False
    c.batch_size = 6
    c.selection_metric = "accuracy"
    c.select_on_test = False
    c.num_devices = 0
    c.optimizer = ml_collections.ConfigDict({"learning_rate": 1e-2})
    c.data = ml_collections.ConfigDict({"name": "standin", "validation_subjects": 0, "subjects": ()})
    c.model = ml_collections.ConfigDict({"mode": "paper", "size": "standin"})
    c.update(overrides)
    return c


class Interrupt(Exception):
    pass


def run(workdir, config, interrupt_at=None, calls=None, num_subjects=3):
    def on_step(subject, step):
        if calls is not None:
            calls.append((subject, step))
        if interrupt_at == (subject, step):
            raise Interrupt(f"interrupted at {interrupt_at}")
    components = fdp_standins.make_components(fdp_standins.make_clips(num_subjects, 6))
    return fdp_train.train_and_evaluate(config, str(workdir), components=components, on_step=on_step)


def fold_logits(workdir, subject):
    return np.load(os.path.join(workdir, "folds", subject, "predictions.npz"))["logits"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, run(workdir, standin_config())


def test_loso_end_to_end_writes_reports(reference_run):
    tmp_path, results = reference_run
    pooled = results["pooled"]
    assert [r["subject"] for r in pooled["per_fold"]] == ["01", "02", "03"]
    assert pooled["num_samples"] == 18
    assert pooled["uf1"] > 0.6  # the blob direction is easy: the loop really trains and predicts
    for name in ("results.json", "report.md", "config.json", "metrics.jsonl", "plots/confusion_matrix.png",
                 "plots/dynamic_images.png", "plots/training_curves.png"):
        assert os.path.exists(tmp_path / name), name
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["pooled"]["uf1"] == pytest.approx(pooled["uf1"])
    assert "LEAKY" not in (tmp_path / "report.md").read_text()
    assert os.listdir(tmp_path / "tensorboard")


def test_resume_between_and_within_folds_matches_uninterrupted_run(tmp_path, reference_run):
    config = standin_config()
    reference_dir, reference = reference_run
    wd = tmp_path / "resumed"
    with pytest.raises(Interrupt):  # within fold 02, after its step-4 checkpoint
        run(wd, config, interrupt_at=("02", 6))
    assert os.path.exists(wd / "folds/01/predictions.npz")
    assert not os.path.exists(wd / "folds/02/predictions.npz")
    with pytest.raises(Interrupt):  # between folds: fold 02 finishes, stop before fold 03's first step
        calls = []
        run(wd, config, interrupt_at=("03", 0), calls=calls)
    assert calls[0] == ("02", 4), "fold 02 must continue from its latest checkpoint (step 4)"
    assert all(subject != "01" for subject, _ in calls), "a finished fold must not be retrained"
    calls = []
    resumed = run(wd, config, calls=calls)
    assert {s for s, _ in calls} == {"03"} and calls[0] == ("03", 0)
    for subject in ("01", "02", "03"):
        np.testing.assert_allclose(fold_logits(wd, subject), fold_logits(reference_dir, subject),
                                   rtol=1e-5, atol=1e-5)
    assert resumed["pooled"]["uf1"] == pytest.approx(reference["pooled"]["uf1"])


def test_select_on_test_is_labelled_leaky_and_resumes_with_its_best_step(tmp_path):
    config = standin_config(select_on_test=True, eval_every=4, checkpoint_every=4)
    reference = run(tmp_path / "ref", config, num_subjects=2)
    assert reference["select_on_test"] is True and "TEST subject" in reference["selection"]
    assert "LEAKY" in (tmp_path / "ref" / "report.md").read_text()
    with pytest.raises(Interrupt):  # after the step-8 checkpoint: the best step so far must survive
        run(tmp_path / "resumed", config, interrupt_at=("01", 10), num_subjects=2)
    resumed = run(tmp_path / "resumed", config, num_subjects=2)
    assert ([r["selected_step"] for r in resumed["pooled"]["per_fold"]]
            == [r["selected_step"] for r in reference["pooled"]["per_fold"]])
    assert {r["selected_step"] for r in reference["pooled"]["per_fold"]} <= {4, 8, 12}
    for subject in ("01", "02"):
        np.testing.assert_allclose(fold_logits(tmp_path / "resumed", subject),
                                   fold_logits(tmp_path / "ref", subject), rtol=1e-5, atol=1e-5)


def test_validation_selection_uses_training_subjects_only(tmp_path):
    results = run(tmp_path, standin_config(eval_every=4, data={"name": "standin", "validation_subjects": 1,
                                                               "subjects": ()}))
    assert results["select_on_test"] is False and "validation" in results["selection"]
    assert "LEAKY" not in (tmp_path / "report.md").read_text()
    assert {r["selected_step"] for r in results["pooled"]["per_fold"]} <= {4, 8, 12}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("prefix") == "fold_01/select" for r in records)


def test_8_devices_agree_with_1_device():
    code = """
    import json, tempfile
    import numpy as np
    from launch.runtime.metric_writers import read_jsonl
    from tests.test_fdp_loso import run, standin_config, fold_logits
    out = {}
    for n in (1, 8):
        wd = tempfile.mkdtemp()
        res = run(wd, standin_config(num_devices=n, batch_size=8, num_steps=6), num_subjects=2)
        out[n] = {"mesh": res["mesh"], "uf1": res["pooled"]["uf1"],
                  "logits": np.concatenate([fold_logits(wd, s) for s in ("01", "02")]).tolist(),
                  "losses": [r["loss"] for r in read_jsonl(wd + "/metrics.jsonl") if "loss" in r]}
    print(json.dumps(out))
    """
    out = run_with_devices(code, 8)
    assert "'data': 8" in out["8"]["mesh"] and "'data': 1" in out["1"]["mesh"]
    # The train steps are the same computation up to float reduction order, which Adam amplifies for
    # near-zero gradients (|update| <= lr = 1e-2 per step): losses agree to 1e-3, logits to 2e-2 after
    # 6 steps, and the predicted classes exactly.
    np.testing.assert_allclose(out["8"]["losses"], out["1"]["losses"], rtol=1e-3)
    logits_8, logits_1 = np.array(out["8"]["logits"]), np.array(out["1"]["logits"])
    np.testing.assert_allclose(logits_8, logits_1, atol=2e-2)
    np.testing.assert_array_equal(logits_8.argmax(-1), logits_1.argmax(-1))
    assert out["8"]["uf1"] == pytest.approx(out["1"]["uf1"])


def shared_jax_cache(tmp_path_factory) -> str:
    """A persistent-compilation-cache folder shared by this session's tiny FDP runs (this file's CLI run
    and the notebook test compile the same tiny model: the second one reads it from the cache)."""
    path = tmp_path_factory.getbasetemp() / "fdp_tiny_jax_cache"
    path.mkdir(exist_ok=True)
    return str(path)


def test_tiny_config_end_to_end_and_predict_cli(tmp_path, tmp_path_factory):
    """The real thing, tiny, through the CLIs: synthetic CASME II release -> TFDS build -> grain folds ->
    FDP -> report (launch.fdp), then launch.fdp_predict on one clip folder of that release."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=shared_jax_cache(tmp_path_factory))
    workdir = tmp_path / "tiny"
    proc = subprocess.run([sys.executable, "-m", "launch.fdp", "--config=launch/configs/fdp_tiny.py",
                           f"--workdir={workdir}"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"folds": 3' in proc.stdout and "report.md" in proc.stdout
    results = json.loads((workdir / "results.json").read_text())
    pooled = results["pooled"]
    assert [r["subject"] for r in pooled["per_fold"]] == ["sub01", "sub02", "sub03"]
    assert pooled["num_samples"] == sum(r["n"] for r in pooled["per_fold"]) > 0
    assert 0.0 <= pooled["uf1"] <= 1.0 and np.isfinite(pooled["di_mse"])
    assert (workdir / "plots" / "confusion_matrix.png").exists()
    assert len(results["class_names"]) == 5
    clip_dir = sorted((workdir / "synthetic" / "casme2" / "Cropped" / "sub02").iterdir())[0]
    out_png = tmp_path / "clip_di.png"
    proc = subprocess.run([sys.executable, "-m", "launch.fdp_predict", f"--checkpoint={workdir}",
                           f"--frames={clip_dir}", f"--out_png={out_png}", "--crop=none"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    assert set(printed["probabilities"]) == set(results["class_names"])
    assert sum(printed["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert out_png.exists()


def test_learning_rate_schedule():
    opt = ml_collections.ConfigDict(dict(learning_rate=2e-3, schedule="constant", warmup_steps=0))
    assert fdp_train.learning_rate_schedule(opt, 100) == 2e-3
    opt.schedule, opt.warmup_steps = "warmup_cosine", 10
    lr = fdp_train.learning_rate_schedule(opt, 100)
    np.testing.assert_allclose([float(lr(0)), float(lr(10)), float(lr(55)), float(lr(100))],
                               [0.0, 2e-3, 1e-3, 0.0], atol=1e-9)
    opt.warmup_steps = 0
    np.testing.assert_allclose(float(fdp_train.learning_rate_schedule(opt, 100)(0)), 2e-3)
    with pytest.raises(ValueError, match="warmup_steps"):
        opt.warmup_steps = 100
        fdp_train.learning_rate_schedule(opt, 100)
    with pytest.raises(ValueError, match="schedule"):
        opt.schedule = "linear"
        fdp_train.learning_rate_schedule(opt, 100)
