"""Reading and cleaning the ASSISTments 2017 competition release (pandas; every problem -> DatasetError).

``load_release(manual_dir)`` returns the action log (one row per action, sorted by student and actionId), the
de-duplicated training labels, the validation/test label rows (file order), the skill vocabulary, a dict of
cleaning counts and the build report (every skipped row with its file and line). Used by the TFDS builder;
usable on its own.

Rows that cannot be used are skipped, never guessed: a non-integer ``ITEST_id`` / ``actionId`` (``123.5``
is not student 123), a skill cell that reads as NaN (``NaN``, ``null``, ...; an *empty* skill cell is the
documented ``noskill``), a student whose student-profile (SP) features are missing (NaN) and the label rows of
skipped students. An SP column that is empty in a whole log file, an empty or non-UTF-8 file are errors.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from datasets.assistments2017 import schema
from datasets.build_report import BuildReport
from datasets.registry import DatasetError
from datasets.text_files import utf8_error

ACTION_COLUMNS = ("actionId", "skill", "problemId", "correct", "original", "hint", "timeTaken", "Ln")
LOG_SP_COLUMNS = tuple(c for c in schema.SP_COLUMNS if c != "AveCorrect") + ("AveCorrect",)
_ID_ALIASES = ("ITEST_id", "studentId")
# Cell texts pandas would read as NaN; as a skill name they mean "no value", not a skill called "NaN".
NA_TEXTS = frozenset({"nan", "-nan", "na", "n/a", "#n/a", "#n/a n/a", "#na", "null", "none", "<na>", "-1.#ind",
                      "1.#ind", "-1.#qnan", "1.#qnan"})
_MAX_EXACT_INT = 2 ** 53  # ids beyond this cannot be told apart after the float conversion


@dataclasses.dataclass
class Release:
    """``actions``: ITEST_id + ACTION_COLUMNS + SP columns, sorted by (ITEST_id, actionId);
    ``training``: one row per labelled student (ITEST_id, SchoolId, AveCorrect, MCAS (NaN = missing), isSTEM);
    ``validation``: validation/test label rows in file order; ``skill_vocab``: sorted skill names;
    ``report``: the skipped rows (file, line) and counts."""

    actions: pd.DataFrame
    training: pd.DataFrame
    validation: pd.DataFrame
    skill_vocab: list[str]
    cleaning: dict[str, Any]
    log_files: list[str]
    report: BuildReport = dataclasses.field(default_factory=lambda: BuildReport("assistments2017", "default"))


def log_files(manual_dir: str) -> list[str]:
    """student_log_*.csv in numeric order, else the single re-release file."""
    logs = glob.glob(os.path.join(manual_dir, schema.LOG_FILE_GLOB))
    if logs:
        return sorted(logs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])
    full = os.path.join(manual_dir, schema.FULL_RELEASE_FILE)
    if os.path.isfile(full):
        return [full]
    raise DatasetError(f"no {schema.LOG_FILE_GLOB} nor {schema.FULL_RELEASE_FILE} in {manual_dir}.")


def _read_csv(path: str, **kwargs: Any) -> pd.DataFrame:
    """pd.read_csv whose failures are DatasetErrors naming the file (and the byte offset of bad UTF-8)."""
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError:
        raise DatasetError(utf8_error(path) or f"{path}: not valid UTF-8.") from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the file is empty (expected a CSV header line and rows).") from None
    except (pd.errors.ParserError, ValueError, OverflowError) as e:
        raise DatasetError(f"{path}: not a readable CSV ({type(e).__name__}: {e}).") from None


def _line(frame: pd.DataFrame | pd.Series, position: int) -> int:
    """1-based line in the file of the row at ``position`` (the frame index is the 0-based data row)."""
    return int(frame.index[position]) + 2


def _numeric(frame: pd.DataFrame, column: str, path: str, *, required: bool) -> tuple[pd.Series, int]:
    """Column as float; non-numeric entries raise (``required``) or become NaN and are counted."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if required:
        bad = bad | raw.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        if required:
            value = raw.iloc[row]
            what = "empty value" if pd.isna(value) else f"non-numeric value {value!r}"
            raise DatasetError(f"{path}, column {column!r}, line {_line(frame, row)}: {what}.")
    return values.astype(np.float64), int(bad.sum())


def _not_integer(values: pd.Series) -> np.ndarray:
    v = values.to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(v) & (v == np.round(v)) & (np.abs(v) < _MAX_EXACT_INT))


def _skip_non_integer(frame: pd.DataFrame, column: str, values: pd.Series, skip: np.ndarray, name: str,
                      report: BuildReport) -> np.ndarray:
    bad = _not_integer(values)
    for i in np.flatnonzero(bad & ~skip):
        report.skip("non_integer_id", file=name, row=_line(frame, i), column=column, value=frame[column].iloc[i])
    return skip | bad


