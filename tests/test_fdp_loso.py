"""The FDP LOSO loop (launch.train_fdp): end to end, resume (between and within folds), model selection,
8 vs 1 devices, and the CLIs.

Every run is the real thing (synthetic CASME II release -> TFDS build -> grain folds -> tiny FDP -> report)
on a small config: ``launch/configs/fdp_tiny.py`` (3 subjects x 6 clips, batch 4, the tiny model) with fewer
folds and steps. All runs of this module share one generated + built release, and the steps have the shapes
of ``fdp_tiny`` so the CLI runs (and the notebook test) load them from the test session's compilation cache.
A run is interrupted by a train step that raises (``interrupting``), not by a hook of the loop.
"""
from __future__ import annotations

import contextlib
import json
import os

import ml_collections
import numpy as np
import pytest

from fdp_jax import train_steps
from launch import train_fdp
from launch.configs import fdp_tiny
from tests.multidevice import start, start_with_devices

SUBJECTS = ("sub01", "sub02")  # the LOSO folds of most runs; sub03 is always a training subject


def small_config(data_root: str, **overrides) -> ml_collections.ConfigDict:
    """``fdp_tiny`` on the release under ``data_root``, 2 folds of 4 steps, a checkpoint every 2 steps."""
    c = fdp_tiny.get_config()
    c.data.synthetic.out_dir = os.path.join(data_root, "synthetic")
    c.data.data_dir = os.path.join(data_root, "tfds")
    c.data.subjects = SUBJECTS
    c.num_steps = 4
    c.log_every = 2
    c.checkpoint_every = 2
    for key, value in overrides.items():
        target = c
        *parents, name = key.split(".")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return c


# The module's in-process runs share their traced and compiled steps (as the seeds of one launch.fdp run do):
# train_and_evaluate compiles once per (model, optimiser, loss, num_steps, mesh).
STEPS_CACHE: dict = {}


def run(config: ml_collections.ConfigDict, workdir) -> dict:
    return train_fdp.train_and_evaluate(config, str(workdir), steps_cache=STEPS_CACHE)


class Interrupt(Exception):
    pass


@contextlib.contextmanager
def interrupting(monkeypatch, at: tuple[str, int] | None = None, calls: list | None = None):
    """Train steps record ``(test subject, state.step)`` in ``calls`` and raise ``Interrupt`` before step ``at``.

    Wraps the step that ``train_fdp.train_fold`` is given, so the module's runs can share compiled steps."""
    train_fold = train_fdp.train_fold

    def interruptible_train_fold(config, fold, *args, train_step, frozen_bn_step, **kwargs):
        subject = fold.info["test_subject"]

        def interruptible(step_fn):
            def step(state, batch, rng):
                where = (subject, int(state.step))
                if calls is not None:
                    calls.append(where)
                if where == at:
                    raise Interrupt(f"interrupted at {at}")
                return step_fn(state, batch, rng)
            return step
        return train_fold(config, fold, *args, train_step=interruptible(train_step),
                          frozen_bn_step=frozen_bn_step and interruptible(frozen_bn_step), **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train_fdp, "train_fold", interruptible_train_fold)
        yield


