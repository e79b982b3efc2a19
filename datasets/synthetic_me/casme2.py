"""CASME II release (mer_datasets.md section 1): CASME2-coding-20190701.xlsx + RAW_selected + Cropped."""
from __future__ import annotations

import openpyxl
import numpy as np

from datasets.synthetic_me import aus as au_lib
from datasets.synthetic_me.common import (GenConfig, Release, Row, assign_to_subjects, intensity, quirk,
                                          rng_for, sample_labels, sample_timing, seed_for)
from datasets.synthetic_me.render import Event, Output, VideoPlan
from datasets.synthetic_me.xlsx import finalize_xlsx

ANNOTATION_FILE = "CASME2-coding-20190701.xlsx"
HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
          "Estimated Emotion", "Objective Classes")
RAW_DIR, CROPPED_DIR = "CASME2_RAW_selected", "Cropped"
FPS = 200.0
VARIANTS = ("raw", "cropped")

# 20190701 tables (mer_datasets.md 1.2 and 1.3).
OFFICIAL_EMOTIONS = {"others": 99, "disgust": 63, "happiness": 32, "surprise": 28, "repression": 27,
                     "sadness": 4, "fear": 2}
OFFICIAL_SUBJECT_COUNTS = {f"{i:02d}": c for i, c in enumerate(
    [9, 13, 7, 5, 19, 5, 9, 3, 14, 14, 10, 12, 8, 4, 3, 4, 36, 3, 16, 11, 2, 2, 12, 10, 7, 17], start=1)}
LEARNABLE_WEIGHTS = {"others": 1.0, "disgust": 1.0, "happiness": 1.0, "surprise": 1.0, "repression": 1.0,
                     "fear": 0.15, "sadness": 0.15}
THREE_CLASS = ("happiness", "disgust", "repression", "surprise")


def _official_labels(cfg: GenConfig) -> dict[str, list[str]]:
    """Per-subject emotion lists reproducing the 20190701 class and subject tables and their protocol
    consequences (sub10/sub18 only others plus one fear in sub10; sub24 has three surprise rows)."""
    labels = [e for e, c in OFFICIAL_EMOTIONS.items() for _ in range(c)]
    fixed = {"10": ["fear"] + ["others"] * 13, "18": ["others"] * 3, "04": ["disgust"], "05": ["disgust"],
             "24": ["surprise"] * 3}
    need = {s: THREE_CLASS for s in OFFICIAL_SUBJECT_COUNTS if s not in ("10", "18")}
    # Keep the other fear and the sadness rows away from sub10/sub18 (already full) automatically.
    return assign_to_subjects(rng_for(cfg, "official_labels"), OFFICIAL_SUBJECT_COUNTS, labels, fixed, need)


