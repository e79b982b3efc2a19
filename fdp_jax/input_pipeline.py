"""grain input pipeline of the micro-expression datasets: LOSO folds, augmentation, normalisation.

    clips, dataset = load_dataset('casme2/5class', data_dir)          # ClipTable + {'subjects', ...}
    fold = make_fold(clips, '17', config.data, seed=0, batch_size=36)   # one LOSO fold
    batch = next(fold.train_iter)       # checkpointable grain iterator (get_state / set_state)
    for batch in fold.test_batches: ...  # fixed-size, padded, mask 0 on padding

Batch contract (per JAX process; B = batch_size / process_count):
  'frames' float32 (B, 8, 64, 64, 1) normalised; 'di_target' float32 (B, 64, 64) in [0, 1];
  'label' int32 (B,); 'mask' float32 (B,) (1 real, 0 padding); 'index' int32 (B,) row of the ClipTable
  (-1 for padding), so clip ids and subjects stay host-side: ``clips.clip_id[index]``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import grain
import jax
import ml_collections
import numpy as np

NORMALIZATIONS = ("train_stats", "reference")


def default_config() -> ml_collections.ConfigDict:
    """Data options (``config.data`` of the FDP configs)."""
    c = ml_collections.ConfigDict()
    c.name = "casme2/5class"          # registry name: dataset/config
    c.data_dir = "data/tfds"
    c.validation_subjects = 0         # >0: that many training subjects held out for model selection
    c.normalization = "train_stats"   # or 'reference' (official per-split scalar normalisation)
    c.center_time = False             # True (NOT in the paper): subtract each clip's per-pixel temporal mean
                                      # frame, scale by the residual's std on the training subjects
    c.augment = True
    c.crop_padding = 4                # random crop of 64 from the clip padded by this many pixels
    c.flip = True
    c.brightness = 0.05               # additive, uniform in [-b, b] (intensities in [0, 1])
    c.contrast = 0.1                  # multiplicative around the clip mean, uniform in [1-c, 1+c]
    c.worker_count = 0                # grain worker processes (0: in-process)
    c.read_threads = 2
    c.prefetch_buffer_size = 4
    c.eval_batch_size = 0             # 0: same as the train batch size
    return c


@dataclasses.dataclass(frozen=True)
class ClipTable:
    """All clips of a built dataset in memory. N clips:
    frames (N, 8, 64, 64, 1) uint8; di_target (N, 64, 64) uint8; label (N,) int32; subject, clip_id (N,) str."""
    frames: np.ndarray
    di_target: np.ndarray
    label: np.ndarray
    subject: np.ndarray
    clip_id: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.label)

    @property
    def subjects(self) -> list[str]:
        return sorted(set(self.subject.tolist()))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_clips(source: Sequence[dict], class_names: Sequence[str]) -> ClipTable:
    """Reads a random-access source of builder examples (``tfds.data_source``) into a ClipTable."""
    items = [source[i] for i in range(len(source))]
    if not items:
        raise ValueError("the data source is empty")
    return ClipTable(frames=np.stack([np.asarray(e["frames"], np.uint8) for e in items]),
                     di_target=np.stack([np.asarray(e["di_target"], np.uint8) for e in items]),
                     label=np.array([int(e["label"]) for e in items], np.int32),
                     subject=np.array([_text(e["subject"]) for e in items]),
                     clip_id=np.array([_text(e["clip_id"]) for e in items]),
                     class_names=tuple(class_names))


def load_dataset(name: str, data_dir: str) -> tuple[ClipTable, dict]:
    """A built dataset (``registry`` name) as a ClipTable and ``{'subjects', 'num_classes', 'class_names'}``."""
    from datasets import registry
    builder = registry.get_builder(name, data_dir)
    names = builder.info.features["label"].names
    clips = load_clips(builder.as_data_source(split="train"), names)
    return clips, {"subjects": clips.subjects, "num_classes": len(names), "class_names": list(names)}


# ------------------------------------------------------------------------------------------ folds
def protocol_subjects(available: Sequence[str], requested: Sequence[str] | None) -> list[str]:
    """The LOSO subjects: ``requested`` (e.g. the official 25-subject CASME II list) or all ``available``.

    A requested subject without clips is an error naming it (an empty fold cannot be scored).
    """
    available = sorted({str(s) for s in available})
    if not requested:
        return available
    missing = [str(s) for s in requested if str(s) not in available]
    if missing:
        raise ValueError(f"config.data.subjects lists subjects without clips in the dataset: {missing}; "
                         f"available: {available}")
    return [str(s) for s in requested]


def split_subjects(subjects: Sequence[str], test_subject: str, validation_subjects: int,
                   seed: int) -> tuple[list[str], list[str]]:
    """(fit subjects, validation subjects): the validation ones are drawn (seeded) from the training subjects;
    the test subject is never in either."""
    train = sorted(s for s in set(subjects) if s != test_subject)
    if validation_subjects >= len(train) and validation_subjects > 0:
        raise ValueError(f"validation_subjects={validation_subjects} leaves no training subject "
                         f"({len(train)} training subjects)")
    rng = np.random.default_rng([seed, 7919])
    val = sorted(rng.choice(train, size=validation_subjects, replace=False).tolist()) if validation_subjects else []
    return [s for s in train if s not in val], val


def frame_stats(frames: np.ndarray) -> tuple[float, float]:
    """Scalar mean and std of uint8 frames scaled to [0, 1]."""
    x = frames.astype(np.float64) / 255.0
    return float(x.mean()), float(max(x.std(), 1e-6))


def reference_stats(frames: np.ndarray) -> tuple[float, float]:
    """Official per-split scalars: frames to [-1, 1] (Normalize(0.5, 0.5)), mean m of the split, then the
    max M of (x - m); the normalised clip is (x - m) / M."""
    x = frames.astype(np.float64) / 127.5 - 1.0
    m = float(x.mean())
    return m, float(max((x - m).max(), 1e-6))


def centered_std(frames: np.ndarray) -> float:
    """Std of uint8 frames (N, T, H, W, C) scaled to [0, 1] after subtracting each clip's temporal mean frame."""
    x = frames.astype(np.float32) / 255.0
    return float(max((x - x.mean(axis=1, keepdims=True)).std(), 1e-6))


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """float frames (..., T, H, W, C) in [0, 1] -> normalised: 'train_stats' (x - mean) / std; 'reference'
    ((2x - 1) - mean) / max (official per split).

    ``center_time`` (not in the paper, off by default): instead, x - mean_t(x) (each clip's per-pixel
    temporal mean frame, axis -4) divided by ``center_scale``, the std of that residual on the fitted frames.
    The static face drops out and only the motion is left (a data-side shortcut for short CPU schedules).
    """
    kind: str
    shift: float
    scale: float
    center_time: bool = False
    center_scale: float = 1.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.center_time:
            return ((x - x.mean(axis=-4, keepdims=True)) / self.center_scale).astype(np.float32)
        if self.kind == "reference":
            x = 2.0 * x - 1.0
        return ((x - self.shift) / self.scale).astype(np.float32)


