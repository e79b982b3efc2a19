"""Knowledge-tracing input pipeline: random-access source -> validated sequences -> chunks -> grain batches.

Any random-access source works (``len`` + ``__getitem__`` returning a dict): a list of dicts in tests, a
``tfds`` ArrayRecord data source in production. Only ``skills`` (int, 0-based) and ``correct`` (0/1)
are used; other features (``student_id``, ``p_true``, ...) are kept in ``Sequences.extras`` when asked.

Training batches follow pyKT: each sequence is cut into consecutive non-overlapping chunks of ``max_len``
steps, a remainder shorter than ``min_len`` (3) is dropped, chunks are padded (skills -1, correct 0) and
carry their ``length``. The grain pipeline (shuffle per epoch -> shard per process -> batch) is
deterministic given the seed and checkpointable through its iterator state.

Packing (:func:`pack_chunks`): pyKT chunks are mostly padding on real data (ASSIST2009: 35% real steps per
200-step row), so several chunks share one row, each a *segment* (``segments`` (T,): 1, 2, ... per chunk,
0 on padding). The model resets its LSTM state at every segment start and the loss masks pairs across
segments, so a packed batch computes exactly the unpacked loss of the same chunks in fewer rows. The
packing plan is a seeded best-fit-decreasing bin packing made once; grain shuffles the packed rows each
epoch, so the iterator state (and resume) is exactly as for unpacked chunks.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import grain
import jax
import numpy as np

from datasets.registry import DatasetError
from tqdm.auto import tqdm


@dataclasses.dataclass
class Sequences:
    """Validated variable-length sequences. ``skills[i]``/``correct[i]`` are int32 arrays (T_i,)."""

    skills: list[np.ndarray]
    correct: list[np.ndarray]
    ids: list[str]
    extras: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.skills)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.skills], np.int64)

    def subset(self, indices: Sequence[int]) -> "Sequences":
        idx = [int(i) for i in indices]
        return Sequences([self.skills[i] for i in idx], [self.correct[i] for i in idx],
                         [self.ids[i] for i in idx], {k: [v[i] for i in idx] for k, v in self.extras.items()})


def _decode_id(value: Any, index: int) -> str:
    if value is None:
        return f"#{index}"
    return value.decode() if isinstance(value, bytes) else str(value)


def read_sequences(source: Any, *, num_skills: int | None = None, name: str = "source",
                   extra_features: Sequence[str] = (), show_progress: bool = True) -> Sequences:
    """Reads and validates every example of a random-access ``source``.

    Raises ``DatasetError`` naming the source, example index and student id for: missing features,
    length mismatch, correctness not in {0, 1}, skill ids out of [0, num_skills).
    """
    n = len(source)
    show = show_progress and n > 5000 and jax.process_index() == 0
    it = tqdm(range(n), total=n, desc=f"reading {name}", mininterval=1.0) if show else range(n)
    skills, correct, ids = [], [], []
    extras: dict[str, list[np.ndarray]] = {k: [] for k in extra_features}
    for i in it:
        ex = source[i]
        sid = _decode_id(ex.get("student_id") if hasattr(ex, "get") else None, i)
        where = f"{name}[{i}] (student_id {sid})"
        try:
            q = np.asarray(ex["skills"]).astype(np.int64).reshape(-1)
            a = np.asarray(ex["correct"]).astype(np.int64).reshape(-1)
        except KeyError as e:
            raise DatasetError(f"{where}: missing feature {e.args[0]!r}; need 'skills' and 'correct'.") from None
        if q.shape != a.shape:
            raise DatasetError(f"{where}: 'skills' has {q.size} steps but 'correct' has {a.size}.")
        if a.size and not np.isin(a, (0, 1)).all():
            bad = int(np.flatnonzero(~np.isin(a, (0, 1)))[0])
            raise DatasetError(f"{where}: 'correct' must be 0/1, got {a[bad]} at step {bad}.")
        if q.size and q.min() < 0:
            raise DatasetError(f"{where}: negative skill id {q.min()} (skills must be 0-based).")
        if num_skills is not None and q.size and q.max() >= num_skills:
            raise DatasetError(f"{where}: skill id {q.max()} >= num_skills={num_skills}.")
        skills.append(q.astype(np.int32))
        correct.append(a.astype(np.int32))
        ids.append(sid)
        for k in extra_features:
            if k not in ex:
                raise DatasetError(f"{where}: missing feature {k!r}.")
            extras[k].append(np.asarray(ex[k]))
    return Sequences(skills, correct, ids, extras)


def split_train_validation(seqs: Sequences, val_fraction: float, seed: int) -> tuple[Sequences, Sequences]:
    """Carves a validation split from the training students (by student, seeded permutation)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(len(seqs))
    n_val = int(round(val_fraction * len(seqs)))
    if val_fraction > 0 and n_val == 0 and len(seqs) > 1:
        n_val = 1
    return seqs.subset(np.sort(perm[n_val:])), seqs.subset(np.sort(perm[:n_val]))