def fold_logits(workdir, subject: str) -> np.ndarray:
    return np.load(os.path.join(workdir, "folds", subject, "predictions.npz"))["logits"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    """Where the module's runs share the synthetic release and its TFDS build (made by the first run)."""
    return str(tmp_path_factory.mktemp("fdp_data"))


@pytest.fixture(scope="module")
def reference_run(data_root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    # Checkpoints only at the end of a fold (they do not change the results): a faster uninterrupted run.
    return workdir, run(small_config(data_root, checkpoint_every=100), workdir)


EIGHT_DEVICES_CODE = """
import json, os, tempfile
import numpy as np
from launch import train_fdp
from launch.runtime.metric_writers import read_jsonl
from tests.test_fdp_loso import small_config, fold_logits
out = {}
for n in (1, 8):
    wd = tempfile.mkdtemp()
    config = small_config(DATA_ROOT, num_devices=n, batch_size=8, num_steps=2, checkpoint_every=100,
                          log_every=1, **{"optimizer.learning_rate": 1e-5, "data.subjects": ("sub01",)})
    res = train_fdp.train_and_evaluate(config, wd)
    out[n] = {"mesh": res["mesh"], "uf1": res["pooled"]["uf1"], "logits": fold_logits(wd, "sub01").tolist(),
              "losses": [r["loss"] for r in read_jsonl(wd + "/metrics.jsonl") if "loss" in r]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def background_runs(reference_run, data_root, tmp_path_factory):
    """The module's subprocess runs, started once the release is built and the tiny steps are compiled into the
    session's compilation cache (``reference_run``): the 8-vs-1-device run and the ``python -m launch.fdp`` CLI
    run. They run beside this module's in-process runs (2 cores) and are collected by the tests that check them."""
    import sys

    del reference_run
    cli_dir = tmp_path_factory.mktemp("cli")
    runs = {
        "devices": start_with_devices(EIGHT_DEVICES_CODE.replace("DATA_ROOT", repr(data_root)), 8),
        "cli": start([sys.executable, "-m", "launch.fdp", "--config=launch/configs/fdp_tiny.py",
                      f"--workdir={cli_dir / 'tiny'}"], env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=900),
        "cli_dir": cli_dir,
    }
    yield runs
    runs["devices"].kill()
    runs["cli"].kill()


def test_loso_end_to_end_writes_reports(reference_run, data_root, background_runs):
    workdir, results = reference_run
    pooled = results["pooled"]
    assert [r["subject"] for r in pooled["per_fold"]] == list(SUBJECTS)
    assert pooled["num_samples"] == sum(r["n"] for r in pooled["per_fold"]) == 12
    assert [r["selected_step"] for r in pooled["per_fold"]] == [4, 4]
    assert 0.0 <= pooled["uf1"] <= 1.0 and np.isfinite(pooled["di_mse"])
    for name in ("results.json", "report.md", "config.json", "metrics.jsonl", "plots/confusion_matrix.png",
                 "plots/dynamic_images.png", "plots/training_curves.png"):
        assert os.path.exists(workdir / name), name
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["pooled"]["uf1"] == pytest.approx(pooled["uf1"])
    assert on_disk["code_version"] and "mesh {'data': 1}" in on_disk["mesh"]
    assert "LEAKY" not in (workdir / "report.md").read_text()
    assert os.listdir(workdir / "tensorboard")
    assert os.path.exists(os.path.join(data_root, "synthetic", "GENERATED.json"))  # release generated once


def test_resume_between_and_within_folds_matches_uninterrupted_run(tmp_path, monkeypatch, reference_run, data_root):
    config = small_config(data_root)
    reference_dir, reference = reference_run
    wd = tmp_path / "resumed"
    with interrupting(monkeypatch, at=("sub01", 3)), pytest.raises(Interrupt):  # within fold sub01, after step 2
        run(config, wd)
    assert not os.path.exists(wd / "folds/sub01/predictions.npz")
    calls = []
    # Between folds: sub01 finishes, stop before sub02's first step.
    with interrupting(monkeypatch, at=("sub02", 0), calls=calls), pytest.raises(Interrupt):
        run(config, wd)
    assert calls[0] == ("sub01", 2), "fold sub01 must continue from its latest checkpoint (step 2)"
    assert os.path.exists(wd / "folds/sub01/predictions.npz")
    calls = []
    with interrupting(monkeypatch, calls=calls):
        resumed = run(config, wd)
    assert calls == [("sub02", s) for s in range(4)], "a finished fold must not be retrained"
    for subject in SUBJECTS:
        np.testing.assert_allclose(fold_logits(wd, subject), fold_logits(reference_dir, subject), rtol=1e-5, atol=1e-5)
    assert resumed["pooled"]["uf1"] == pytest.approx(reference["pooled"]["uf1"])


def test_select_on_test_is_labelled_leaky_and_resumes_with_its_best_step(tmp_path, monkeypatch, data_root):
    config = small_config(data_root, select_on_test=True, eval_every=1, selection_metric="accuracy",
                          **{"data.subjects": ("sub01",)})
    reference = run(config, tmp_path / "ref")
    assert reference["select_on_test"] is True and "TEST subject" in reference["selection"]
    report_md = (tmp_path / "ref" / "report.md").read_text()
    assert "LEAKY" in report_md and "chosen by its accuracy" in report_md
    with interrupting(monkeypatch, at=("sub01", 3)), pytest.raises(Interrupt):  # the best step so far must survive
        run(config, tmp_path / "resumed")
    resumed = run(config, tmp_path / "resumed")
    assert ([r["selected_step"] for r in resumed["pooled"]["per_fold"]]
            == [r["selected_step"] for r in reference["pooled"]["per_fold"]])
    assert {r["selected_step"] for r in reference["pooled"]["per_fold"]} <= {1, 2, 3, 4}
    np.testing.assert_allclose(fold_logits(tmp_path / "resumed", "sub01"), fold_logits(tmp_path / "ref", "sub01"),
                               rtol=1e-5, atol=1e-5)


def test_validation_selection_uses_training_subjects_only(tmp_path, data_root):
    config = small_config(data_root, eval_every=2, checkpoint_every=100,
                          **{"data.subjects": ("sub01",), "data.validation_subjects": 1})
    results = run(config, tmp_path)
    assert results["select_on_test"] is False and "validation" in results["selection"]
    assert "LEAKY" not in (tmp_path / "report.md").read_text()
    assert {r["selected_step"] for r in results["pooled"]["per_fold"]} <= {2, 4}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("prefix") == "fold_sub01/select" for r in records)


def test_8_devices_agree_with_1_device(background_runs):
    out = background_runs["devices"].result()
    assert "'data': 8" in out["8"]["mesh"] and "'data': 1" in out["1"]["mesh"]
    assert len(out["8"]["losses"]) == 2  # 1 fold x 2 steps
    # The same computation up to float reduction order: the first step's loss (before any update) agrees to
    # float32 rounding. BN-cancelled gradients are differences of nearly equal sums that the 8-shard reduction
    # order moves by ~1% (tests/test_fdp_steps.py), and Adam's first step is lr * sign(g) even for those, so
    # later losses agree to 1e-2 (lr 1e-5 keeps this small), logits to 2e-2, the predicted classes exactly.
    losses_8, losses_1 = np.array(out["8"]["losses"]), np.array(out["1"]["losses"])
    np.testing.assert_allclose(losses_8[0], losses_1[0], rtol=1e-5)  # step 1
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-2)
    logits_8, logits_1 = np.array(out["8"]["logits"]), np.array(out["1"]["logits"])
    np.testing.assert_allclose(logits_8, logits_1, atol=2e-2)
    np.testing.assert_array_equal(logits_8.argmax(-1), logits_1.argmax(-1))
    assert out["8"]["uf1"] == pytest.approx(out["1"]["uf1"])


