"""``generate``: writes a synthetic release of CASME II, SAMM, CAS(ME)^2 or CAS(ME)^3 into a manual_dir."""
from __future__ import annotations

import collections
import importlib
import os
import time
from typing import Any, Sequence

import numpy as np

from datasets.synthetic_me.common import GenConfig, Release, finalize_quirks, seed_for
from datasets.synthetic_me.faces import face_box, sample_identity
from datasets.synthetic_me.render import SubjectAssets, render_video

DATASETS = ("casme2", "samm", "casme_sq", "casme3")
PROFILES = ("learnable", "official_counts")
# Per dataset: supported variants, default variants, learnable clip lengths (frames at the dataset's fps).
_SPECS: dict[str, dict[str, Any]] = {
    "casme2": {"variants": ("raw", "cropped"), "default_variants": ("raw", "cropped"), "clip_len": (30, 60)},
    "samm": {"variants": ("raw",), "default_variants": ("raw",), "clip_len": (30, 60)},
    "casme_sq": {"variants": ("raw", "cropped", "rawpic"), "default_variants": ("raw", "cropped"),
                 "clip_len": (9, 17)},
    "casme3": {"variants": ("raw", "clip"), "default_variants": ("raw",), "clip_len": (8, 24)},
}
_LEARNABLE_DEFAULTS = {"num_subjects": 20, "clips_per_subject": 12, "frame_size": (160, 200)}
_OFFICIAL_DEFAULTS = {"frame_size": (48, 64), "clip_len": (8, 12)}


