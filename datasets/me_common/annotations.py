"""Annotation parsing for the four micro-expression releases, following the real files and their quirks
(see datasets/<name>/README.md). Each parser returns ``ClipAnnotation`` rows; every quirk is fixed
deterministically, flagged on the row and counted in the ``BuildReport``; a row that cannot be made valid is
skipped and listed (file, row) in the report instead.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

import pandas as pd

from datasets.me_common.report import BuildReport
from datasets.registry import DatasetError


@dataclasses.dataclass
class ClipAnnotation:
    """One annotated micro-expression. Frame numbers are absolute (as in the file names).

    ``onset/apex/offset`` are the raw values (-1 where the cell is not a number, e.g. apex ``/``);
    ``clip_onset/clip_apex/clip_offset`` are the repaired values used for sampling (``clip_offset`` None =
    resolve from the frames on disk). ``emotion`` is ``str(x).strip().lower()`` of the label cell.
    """
    key: str
    subject: str
    clip: str
    onset: int
    apex: int
    offset: int
    emotion: str
    aus: str
    source: str
    row: int
    clip_onset: int = 0
    clip_apex: int = 0
    clip_offset: int | None = None
    flags: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def where(self) -> str:
        return f"{self.source} row {self.row}"


# ------------------------------------------------------------------------------------------------ helpers
def read_sheet(path: str, *, sheet: str | int | Sequence[str | int] = 0, header: int | None = 0,
               dtype: dict | None = None) -> pd.DataFrame:
    """Reads one sheet of an xlsx/xls/csv file (``sheet`` may list alternatives, the first present wins).
    Errors name the file."""
    if not os.path.isfile(path):
        raise DatasetError(f"annotation file {path} does not exist")
    try:
        if path.lower().endswith(".csv"):
            return pd.read_csv(path, header=header, dtype=dtype)
        choices = list(sheet) if isinstance(sheet, (list, tuple)) else [sheet]
        names = pd.ExcelFile(path).sheet_names
        chosen = next((s for s in choices if (s in names if isinstance(s, str) else s < len(names))), None)
        if chosen is None:
            raise DatasetError(f"{path}: none of the sheets {choices} found (sheets: {names})")
        return pd.read_excel(path, sheet_name=chosen, header=header, dtype=dtype)
    except DatasetError:
        raise
    except Exception as e:  # a corrupt / unreadable spreadsheet
        raise DatasetError(f"cannot read annotation file {path}: {type(e).__name__}: {e}") from e


def require_columns(frame: pd.DataFrame, required: Sequence[str], path: str) -> None:
    """Raises DatasetError naming the file and the missing columns (after stripping header whitespace)."""
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: required column(s) {missing} not found; columns are {list(frame.columns)}")


def cell_text(value: Any) -> str:
    """A cell as stripped text ('' for empty/NaN; 12.0 -> '12')."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def cell_int(value: Any) -> int | None:
    """A frame-number cell as int, or None when it is not a number (e.g. ``/``, empty)."""
    text = cell_text(value)
    try:
        return int(float(text))
    except ValueError:
        return None


def normalise_label(value: Any) -> str:
    return cell_text(value).lower()