def test_tiny_config_end_to_end_and_predict_cli(background_runs):
    """The real thing through the CLIs: ``python -m launch.fdp`` with fdp_tiny.py (its own release in the
    workdir), then ``python -m launch.fdp_predict`` on one clip folder of that release."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    tmp_path = background_runs["cli_dir"]
    workdir = tmp_path / "tiny"
    proc = background_runs["cli"].result()
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


def test_compute_dtype_follows_the_mesh_devices():
    from launch.runtime import mesh as mesh_lib

    mesh = mesh_lib.make_data_mesh(1)
    assert train_fdp.compute_dtype(ml_collections.ConfigDict({"compute_dtype": "auto"}), mesh) == "float32"
    assert train_fdp.compute_dtype(ml_collections.ConfigDict({"compute_dtype": "bfloat16"}), mesh) == "bfloat16"


def test_learning_rate_schedule():
    opt = ml_collections.ConfigDict(dict(learning_rate=2e-3, schedule="constant", warmup_steps=0))
    assert train_steps.learning_rate_schedule(opt, 100) == 2e-3
    opt.schedule, opt.warmup_steps = "warmup_cosine", 10
    lr = train_steps.learning_rate_schedule(opt, 100)
    np.testing.assert_allclose([float(lr(0)), float(lr(10)), float(lr(55)), float(lr(100))],
                               [0.0, 2e-3, 1e-3, 0.0], atol=1e-9)
    opt.warmup_steps = 0
    np.testing.assert_allclose(float(train_steps.learning_rate_schedule(opt, 100)(0)), 2e-3)
    with pytest.raises(ValueError, match="warmup_steps"):
        opt.warmup_steps = 100
        train_steps.learning_rate_schedule(opt, 100)
    with pytest.raises(ValueError, match="schedule"):
        opt.schedule = "linear"
        train_steps.learning_rate_schedule(opt, 100)
