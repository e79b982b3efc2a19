"""CAS(ME)^2 release (mer_datasets.md section 3): CAS(ME)^2code_final.xlsx + selectedpic/ cropped/ [rawpic/]."""
from __future__ import annotations

import collections

import numpy as np
import openpyxl

from datasets.synthetic_me import aus as au_lib
from datasets.synthetic_me.common import (GenConfig, Release, Row, assign_to_subjects, intensity, quirk,
                                          rng_for, sample_labels, seed_for, sequential_timings)
from datasets.synthetic_me.render import Event, Output, VideoPlan
from datasets.synthetic_me.xlsx import finalize_xlsx

ANNOTATION_FILE = "CAS(ME)^2code_final.xlsx"
SHEETS = ("CASFEcode_final", "naming rule1", "naming rule2")
FPS = 30.0
FOLDERS = (15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40)
STIMULI = (("0101", "disgust1", "disgustingteeth"), ("0102", "disgust2", "eatingworms"),
           ("0401", "anger1", "girlcrashing"), ("0402", "anger2", "beatingpregnantwoman"),
           ("0502", "happy1", "funnyerrors"), ("0503", "happy2", "unnyfarting"),
           ("0505", "happy3", "funnyinnovations"), ("0507", "happy4", "climbingthewall"),
           ("0508", "happy5", "funnydunkey"))
CATEGORY_WEIGHTS = {"negative": 1.0, "positive": 1.0, "surprise": 1.0, "others": 1.0}
MACRO_WEIGHTS = {"negative": 0.4, "positive": 0.3, "surprise": 0.1, "others": 0.2}
SELF_REPORT = {"positive": ("happiness",), "surprise": ("surprise",),
               "negative": ("disgust", "anger", "fear", "sadness"),
               "others": ("helpless", "pain", "confused", "sympathy", "happiness")}
# Official micro-expression table (category, self-report) -> count; marginals match mer_datasets.md 3.2.
OFFICIAL_MICRO = {("positive", "happiness"): 8, ("surprise", "surprise"): 9,
                  ("negative", "disgust"): 10, ("negative", "anger"): 6, ("negative", "fear"): 2,
                  ("negative", "sadness"): 1, ("negative", "happiness"): 2,
                  ("others", "happiness"): 5, ("others", "surprise"): 1, ("others", "disgust"): 6,
                  ("others", "anger"): 2, ("others", "fear"): 2, ("others", "pain"): 2, ("others", "helpless"): 1}
ME_SUBJECTS = (1, 2, 3, 7, 8, 9, 11, 12, 13, 14, 15, 18, 20, 21)
OTHERS_ONLY = {3: 2, 9: 1, 13: 2, 18: 2, 21: 1}  # 5 subjects drop out of the 3-class protocol
NUM_MACRO_OFFICIAL, NUM_OFFSET_ZERO_OFFICIAL = 300, 44


def folder_number(subject_index: int) -> int:
    return FOLDERS[subject_index - 1] if subject_index <= len(FOLDERS) else 40 + subject_index - len(FOLDERS)


def _aus_for(rng: np.random.Generator, category: str, self_report: str) -> str:
    if category == "negative":
        return au_lib.sample_au_string(rng, self_report if self_report in au_lib.NEGATIVE_EMOTIONS
                                       else "repression")
    return au_lib.sample_au_string(rng, {"positive": "happiness"}.get(category, category))


def _official_micro(cfg: GenConfig) -> dict[int, list[str]]:
    rng = rng_for(cfg, "official_micro")
    labels = [f"{c}|{s}" for (c, s), n in OFFICIAL_MICRO.items() for _ in range(n)]
    rest = [s for s in ME_SUBJECTS if s not in OTHERS_ONLY]
    extra = rng.multinomial(len(labels) - sum(OTHERS_ONLY.values()) - len(rest), rng.dirichlet([2.0] * len(rest)))
    counts = {s: OTHERS_ONLY.get(s, 0) or 1 + int(extra[rest.index(s)]) for s in ME_SUBJECTS}
    others = [lab for lab in labels if lab.startswith("others|")]
    order = rng.permutation(len(others))
    fixed, k = {}, 0
    for s, n in OTHERS_ONLY.items():
        fixed[s] = [others[i] for i in order[k:k + n]]
        k += n
    non_others = tuple(sorted({lab for lab in labels if not lab.startswith("others|")}))
    return assign_to_subjects(rng, counts, labels, fixed, {s: non_others for s in rest})