def _as_hw(frame_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(frame_size, (int, np.integer)):
        return int(frame_size), int(frame_size)
    h, w = (int(v) for v in frame_size)
    return h, w


def make_config(dataset: str, *, num_subjects: int | None = None, clips_per_subject: int | None = None,
                seed: int = 0, variants: Sequence[str] | None = None, frame_size: int | Sequence[int] | None = None,
                clip_len: tuple[int, int] | None = None, quirks: bool = True,
                profile: str = "learnable") -> GenConfig:
    """Validates the arguments of ``generate`` and fills in the per-dataset defaults."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    spec = _SPECS[dataset]
    variants = tuple(spec["default_variants"] if variants is None else variants)
    bad = [v for v in variants if v not in spec["variants"]]
    if bad or not variants:
        raise ValueError(f"variants {bad or variants} not available for {dataset}; choose from {spec['variants']}")
    if profile == "official_counts":
        if num_subjects is not None or clips_per_subject is not None:
            raise ValueError("profile='official_counts' fixes subjects and clips; do not pass num_subjects or "
                             "clips_per_subject")
        num_subjects, clips_per_subject = 0, 0
        frame_size = frame_size or _OFFICIAL_DEFAULTS["frame_size"]
        clip_len = clip_len or _OFFICIAL_DEFAULTS["clip_len"]
    else:
        num_subjects = _LEARNABLE_DEFAULTS["num_subjects"] if num_subjects is None else int(num_subjects)
        clips_per_subject = (_LEARNABLE_DEFAULTS["clips_per_subject"] if clips_per_subject is None
                             else int(clips_per_subject))
        if num_subjects < 1 or clips_per_subject < 1:
            raise ValueError(f"num_subjects and clips_per_subject must be >= 1, got {num_subjects}, "
                             f"{clips_per_subject}")
        frame_size = frame_size or _LEARNABLE_DEFAULTS["frame_size"]
        clip_len = clip_len or spec["clip_len"]
    hw = _as_hw(frame_size)
    if min(hw) < 32:
        raise ValueError(f"frame_size {hw} too small; need at least 32 px")
    lo, hi = (int(v) for v in clip_len)
    if not 3 <= lo <= hi:
        raise ValueError(f"clip_len must be (min, max) with 3 <= min <= max, got {clip_len}")
    return GenConfig(dataset=dataset, profile=profile, num_subjects=num_subjects,
                     clips_per_subject=clips_per_subject, variants=variants, frame_size=hw, clip_len=(lo, hi),
                     quirks=bool(quirks), seed=int(seed))


def plan_release(cfg: GenConfig) -> Release:
    """The annotation rows and videos of the release (nothing written)."""
    return importlib.import_module(f"datasets.synthetic_me.{cfg.dataset}").plan(cfg)


def generate(out_dir: str, dataset: str, *, num_subjects: int | None = None, clips_per_subject: int | None = None,
             seed: int = 0, variants: Sequence[str] | None = None, frame_size: int | Sequence[int] | None = None,
             clip_len: tuple[int, int] | None = None, quirks: bool = True, profile: str = "learnable",
             write_frames: bool = True, show_progress: bool = False) -> dict[str, Any]:
    """Writes a synthetic ``dataset`` release into ``out_dir`` (what a user's manual_dir would hold).

    Args:
      out_dir: target folder (created); the release files go at its top level. Files of the same name are
        overwritten; other files already there are left alone (use an empty folder).
      dataset: 'casme2' | 'samm' | 'casme_sq' | 'casme3'.
      num_subjects, clips_per_subject: size of the 'learnable' profile (defaults 20 x 12).
      seed: everything is a deterministic function of (seed, dataset, config).
      variants: frame folders to write; defaults per dataset (casme2: raw+cropped, samm: raw, casme_sq:
        raw(selectedpic)+cropped [+rawpic], casme3: raw(part_A split) [+clip (Part_A_ME_clip)]).
      frame_size: raw frame (H, W) or one int; the face spans about 0.8 * min(H, W).
      clip_len: (min, max) frames from onset to offset.
      quirks: plant the documented annotation/layout quirks (listed in the summary).
      profile: 'learnable' (random labels, demo data) or 'official_counts' (the real class/subject tables
        with tiny short clips).
      write_frames: False writes only the annotation file(s) (fast checks of the tables).
      show_progress: a progress bar over the videos.
    Returns:
      A summary dict: counts per class and subject, planted quirks with their Excel rows, junk files,
      the per-clip truth (rendered onset/apex/offset, AUs), each subject's face box in the raw frames (the
      region the "cropped" variants cut out) and the files written.
    """
    cfg = make_config(dataset, num_subjects=num_subjects, clips_per_subject=clips_per_subject, seed=seed,
                      variants=variants, frame_size=frame_size, clip_len=clip_len, quirks=quirks, profile=profile)
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    release = plan_release(cfg)
    release.write_annotations(out_dir)
    assets: dict[str, SubjectAssets] = {}
    files = 0
    videos = release.videos if write_frames else []
    if show_progress and write_frames:
        from tqdm.auto import tqdm
        videos = tqdm(videos, total=len(release.videos), desc=f"synthetic {dataset}", unit="video",
                      mininterval=1.0)
    for video in videos:
        if video.subject not in assets:
            rng = np.random.default_rng(seed_for(cfg, "identity", video.subject))
            assets[video.subject] = SubjectAssets.create(sample_identity(rng, cfg.frame_size))
        files += render_video(assets[video.subject], video, out_dir)
    if not write_frames:  # nothing but the spreadsheet is written, so no junk files either
        release.quirks = [q for q in release.quirks if q["quirk"] != "junk_file"]
        release.junk = {}
    for rel_path, content in release.junk.items():
        os.makedirs(os.path.dirname(os.path.join(out_dir, rel_path)), exist_ok=True)
        with open(os.path.join(out_dir, rel_path), "wb") as f:
            f.write(content)
    boxes = {v.subject: face_box(sample_identity(np.random.default_rng(seed_for(cfg, "identity", v.subject)),
                                                 cfg.frame_size)) for v in release.videos}
    return _summary(cfg, release, out_dir, files, time.perf_counter() - start, boxes)


def _summary(cfg: GenConfig, release: Release, out_dir: str, files: int, seconds: float,
             boxes: dict[str, tuple[int, int, int, int]]) -> dict[str, Any]:
    micro = [r for r in release.rows if not r.macro]
    per_class = collections.Counter(r.emotion for r in micro)
    per_subject = collections.Counter(r.subject for r in micro)
    return {
        "dataset": cfg.dataset, "profile": cfg.profile, "seed": cfg.seed, "out_dir": out_dir,
        "annotation_file": release.annotation_file, "variants": list(cfg.variants),
        "frame_size": list(cfg.frame_size), "clip_len": list(cfg.clip_len),
        "num_rows": len(release.rows), "num_micro_rows": len(micro), "num_videos": len(release.videos),
        "num_subjects": len(per_subject), "clips_per_class": dict(sorted(per_class.items())),
        "clips_per_subject": dict(sorted(per_subject.items())),
        "quirks": finalize_quirks(release.quirks), "junk_files": sorted(release.junk),
        "clips": [{"key": r.key, "subject": r.subject, "emotion": r.emotion, "aus": r.aus, "macro": r.macro,
                   "excel_row": r.excel_row, "onset": r.event.onset, "apex": r.event.apex,
                   "offset": r.event.offset, "frame_dirs": dict(r.frame_dirs)} for r in release.rows],
        "face_boxes": {s: list(b) for s, b in sorted(boxes.items())},  # raw-frame (x0, y0, x1, y1) per subject
        "files_written": files, "seconds": round(seconds, 3),
    }
