"""CAS(ME)^3 Part A release (mer_datasets.md section 4): the v2 ME label file + part_A split frames."""
from __future__ import annotations

import collections
import string

import openpyxl

from datasets.synthetic_me import aus as au_lib
from datasets.synthetic_me.common import (GenConfig, Release, Row, assign_to_subjects, intensity, quirk,
                                          rng_for, sample_labels, seed_for, sequential_timings)
from datasets.synthetic_me.render import Event, Output, VideoPlan
from datasets.synthetic_me.xlsx import finalize_xlsx

ANNOTATION_FILE = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
HEADER = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion")
RAW_ROOT = "part_A/data/part_A_split/part_A"
CLIP_ROOT = "Part_A_ME_clip/frame"
FPS = 30.0
LETTERS = string.ascii_lowercase[:13]  # a..m
_GAPS = (16, 18, 19, 20, 23, 24, 25)  # numbers in 138..217 that are not subjects (94 subjects in all)
SUBJECTS = ([f"spNO.{i}" for i in range(1, 16)] + ["spNO.17"] + [f"spNO.{i}" for i in range(39, 43)] +
            ["spNO.77"] + [f"spNO.{i}" for i in range(138, 218) if i - 138 not in _GAPS])
assert len(SUBJECTS) == 94
OFFICIAL_EMOTIONS = {"disgust": 250, "surprise": 187, "others": 158, "fear": 86, "anger": 64, "sad": 57,
                     "happy": 55, "Others": 3}
OTHERS_ONLY = ("spNO.5", "spNO.41", "spNO.150", "spNO.171", "spNO.190", "spNO.209")  # 94 - 88 = 6
LEARNABLE_WEIGHTS = {"happy": 1.0, "surprise": 1.0, "disgust": 1.0, "anger": 1.0, "fear": 1.0, "sad": 1.0,
                     "others": 1.0}


def _subjects(n: int) -> list[str]:
    return (SUBJECTS + [f"spNO.{i}" for i in range(218, 218 + max(0, n - len(SUBJECTS)))])[:n]


def _official_labels(cfg: GenConfig) -> dict[str, list[str]]:
    rng = rng_for(cfg, "official_counts")
    labels = [e for e, c in OFFICIAL_EMOTIONS.items() for _ in range(c)]
    fixed = {s: ["others"] * (1 + i % 3) for i, s in enumerate(OTHERS_ONLY)}
    rest = [s for s in SUBJECTS if s not in fixed]
    n_fixed = sum(len(v) for v in fixed.values())
    extra = rng.multinomial(len(labels) - n_fixed - len(rest), rng.dirichlet([3.0] * len(rest)))
    counts = {s: len(fixed[s]) if s in fixed else 1 + int(extra[rest.index(s)]) for s in SUBJECTS}
    non_others = tuple(e for e in OFFICIAL_EMOTIONS if e.lower() != "others")
    return assign_to_subjects(rng, counts, labels, fixed, {s: non_others for s in rest})


def plan(cfg: GenConfig) -> Release:
    if cfg.profile == "official_counts":
        per_subject = _official_labels(cfg)
    else:
        rng = rng_for(cfg, "labels")
        per_subject = {s: sample_labels(rng, LEARNABLE_WEIGHTS, cfg.clips_per_subject)
                       for s in _subjects(cfg.num_subjects)}
        if cfg.quirks and not any("others" in v for v in per_subject.values()):
            first = next(iter(per_subject))  # the 'Others' quirk needs an others row
            per_subject[first][0] = "others"
    rows: list[Row] = []
    videos: list[tuple[VideoPlan, list[Row]]] = []
    short_done = not cfg.quirks
    for subject, emotions in per_subject.items():
        srng = rng_for(cfg, "subject", subject)
        by_video: dict[str, list[str]] = collections.defaultdict(list)
        for e in srng.permutation(emotions):
            by_video[LETTERS[int(srng.integers(len(LETTERS)))]].append(str(e))
        for letter in sorted(by_video):
            labels = by_video[letter]
            lengths = [int(srng.integers(cfg.clip_len[0], cfg.clip_len[1] + 1)) for _ in labels]
            if not short_done:  # a clip shorter than 8 frames (the builder interpolates it)
                lengths[0], short_done = 6, True
            timings = sequential_timings(srng, lengths, int(srng.integers(1, 400)), (0, 80))
            events, video_rows = [], []
            for emotion, (on, ap, off) in zip(labels, timings):
                aus = au_lib.sample_au_string(srng, emotion)
                ev = Event(on, ap, off, aus, intensity(srng, emotion))
                obj = au_lib.ROMAN[au_lib.OBJECTIVE_CLASS[au_lib.canonical_emotion(emotion)] - 1]
                video_rows.append(Row(key=f"{subject}/{letter}/{on}", subject=subject, emotion=emotion, aus=aus,
                                      event=ev, cells={"Subject": subject, "Filename": letter, "Onset": on,
                                                       "Apex": ap, "Offset": off, "AU": str(aus),
                                                       "Objective class": obj, "emotion": emotion}))
                events.append(ev)
            rows.extend(video_rows)
            videos.append((VideoPlan(subject=subject, fps=FPS, events=tuple(events), outputs=(), color=True,
                                     seed=seed_for(cfg, "video", subject, letter)), video_rows))
    rows.sort(key=lambda r: (SUBJECTS.index(r.subject) if r.subject in SUBJECTS else 10**6 + int(r.subject[5:]),
                             r.cells["Filename"], r.event.onset))
    quirks = _plant_quirks(cfg, rows) if cfg.quirks else []
    plans = [_with_outputs(cfg, v, video_rows) for v, video_rows in videos]
    return Release("casme3", ANNOTATION_FILE, rows, plans, lambda out_dir: write_xlsx(out_dir, rows), quirks)


