"""Plan objects shared by the four release writers: config, annotation rows, release, sampling helpers."""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from datasets.synthetic_me.render import Event, VideoPlan


@dataclasses.dataclass(frozen=True)
class GenConfig:
    dataset: str
    profile: str  # 'learnable' | 'official_counts'
    num_subjects: int
    clips_per_subject: int
    variants: tuple[str, ...]
    frame_size: tuple[int, int]  # raw frame (H, W)
    clip_len: tuple[int, int]  # inclusive (min, max) frames from onset to offset
    quirks: bool
    seed: int


@dataclasses.dataclass
class Row:
    """One annotation row: what is written (``cells``) plus the rendered truth and bookkeeping."""
    key: str  # the builder's sample key (mer_datasets.md section 9 step 5)
    subject: str  # the subject as written in the file ('01', '006', 'spNO.1', '3')
    emotion: str  # as written (may carry a planted typo)
    aus: str
    event: Event  # the rendered (true) timing
    cells: dict[str, Any]  # column -> cell value, in file order
    frame_dirs: dict[str, str] = dataclasses.field(default_factory=dict)  # variant -> folder
    excel_row: int = 0  # 1-based Excel row number, set by the writer
    macro: bool = False


@dataclasses.dataclass
class Release:
    dataset: str
    annotation_file: str
    rows: list[Row]
    videos: list[VideoPlan]
    write_annotations: Callable[[str], None]
    quirks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    junk: dict[str, bytes] = dataclasses.field(default_factory=dict)  # relative path -> content


def seed_for(cfg: GenConfig, *parts: Any) -> int:
    """A stable 63-bit seed derived from the config seed, the dataset and ``parts`` (order-free)."""
    words = [cfg.seed & 0xFFFFFFFF, zlib.crc32(cfg.dataset.encode())] + [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def rng_for(cfg: GenConfig, *parts: Any) -> np.random.Generator:
    return np.random.default_rng(seed_for(cfg, *parts))


def sample_timing(rng: np.random.Generator, clip_len: tuple[int, int], start: int) -> tuple[int, int, int]:
    """(onset, apex, offset) with offset - onset + 1 in clip_len and the apex strictly inside."""
    length = int(rng.integers(clip_len[0], clip_len[1] + 1))
    onset = int(start)
    offset = onset + length - 1
    apex = onset + int(np.clip(round((length - 1) * rng.uniform(0.25, 0.6)), 1, max(length - 2, 1)))
    return onset, apex, offset


def sample_labels(rng: np.random.Generator, weights: dict[str, float], n: int) -> list[str]:
    names = list(weights)
    p = np.array([weights[k] for k in names], np.float64)
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]


def intensity(rng: np.random.Generator, emotion: str) -> float:
    """Per-clip expression strength; 'others' is sometimes very weak motion."""
    if emotion.strip().lower() in ("others", "other") and rng.random() < 0.2:
        return float(rng.uniform(0.3, 0.5))
    return float(rng.uniform(0.75, 1.25))


def assign_to_subjects(rng: np.random.Generator, subject_counts: dict[str, int], labels: Sequence[str],
                       fixed: dict[str, list[str]] | None = None,
                       need_one_of: dict[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Distributes ``labels`` (a multiset) over subjects with exactly ``subject_counts`` rows each.

    ``fixed[s]`` labels are given to ``s`` first; then every subject in ``need_one_of`` gets one label from
    its allowed set; the rest is shuffled into the remaining slots. Raises ValueError when impossible.
    """
    pool = list(labels)
    out: dict[str, list[str]] = {s: [] for s in subject_counts}
    for s, fixed_labels in (fixed or {}).items():
        for lab in fixed_labels:
            pool.remove(lab)
            out[s].append(lab)
    order = rng.permutation(len(pool))
    pool = [pool[i] for i in order]
    for s, allowed in (need_one_of or {}).items():
        if any(lab in allowed for lab in out[s]):
            continue
        idx = next((i for i, lab in enumerate(pool) if lab in allowed), None)
        if idx is None:
            raise ValueError(f"no label from {allowed} left for subject {s}")
        out[s].append(pool.pop(idx))
    for s, count in subject_counts.items():
        while len(out[s]) < count:
            out[s].append(pool.pop())
        if len(out[s]) > count:
            raise ValueError(f"subject {s} got {len(out[s])} labels for {count} slots")
    if pool:
        raise ValueError(f"{len(pool)} labels left over")
    return out


def quirk(name: str, row: Row, detail: str) -> dict[str, Any]:
    return {"quirk": name, "key": row.key, "excel_row": None, "detail": detail, "_row": row}


def finalize_quirks(quirks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fills in the Excel row numbers (known after writing) and drops the internal row reference."""
    out = []
    for q in quirks:
        q = dict(q)
        row = q.pop("_row", None)
        if row is not None:
            q["excel_row"], q["key"] = row.excel_row, row.key
        out.append(q)
    return out


def sequential_timings(rng: np.random.Generator, lengths: Sequence[int], first: int,
                       gap: tuple[int, int]) -> list[tuple[int, int, int]]:
    """(onset, apex, offset) for expressions of the given lengths laid out one after another in a video."""
    out, start = [], int(first)
    for length in lengths:
        onset, apex, offset = sample_timing(rng, (int(length), int(length)), start)
        out.append((onset, apex, offset))
        start = offset + 1 + int(rng.integers(gap[0], gap[1] + 1))
    return out
