"""simulated5 generator + builder and the kt_csv (3-line) builder, on tiny generated files."""
from __future__ import annotations

import filecmp
import os

import numpy as np
import pytest

from datasets import registry
from datasets.kt_csv.three_line import read_three_line
from datasets.registry import DatasetError
from datasets.simulated5 import bayes_filter, generate


def _write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------------------------- simulated5
@pytest.fixture(scope="module")
def sim_small(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sim5"))
    summary = generate(out, num_students=40, num_train=24, seed=3)
    return out, summary


def test_generator_is_deterministic_from_seed(tmp_path, sim_small):
    out, summary = sim_small
    again = generate(str(tmp_path / "a"), num_students=40, num_train=24, seed=3)
    other = generate(str(tmp_path / "b"), num_students=40, num_train=24, seed=4)
    for split in ("train", "test"):
        name = summary["files"][split]
        assert name == "naive_c5_q50_s40_v1_%s.csv" % split
        assert filecmp.cmp(os.path.join(out, name), again["paths"][split], shallow=False)
        assert not filecmp.cmp(os.path.join(out, name), other["paths"][split], shallow=False)
    a = np.load(os.path.join(out, "ground_truth.npz"))
    b = np.load(again["paths"]["ground_truth"])
    np.testing.assert_array_equal(a["p_bayes"], b["p_bayes"])
    assert a["p_true"].shape == (40, 50) and a["alpha"].shape == (40, 5)
    assert sorted(np.bincount(a["concepts"])) == [10] * 5


def test_generator_files_are_three_line_with_trailing_commas(sim_small):
    out, summary = sim_small
    path = os.path.join(out, summary["files"]["train"])
    assert open(path).read().splitlines()[1].endswith(",")
    records = read_three_line(path)
    truth = np.load(os.path.join(out, "ground_truth.npz"))
    assert len(records) == 24
    np.testing.assert_array_equal(records[0].skills, np.arange(1, 51))
    np.testing.assert_array_equal(records[5].correct, truth["correct"][5])


def test_bayes_filter_is_causal():
    rng = np.random.default_rng(0)
    correct = rng.integers(0, 2, size=(6, 20))
    beta, concepts = rng.normal(size=20), np.arange(20) % 3
    kwargs = dict(guess=0.25, gain_low=0.05, gain_high=0.1, alpha_grid_size=41, gain_grid_size=3)
    base = bayes_filter(correct, beta, concepts, 3, **kwargs)
    flipped = correct.copy()
    flipped[:, 7] = 1 - flipped[:, 7]
    changed = bayes_filter(flipped, beta, concepts, 3, **kwargs)
    np.testing.assert_array_equal(base[:, :8], changed[:, :8])  # step t uses answers before t only
    assert np.abs(base[:, 8:] - changed[:, 8:]).max() > 1e-3
    np.testing.assert_allclose(base[:, 0], base[0, 0])  # no history: same prediction for everyone


def test_bayes_between_marginal_and_oracle(tmp_path):
    summary = generate(str(tmp_path), num_students=800, num_train=400, seed=1, alpha_grid_size=61,
                       gain_grid_size=4)
    assert summary["marginal_auc"] + 0.005 < summary["bayes_auc"] < summary["oracle_auc"] - 0.01
    assert 0.55 < summary["mean_correct"] < 0.7


def test_simulated5_builder(sim_small, tmp_path):
    out, summary = sim_small
    builder = registry.build("simulated5", out, str(tmp_path))
    meta = builder.info.metadata
    assert meta["num_skills"] == 50 and meta["skill_vocab"][:2] == ["1", "2"]
    assert meta["bayes_auc"] == pytest.approx(summary["bayes_auc"], abs=1e-6)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 24, "test": 16}
    test = registry.data_source("simulated5", "test", str(tmp_path))
    ex = test[2]
    truth = np.load(os.path.join(out, "ground_truth.npz"))
    assert ex["student_id"] == b"s0026"
    np.testing.assert_array_equal(ex["skills"], np.arange(50))
    np.testing.assert_array_equal(ex["correct"], truth["correct"][26])
    np.testing.assert_allclose(ex["p_bayes"], truth["p_bayes"][26])
    assert ex["p_true"].dtype == np.float32 and ex["skills"].dtype == np.int32


