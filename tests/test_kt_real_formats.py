"""The kt_csv builder on tiny files with each quirk of the DKT+ repository's real data files (written here, never
the data itself): trailing commas (ASSISTChall, STATICS, Synthetic), 1-based or gapped skill ids (ASSIST2015,
Synthetic, STATICS' problem-level ids up to 1,222), students with fewer than 3 steps (dropped), a last line
without newline; then through our reader, chunking and packing."""
from __future__ import annotations

import os

import numpy as np
import pytest

from datasets import registry
from dkt_jax import input_pipeline as ip


def _student(skills, correct, trailing: bool) -> str:
    tail = "," if trailing else ""
    return f"{len(skills)}\n" + ",".join(map(str, skills)) + tail + "\n" + ",".join(map(str, correct)) + tail + "\n"


# config -> (train path, test path, trailing commas, skill ids used (not contiguous), final newline)
FORMATS = {
    "assist2009": ("skill_id_train.csv", "skill_id_test.csv", False, [0, 7, 30, 123], True),
    "assist2015": ("assist2015/assist2015_train.csv", "assist2015/assist2015_test.csv", False, [1, 2, 62, 100], True),
    "assistchall": ("assistment_challenge/assistment_challenge_train.csv",
                    "assistment_challenge/assistment_challenge_test.csv", True, [0, 6, 53, 101], True),
    "statics2011": ("STATICS/STATICS_train.csv", "STATICS/STATICS_test.csv", True, [125, 126, 1000, 1222], False),
    "simulated5": ("synthetic/naive_c5_q50_s4000_v1_train.csv", "synthetic/naive_c5_q50_s4000_v1_test.csv", True,
                   [1, 2, 10, 50], True),
}


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


@pytest.mark.parametrize("config", sorted(FORMATS))
def test_real_format_quirks_build_and_feed_the_pipeline(tmp_path, config):
    train_file, test_file, trailing, ids, final_newline = FORMATS[config]
    a, b, c, d = ids
    rng = np.random.default_rng(0)
    train_students = [([a, b, b, c, a, d, d, c, b], None), ([d, a], None), ([c], None), ([b, c, a, a], None),
                      ([a, a, d] * 5, None)]
    test_students = [([c, d, a, b, b], None), ([a, b], None)]
    def text(students):
        out = "".join(_student(s, rng.integers(0, 2, len(s)).tolist(), trailing) for s, _ in students)
        return out if final_newline else out.rstrip("\n")
    root = tmp_path / "repo" / "data"  # a clone's layout: manual_dir may be the clone or its data/
    _write(str(root / train_file), text(train_students))
    _write(str(root / test_file), text(test_students))
    builder = registry.build(f"kt_csv/{config}", str(tmp_path / "repo"), str(tmp_path / "tfds"))
    meta = builder.info.metadata
    assert meta["num_skills"] == 4 and meta["skill_vocab"] == [str(x) for x in sorted(ids)]  # numeric order
    assert meta["dropped_short_students"] == {"train": 2, "test": 1}  # < 3 steps
    splits = ip.read_splits(builder)
    assert splits.num_skills == 4 and len(splits.train) == 3 and len(splits.test) == 1
    remap = {x: i for i, x in enumerate(sorted(ids))}
    np.testing.assert_array_equal(splits.train.skills[0], [remap[x] for x in train_students[0][0]])
    np.testing.assert_array_equal(splits.test.skills[0], [remap[x] for x in test_students[0][0]])
    assert set(np.unique(np.concatenate(splits.train.correct))) <= {0, 1}
    chunks = ip.make_chunks(splits.train, max_len=6, min_len=3)
    packed = ip.pack_chunks(chunks, seed=0)
    assert packed.lengths.sum() == chunks.lengths.sum() and len(packed) <= len(chunks)
