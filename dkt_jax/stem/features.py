"""Student tables and the five STEM feature sets (SP, DKT, DKT+, DKT&SP, DKT+&SP; dkt_spec.md §6.3-6.4).

A ``StudentTable`` holds one split of the ``assistments2017`` TFDS dataset (one row per student):
ids, labels, the 10 student-profile (SP) columns and the action sequences (skills, correct, BKT ``Ln``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd

from datasets.registry import DatasetError

FEATURE_SETS = ("SP", "DKT", "DKT+", "DKT&SP", "DKT+&SP")
# feature set -> (uses SP, knowledge-state export name or None)
_FEATURE_SET_PARTS = {"SP": (True, None), "DKT": (False, "dkt"), "DKT+": (False, "dkt_plus"),
                      "DKT&SP": (True, "dkt"), "DKT+&SP": (True, "dkt_plus")}


@dataclasses.dataclass
class StudentTable:
    """One row per student (N rows)."""
    student_ids: np.ndarray            # (N,) int64
    labels: np.ndarray                 # (N,) int, 1 STEM / 0 non-STEM / -1 unknown
    sp: np.ndarray                     # (N, 10) float64 student profile
    sp_columns: list[str]
    skills: list[np.ndarray]           # N arrays (T_i,) int32 skill index
    correct: list[np.ndarray]          # N arrays (T_i,) int32
    ln: list[np.ndarray]               # N arrays (T_i,) float32 BKT Ln per action

    def __len__(self) -> int:
        return len(self.student_ids)

    def sequences(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(zip(self.skills, self.correct))


def table_from_records(records: Sequence[dict[str, Any]], sp_columns: Sequence[str],
                       source: str = "records") -> StudentTable:
    """Builds a StudentTable from dataset examples (dicts with student_id, label, sp, skills, correct, ln)."""
    needed = ("student_id", "label", "sp", "skills", "correct", "ln")
    for k, rec in enumerate(records):
        missing = [f for f in needed if f not in rec]
        if missing:
            raise DatasetError(f"{source}: example {k} lacks field(s) {missing}.")
        if len(rec["skills"]) != len(rec["correct"]) or len(rec["skills"]) != len(rec["ln"]):
            raise DatasetError(f"{source}: example {k} (student {rec['student_id']}) has skills/correct/ln of "
                               f"different lengths.")
    sp = np.asarray([np.asarray(r["sp"], np.float64) for r in records]).reshape(len(records), -1)
    if sp.shape[1] != len(sp_columns):
        raise DatasetError(f"{source}: 'sp' has {sp.shape[1]} values, metadata sp_columns lists {len(sp_columns)}.")
    return StudentTable(
        student_ids=np.asarray([int(r["student_id"]) for r in records], np.int64),
        labels=np.asarray([int(r["label"]) for r in records], np.int64),
        sp=sp, sp_columns=list(sp_columns),
        skills=[np.asarray(r["skills"], np.int32) for r in records],
        correct=[np.asarray(r["correct"], np.int32) for r in records],
        ln=[np.asarray(r["ln"], np.float32) for r in records])


def load_split(dataset: str, split: str, data_dir: str) -> tuple[StudentTable, dict]:
    """Reads a split of the built ``assistments2017`` dataset (TF-free). Returns (table, info.metadata)."""
    from datasets import registry

    builder = registry.get_builder(dataset, data_dir)
    metadata = dict(builder.info.metadata or {})
    for key in ("skill_vocab", "sp_columns"):
        if key not in metadata:
            raise DatasetError(f"{dataset} at {data_dir}: info.metadata lacks {key!r}.")
    source = builder.as_data_source(split=split)
    records = [source[i] for i in range(len(source))]
    return table_from_records(records, metadata["sp_columns"], f"{dataset}[{split}]"), metadata


def _state_frame(states: pd.DataFrame, ids: np.ndarray, name: str) -> np.ndarray:
    indexed = states.set_index("student_id")
    missing = [int(i) for i in ids if i not in indexed.index]
    if missing:
        raise DatasetError(f"knowledge states {name!r} lack student ids {missing[:10]} "
                           f"({len(missing)} in all); re-run the export.")
    return indexed.loc[ids].to_numpy(np.float64)


def feature_matrix(feature_set: str, table: StudentTable,
                   states: dict[str, pd.DataFrame]) -> tuple[np.ndarray, list[str]]:
    """(N, F) features of ``table``'s students for one feature set, with column names.

    states: export name ('dkt', 'dkt_plus') -> DataFrame with student_id, kt_0..kt_{M-1}.
    """
    if feature_set not in _FEATURE_SET_PARTS:
        raise ValueError(f"Unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}.")
    use_sp, ks_name = _FEATURE_SET_PARTS[feature_set]
    blocks, names = [], []
    if use_sp:
        blocks.append(table.sp)
        names += list(table.sp_columns)
    if ks_name is not None:
        if ks_name not in states:
            raise ValueError(f"feature set {feature_set!r} needs the {ks_name!r} knowledge states.")
        frame = states[ks_name]
        cols = [c for c in frame.columns if c != "student_id"]
        blocks.append(_state_frame(frame[["student_id", *cols]], table.student_ids, ks_name))
        names += [f"{ks_name}:{c}" for c in cols]
    return np.concatenate(blocks, axis=1), names


def labelled_subset(table: StudentTable) -> StudentTable:
    """The rows with a known label (0/1); raises when none are left."""
    keep = np.flatnonzero(table.labels >= 0)
    if len(keep) == 0:
        raise DatasetError("no labelled students (label >= 0) in the table.")
    return StudentTable(student_ids=table.student_ids[keep], labels=table.labels[keep], sp=table.sp[keep],
                        sp_columns=table.sp_columns, skills=[table.skills[i] for i in keep],
                        correct=[table.correct[i] for i in keep], ln=[table.ln[i] for i in keep])
