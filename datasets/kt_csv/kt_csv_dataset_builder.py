"""TFDS builder for the DKT+ repo's 3-line knowledge-tracing CSVs (TF-free: array_record + as_data_source).

One example per student: ``student_id`` ("<split>_<record index>"), ``skills`` (0-based ids into
``info.metadata['skill_vocab']``, remapped consistently over train+test) and ``correct`` (0/1).
Students with fewer than ``MIN_LENGTH`` interactions are dropped (as the reference loader does); the counts are
logged and stored in ``info.metadata['dropped_short_students']``.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from datasets.kt_csv.three_line import Record, read_three_line, remap, skill_vocab
from datasets.registry import DatasetError

MIN_LENGTH = 3

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Copy the 3-line CSV files of the DKT+ repository (github.com/ckyeungac/deep-knowledge-tracing-plus, folder data/)
into manual_dir. Either the repo's own layout (manual_dir/data/assist2015/assist2015_train.csv, ...) or the
files themselves (manual_dir/assist2015_train.csv, ...) are found:
  assist2009          skill_id_{train,test}.csv
  assist2009_updated  assist2009_updated/assist2009_updated_{train,test}.csv
  assist2015          assist2015/assist2015_{train,test}.csv
  assistchall         assistment_challenge/assistment_challenge_{train,test}.csv
  statics2011         STATICS/STATICS_{train,test}.csv
  simulated5          synthetic/naive_c5_q50_s4000_v1_{train,test}.csv (or any naive_c*_q*_s*_v1_* pair,
                      e.g. written by datasets.simulated5.generate)
"""


@dataclasses.dataclass
class KtCsvConfig(tfds.core.BuilderConfig):
    """``subdir``/``pattern``: where the DKT+ repo keeps the files; ``{split}`` is train or test."""

    subdir: str = ""
    pattern: str = ""


_CONFIGS = [
    KtCsvConfig(name="assist2009", description="ASSIST2009 skill_id split (124 skills).",
                subdir="", pattern="skill_id_{split}.csv"),
    KtCsvConfig(name="assist2009_updated", description="ASSIST2009-updated (110 skills).",
                subdir="assist2009_updated", pattern="assist2009_updated_{split}.csv"),
    KtCsvConfig(name="assist2015", description="ASSIST2015 (100 skills).",
                subdir="assist2015", pattern="assist2015_{split}.csv"),
    KtCsvConfig(name="assistchall", description="ASSISTments 2017 challenge (102 skills).",
                subdir="assistment_challenge", pattern="assistment_challenge_{split}.csv"),
    KtCsvConfig(name="statics2011", description="Statics2011 (1,223 problem-level ids).",
                subdir="STATICS", pattern="STATICS_{split}.csv"),
    KtCsvConfig(name="simulated5", description="Piech et al. Synthetic-5 v1 (50 exercises), DKT+ repo split.",
                subdir="synthetic", pattern="naive_c*_q*_s*_v1_{split}.csv"),
]


def find_split_file(manual_dir: str, subdir: str, pattern: str, split: str) -> str:
    """The one file matching ``pattern`` in manual_dir, manual_dir/subdir or manual_dir/data/subdir."""
    name = pattern.format(split=split)
    folders = [manual_dir, os.path.join(manual_dir, subdir), os.path.join(manual_dir, "data", subdir)]
    tried, matches = [], []
    for folder in dict.fromkeys(os.path.normpath(f) for f in folders):
        tried.append(os.path.join(folder, name))
        matches.extend(sorted(glob.glob(os.path.join(folder, name))))
        if matches:
            break
    if not matches:
        raise DatasetError(f"{split} file not found; tried: {', '.join(tried)}.")
    if len(matches) > 1:
        raise DatasetError(f"several {split} files match {name!r}: {', '.join(matches)}; keep only one.")
    return matches[0]


def sequence_features(extra: dict[str, Any] | None = None) -> tfds.features.FeaturesDict:
    """student_id Text; skills, correct Tensor((None,), int32); plus ``extra`` features."""
    return tfds.features.FeaturesDict({
        "student_id": tfds.features.Text(),
        "skills": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "correct": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        **(extra or {}),
    })


def drop_short(records: Sequence[Record], min_length: int = MIN_LENGTH) -> tuple[list[Record], int]:
    """Keeps students with at least ``min_length`` interactions; returns (kept, number dropped)."""
    kept = [r for r in records if len(r.skills) >= min_length]
    return kept, len(records) - len(kept)


class Builder(tfds.core.GeneratorBasedBuilder):
    """3-line KT CSVs of the DKT+ repository; see MANUAL_DOWNLOAD_INSTRUCTIONS."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _CONFIGS
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=sequence_features(), supervised_keys=None,
            homepage="https://github.com/ckyeungac/deep-knowledge-tracing-plus",
            metadata=tfds.core.MetadataDict(), disable_shuffling=True)

    def input_files(self, manual_dir: str) -> tuple[list[str], list[str]]:
        """The train and test files this config reads (for the input fingerprint)."""
        config = self.builder_config
        return [find_split_file(manual_dir, config.subdir, config.pattern, split) for split in ("train", "test")], []

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        manual_dir = os.fspath(dl_manager.manual_dir)
        config = self.builder_config
        records, dropped, sources = {}, {}, {}
        for split in ("train", "test"):
            path = find_split_file(manual_dir, config.subdir, config.pattern, split)
            records[split], dropped[split] = drop_short(read_three_line(path))
            sources[split] = os.path.relpath(path, manual_dir)
            if dropped[split]:
                logging.warning("kt_csv/%s: dropped %d %s students with < %d interactions (%s).", config.name,
                                dropped[split], split, MIN_LENGTH, path)
            if not records[split]:
                raise DatasetError(f"{path}: no student with >= {MIN_LENGTH} interactions.")
        vocab = skill_vocab(records["train"], records["test"])
        self.info.metadata.update({
            "num_skills": len(vocab), "skill_vocab": [str(v) for v in vocab],
            "dropped_short_students": dropped, "min_length": MIN_LENGTH, "source_files": sources,
            "num_students": {k: len(v) for k, v in records.items()},
        })
        logging.info("kt_csv/%s: %d skills; students %s; dropped %s.", config.name, len(vocab),
                     {k: len(v) for k, v in records.items()}, dropped)
        return {split: self._generate_examples(split, recs, vocab) for split, recs in records.items()}

    def _generate_examples(self, split: str, records: Sequence[Record], vocab: Sequence[int]):
        for r in records:
            key = f"{split}_{r.index}"
            yield key, {"student_id": key, "skills": remap(r.skills, vocab), "correct": r.correct}