def plan(cfg: GenConfig) -> Release:
    official = cfg.profile == "official_counts"
    rng = rng_for(cfg, "labels")
    subjects = list(range(1, (22 if official else cfg.num_subjects) + 1))
    micro = _official_micro(cfg) if official else {}
    macro_counts = (dict(zip(subjects, 1 + rng.multinomial(NUM_MACRO_OFFICIAL - 22, [1 / 22] * 22))) if official
                    else {s: max(1, cfg.clips_per_subject // 4) for s in subjects})
    rows: list[Row] = []
    videos: list[VideoPlan] = []
    macro_len = (cfg.clip_len[1], 2 * cfg.clip_len[1])
    for subject in subjects:
        srng = rng_for(cfg, "subject", subject)
        if official:
            pairs = [tuple(lab.split("|")) for lab in micro.get(subject, [])]
        else:
            cats = sample_labels(srng, CATEGORY_WEIGHTS, cfg.clips_per_subject)
            pairs = [(c, str(srng.choice(SELF_REPORT[c]))) for c in cats]
        items = [(c, s, False) for c, s in pairs]
        for c in sample_labels(srng, MACRO_WEIGHTS, macro_counts[subject]):
            items.append((c, str(srng.choice(SELF_REPORT[c])), True))
        by_stimulus: dict[int, list[tuple[str, str, bool]]] = collections.defaultdict(list)
        for i in srng.permutation(len(items)):
            by_stimulus[int(srng.integers(len(STIMULI)))].append(items[i])
        nn = folder_number(subject)
        for stim_idx in sorted(by_stimulus):
            code, stim, long_name = STIMULI[stim_idx]
            items = by_stimulus[stim_idx]
            bounds = [macro_len if m else cfg.clip_len for _, _, m in items]
            lengths = [int(srng.integers(lo, hi + 1)) for lo, hi in bounds]
            timings = sequential_timings(srng, lengths, int(srng.integers(20, 300)), (5, 60))
            events, video_rows = [], []
            for k, ((cat, report, is_macro), (on, ap, off)) in enumerate(zip(items, timings), start=1):
                aus = _aus_for(srng, cat, report)
                ev = Event(on, ap, off, aus, intensity(srng, cat) * (2.5 if is_macro else 1.0))
                clip = f"{stim}_{k}"
                row = Row(key=f"{subject}/{clip}", subject=str(subject), emotion=cat, aus=aus, event=ev, cells={
                    0: subject, 1: clip, 2: on, 3: ap, 4: off, 5: au_lib.au_cell(aus), 6: cat,
                    7: "macro-expression" if is_macro else "micro-expression", 8: report}, macro=is_macro)
                events.append(ev)
                video_rows.append(row)
            outputs = []
            for r in video_rows:
                frames = tuple(range(r.event.onset, r.event.offset + 1))
                if "raw" in cfg.variants:
                    r.frame_dirs["raw"] = f"selectedpic/s{nn}/{r.cells[1]}"
                    outputs.append(Output("raw", r.frame_dirs["raw"], "img{n}.jpg", frames))
                if "cropped" in cfg.variants:
                    r.frame_dirs["cropped"] = f"cropped/{nn}/{r.cells[1]}"
                    outputs.append(Output("cropped", r.frame_dirs["cropped"], "img{n}.jpg", frames))
            if "rawpic" in cfg.variants:
                union = tuple(sorted({n for r in video_rows for n in range(r.event.onset, r.event.offset + 1)}))
                outputs.append(Output("raw", f"rawpic/s{nn}/{nn}_{code}{long_name}", "img{n:03d}.jpg", union))
            rows.extend(video_rows)
            videos.append(VideoPlan(subject=str(subject), fps=FPS, events=tuple(events), outputs=tuple(outputs),
                                    color=True, seed=seed_for(cfg, "video", subject, stim)))
    rows.sort(key=lambda r: (int(r.subject), r.cells[1]))
    quirks = _plant_quirks(cfg, rows) if cfg.quirks else []
    return Release("casme_sq", ANNOTATION_FILE, rows, videos,
                   lambda out_dir: write_xlsx(out_dir, rows, len(subjects)), quirks)


def _plant_quirks(cfg: GenConfig, rows: list[Row]) -> list[dict]:
    """Offset 0, offset < apex and apex 0 on macro rows; 'happyiness'; NULL and empty AU cells."""
    quirks = []
    rng = rng_for(cfg, "quirks")
    macro = [r for r in rows if r.macro]
    n_zero = NUM_OFFSET_ZERO_OFFICIAL if cfg.profile == "official_counts" else min(2, len(macro))
    order = [macro[i] for i in rng.permutation(len(macro))]
    for r in order[:n_zero]:
        r.cells[4] = 0
        quirks.append(quirk("offset_zero", r, f"macro row with offset 0 (rendered offset {r.event.offset})"))
    rest = order[n_zero:]
    if rest:
        r = rest[0]
        r.cells[4] = r.event.apex - 2
        quirks.append(quirk("offset_before_apex", r, f"macro row offset {r.cells[4]} < apex {r.event.apex}"))
    if len(rest) > 1:
        r = rest[1]
        r.cells[3] = 0
        quirks.append(quirk("apex_zero", r, f"macro row with apex 0 (rendered apex {r.event.apex})"))
    micro = [r for r in rows if not r.macro]
    positive = [r for r in micro if r.cells[8] == "happiness" and r.cells[6] == "positive"]
    if positive:
        positive[len(positive) // 2].cells[8] = "happyiness"
        quirks.append(quirk("happyiness_typo", positive[len(positive) // 2], "self-report 'happyiness'"))
    others = [r for r in micro if r.cells[6] == "others"]
    for r, value in zip(others[:2], ("NULL", None)):
        r.cells[5] = value
        quirks.append(quirk("au_missing", r, f"AU cell {value!r} (rendered {r.aus})"))
    return quirks


def write_xlsx(out_dir: str, rows: list[Row], num_subjects: int) -> None:
    """Header-less sheet 0 (9 positional columns) and the two naming sheets (codes as text)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = SHEETS[0]
    for i, r in enumerate(rows, start=1):
        r.excel_row = i
        for col in range(9):
            if r.cells[col] is not None:
                ws.cell(row=i, column=col + 1, value=r.cells[col])
    rule1 = wb.create_sheet(SHEETS[1])
    for s in range(1, max(num_subjects, len(FOLDERS)) + 1):
        nn = folder_number(s)
        rule1.append([nn, f"s{nn}", s])
    rule2 = wb.create_sheet(SHEETS[2])
    for i, (code, stim, _) in enumerate(STIMULI, start=1):
        rule2.cell(row=i, column=1, value=code).number_format = "@"
        rule2.cell(row=i, column=2, value=stim)
    wb.save(f"{out_dir}/{ANNOTATION_FILE}")
    finalize_xlsx(f"{out_dir}/{ANNOTATION_FILE}")