def _filenames(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = f"EP{int(rng.integers(1, max(20, n))):02d}_{int(rng.integers(1, 10)):02d}"
        name += "f" if rng.random() < 0.28 else ""
        if name not in names and name.rstrip("f") not in {x.rstrip("f") for x in names}:
            names.append(name)
    return sorted(names)


def plan(cfg: GenConfig) -> Release:
    """Annotation rows and videos of a CASME II release for ``cfg``."""
    if cfg.profile == "official_counts":
        per_subject = _official_labels(cfg)
    else:
        rng = rng_for(cfg, "labels")
        per_subject = {f"{i:02d}": sample_labels(rng, LEARNABLE_WEIGHTS, cfg.clips_per_subject)
                       for i in range(1, cfg.num_subjects + 1)}
    rows: list[Row] = []
    for subject, emotions in per_subject.items():
        rng = rng_for(cfg, "subject", subject)
        names = _filenames(rng, len(emotions))
        for name, emotion in zip(names, rng.permutation(emotions)):
            onset, apex, offset = sample_timing(rng, cfg.clip_len, int(rng.integers(10, 400)))
            aus = au_lib.sample_au_string(rng, emotion)
            ev = Event(onset, apex, offset, aus, intensity(rng, emotion))
            rows.append(Row(key=f"sub{subject}/{name}", subject=subject, emotion=str(emotion), aus=aus, event=ev,
                            cells={}))
    quirks = _plant_quirks(cfg, rows) if cfg.quirks else []
    rows.sort(key=lambda r: r.key)
    for r in rows:
        name = r.key.split("/", 1)[1]
        r.cells = {"Subject": r.subject, "Filename": name, "OnsetFrame": r.cells.get("OnsetFrame", r.event.onset),
                   "ApexFrame": r.cells.get("ApexFrame", r.event.apex),
                   "OffsetFrame": r.cells.get("OffsetFrame", r.event.offset),
                   "Action Units": au_lib.au_cell(r.aus), "Estimated Emotion": r.emotion,
                   "Objective Classes": au_lib.OBJECTIVE_CLASS[au_lib.canonical_emotion(r.emotion)]}
    videos, junk = [], {}
    for r in rows:
        frames = tuple(range(r.event.onset, r.event.offset + 1))
        outputs = []
        if "raw" in cfg.variants:
            r.frame_dirs["raw"] = f"{RAW_DIR}/sub{r.subject}/{r.cells['Filename']}"
            outputs.append(Output("raw", r.frame_dirs["raw"], "img{n}.jpg", frames))
        if "cropped" in cfg.variants:
            r.frame_dirs["cropped"] = f"{CROPPED_DIR}/sub{r.subject}/{r.cells['Filename']}"
            outputs.append(Output("cropped", r.frame_dirs["cropped"], "reg_img{n}.jpg", frames))
        videos.append(VideoPlan(subject=r.subject, fps=FPS, events=(r.event,), outputs=tuple(outputs), color=True,
                                seed=seed_for(cfg, "video", r.key)))
    if cfg.quirks and rows:
        first = rows[0]
        for kind, dirname in first.frame_dirs.items():
            junk[f"{dirname}/Desktop - Shortcut.lnk" if kind == "raw" else
                 f"{dirname}/{first.cells['Filename']}.avi"] = b"synthetic placeholder, not a frame\n"
        last = rows[-1]
        junk[f"{next(iter(last.frame_dirs.values()))}/Thumbs.db"] = b"\x00" * 16
        quirks += [{"quirk": "junk_file", "key": None, "excel_row": None, "detail": path} for path in junk]
    return Release("casme2", ANNOTATION_FILE, rows, videos, lambda out_dir: write_xlsx(out_dir, rows), quirks,
                   junk)


def _pick(rows: list[Row], used: set[int], subject: str | None = None, emotion: str | None = None) -> Row | None:
    """An unused row, preferring ``subject`` and ``emotion`` when such a row exists."""
    free = [i for i in range(len(rows)) if i not in used]
    for want_subject, want_emotion in ((subject, emotion), (subject, None), (None, emotion), (None, None)):
        hits = [i for i in free if (want_subject is None or rows[i].subject == want_subject)
                and (want_emotion is None or rows[i].emotion == want_emotion)]
        if hits:
            used.add(hits[len(hits) // 2])
            return rows[hits[len(hits) // 2]]
    return None


def _rename(row: Row, rows: list[Row], new_name: str) -> None:
    if not any(r.key == f"sub{row.subject}/{new_name}" for r in rows):
        row.key = f"sub{row.subject}/{new_name}"


def _plant_quirks(cfg: GenConfig, rows: list[Row]) -> list[dict]:
    """Apex '/' (sub04/EP12_01f), apex == onset (sub05/EP09_05f), apex == offset, irregular file names."""
    used: set[int] = set()
    quirks = []
    row = _pick(rows, used, subject="04", emotion="disgust")
    if row is not None:
        _rename(row, rows, "EP12_01f")
        row.cells["ApexFrame"] = "/"
        quirks.append(quirk("apex_slash", row, f"ApexFrame '/' (rendered apex {row.event.apex})"))
    row = _pick(rows, used, subject="05", emotion="disgust")
    if row is not None:
        _rename(row, rows, "EP09_05f")
        row.cells["ApexFrame"] = row.event.onset
        quirks.append(quirk("apex_equals_onset", row, f"ApexFrame == OnsetFrame == {row.event.onset} "
                                                      f"(rendered apex {row.event.apex})"))
    row = _pick(rows, used)
    if row is not None:
        row.cells["ApexFrame"] = row.event.offset
        quirks.append(quirk("apex_equals_offset", row, f"ApexFrame == OffsetFrame == {row.event.offset}"))
    row = _pick(rows, used, subject="07")
    if row is not None:
        _rename(row, rows, row.key.split("/")[1][:7] + "_01")
        quirks.append(quirk("irregular_filename", row, "three-part Filename like EP06_02_01"))
    row = _pick(rows, used, subject="09")
    if row is not None:
        _rename(row, rows, row.key.split("/")[1][:4] + "f")
        quirks.append(quirk("irregular_filename", row, "Filename without clip number like EP09f"))
    return quirks


def write_xlsx(out_dir: str, rows: list[Row]) -> None:
    """Sheet1 (10 columns, two blank headers, Subject as text) + empty Sheet2/Sheet3."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    for col, name in enumerate(HEADER, start=1):
        if name is not None:
            ws.cell(row=1, column=col, value=name)
    for i, r in enumerate(rows, start=2):
        r.excel_row = i
        for col, name in enumerate(HEADER, start=1):
            if name is None:
                continue
            cell = ws.cell(row=i, column=col, value=r.cells[name])
            if name == "Subject":
                cell.number_format = "@"
    wb.create_sheet("Sheet2")
    wb.create_sheet("Sheet3")
    wb.save(f"{out_dir}/{ANNOTATION_FILE}")
    finalize_xlsx(f"{out_dir}/{ANNOTATION_FILE}")