@dataclasses.dataclass
class ChunkTable:
    """Padded fixed-length chunks (a grain random-access source). Arrays (N, max_len), lengths (N,)."""

    skills: np.ndarray
    correct: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"skills": self.skills[i], "correct": self.correct[i], "lengths": self.lengths[i]}


def make_chunks(seqs: Sequences, max_len: int, min_len: int = 3) -> ChunkTable:
    """pyKT ``generate_sequences``: non-overlapping ``max_len`` chunks, remainder < ``min_len`` dropped.

    Chunks are padded to ``min(max_len, longest sequence)`` so short datasets do not run the LSTM over
    padding.
    """
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2, got {max_len}")
    max_len = max(2, min(max_len, int(seqs.lengths.max()) if len(seqs) else 2))
    starts = []
    for i, q in enumerate(seqs.skills):
        for s in range(0, len(q), max_len):
            if len(q) - s >= min_len:
                starts.append((i, s))
    n = len(starts)
    skills = np.full((n, max_len), -1, np.int32)
    correct = np.zeros((n, max_len), np.int32)
    lengths = np.zeros((n,), np.int32)
    for j, (i, s) in enumerate(starts):
        q = seqs.skills[i][s:s + max_len]
        skills[j, :len(q)] = q
        correct[j, :len(q)] = seqs.correct[i][s:s + max_len]
        lengths[j] = len(q)
    return ChunkTable(skills, correct, lengths)


@dataclasses.dataclass
class PackedTable:
    """Rows of several chunks (a grain random-access source). Arrays (N, T): skills, correct, segments
    (1, 2, ... per chunk, 0 on padding); lengths (N,) real steps per row (padding only at the end)."""

    skills: np.ndarray
    correct: np.ndarray
    segments: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"skills": self.skills[i], "correct": self.correct[i], "segments": self.segments[i],
                "lengths": self.lengths[i]}


def fill_ratio(table: ChunkTable | PackedTable) -> float:
    """Share of real (unpadded) steps in the table's rows."""
    return float(table.lengths.sum()) / max(1, table.skills.size)


def pack_chunks(chunks: ChunkTable, seed: int = 0) -> PackedTable:
    """Packs chunks into rows of the same length ``T`` (best-fit decreasing; ties in random order of ``seed``).

    Every chunk stays whole and contiguous; a row holds chunks until it is full. Deterministic given
    ``(chunks, seed)``.
    """
    n, t = chunks.skills.shape
    lengths = chunks.lengths.astype(np.int64)
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort(-lengths[order], kind="stable")]
    by_free: list[list[int]] = [[] for _ in range(t + 1)]  # free capacity -> open rows
    rows: list[list[int]] = []
    free: list[int] = []
    for j in order:
        need = int(lengths[j])
        cap = next((c for c in range(need, t + 1) if by_free[c]), None)
        if cap is None:
            rows.append([int(j)])
            free.append(t - need)
            r = len(rows) - 1
        else:
            r = by_free[cap].pop()
            rows[r].append(int(j))
            free[r] = cap - need
        by_free[free[r]].append(r)
    skills = np.full((len(rows), t), -1, np.int32)
    correct = np.zeros((len(rows), t), np.int32)
    segments = np.zeros((len(rows), t), np.int32)
    row_len = np.zeros((len(rows),), np.int32)
    for r, members in enumerate(rows):
        pos = 0
        for k, j in enumerate(members):
            n_j = int(lengths[j])
            skills[r, pos:pos + n_j] = chunks.skills[j, :n_j]
            correct[r, pos:pos + n_j] = chunks.correct[j, :n_j]
            segments[r, pos:pos + n_j] = k + 1
            pos += n_j
        row_len[r] = pos
    return PackedTable(skills, correct, segments, row_len)