def make_normalizer(kind: str, frames: np.ndarray, center_time: bool = False) -> Normalizer:
    """Normalizer fitted on uint8 ``frames`` (N, T, H, W, C); see :class:`Normalizer`."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"normalization {kind!r} not in {NORMALIZATIONS}")
    stats = frame_stats(frames) if kind == "train_stats" else reference_stats(frames)
    if center_time:
        return Normalizer(kind, *stats, center_time=True, center_scale=centered_std(frames))
    return Normalizer(kind, *stats)


# ------------------------------------------------------------------------------------ transforms
@dataclasses.dataclass(frozen=True)
class Fetch(grain.transforms.Map):
    """Table row -> {'frames' float32 (8,64,64,1) in [0,1], 'di_target' float32 (64,64) in [0,1], ...}."""
    clips: ClipTable

    def map(self, index: int) -> dict[str, np.ndarray]:
        return {"frames": self.clips.frames[index].astype(np.float32) / 255.0,
                "di_target": self.clips.di_target[index].astype(np.float32) / 255.0,
                "label": np.int32(self.clips.label[index]), "mask": np.float32(1.0), "index": np.int32(index)}


@dataclasses.dataclass(frozen=True)
class Augment(grain.transforms.RandomMap):
    """Random crop (from the clip padded by ``padding``, edge mode) + horizontal flip, identical for the 8
    frames and the DI target; brightness / contrast jitter identical across the 8 frames (the DI target is
    invariant to it: the rank-pooling coefficients sum to 0 and the DI is min-max normalised)."""
    padding: int
    flip: bool
    brightness: float
    contrast: float

    def random_map(self, ex: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        frames, di = ex["frames"], ex["di_target"]
        p = self.padding
        if p > 0:
            h, w = di.shape
            dy, dx = rng.integers(0, 2 * p + 1, size=2)
            frames = np.pad(frames, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")[:, dy:dy + h, dx:dx + w]
            di = np.pad(di, p, mode="edge")[dy:dy + h, dx:dx + w]
        if self.flip and rng.random() < 0.5:
            frames, di = frames[:, :, ::-1], di[:, ::-1]
        if self.brightness or self.contrast:
            c = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
            b = rng.uniform(-self.brightness, self.brightness)
            mean = frames.mean()
            frames = np.clip((frames - mean) * c + mean + b, 0.0, 1.0)
        return dict(ex, frames=np.ascontiguousarray(frames, np.float32), di_target=np.ascontiguousarray(di))


@dataclasses.dataclass(frozen=True)
class Normalize(grain.transforms.Map):
    normalizer: Normalizer

    def map(self, ex: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(ex, frames=self.normalizer(ex["frames"]))


# ------------------------------------------------------------------------------------ pipelines
@dataclasses.dataclass
class Fold:
    """One LOSO fold: ``train_iter`` (infinite, checkpointable grain iterator of per-process batches),
    padded ``test_batches`` and ``val_batches`` (None without validation subjects), and ``info``."""
    train_iter: Iterator[dict[str, np.ndarray]]
    test_batches: list[dict[str, np.ndarray]]
    val_batches: list[dict[str, np.ndarray]] | None
    info: dict


def _local_batch(batch_size: int) -> int:
    count = jax.process_count()
    if batch_size % count:
        raise ValueError(f"batch size {batch_size} is not divisible by the {count} JAX processes")
    return batch_size // count


def train_dataset(clips: ClipTable, indices: np.ndarray, config: ml_collections.ConfigDict, *, seed: int,
                  batch_size: int, normalizer: Normalizer) -> grain.IterDataset:
    """Infinite shuffled (reshuffled every epoch), augmented, normalised batches of this process's shard."""
    shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    # Shuffle all clips (reshuffled per epoch), then take this process's strided share: global batch k holds
    # the same clips with any number of processes. The leading identity slice keeps grain's derived shuffle
    # seed, hence the clip order of one process, what it was when the slice was the per-process shard.
    ds = grain.MapDataset.source(np.asarray(indices, np.int64)).seed(seed)[0::1].shuffle()
    ds = ds[shard.shard_index::shard.shard_count].map(Fetch(clips))
    if config.augment:
        ds = ds.random_map(Augment(config.crop_padding, config.flip, config.brightness, config.contrast))
    ds = ds.map(Normalize(normalizer)).repeat(None).batch(_local_batch(batch_size), drop_remainder=True)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                                 prefetch_buffer_size=config.prefetch_buffer_size))
    if config.worker_count > 0:
        from absl import flags
        if not flags.FLAGS.is_parsed():  # grain workers read absl flags (google/grain#1355)
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.worker_count))
    return it_ds