def repair_frames(ann: ClipAnnotation, report: BuildReport) -> ClipAnnotation | None:
    """Deterministic fixes shared by all datasets (flags + report counts), or None for a row that cannot be
    made valid (skipped and listed in the report):

    - onset 0 -> 1 (``onset_zero``);
    - offset 0 / missing -> resolved from the frames on disk later (``offset_zero``);
    - onset after offset (a typo, e.g. CAS(ME)^3 spNO.216 d) with a usable apex (onset > apex, apex < offset,
      apex - (offset - apex) >= 1) -> onset = apex - (offset - apex) (``onset_after_offset``); otherwise there
      is no clip to recover (a one-frame or made-up clip would be garbage with a label): the row is skipped
      (``skips/onset_after_offset``);
    - apex missing (``apex_missing``) or outside [onset, offset] (``apex_out_of_range``) -> midpoint;
    - apex == onset is kept and flagged (``apex_eq_onset``).
    """
    where = {"file": ann.source, "row": ann.row, "clip": ann.key}
    onset, apex, offset = ann.onset, ann.apex, ann.offset
    if onset == 0:
        onset = 1
        ann.flags.append("onset_zero")
        report.fix("onset_zero", **where)
    if offset <= 0:
        ann.flags.append("offset_zero")
        report.fix("offset_zero", **where)
        offset_fixed = None
    else:
        offset_fixed = offset
    if offset_fixed is not None and onset > offset_fixed:
        new_onset = apex - (offset_fixed - apex)
        if not (onset > apex and apex < offset_fixed and new_onset >= 1):
            report.skip("onset_after_offset", onset=onset, apex=apex, offset=offset,
                        reason="onset > offset, and mirroring the offset about the apex gives no clip", **where)
            return None
        ann.flags.append("onset_after_offset")
        report.fix("onset_after_offset", onset=onset, fixed_onset=new_onset, **where)
        onset = new_onset
    ann.clip_onset, ann.clip_offset = onset, offset_fixed
    if apex < 0:
        ann.flags.append("apex_missing")
        report.fix("apex_missing", **where)
        apex = -1
    elif apex < onset or (offset_fixed is not None and apex > offset_fixed) or apex == 0:
        ann.flags.append("apex_out_of_range")
        report.fix("apex_out_of_range", apex=apex, onset=onset, offset=offset, **where)
        apex = -1
    elif apex == onset:
        ann.flags.append("apex_eq_onset")
        report.fix("apex_eq_onset", **where)
    ann.clip_apex = apex  # -1 -> midpoint once the offset is known
    return ann


def finish_apex(ann: ClipAnnotation, offset: int) -> None:
    """Sets the final clip offset and the midpoint apex for rows whose apex was missing or invalid."""
    ann.clip_offset = offset
    if ann.clip_apex < 0:
        ann.clip_apex = (ann.clip_onset + offset) // 2


def _frame_cells(row: pd.Series, cols: Sequence[str], path: str, excel_row: int, key: str,
                 report: BuildReport) -> tuple[int, int, int] | None:
    onset, apex, offset = (cell_int(row[c]) for c in cols)
    if onset is None or offset is None:
        report.skip("bad_frame_number", file=os.path.basename(path), row=excel_row, clip=key,
                    onset=cell_text(row[cols[0]]), offset=cell_text(row[cols[2]]))
        return None
    return onset, (-1 if apex is None else apex), offset


# ----------------------------------------------------------------------------------------------- CASME II
CASME2_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                  "Estimated Emotion")


def parse_casme2(path: str, report: BuildReport) -> list[ClipAnnotation]:
    """``CASME2-coding-2014*/2019*.xlsx`` (or a CSV export): header in row 1, Subject as text."""
    frame = read_sheet(path, sheet=["Sheet1", 0], dtype={"Subject": str})
    require_columns(frame, CASME2_COLUMNS, path)
    name, out = os.path.basename(path), []
    for i, row in frame.iterrows():
        excel_row = int(i) + 2
        subject_cell = cell_text(row["Subject"])
        if not subject_cell and not cell_text(row["Filename"]):
            continue  # trailing empty rows
        if not subject_cell.isdigit():
            report.skip("bad_subject", file=name, row=excel_row, subject=subject_cell)
            continue
        if len(subject_cell) != 2:
            report.fix("subject_not_text", file=name, row=excel_row, subject=subject_cell)
        subject = f"sub{int(subject_cell):02d}"
        clip = cell_text(row["Filename"])
        key = f"{subject}/{clip}"
        cells = _frame_cells(row, CASME2_COLUMNS[2:5], path, excel_row, key, report)
        if cells is None:
            continue
        ann = ClipAnnotation(key=key, subject=subject, clip=clip, onset=cells[0], apex=cells[1], offset=cells[2],
                             emotion=normalise_label(row["Estimated Emotion"]), aus=cell_text(row["Action Units"]),
                             source=name, row=excel_row)
        if repair_frames(ann, report) is not None:
            out.append(ann)
    return out


# --------------------------------------------------------------------------------------------------- SAMM
SAMM_COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Action Units",
                "Estimated Emotion")