def _with_outputs(cfg: GenConfig, video: VideoPlan, rows: list[Row]) -> VideoPlan:
    outputs = []
    if "raw" in cfg.variants and rows:
        r0 = rows[0]
        folder = f"{RAW_ROOT}/{r0.subject}/{r0.cells['Filename']}/color"
        union = tuple(sorted({n for r in rows for n in range(r.event.onset, r.event.offset + 1)}))
        outputs.append(Output("raw", folder, "{n}.jpg", union))
        for r in rows:
            r.frame_dirs["raw"] = folder
    if "clip" in cfg.variants:
        for r in rows:
            r.frame_dirs["clip"] = f"{CLIP_ROOT}/{r.subject}_{r.cells['Filename']}_{r.cells['Onset']}"
            outputs.append(Output("raw", r.frame_dirs["clip"], "{n}.jpg",
                                  tuple(range(r.event.onset, r.event.offset + 1))))
    return VideoPlan(video.subject, video.fps, video.events, tuple(outputs), video.color, video.seed)


def _plant_quirks(cfg: GenConfig, rows: list[Row]) -> list[dict]:
    """'Others' (capital O), an onset typo (onset > apex), apex == onset, upper-case 'J', a short clip."""
    quirks = []
    official = cfg.profile == "official_counts"
    others = [r for r in rows if r.emotion == "others"]
    if not official:  # official_counts already holds the 3 'Others' rows of the real table
        for r in others[::2][:2]:
            r.emotion = r.cells["emotion"] = "Others"
    for r in rows:
        if r.emotion == "Others":
            quirks.append(quirk("Others_capitalised", r, "emotion 'Others' instead of 'others'"))
    free = [r for r in rows if r.emotion != "Others"]
    if free:
        r = free[len(free) // 2]
        r.cells["Onset"] = r.event.onset + 1000
        quirks.append(quirk("onset_typo", r, f"Onset {r.cells['Onset']} > Apex {r.event.apex} "
                                             f"(rendered onset {r.event.onset})"))
    if len(free) > 2:
        r = free[len(free) // 3]
        r.cells["Apex"] = r.event.onset
        quirks.append(quirk("apex_equals_onset", r, f"Apex == Onset == {r.event.onset}"))
    videos = collections.Counter((r.subject, r.cells["Filename"]) for r in rows)
    single = [r for r in rows if videos[(r.subject, r.cells["Filename"])] == 1]
    single.sort(key=lambda r: (r.subject != "spNO.14", r.cells["Filename"] != "j"))
    if single:
        single[0].cells["Filename"] = "J"
        quirks.append(quirk("uppercase_filename", single[0], "Filename 'J' (upper case; folder J)"))
    for r in rows:
        if r.event.offset - r.event.onset + 1 < 8:
            quirks.append(quirk("short_clip", r, f"{r.event.offset - r.event.onset + 1} frames (< 8)"))
    for r in rows:
        r.key = f"{r.subject}/{r.cells['Filename']}/{r.cells['Onset']}"
    return quirks


def write_xlsx(out_dir: str, rows: list[Row]) -> None:
    """Sheet 'label' (8 headers) and the empty Sheet1/Sheet3."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "label"
    ws.append(list(HEADER))
    for i, r in enumerate(rows, start=2):
        r.excel_row = i
        ws.append([r.cells[h] for h in HEADER])
    wb.create_sheet("Sheet1")
    wb.create_sheet("Sheet3")
    wb.save(f"{out_dir}/{ANNOTATION_FILE}")
    finalize_xlsx(f"{out_dir}/{ANNOTATION_FILE}")
