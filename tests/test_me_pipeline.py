"""fdp_jax.input_pipeline: LOSO folds, determinism and resume, fold isolation, normalisation, augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from fdp_jax import input_pipeline as ip


def make_table(num_subjects: int = 4, clips_per_subject: int = 5, seed: int = 0) -> ip.ClipTable:
    rng = np.random.default_rng(seed)
    n = num_subjects * clips_per_subject
    subjects = np.array([f"s{i // clips_per_subject:02d}" for i in range(n)])
    # Subject-dependent brightness, so statistics leak visibly if the test subject were used.
    base = np.array([40 + 40 * (i // clips_per_subject) for i in range(n)], np.int32)
    frames = np.clip(base[:, None, None, None, None] + rng.integers(0, 60, (n, 8, 64, 64, 1)), 0, 255)
    return ip.ClipTable(frames=frames.astype(np.uint8), di_target=rng.integers(0, 256, (n, 64, 64)).astype(np.uint8),
                        label=(np.arange(n) % 3).astype(np.int32), subject=subjects,
                        clip_id=np.array([f"{s}/c{i}" for i, s in enumerate(subjects)]), class_names=("a", "b", "c"))


def config(**overrides) -> "ip.ml_collections.ConfigDict":
    c = ip.default_config()
    c.update(overrides)
    return c


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_batch_contract_and_padding():
    clips = make_table()
    fold = ip.make_fold(clips, "s01", config(), seed=0, batch_size=4)
    batch = next(fold.train_iter)
    assert batch["frames"].shape == (4, 8, 64, 64, 1) and batch["frames"].dtype == np.float32
    assert batch["di_target"].shape == (4, 64, 64) and batch["di_target"].dtype == np.float32
    assert 0.0 <= batch["di_target"].min() and batch["di_target"].max() <= 1.0
    assert batch["label"].dtype == np.int32 and batch["mask"].dtype == np.float32
    # 5 test clips in batches of 4 -> 2 batches, the last with 3 padding rows.
    assert [b["mask"].tolist() for b in fold.test_batches] == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert fold.test_batches[1]["index"].tolist()[1:] == [-1, -1, -1]
    rows = np.concatenate([b["index"][b["mask"] > 0] for b in fold.test_batches])
    assert clips.clip_id[rows].tolist() == fold.info["test_clip_ids"]
    assert fold.info["num_train"] == 15 and fold.info["steps_per_epoch"] == 3


def test_fold_isolation_and_validation_subjects():
    clips = make_table(num_subjects=5)
    fold = ip.make_fold(clips, "s02", config(validation_subjects=1), seed=3, batch_size=4)
    val = fold.info["val_subjects"]
    assert len(val) == 1 and "s02" not in val and "s02" not in fold.info["train_subjects"]
    seen = np.concatenate([b["index"] for b in take(fold.train_iter, 30)])
    assert set(clips.subject[seen]) == set(fold.info["train_subjects"])  # never test or validation clips
    assert set(clips.subject[np.concatenate([b["index"][b["mask"] > 0] for b in fold.val_batches])]) == set(val)
    # Every epoch visits every training clip once (reshuffled per epoch).
    epoch = seen[:fold.info["num_train"] // 4 * 4]
    assert len(set(epoch.tolist())) == len(epoch)


def test_determinism_and_resume():
    clips = make_table()
    a = ip.make_fold(clips, "s00", config(), seed=1, batch_size=4)
    b = ip.make_fold(clips, "s00", config(), seed=1, batch_size=4)
    assert_batches_equal(take(a.train_iter, 6), take(b.train_iter, 6))
    other = ip.make_fold(clips, "s00", config(), seed=2, batch_size=4)
    assert not np.array_equal(next(other.train_iter)["index"], next(ip.make_fold(
        clips, "s00", config(), seed=1, batch_size=4).train_iter)["index"])
    # Resume from the grain iterator state in a fresh fold (as after a restart).
    run = ip.make_fold(clips, "s00", config(), seed=1, batch_size=4)
    take(run.train_iter, 4)
    state = run.train_iter.get_state()
    expected = take(run.train_iter, 5)
    resumed = ip.make_fold(clips, "s00", config(), seed=1, batch_size=4)
    resumed.train_iter.set_state(state)
    assert_batches_equal(take(resumed.train_iter, 5), expected)


def test_resume_through_the_project_checkpointer(tmp_path):
    """The train iterator's grain state goes through launch.runtime.checkpointing with the train state."""
    import jax.numpy as jnp
    from launch.runtime.checkpointing import Checkpointer
    clips = make_table()
    run = ip.make_fold(clips, "s02", config(), seed=4, batch_size=4)
    take(run.train_iter, 3)
    state = {"w": jnp.arange(3.0)}
    with Checkpointer(str(tmp_path / "ckpt"), async_save=False) as ckpt:
        ckpt.save(3, state, data_iter=run.train_iter, meta={"step": 3})
    expected = take(run.train_iter, 4)
    fresh = ip.make_fold(clips, "s02", config(), seed=4, batch_size=4)
    with Checkpointer(str(tmp_path / "ckpt"), async_save=False) as ckpt:
        restored = ckpt.restore_latest(state, data_iter=fresh.train_iter)
    assert restored.step == 3
    assert_batches_equal(take(restored.data_iter, 4), expected)