def _read_log(path: str, cleaning: dict[str, Any], report: BuildReport, seen_students: set[int]) -> pd.DataFrame:
    header = _read_csv(path, nrows=0).columns
    id_column = next((c for c in _ID_ALIASES if c in header), None)
    needed = ACTION_COLUMNS + LOG_SP_COLUMNS
    missing = [c for c in needed if c not in header] + ([] if id_column else ["ITEST_id (or studentId)"])
    if missing:
        raise DatasetError(f"{path}: missing required column(s) {missing}.")
    usecols = [id_column, *needed]
    frame = _read_csv(path, usecols=usecols, dtype=str, keep_default_na=False, na_values=[""])
    name = os.path.basename(path)
    ids, _ = _numeric(frame, id_column, path, required=True)
    action_ids, _ = _numeric(frame, "actionId", path, required=True)
    skip = np.zeros(len(frame), bool)
    skip = _skip_non_integer(frame, id_column, ids, skip, name, report)
    seen_students.update(int(x) for x in ids[~skip].unique())
    skip = _skip_non_integer(frame, "actionId", action_ids, skip, name, report)
    cleaning["non_integer_id_rows_skipped"] += int(skip.sum())
    skill = frame["skill"]
    nan_skill = (skill.notna() & skill.str.strip().str.lower().isin(NA_TEXTS)).to_numpy()
    for i in np.flatnonzero(nan_skill & ~skip):
        report.skip("nan_skill", file=name, row=_line(frame, i), value=skill.iloc[i])
    cleaning["nan_skill_actions_skipped"] += int((nan_skill & ~skip).sum())
    skip |= nan_skill
    frame, ids, action_ids = frame[~skip], ids[~skip], action_ids[~skip]

    out = pd.DataFrame(index=frame.index)
    out["ITEST_id"], out["actionId"] = ids, action_ids
    out["correct"], _ = _numeric(frame, "correct", path, required=True)
    bad = ~out["correct"].isin([0.0, 1.0])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{path}, column 'correct', line {_line(frame, row)}: value "
                           f"{frame['correct'].iloc[row]!r} is not 0 or 1.")
    skill = frame["skill"]
    cleaning["missing_skill_as_noskill"] += int(skill.isna().sum())
    out["skill"] = skill.fillna(schema.NO_SKILL).str.strip()
    for column in ("problemId", "original", "hint", "timeTaken", "Ln", *LOG_SP_COLUMNS):
        out[column], coerced = _numeric(frame, column, path, required=False)
        if coerced:
            cleaning["non_numeric_to_nan"][column] = cleaning["non_numeric_to_nan"].get(column, 0) + coerced
    if len(out):
        empty = [c for c in LOG_SP_COLUMNS if out[c].isna().all()]
        if empty:
            raise DatasetError(f"{path}, column {empty[0]!r}: empty or not a number in every row; the "
                               f"student-profile (SP) features need it.")
    out["_file"], out["_line"] = name, out.index.to_numpy() + 2
    return out