def parse_samm(path: str, report: BuildReport) -> list[ClipAnnotation]:
    """``SAMM_Micro_FACS_Codes_v2.xlsx``: sheet ``MICRO_ONLY``; the header row is located (its first cell is
    ``Subject``; 13 note rows precede it in the official file, none in re-saved copies)."""
    raw = read_sheet(path, sheet=["MICRO_ONLY", 0], header=None, dtype=str)
    name = os.path.basename(path)
    header_rows = [i for i in range(len(raw)) if cell_text(raw.iat[i, 0]) == "Subject"]
    if not header_rows:
        raise DatasetError(f"{path}: no header row whose first cell is 'Subject' (expected e.g. at row 14)")
    h = header_rows[0]
    if h > 0:
        report.fix("preamble_rows", file=name, rows=h)
    frame = raw.iloc[h + 1:].copy()
    frame.columns = [cell_text(c) for c in raw.iloc[h]]
    require_columns(frame, SAMM_COLUMNS, path)
    out = []
    for i, row in frame.iterrows():
        excel_row = int(i) + 1
        subject_cell = cell_text(row["Subject"])
        if not subject_cell and not cell_text(row["Filename"]):
            continue
        if not subject_cell.isdigit():
            report.skip("bad_subject", file=name, row=excel_row, subject=subject_cell)
            continue
        if len(subject_cell) != 3:
            report.fix("subject_not_text", file=name, row=excel_row, subject=subject_cell)
        subject = f"{int(subject_cell):03d}"
        clip = cell_text(row["Filename"])
        cells = _frame_cells(row, SAMM_COLUMNS[2:5], path, excel_row, clip, report)
        if cells is None:
            continue
        ann = ClipAnnotation(key=clip, subject=subject, clip=clip, onset=cells[0], apex=cells[1], offset=cells[2],
                             emotion=normalise_label(row["Estimated Emotion"]), aus=cell_text(row["Action Units"]),
                             source=name, row=excel_row)
        if repair_frames(ann, report) is not None:
            out.append(ann)
    return out


# ---------------------------------------------------------------------------------------------- CAS(ME)^2
# Subject index -> folder (``naming rule1``), used only when the sheet is absent (documented in mer_datasets).
CASME_SQ_SUBJECT_FOLDERS = {1: 15, 2: 16, 3: 19, 4: 20, 5: 21, 6: 22, 7: 23, 8: 24, 9: 25, 10: 26, 11: 27,
                            12: 29, 13: 30, 14: 31, 15: 32, 16: 33, 17: 34, 18: 35, 19: 36, 20: 37, 21: 38, 22: 40}
SELF_REPORT_TYPOS = {"happyiness": "happiness"}


def _casme_sq_subject_map(path: str, report: BuildReport) -> dict[int, int]:
    try:
        sheet = read_sheet(path, sheet=["naming rule1"], header=None, dtype=str)
    except DatasetError:
        report.fix("naming_rule1_missing", file=os.path.basename(path))
        return dict(CASME_SQ_SUBJECT_FOLDERS)
    mapping = {}
    for i in range(len(sheet)):
        folder, idx = cell_int(sheet.iat[i, 0]), cell_int(sheet.iat[i, 2]) if sheet.shape[1] > 2 else None
        if folder is not None and idx is not None:
            mapping[idx] = folder
    return mapping or dict(CASME_SQ_SUBJECT_FOLDERS)


def _casme_sq_video_codes(path: str, report: BuildReport) -> dict[str, str]:
    """``naming rule2``: stimulus name (e.g. ``anger1``) -> 4-digit video code (``0401``, read as text)."""
    try:
        sheet = read_sheet(path, sheet=["naming rule2"], header=None, dtype=str)
    except DatasetError:
        report.note("naming_rule2_missing", file=os.path.basename(path))
        return {}
    codes = {}
    for i in range(len(sheet)):
        code, stimulus = cell_text(sheet.iat[i, 0]), cell_text(sheet.iat[i, 1]) if sheet.shape[1] > 1 else ""
        if code.isdigit() and stimulus:
            codes[stimulus.lower()] = code.zfill(4)
    return codes


