"""Student tables and the STEM feature sets: the paper's five (SP, DKT, DKT+, DKT&SP, DKT+&SP; dkt_spec.md
§6.3-6.4), the classic baseline BKT&SP (SP + fitted-BKT final mastery, ``dkt_jax.stem.bkt``), and, only where
the generator's ground truth exists, two *oracle* feature sets (ceilings, never features of the others):
``oracle:SP+true_mastery`` (SP + true final mastery per skill) and ``oracle:SP+true_latents`` (SP + the
planted STEM-skill mastery and learning gain, the generator's own "SP + planted latents" reference).

A ``StudentTable`` holds one split of the ``assistments2017`` TFDS dataset (one row per student):
ids, labels, the 10 student-profile (SP) columns and the action sequences (skills, correct, BKT ``Ln``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd

from datasets.registry import DatasetError

FEATURE_SETS = ("SP", "DKT", "DKT+", "DKT&SP", "DKT+&SP", "BKT&SP")
ORACLE_FEATURE_SETS = ("oracle:SP+true_mastery", "oracle:SP+true_latents")
# feature set -> (uses SP, knowledge-state name in ``states`` or None)
_FEATURE_SET_PARTS = {"SP": (True, None), "DKT": (False, "dkt"), "DKT+": (False, "dkt_plus"),
                      "DKT&SP": (True, "dkt"), "DKT+&SP": (True, "dkt_plus"), "BKT&SP": (True, "bkt")}
# oracle feature set -> name of its ground-truth block in ``oracle`` (always with SP)
_ORACLE_PARTS = {"oracle:SP+true_mastery": "true_mastery", "oracle:SP+true_latents": "true_latents"}


def is_oracle(feature_set: str) -> bool:
    """True for the ground-truth (ceiling) feature sets."""
    return feature_set in _ORACLE_PARTS


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


def feature_matrix(feature_set: str, table: StudentTable, states: dict[str, pd.DataFrame],
                   oracle: dict[str, pd.DataFrame] | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, F) features of ``table``'s students for one feature set, with column names.

    states: estimated states ('dkt', 'dkt_plus', 'bkt') -> DataFrame with student_id, kt_0..kt_{M-1}.
    oracle: ground-truth blocks ('true_mastery', 'true_latents') -> DataFrame with student_id + columns;
    read only by the oracle feature sets (the others never look at it).
    """
    if feature_set in _ORACLE_PARTS:
        block = _ORACLE_PARTS[feature_set]
        if not oracle or block not in oracle:
            raise ValueError(f"oracle feature set {feature_set!r} needs the ground truth ({block!r}).")
        frame = oracle[block]
        cols = [c for c in frame.columns if c != "student_id"]
        x = _state_frame(frame[["student_id", *cols]], table.student_ids, block)
        return np.concatenate([table.sp, x], axis=1), [*table.sp_columns, *(f"oracle:{block}:{c}" for c in cols)]
    if feature_set not in _FEATURE_SET_PARTS:
        known = ", ".join(FEATURE_SETS + ORACLE_FEATURE_SETS)
        raise ValueError(f"Unknown feature set {feature_set!r}; known: {known}.")
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


TRUE_LATENT_COLUMNS = ("stem_mastery", "learning_gain")


def oracle_frames(ground_truth_dir: str | None, student_ids: np.ndarray,
                  skill_vocab: Sequence[str]) -> dict[str, pd.DataFrame] | None:
    """The ground-truth blocks of the oracle feature sets for ``student_ids`` (None without ground truth):
    'true_mastery' (student_id, true final mastery per skill, (N, M)) and 'true_latents' (student_id,
    ``TRUE_LATENT_COLUMNS`` of the generator's students.csv)."""
    from dkt_jax.stem import analyses

    truth = analyses.load_ground_truth(ground_truth_dir, np.asarray(student_ids), skill_vocab)
    if truth is None:
        return None
    ids = np.asarray(student_ids)
    out = {"true_latents": pd.DataFrame({"student_id": ids, **{c: truth["table"][c].to_numpy(np.float64)
                                                               for c in TRUE_LATENT_COLUMNS}})}
    if "final_mastery" in truth:
        mastery = np.nan_to_num(truth["final_mastery"], nan=0.0)
        out["true_mastery"] = pd.DataFrame({"student_id": ids, **{f"true_{j}": mastery[:, j]
                                                                  for j in range(mastery.shape[1])}})
    return out