def train_dataset(chunks: ChunkTable | PackedTable, global_batch_size: int, seed: int) -> tuple[grain.MapDataset, int]:
    """An endless, per-epoch reshuffled, per-process sharded, batched grain dataset.

    Returns ``(dataset, steps_per_epoch)``; each element is a dict of (local_batch, ...) numpy arrays.
    """
    pcount, pindex = jax.process_count(), jax.process_index()
    if global_batch_size % pcount:
        raise ValueError(f"batch_size {global_batch_size} not divisible by {pcount} processes")
    local_batch = global_batch_size // pcount
    steps_per_epoch = len(chunks) // global_batch_size
    if steps_per_epoch == 0:
        raise DatasetError(f"Only {len(chunks)} training chunks for batch_size {global_batch_size}: "
                           "lower config.batch_size.")
    ds = grain.MapDataset.source(chunks).shuffle(seed=seed)
    if pcount > 1:
        ds = ds[pindex::pcount]
    ds = ds.batch(local_batch, drop_remainder=True).repeat(None)
    return ds, steps_per_epoch


def pad_length(length: int, multiple: int) -> int:
    """Rounds ``length`` up to a multiple of ``multiple`` (bucketing keeps the number of compiles small)."""
    return max(multiple, -(-length // multiple) * multiple)


def eval_batches(seqs: Sequences, batch_size: int, length_multiple: int,
                 extra_features: Sequence[str] = ()) -> Iterator[dict[str, np.ndarray]]:
    """Full-length evaluation batches, sorted by length, padded to a multiple of ``length_multiple``
    (or of 16 when the whole batch fits in one ``length_multiple`` chunk).

    Every batch has exactly ``batch_size`` rows (filler rows have length 0) and ``index`` (B,) giving
    the row in ``seqs`` (-1 for fillers).
    """
    order = np.argsort(-seqs.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        longest = int(seqs.lengths[rows].max()) if len(rows) else 1
        # one chunk padded to a multiple of 16 when it fits, else a multiple of the chunk length
        t = pad_length(longest, 16) if longest <= length_multiple else pad_length(longest, length_multiple)
        batch = {"skills": np.full((batch_size, t), -1, np.int32),
                 "correct": np.zeros((batch_size, t), np.int32),
                 "lengths": np.zeros((batch_size,), np.int32),
                 "index": np.full((batch_size,), -1, np.int64)}
        for k in extra_features:
            batch[k] = np.zeros((batch_size, t), np.float32)
        for j, r in enumerate(rows):
            n = len(seqs.skills[r])
            batch["skills"][j, :n] = seqs.skills[r]
            batch["correct"][j, :n] = seqs.correct[r]
            batch["lengths"][j] = n
            batch["index"][j] = r
            for k in extra_features:
                batch[k][j, :n] = seqs.extras[k][r]
        yield batch


# ----------------------------------------------------------------------------------------- splits
REFERENCE_FEATURES = ("p_true", "p_bayes")  # simulated5 per-interaction oracle / Bayes predictions


@dataclasses.dataclass
class Splits:
    """The train and test sequences of a dataset and its number of skills (builder metadata)."""
    train: Sequences
    test: Sequences
    num_skills: int
    metadata: dict


def read_splits(builder: Any, train_split: str = "train", test_split: str = "test") -> Splits:
    """Reads and validates the two splits of a built TFDS ``builder`` (array_record, TF-free).

    The test split keeps the reference features (``p_true``, ``p_bayes``) when the dataset has them.
    Raises ``DatasetError`` naming the dataset for a missing split or missing ``num_skills`` metadata.
    """
    name = builder.info.full_name
    metadata = dict(builder.info.metadata or {})
    if "num_skills" not in metadata:
        raise DatasetError(f"{name}: builder metadata has no 'num_skills' ({builder.data_dir}).")
    num_skills = int(metadata["num_skills"])
    extras = [k for k in REFERENCE_FEATURES if k in set(builder.info.features.keys())]
    out = {}
    for role, split in (("train", train_split), ("test", test_split)):
        if split not in builder.info.splits:
            raise DatasetError(f"{name}: no split {split!r} (config.{role}_split); "
                               f"available: {sorted(builder.info.splits)}.")
        out[role] = read_sequences(builder.as_data_source(split=split), num_skills=num_skills,
                                   name=f"{name}:{split}", extra_features=extras if role == "test" else ())
    return Splits(out["train"], out["test"], num_skills, metadata)


def splits_from_sources(sources: dict[str, Any]) -> Splits:
    """Splits from in-memory sources ``{'train': src, 'test': src, 'num_skills': M}`` (lists of
    ``{'skills', 'correct'}`` dicts), for tests and notebooks."""
    m = int(sources["num_skills"])

    def read(split: str) -> Sequences:
        extras = [k for k in REFERENCE_FEATURES if len(sources[split]) and k in sources[split][0]]
        return read_sequences(sources[split], num_skills=m, name=f"sources[{split!r}]", extra_features=extras)
    return Splits(read("train"), read("test"), m, {})
