"""TFDS builder for the ASSISTments 2017 Data Mining Competition release (TF-free, array_record).

One example per student: actions sorted by ``actionId`` (skill index into ``info.metadata['skill_vocab']``,
correct, problemId, original, hint, timeTaken, BKT ``Ln``, actionId), the 10 SP features
(``info.metadata['sp_columns']`` order; ``AveCorrect`` from the label files where known), isSTEM ``label``
(-1 if unknown), ``school_id`` (-1 if unknown), ``mcas`` (NaN if missing or -999) and ``has_label``.

Rows that cannot be used are skipped and listed with file and line in ``build_report.json`` (see release.py).

Splits: ``kt_train``/``kt_test`` (seeded 80/20 by student over all students), ``labeled`` (the de-duplicated
training-label students, in file order), ``submission`` (the validation/test label rows, in file order).
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from datasets.assistments2017 import schema
from datasets.assistments2017.release import Release, label_ave_correct, load_release, log_files
from datasets.build_report import BuildReport

SPLIT_SEED = 0
TEST_FRACTION = 0.2

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Put the ASSISTments 2017 Data Mining Competition release into manual_dir:
  {schema.LOG_FILE_GLOB} (all of them; about 10 files) or the single re-release {schema.FULL_RELEASE_FILE},
  {schema.TRAINING_LABEL_FILE} and {schema.VALIDATION_LABEL_FILE}.
The data are distributed by the competition organisers
(sites.google.com/view/assistmentsdatamining). Without them, generate the synthetic release in the same schema:
  python -c "from datasets.synthetic_assistments2017 import generate; generate('data/manual/assistments2017')"
"""