def test_train_stats_normalisation_uses_training_subjects_only():
    clips = make_table()
    fold = ip.make_fold(clips, "s03", config(augment=False), seed=0, batch_size=5)
    train = clips.frames[fold.info["train_indices"]].astype(np.float64) / 255.0
    norm = fold.info["normalization"]["train"]
    assert norm["shift"] == pytest.approx(train.mean()) and norm["scale"] == pytest.approx(train.std())
    assert fold.info["normalization"]["test"] == norm
    # Changing the test subject's frames changes neither the statistics nor the training batches.
    frames = clips.frames.copy()
    frames[clips.subject == "s03"] = 255
    altered = ip.ClipTable(frames, clips.di_target, clips.label, clips.subject, clips.clip_id, clips.class_names)
    fold2 = ip.make_fold(altered, "s03", config(augment=False), seed=0, batch_size=5)
    assert fold2.info["normalization"]["train"] == norm
    assert_batches_equal(take(fold.train_iter, 3), take(fold2.train_iter, 3))


def test_reference_normalisation_is_per_split():
    clips = make_table()
    fold = ip.make_fold(clips, "s01", config(augment=False, normalization="reference"), seed=0, batch_size=5)
    tests = np.concatenate([b["frames"][b["mask"] > 0] for b in fold.test_batches])
    assert abs(tests.mean()) < 1e-4 and tests.max() == pytest.approx(1.0, abs=1e-5)  # the test split's own stats
    x = clips.frames[fold.info["train_indices"]].astype(np.float64) / 127.5 - 1.0
    train = ((x - x.mean()) / (x - x.mean()).max()).astype(np.float32)
    batches = take(fold.train_iter, fold.info["steps_per_epoch"])
    got = np.concatenate([b["frames"] for b in batches])
    order = np.concatenate([b["index"] for b in batches])
    np.testing.assert_allclose(got, train[np.searchsorted(fold.info["train_indices"], order)], atol=1e-5)


def test_augmentation_is_identical_across_frames_and_di():
    rng = np.random.default_rng(0)
    frame = rng.random((64, 64, 1)).astype(np.float32)
    ex = {"frames": np.repeat(frame[None], 8, 0), "di_target": frame[..., 0].copy()}
    aug = ip.Augment(padding=4, flip=True, brightness=0.0, contrast=0.0)
    flips = 0
    for seed in range(12):
        out = aug.random_map(ex, np.random.default_rng(seed))
        for t in range(8):  # same crop and flip for every frame and for the DI target
            np.testing.assert_array_equal(out["frames"][t], out["frames"][0])
        np.testing.assert_array_equal(out["frames"][0, ..., 0], out["di_target"])
        flips += not np.array_equal(out["frames"][0, :, :, 0], frame[..., 0])
    assert flips > 0
    photometric = ip.Augment(padding=0, flip=False, brightness=0.1, contrast=0.2)
    out = photometric.random_map(ex, np.random.default_rng(1))
    assert not np.allclose(out["frames"], ex["frames"])
    np.testing.assert_allclose(out["frames"], np.repeat(out["frames"][:1], 8, 0))