def parse_casme_sq(path: str, report: BuildReport) -> list[ClipAnnotation]:
    """``CAS(ME)^2code_final[(Updated)].xlsx`` sheet 0: no header, 9 positional columns
    (subject idx, clip, onset, apex, offset, AUs, emotion category, expression type, self-report).
    Only micro-expression rows are returned; macro rows are counted as notes."""
    raw = read_sheet(path, sheet=["CASFEcode_final", "CASMEcode_final", 0], header=None, dtype=str)
    name = os.path.basename(path)
    if raw.shape[1] < 9:
        raise DatasetError(f"{path}: sheet 0 has {raw.shape[1]} columns, expected 9 positional columns "
                           "(subject, clip, onset, apex, offset, AUs, emotion, type, self-report)")
    folders = _casme_sq_subject_map(path, report)
    video_codes = _casme_sq_video_codes(path, report)
    out = []
    for i in range(len(raw)):
        excel_row = i + 1
        cells = [raw.iat[i, c] for c in range(9)]
        idx = cell_int(cells[0])
        if idx is None:
            if i == 0 and cell_text(cells[0]):
                report.fix("header_row_present", file=name, row=excel_row)
            elif cell_text(cells[0]) or cell_text(cells[1]):
                report.skip("bad_subject", file=name, row=excel_row, subject=cell_text(cells[0]))
            continue
        kind = cell_text(cells[7]).lower()
        clip = cell_text(cells[1])
        if not kind.startswith("micro"):
            report.note("macro_expression_rows", file=name, row=excel_row) if kind.startswith("macro") else \
                report.skip("unknown_expression_type", file=name, row=excel_row, value=cell_text(cells[7]))
            continue
        if idx not in folders:
            report.skip("unknown_subject_index", file=name, row=excel_row, subject=idx)
            continue
        self_report = normalise_label(cells[8])
        if self_report in SELF_REPORT_TYPOS:
            report.fix("self_report_typo", file=name, row=excel_row, value=self_report)
            self_report = SELF_REPORT_TYPOS[self_report]
        onset, apex, offset = cell_int(cells[2]), cell_int(cells[3]), cell_int(cells[4])
        key = f"{idx}/{clip}"
        if onset is None or offset is None:
            report.skip("bad_frame_number", file=name, row=excel_row, clip=key)
            continue
        ann = ClipAnnotation(key=key, subject=f"s{folders[idx]:02d}", clip=clip, onset=onset,
                             apex=-1 if apex is None else apex, offset=offset, emotion=normalise_label(cells[6]),
                             aus=cell_text(cells[5]), source=name, row=excel_row,
                             extra={"subject_index": idx, "folder_number": folders[idx], "self_report": self_report,
                                    "video_code": video_codes.get(re.sub(r"_\d+$", "", clip).lower())})
        if repair_frames(ann, report) is not None:
            out.append(ann)
    return out


# ---------------------------------------------------------------------------------------------- CAS(ME)^3
CASME3_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")


def parse_casme3(path: str, report: BuildReport) -> list[ClipAnnotation]:
    """``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` sheet ``label`` (v1 ``.xls``: ``Sheet1``). The key is
    (Subject, Filename, Onset): one video can hold several MEs. ``Others`` is folded into ``others``."""
    frame = read_sheet(path, sheet=["label", "Sheet1", 0], dtype={"Subject": str, "Filename": str})
    require_columns(frame, CASME3_COLUMNS, path)
    name, out, seen = os.path.basename(path), [], set()
    for i, row in frame.iterrows():
        excel_row = int(i) + 2
        subject, clip = cell_text(row["Subject"]), cell_text(row["Filename"])
        if not subject and not clip:
            continue
        if not re.fullmatch(r"sp(no)?\.?\s*\d+", subject, re.IGNORECASE):
            report.skip("bad_subject", file=name, row=excel_row, subject=subject)
            continue
        cells = _frame_cells(row, CASME3_COLUMNS[2:5], path, excel_row, f"{subject}/{clip}", report)
        if cells is None:
            continue
        key = f"{subject}/{clip}/{cells[0]}"
        if key in seen:
            report.skip("duplicate_key", file=name, row=excel_row, clip=key)
            continue
        seen.add(key)
        label_cell = cell_text(row["emotion"])
        if label_cell != label_cell.lower() and label_cell.lower() == "others":
            report.fix("label_case", file=name, row=excel_row, value=label_cell)
        ann = ClipAnnotation(key=key, subject=subject, clip=clip, onset=cells[0], apex=cells[1], offset=cells[2],
                             emotion=label_cell.lower(), aus=cell_text(row["AU"]), source=name, row=excel_row)
        if repair_frames(ann, report) is not None:
            out.append(ann)
    return out