def kt_split(student_ids: np.ndarray, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
             ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of the (sorted) student ids into (train, test), each sorted."""
    ids = np.sort(student_ids)
    perm = np.random.default_rng(seed).permutation(len(ids))
    num_test = int(round(test_fraction * len(ids)))
    return np.sort(ids[perm[num_test:]]), np.sort(ids[perm[:num_test]])


class Builder(tfds.core.GeneratorBasedBuilder):
    """ASSISTments 2017 clickstream -> per-student sequences, SP features and isSTEM labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        seq = lambda dtype: tfds.features.Tensor(shape=(None,), dtype=dtype)  # noqa: E731
        scalar = lambda dtype: tfds.features.Tensor(shape=(), dtype=dtype)  # noqa: E731
        features = tfds.features.FeaturesDict({
            "student_id": tfds.features.Text(), "skills": seq(np.int32), "correct": seq(np.int32),
            "problem_id": seq(np.int64), "original": seq(np.int32), "hint": seq(np.int32),
            "time_taken": seq(np.float32), "ln": seq(np.float32), "action_id": seq(np.int64),
            "sp": tfds.features.Tensor(shape=(len(schema.SP_COLUMNS),), dtype=np.float32),
            "label": scalar(np.int32), "school_id": scalar(np.int64), "mcas": scalar(np.float32),
            "has_label": scalar(np.bool_),
        })
        return self.dataset_info_from_configs(
            features=features, supervised_keys=None, disable_shuffling=True,
            homepage="https://sites.google.com/view/assistmentsdatamining", metadata=tfds.core.MetadataDict())

    def input_files(self, manual_dir: str) -> tuple[list[str], list[str]]:
        """The log and label files (for the input fingerprint)."""
        return [*log_files(manual_dir), os.path.join(manual_dir, schema.TRAINING_LABEL_FILE),
                os.path.join(manual_dir, schema.VALIDATION_LABEL_FILE)], []

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        report = BuildReport("assistments2017", "default")
        try:
            release = load_release(os.fspath(dl_manager.manual_dir), report)
        except Exception as e:
            report.write_failed(self, e)
            raise
        sequences = _sequences(release)
        student_ids = np.array(sorted(sequences))
        train_ids, test_ids = kt_split(student_ids)
        splits = {"kt_train": [(int(s), None) for s in train_ids], "kt_test": [(int(s), None) for s in test_ids],
                  "labeled": [(int(s), "training") for s in release.training["ITEST_id"]],
                  "submission": [(int(s), "validation") for s in release.validation["ITEST_id"]]}
        self.info.metadata.update({
            "skill_vocab": release.skill_vocab, "num_skills": len(release.skill_vocab),
            "sp_columns": list(schema.SP_COLUMNS), "split_seed": SPLIT_SEED, "test_fraction": TEST_FRACTION,
            "cleaning": release.cleaning, "log_files": release.log_files, "num_students": len(student_ids),
            "num_actions": int(len(release.actions)),
            "num_examples": {k: len(v) for k, v in splits.items()},
        })
        logging.info("assistments2017: %d students, %d actions, %d skills; cleaning %s", len(student_ids),
                     len(release.actions), len(release.skill_vocab), release.cleaning)
        report.info.update(num_students=len(student_ids), num_examples=self.info.metadata["num_examples"])
        report.write(os.fspath(self.data_dir))
        labels = _label_lookup(release)
        return {name: self._generate_examples(name, rows, sequences, labels) for name, rows in splits.items()}

    def _generate_examples(self, split: str, rows: list[tuple[int, str | None]], sequences: dict[int, dict],
                           labels: dict[str, Any]):
        for row, (student, source) in enumerate(rows):
            info = labels["validation"][row] if source == "validation" else labels["by_student"].get(student, {})
            is_stem = labels["is_stem"].get(student)
            sp = sequences[student]["sp"].copy()
            if student in labels["ave_correct"] and np.isfinite(labels["ave_correct"][student]):
                sp[schema.SP_COLUMNS.index("AveCorrect")] = labels["ave_correct"][student]
            school, mcas = info.get("SchoolId", np.nan), info.get("MCAS", np.nan)
            yield f"{row:05d}_{student}", {
                **{k: v for k, v in sequences[student].items() if k != "sp"},
                "student_id": str(student), "sp": sp.astype(np.float32),
                "label": np.int32(-1 if is_stem is None else is_stem), "has_label": is_stem is not None,
                "school_id": np.int64(school if np.isfinite(school) else -1), "mcas": np.float32(mcas),
            }


def _sequences(release: Release) -> dict[int, dict[str, np.ndarray]]:
    """Per student: action arrays (sorted by actionId) and the log SP vector (first action's values)."""
    a = release.actions
    skill_index = {s: i for i, s in enumerate(release.skill_vocab)}
    skills = a["skill"].map(skill_index).to_numpy(np.int32)
    ids = a["ITEST_id"].to_numpy(np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    as_int = lambda col, dtype, fill: a[col].fillna(fill).to_numpy().astype(dtype)  # noqa: E731
    arrays = {"skills": skills, "correct": as_int("correct", np.int32, 0),
              "problem_id": as_int("problemId", np.int64, -1),
              "original": as_int("original", np.int32, -1), "hint": as_int("hint", np.int32, -1),
              "time_taken": a["timeTaken"].to_numpy(np.float32), "ln": a["Ln"].to_numpy(np.float32),
              "action_id": as_int("actionId", np.int64, -1)}
    sp = a[list(schema.SP_COLUMNS)].to_numpy(np.float64)
    return {int(ids[s]): {**{k: v[s:e] for k, v in arrays.items()}, "sp": sp[s]} for s, e in zip(starts, ends)}


def _label_lookup(release: Release) -> dict[str, Any]:
    training = release.training.set_index("ITEST_id")
    by_student = {int(k): v for k, v in training[["SchoolId", "MCAS"]].to_dict("index").items()}
    ave_correct = label_ave_correct(release.training, release.validation)
    validation = release.validation[["SchoolId", "MCAS"]].to_dict("records")
    for student, row in zip(release.validation["ITEST_id"], validation):
        by_student.setdefault(int(student), row)
    return {"by_student": by_student, "validation": validation, "ave_correct": ave_correct,
            "is_stem": {int(k): int(v) for k, v in training["isSTEM"].items()}}