def test_simulated5_builder_rejects_mismatched_ground_truth(sim_small, tmp_path):
    out, summary = sim_small
    manual = tmp_path / "manual"
    manual.mkdir()
    for split in ("train", "test"):
        (manual / summary["files"][split]).write_text(open(os.path.join(out, summary["files"][split])).read())
    other = generate(str(tmp_path / "other"), num_students=40, num_train=24, seed=9)
    (manual / "ground_truth.npz").write_bytes(open(other["paths"]["ground_truth"], "rb").read())
    with pytest.raises(DatasetError, match=r"_train\.csv, line 1: .*different runs"):
        registry.build("simulated5", str(manual), str(tmp_path / "tfds"))
    os.remove(manual / "ground_truth.npz")
    with pytest.raises(DatasetError, match="ground_truth.npz: ground-truth file not found"):
        registry.build("simulated5", str(manual), str(tmp_path / "tfds2"))


# ------------------------------------------------------------------------------------------------- kt_csv
TRAIN = "4\n5,9,9,100,\n1,0,1,1,\n2\n9,5\n1,1\n3\n100,100,5\n0,0,1\n\n"
TEST = "3\n9,200,9,\n0,1,1,\n1\n7\n0\n"


def test_kt_csv_builder_mapping_short_filter_and_trailing_commas(tmp_path):
    manual = tmp_path / "repo"
    _write(str(manual / "data" / "assist2015" / "assist2015_train.csv"), TRAIN)
    _write(str(manual / "data" / "assist2015" / "assist2015_test.csv"), TEST)
    builder = registry.build("kt_csv/assist2015", str(manual), str(tmp_path / "tfds"))
    meta = builder.info.metadata
    assert meta["skill_vocab"] == ["5", "9", "100", "200"] and meta["num_skills"] == 4  # 7 only in a dropped student
    assert meta["dropped_short_students"] == {"train": 1, "test": 1}
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 2, "test": 1}
    train = registry.data_source("kt_csv/assist2015", "train", str(tmp_path / "tfds"))
    assert [train[i]["student_id"] for i in range(2)] == [b"train_0", b"train_2"]
    np.testing.assert_array_equal(train[0]["skills"], [0, 1, 1, 2])
    np.testing.assert_array_equal(train[1]["correct"], [0, 0, 1])
    test = registry.data_source("kt_csv/assist2015", "test", str(tmp_path / "tfds"))
    np.testing.assert_array_equal(test[0]["skills"], [1, 3, 1])
    # reopened from disk (no rebuild) the metadata is still there
    assert registry.get_builder("kt_csv/assist2015", str(tmp_path / "tfds")).info.metadata["num_skills"] == 4


@pytest.mark.parametrize("text, match", [
    ("3\n1,2\n0,1,1\n", r"line 2: 2 skill ids but the count on line 1 says 3"),
    ("3\n1,2,3\n0,2,1\n", r"line 3: correctness must be 0 or 1; field 2 is 2"),
    ("3\n1,2,3\n\n3\n1,2,3\n0,0,0\n", r"line 3: empty line"),
    ("3\n1,x,3\n0,1,1\n", r"line 2: skill-id field 'x' is not an integer"),
    ("three\n1,2,3\n0,1,1\n", r"line 1: attempt-count field 'three' is not an integer"),
    ("3\n1,2,3\n0,1,1\n3\n1,2,3\n", r"truncated"),
])
def test_kt_csv_bad_input_names_file_and_line(tmp_path, text, match):
    _write(str(tmp_path / "m" / "skill_id_train.csv"), text)
    _write(str(tmp_path / "m" / "skill_id_test.csv"), TEST)
    with pytest.raises(DatasetError, match=r"skill_id_train\.csv.*" + match):
        registry.build("kt_csv/assist2009", str(tmp_path / "m"), str(tmp_path / "tfds"))


def test_kt_csv_missing_file_dir_and_config(tmp_path):
    _write(str(tmp_path / "m" / "skill_id_train.csv"), TRAIN)
    with pytest.raises(DatasetError, match=r"test file not found; tried: .*skill_id_test\.csv"):
        registry.build("kt_csv/assist2009", str(tmp_path / "m"), str(tmp_path / "tfds"))
    with pytest.raises(DatasetError, match="does not exist"):
        registry.build("kt_csv/assist2009", str(tmp_path / "nowhere"), str(tmp_path / "tfds"))
    with pytest.raises(DatasetError, match="Unknown config 'assist2099'"):
        registry.build("kt_csv/assist2099", str(tmp_path / "m"), str(tmp_path / "tfds"))


def test_three_line_reader_crlf_and_integral_floats(tmp_path):
    path = _write(str(tmp_path / "f.csv"), "3\r\n12.0,7,7,\r\n1,0,1\r\n\r\n")
    (record,) = read_three_line(path)
    np.testing.assert_array_equal(record.skills, [12, 7, 7])
    np.testing.assert_array_equal(record.correct, [1, 0, 1])
    _write(path, "2\n1.5,2\n0,1\n")
    with pytest.raises(DatasetError, match=r"f\.csv, line 2: skill-id field '1\.5' is not an integer"):
        read_three_line(path)
