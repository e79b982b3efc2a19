"""TFDS builder for Simulated-5 as written by ``datasets.simulated5.generate`` (TF-free, array_record).

Features: ``student_id`` ("s<row>", the generator's row), ``skills`` (0-based exercise index), ``correct``,
``p_true`` (oracle P(correct)) and ``p_bayes`` (Bayes-filter P(correct) from earlier answers only), one value per
interaction. Splits ``train`` / ``test`` as in the files. ``info.metadata`` holds ``num_skills``, ``skill_vocab``
and the ceilings over the test next-step targets (``oracle_auc``, ``bayes_auc``, ``marginal_auc``).
"""
from __future__ import annotations

import glob
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from datasets.kt_csv.kt_csv_dataset_builder import sequence_features
from datasets.kt_csv.three_line import Record, read_three_line, remap, skill_vocab
from datasets.registry import DatasetError
from datasets.simulated5.generator import GROUND_TRUTH_FILE, next_step_auc

MANUAL_DOWNLOAD_INSTRUCTIONS = """
manual_dir must hold the files written by `datasets.simulated5.generate(manual_dir)`:
naive_c<K>_q<J>_s<S>_v1_train.csv, naive_c<K>_q<J>_s<S>_v1_test.csv and ground_truth.npz.
For Piech's / the DKT+ repo's files (no ground truth), use the `kt_csv/simulated5` dataset instead.
"""

_REQUIRED_ARRAYS = ("p_true", "p_bayes", "correct", "skills", "num_train")


def _one_file(manual_dir: str, split: str) -> str:
    matches = sorted(glob.glob(os.path.join(manual_dir, f"naive_c*_q*_s*_v1_{split}.csv")))
    if len(matches) != 1:
        raise DatasetError(f"expected exactly one naive_c*_q*_s*_v1_{split}.csv in {manual_dir}, found "
                           f"{len(matches)} ({', '.join(matches) or 'none'}); run datasets.simulated5.generate.")
    return matches[0]


def _load_ground_truth(manual_dir: str) -> dict[str, np.ndarray]:
    path = os.path.join(manual_dir, GROUND_TRUTH_FILE)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: ground-truth file not found; run datasets.simulated5.generate (for files "
                           f"without ground truth use kt_csv/simulated5).")
    try:
        with open(path, "rb") as f, np.load(f) as npz:
            missing = [k for k in _REQUIRED_ARRAYS if k not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing arrays {missing}.")
            truth = {k: npz[k] for k in npz.files}
    except DatasetError:
        raise
    except Exception as e:  # not a zip / truncated / pickled objects
        raise DatasetError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); regenerate it with "
                           f"datasets.simulated5.generate.") from None
    _check_shapes(path, truth)
    return truth


def _check_shapes(path: str, truth: dict[str, np.ndarray]) -> None:
    correct = truth["correct"]
    if correct.ndim != 2:
        raise DatasetError(f"{path}: array 'correct' has shape {correct.shape}, expected (students, steps).")
    for key in ("p_true", "p_bayes"):
        if truth[key].shape != correct.shape:
            raise DatasetError(f"{path}: array {key!r} has shape {truth[key].shape}, expected {correct.shape} "
                               f"(the shape of 'correct').")
    if truth["skills"].shape != correct.shape[1:]:
        raise DatasetError(f"{path}: array 'skills' has shape {truth['skills'].shape}, expected "
                           f"({correct.shape[1]},).")
    num_train = truth["num_train"]
    if num_train.shape != () or not 0 < int(num_train) < correct.shape[0]:
        raise DatasetError(f"{path}: array 'num_train' is {num_train.tolist()}, expected one integer between 1 and "
                           f"{correct.shape[0] - 1} (the students are {correct.shape[0]}).")


def _check_matches(path: str, records: Sequence[Record], rows: np.ndarray, truth: dict[str, np.ndarray]) -> None:
    if len(records) != len(rows):
        raise DatasetError(f"{path}: {len(records)} students but {GROUND_TRUTH_FILE} has {len(rows)} for this split.")
    for record, row in zip(records, rows):
        if (len(record.correct) != truth["correct"].shape[1]
                or not np.array_equal(record.correct, truth["correct"][row])
                or not np.array_equal(record.skills, truth["skills"])):
            raise DatasetError(f"{path}, line {record.line}: student does not match row {row} of "
                               f"{GROUND_TRUTH_FILE}; the CSV and the ground truth come from different runs.")


class Builder(tfds.core.GeneratorBasedBuilder):
    """Simulated-5 with per-interaction oracle and Bayes-filter predictions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        prob = tfds.features.Tensor(shape=(None,), dtype=np.float32)
        return self.dataset_info_from_configs(
            features=sequence_features({"p_true": prob, "p_bayes": prob}), supervised_keys=None,
            homepage="https://stanford.edu/~cpiech/bio/papers/deepKnowledgeTracing.pdf",
            metadata=tfds.core.MetadataDict(), disable_shuffling=True)

    def input_files(self, manual_dir: str) -> tuple[list[str], list[str]]:
        """The two CSVs and the ground truth (for the input fingerprint)."""
        return [_one_file(manual_dir, "train"), _one_file(manual_dir, "test"),
                os.path.join(manual_dir, GROUND_TRUTH_FILE)], []

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        manual_dir = os.fspath(dl_manager.manual_dir)
        truth = _load_ground_truth(manual_dir)
        num_students, num_train = truth["correct"].shape[0], int(truth["num_train"])
        rows = {"train": np.arange(num_train), "test": np.arange(num_train, num_students)}
        records = {}
        for split in ("train", "test"):
            path = _one_file(manual_dir, split)
            records[split] = read_three_line(path)
            _check_matches(path, records[split], rows[split], truth)
        vocab = skill_vocab(records["train"], records["test"])
        test = rows["test"]
        marginal = np.broadcast_to(truth["correct"][:num_train].mean(0), truth["correct"][test].shape)
        self.info.metadata.update({
            "num_skills": len(vocab), "skill_vocab": [str(v) for v in vocab],
            "num_students": {k: len(v) for k, v in records.items()},
            "oracle_auc": next_step_auc(truth["correct"][test], truth["p_true"][test]),
            "bayes_auc": next_step_auc(truth["correct"][test], truth["p_bayes"][test]),
            "marginal_auc": next_step_auc(truth["correct"][test], marginal),
        })
        return {split: self._generate_examples(records[split], rows[split], truth, vocab)
                for split in ("train", "test")}

    def _generate_examples(self, records: Sequence[Record], rows: np.ndarray, truth: dict[str, np.ndarray],
                           vocab: Sequence[int]):
        for record, row in zip(records, rows):
            key = f"s{row:04d}"
            yield key, {"student_id": key, "skills": remap(record.skills, vocab), "correct": record.correct,
                        "p_true": truth["p_true"][row].astype(np.float32),
                        "p_bayes": truth["p_bayes"][row].astype(np.float32)}