def eval_batches(clips: ClipTable, indices: np.ndarray, batch_size: int,
                 normalizer: Normalizer) -> list[dict[str, np.ndarray]]:
    """Fixed-size batches in table order; the last is padded (mask 0, index -1). Per process, each batch
    keeps this process's contiguous slice of rows (all rows with one process)."""
    fetch, norm = Fetch(clips), Normalize(normalizer)
    count, pid = jax.process_count(), jax.process_index()
    local = _local_batch(batch_size)
    out = []
    for start in range(0, len(indices), batch_size):
        rows = [norm.map(fetch.map(int(i))) for i in indices[start:start + batch_size]]
        pad = dict(rows[0], mask=np.float32(0.0), index=np.int32(-1))
        rows += [pad] * (batch_size - len(rows))
        rows = rows[pid * local:(pid + 1) * local] if count > 1 else rows
        out.append({k: np.stack([r[k] for r in rows]) for k in rows[0]})
    return out


def with_defaults(config: Any) -> ml_collections.ConfigDict:
    """``default_config()`` overridden by the fields of ``config`` (a ConfigDict or dict; extra keys kept)."""
    merged = default_config()
    items = config.items() if hasattr(config, "items") else dict(config).items()
    for key, value in items:
        merged[key] = value
    return merged


def make_fold(clips: ClipTable, test_subject: str, config: Any, *, seed: int, batch_size: int) -> Fold:
    """LOSO fold ``test_subject``: train on the other subjects (minus ``config.validation_subjects`` drawn
    from them), normalise with training-subject statistics ('train_stats') or per split ('reference').
    ``config``: data options (see ``default_config``; missing fields take their defaults)."""
    config = with_defaults(config)
    if test_subject not in set(clips.subject.tolist()):
        raise ValueError(f"test subject {test_subject!r} has no clips; subjects: {clips.subjects}")
    fit_subjects, val_subjects = split_subjects(clips.subject.tolist(), test_subject,
                                                config.validation_subjects, seed)
    rows = {name: np.flatnonzero(np.isin(clips.subject, subjects))
            for name, subjects in (("train", fit_subjects), ("val", val_subjects), ("test", [test_subject]))}
    if len(rows["train"]) < batch_size:
        raise ValueError(f"fold {test_subject}: {len(rows['train'])} training clips < batch size {batch_size}")
    norms = {name: make_normalizer(config.normalization, clips.frames[idx], bool(config.get("center_time", False)))
             for name, idx in rows.items() if len(idx)}
    if config.normalization == "train_stats":
        norms = {name: norms["train"] for name in norms}
    eval_size = config.eval_batch_size or batch_size
    train = train_dataset(clips, rows["train"], config, seed=seed, batch_size=batch_size,
                          normalizer=norms["train"])
    info = {"test_subject": test_subject, "train_subjects": fit_subjects, "val_subjects": val_subjects,
            "num_train": len(rows["train"]), "num_val": len(rows["val"]), "num_test": len(rows["test"]),
            "num_classes": len(clips.class_names), "class_names": list(clips.class_names),
            "steps_per_epoch": max(1, len(rows["train"]) // batch_size),
            "normalization": {k: dataclasses.asdict(v) for k, v in norms.items()},
            "test_clip_ids": clips.clip_id[rows["test"]].tolist(),
            "train_indices": rows["train"].tolist()}
    return Fold(train_iter=iter(train),
                test_batches=eval_batches(clips, rows["test"], eval_size, norms["test"]),
                val_batches=eval_batches(clips, rows["val"], eval_size, norms["val"]) if len(rows["val"]) else None,
                info=info)

