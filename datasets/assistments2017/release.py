"""Reading and cleaning the ASSISTments 2017 competition release (pandas; every problem -> DatasetError).

``load_release(manual_dir)`` returns the action log (one row per action, sorted by student and actionId), the
de-duplicated training labels, the validation/test label rows (file order), the skill vocabulary and a dict of
cleaning counts. Used by the TFDS builder; usable on its own.
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
from datasets.registry import DatasetError

ACTION_COLUMNS = ("actionId", "skill", "problemId", "correct", "original", "hint", "timeTaken", "Ln")
LOG_SP_COLUMNS = tuple(c for c in schema.SP_COLUMNS if c != "AveCorrect") + ("AveCorrect",)
_ID_ALIASES = ("ITEST_id", "studentId")


@dataclasses.dataclass
class Release:
    """``actions``: ITEST_id + ACTION_COLUMNS + SP columns, sorted by (ITEST_id, actionId);
    ``training``: one row per labelled student (ITEST_id, SchoolId, AveCorrect, MCAS (NaN = missing), isSTEM);
    ``validation``: validation/test label rows in file order; ``skill_vocab``: sorted skill names."""

    actions: pd.DataFrame
    training: pd.DataFrame
    validation: pd.DataFrame
    skill_vocab: list[str]
    cleaning: dict[str, Any]
    log_files: list[str]


def log_files(manual_dir: str) -> list[str]:
    """student_log_*.csv in numeric order, else the single re-release file."""
    logs = glob.glob(os.path.join(manual_dir, schema.LOG_FILE_GLOB))
    if logs:
        return sorted(logs, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])
    full = os.path.join(manual_dir, schema.FULL_RELEASE_FILE)
    if os.path.isfile(full):
        return [full]
    raise DatasetError(f"no {schema.LOG_FILE_GLOB} nor {schema.FULL_RELEASE_FILE} in {manual_dir}.")


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
            raise DatasetError(f"{path}, column {column!r}, line {row + 2}: {what}.")
    return values.astype(np.float64), int(bad.sum())


def _read_log(path: str, cleaning: dict[str, Any]) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable CSV ({e}).") from e
    id_column = next((c for c in _ID_ALIASES if c in header), None)
    needed = ACTION_COLUMNS + LOG_SP_COLUMNS
    missing = [c for c in needed if c not in header] + ([] if id_column else ["ITEST_id (or studentId)"])
    if missing:
        raise DatasetError(f"{path}: missing required column(s) {missing}.")
    usecols = [id_column, *needed]
    frame = pd.read_csv(path, usecols=usecols, dtype=str, keep_default_na=False, na_values=[""])
    out = pd.DataFrame(index=frame.index)
    out["ITEST_id"], _ = _numeric(frame, id_column, path, required=True)
    for column in ("actionId", "correct"):
        out[column], _ = _numeric(frame, column, path, required=True)
    bad = ~out["correct"].isin([0.0, 1.0])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{path}, column 'correct', line {row + 2}: value {frame['correct'].iloc[row]!r} is "
                           f"not 0 or 1.")
    skill = frame["skill"]
    cleaning["missing_skill_as_noskill"] += int(skill.isna().sum())
    out["skill"] = skill.fillna(schema.NO_SKILL).str.strip()
    for column in ("problemId", "original", "hint", "timeTaken", "Ln", *LOG_SP_COLUMNS):
        out[column], coerced = _numeric(frame, column, path, required=False)
        if coerced:
            cleaning["non_numeric_to_nan"][column] = cleaning["non_numeric_to_nan"].get(column, 0) + coerced
    return out


def _read_labels(path: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: label file not found.")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing required column(s) {missing}.")
    out = pd.DataFrame(index=frame.index)
    out["ITEST_id"], _ = _numeric(frame, "ITEST_id", path, required=True)
    for column in columns[1:]:
        out[column], _ = _numeric(frame, column, path, required=column == "isSTEM")
    if "isSTEM" in out and not out["isSTEM"].isin([0.0, 1.0]).all():
        row = int(np.flatnonzero(~out["isSTEM"].isin([0.0, 1.0]).to_numpy())[0])
        raise DatasetError(f"{path}, column 'isSTEM', line {row + 2}: value {frame['isSTEM'].iloc[row]!r} "
                           "is not 0 or 1.")
    return out


def load_release(manual_dir: str) -> Release:
    """Reads, validates and cleans the release in ``manual_dir`` (see module docstring)."""
    cleaning: dict[str, Any] = {"missing_skill_as_noskill": 0, "non_numeric_to_nan": {}}
    files = log_files(manual_dir)
    actions = pd.concat([_read_log(p, cleaning) for p in files], ignore_index=True)
    cleaning["log_rows"] = len(actions)
    actions = actions.sort_values(["ITEST_id", "actionId"], kind="stable", ignore_index=True)
    dup = actions.duplicated(["ITEST_id", "actionId"])
    cleaning["duplicate_action_rows_dropped"] = int(dup.sum())
    actions = actions[~dup].reset_index(drop=True)
    sp_spread = actions.groupby("ITEST_id")[list(LOG_SP_COLUMNS)].nunique(dropna=False).max(axis=1)
    cleaning["students_with_non_constant_sp"] = int((sp_spread > 1).sum())

    train_path = os.path.join(manual_dir, schema.TRAINING_LABEL_FILE)
    valid_path = os.path.join(manual_dir, schema.VALIDATION_LABEL_FILE)
    training = _read_labels(train_path, schema.TRAINING_LABEL_COLUMNS)
    validation = _read_labels(valid_path, schema.VALIDATION_LABEL_COLUMNS)
    cleaning["training_label_rows"] = len(training)
    deduped = training.drop_duplicates()
    cleaning["duplicate_label_rows_dropped"] = len(training) - len(deduped)
    conflicting = deduped.duplicated("ITEST_id")
    cleaning["conflicting_label_rows_dropped"] = int(conflicting.sum())
    training = deduped[~conflicting].reset_index(drop=True)
    cleaning["validation_label_rows"] = len(validation)
    known = set(actions["ITEST_id"].unique().tolist())
    for path, frame in ((train_path, training), (valid_path, validation)):
        orphan = ~frame["ITEST_id"].isin(known)
        if orphan.any():
            raise DatasetError(f"{path}, column 'ITEST_id': student {int(frame['ITEST_id'][orphan].iloc[0])} "
                               f"(and {int(orphan.sum()) - 1} more) has no actions in the logs.")
        missing_mcas = frame["MCAS"] == schema.MISSING_MCAS
        cleaning[f"mcas_missing_{os.path.splitext(os.path.basename(path))[0]}"] = int(
            (missing_mcas | frame["MCAS"].isna()).sum())
        frame.loc[missing_mcas, "MCAS"] = np.nan
    vocab = sorted(set(actions["skill"].unique().tolist()) | {schema.NO_SKILL})
    return Release(actions=actions, training=training, validation=validation, skill_vocab=vocab,
                   cleaning=cleaning, log_files=[os.path.basename(p) for p in files])