def test_unknown_subject_and_small_fold_errors():
    clips = make_table()
    with pytest.raises(ValueError, match="no clips"):
        ip.make_fold(clips, "s99", config(), seed=0, batch_size=4)
    with pytest.raises(ValueError, match="batch size"):
        ip.make_fold(clips, "s00", config(), seed=0, batch_size=64)


def test_workers_match_in_process_loading():
    clips = make_table(num_subjects=3, clips_per_subject=4)
    inproc = ip.make_fold(clips, "s00", config(), seed=5, batch_size=4)
    workers = ip.make_fold(clips, "s00", config(worker_count=1), seed=5, batch_size=4)
    assert_batches_equal(take(inproc.train_iter, 3), take(workers.train_iter, 3))


def test_end_to_end_from_registry_build(tmp_path):
    """launch.build's path (registry.build) -> load_dataset -> make_fold on a tiny CASME II release."""
    from datasets import registry
    from tests.test_me_builders import write_casme2
    rows = [(f"{s:02d}", f"EP0{k}_01", 10, 14, 20, "12", em) for s in (1, 2, 3)
            for k, em in enumerate(("happiness", "disgust", "surprise"))]
    manual = write_casme2(str(tmp_path / "m"), rows)
    registry.build("casme2/3class", manual, str(tmp_path / "tfds"))
    clips, dataset = ip.load_dataset("casme2/3class", str(tmp_path / "tfds"))
    assert dataset == {"subjects": ["sub01", "sub02", "sub03"], "num_classes": 3,
                       "class_names": ["negative", "positive", "surprise"]}
    assert clips.frames.shape == (9, 8, 64, 64, 1)
    fold = ip.make_fold(clips, "sub02", config(), seed=0, batch_size=3)
    batch = next(fold.train_iter)
    assert set(clips.subject[batch["index"]]) <= {"sub01", "sub03"}
    assert sorted(fold.info["test_clip_ids"]) == ["sub02/EP00_01", "sub02/EP01_01", "sub02/EP02_01"]


def test_partial_data_config_takes_defaults():
    """make_fold takes the trainer's config.data, which may hold only some fields (the rest: default_config)."""
    clips = make_table()
    fold = ip.make_fold(clips, "s00", {"name": "x", "validation_subjects": 1, "subjects": None}, seed=0, batch_size=4)
    assert fold.info["val_subjects"] and fold.val_batches and next(fold.train_iter)["frames"].shape[0] == 4
    assert fold.info["normalization"]["train"]["kind"] == "train_stats"


def test_protocol_subjects():
    assert ip.protocol_subjects(["s2", "s1", "s1"], None) == ["s1", "s2"]
    assert ip.protocol_subjects(["s1", "s2", "s3"], ("s3", "s1")) == ["s3", "s1"]
    with pytest.raises(ValueError, match=r"\['s9'\]"):
        ip.protocol_subjects(["s1"], ["s1", "s9"])


def test_center_time():
    """center_time leaves only the motion, scaled by the residual std fitted on the training subjects only."""
    clips = make_table()
    train_rows = np.flatnonzero(clips.subject != "s02")
    x = clips.frames[train_rows].astype(np.float64) / 255.0
    residual = x - x.mean(axis=1, keepdims=True)
    fold = ip.make_fold(clips, "s02", config(augment=False, center_time=True), seed=0, batch_size=5)
    norm = fold.info["normalization"]["train"]
    assert norm["center_time"] and norm["center_scale"] == pytest.approx(residual.std(), rel=1e-5)
    assert fold.info["normalization"]["test"] == norm
    batch = next(fold.train_iter)
    assert batch["frames"].shape == (5, 8, 64, 64, 1)
    np.testing.assert_allclose(batch["frames"].mean(axis=1), 0.0, atol=1e-5)   # static content removed
    rows = np.searchsorted(train_rows, batch["index"])
    np.testing.assert_allclose(batch["frames"], (residual[rows] / norm["center_scale"]).astype(np.float32), atol=1e-4)