def _read_labels(path: str, columns: tuple[str, ...], report: BuildReport, cleaning: dict[str, Any]
                 ) -> pd.DataFrame:
    """The label rows (index = 0-based data row of the file), non-integer ids skipped."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: label file not found.")
    frame = _read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing required column(s) {missing}.")
    ids, _ = _numeric(frame, "ITEST_id", path, required=True)
    skip = _skip_non_integer(frame, "ITEST_id", ids, np.zeros(len(frame), bool), os.path.basename(path), report)
    cleaning["non_integer_id_rows_skipped"] += int(skip.sum())
    frame = frame[~skip]
    out = pd.DataFrame(index=frame.index)
    out["ITEST_id"] = ids[~skip]
    for column in columns[1:]:
        out[column], _ = _numeric(frame, column, path, required=column == "isSTEM")
    if "isSTEM" in out and not out["isSTEM"].isin([0.0, 1.0]).all():
        row = int(np.flatnonzero(~out["isSTEM"].isin([0.0, 1.0]).to_numpy())[0])
        raise DatasetError(f"{path}, column 'isSTEM', line {_line(frame, row)}: value "
                           f"{frame['isSTEM'].iloc[row]!r} is not 0 or 1.")
    return out


def label_ave_correct(training: pd.DataFrame, validation: pd.DataFrame) -> dict[int, float]:
    """AveCorrect per student from the label files: the training row's, else the first validation row's
    (NaN where neither has one)."""
    ave = {int(k): float(v) for k, v in zip(training["ITEST_id"], training["AveCorrect"])}
    for student, value in zip(validation["ITEST_id"], validation["AveCorrect"]):
        if not np.isfinite(ave.get(int(student), np.nan)):
            ave[int(student)] = float(value)
    return ave


def _students_missing_sp(actions: pd.DataFrame, ave_correct: dict[int, float], report: BuildReport) -> set[int]:
    """Students whose SP vector (first action's values, AveCorrect from the labels where known) has a NaN."""
    first = actions.drop_duplicates("ITEST_id")
    sp = first[list(schema.SP_COLUMNS)].copy()
    labels = first["ITEST_id"].map(lambda s: ave_correct.get(int(s), np.nan)).astype(np.float64)
    sp["AveCorrect"] = labels.where(np.isfinite(labels), sp["AveCorrect"])
    missing = sp.isna().to_numpy()
    skipped = set()
    for i in np.flatnonzero(missing.any(axis=1)):
        row = first.iloc[i]
        columns = [c for c, m in zip(schema.SP_COLUMNS, missing[i]) if m]
        report.skip("missing_sp", file=row["_file"], row=int(row["_line"]), student=int(row["ITEST_id"]),
                    columns=columns)
        skipped.add(int(row["ITEST_id"]))
    return skipped


def load_release(manual_dir: str, report: BuildReport | None = None) -> Release:
    """Reads, validates and cleans the release in ``manual_dir`` (see module docstring)."""
    report = report or BuildReport("assistments2017", "default")
    cleaning: dict[str, Any] = {"missing_skill_as_noskill": 0, "non_numeric_to_nan": {},
                                "non_integer_id_rows_skipped": 0, "nan_skill_actions_skipped": 0}
    files = log_files(manual_dir)
    seen_students: set[int] = set()
    actions = pd.concat([_read_log(p, cleaning, report, seen_students) for p in files], ignore_index=True)
    cleaning["log_rows"] = len(actions)
    actions = actions.sort_values(["ITEST_id", "actionId"], kind="stable", ignore_index=True)
    dup = actions.duplicated(["ITEST_id", "actionId"])
    cleaning["duplicate_action_rows_dropped"] = int(dup.sum())
    actions = actions[~dup].reset_index(drop=True)
    sp_spread = actions.groupby("ITEST_id")[list(LOG_SP_COLUMNS)].nunique(dropna=False).max(axis=1)
    cleaning["students_with_non_constant_sp"] = int((sp_spread > 1).sum())

    train_path = os.path.join(manual_dir, schema.TRAINING_LABEL_FILE)
    valid_path = os.path.join(manual_dir, schema.VALIDATION_LABEL_FILE)
    training = _read_labels(train_path, schema.TRAINING_LABEL_COLUMNS, report, cleaning)
    validation = _read_labels(valid_path, schema.VALIDATION_LABEL_COLUMNS, report, cleaning)
    cleaning["training_label_rows"] = len(training)
    deduped = training.drop_duplicates()
    cleaning["duplicate_label_rows_dropped"] = len(training) - len(deduped)
    conflicting = deduped.duplicated("ITEST_id")
    cleaning["conflicting_label_rows_dropped"] = int(conflicting.sum())
    training = deduped[~conflicting]
    cleaning["validation_label_rows"] = len(validation)

    no_sp = _students_missing_sp(actions, label_ave_correct(training, validation), report)
    cleaning["students_missing_sp_skipped"] = len(no_sp)
    actions = actions[~actions["ITEST_id"].isin(no_sp)].reset_index(drop=True)
    if actions.empty:
        raise DatasetError(f"{', '.join(os.path.basename(p) for p in files)}: no usable action rows "
                           f"(see build_report.json for the skipped rows).")
    known = set(actions["ITEST_id"].unique().tolist())
    skipped_students = no_sp | (seen_students - known)  # SP missing, or every action row skipped
    cleaning["label_rows_of_skipped_students"] = 0
    frames = {}
    for path, frame in ((train_path, training), (valid_path, validation)):
        gone = frame["ITEST_id"].isin(skipped_students).to_numpy()
        for i in np.flatnonzero(gone):
            report.skip("label_of_skipped_student", file=os.path.basename(path), row=_line(frame, i),
                        student=int(frame["ITEST_id"].iloc[i]))
        cleaning["label_rows_of_skipped_students"] += int(gone.sum())
        frame = frame[~gone]
        orphan = ~frame["ITEST_id"].isin(known)
        if orphan.any():
            raise DatasetError(f"{path}, column 'ITEST_id': student {int(frame['ITEST_id'][orphan].iloc[0])} "
                               f"(and {int(orphan.sum()) - 1} more) has no actions in the logs.")
        frame = frame.reset_index(drop=True)
        missing_mcas = frame["MCAS"] == schema.MISSING_MCAS
        cleaning[f"mcas_missing_{os.path.splitext(os.path.basename(path))[0]}"] = int(
            (missing_mcas | frame["MCAS"].isna()).sum())
        frame.loc[missing_mcas, "MCAS"] = np.nan
        frames[path] = frame
    training, validation = frames[train_path], frames[valid_path]
    actions = actions.drop(columns=["_file", "_line"])
    vocab = sorted(set(actions["skill"].unique().tolist()) | {schema.NO_SKILL})
    report.info.update(log_files=[os.path.basename(p) for p in files], cleaning=cleaning)
    return Release(actions=actions, training=training, validation=validation, skill_vocab=vocab,
                   cleaning=cleaning, log_files=[os.path.basename(p) for p in files], report=report)
