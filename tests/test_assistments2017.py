"""synthetic_assistments2017 generator and the assistments2017 builder, on tiny generated releases."""
from __future__ import annotations

import filecmp
import glob
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from datasets import registry
from datasets.assistments2017 import schema
from datasets.assistments2017.release import load_release
from datasets.registry import DatasetError
from datasets.synthetic_assistments2017 import generate

SMALL = dict(num_students=60, length_median=40.0, max_length=200, seed=1, effect_cv=False)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("a17")
    summary = generate(str(root / "release"), shuffle_rows=True, write_index=True, **SMALL)
    return str(root / "release"), summary


def _logs(manual_dir: str) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in glob.glob(os.path.join(manual_dir, "student_log_*.csv"))],
                     ignore_index=True)


def test_generator_deterministic_from_seed(tmp_path, release):
    manual_dir, _ = release
    again = generate(str(tmp_path / "a"), shuffle_rows=True, write_index=True, **SMALL)
    other = generate(str(tmp_path / "b"), shuffle_rows=True, write_index=True, **{**SMALL, "seed": 2})
    for name in ("student_log_3.csv", schema.TRAINING_LABEL_FILE, schema.VALIDATION_LABEL_FILE):
        assert filecmp.cmp(os.path.join(manual_dir, name), os.path.join(again["out_dir"], name), shallow=False)
        assert not filecmp.cmp(os.path.join(manual_dir, name), os.path.join(other["out_dir"], name), shallow=False)


def test_generated_release_schema_and_consistency(release):
    manual_dir, summary = release
    logs = _logs(manual_dir)
    assert list(logs.columns) == ["Unnamed: 0", *schema.LOG_COLUMNS] and len(schema.LOG_COLUMNS) == 77
    assert len(logs) == summary["num_actions"] and logs["ITEST_id"].nunique() == 60
    constant = ["NumActions", "AveCorrect", "AveKnow", "AveCarelessness", "AveResBored", "AveResConf",
                "AveResEngcon", "AveResFrust", "AveResGaming", "AveResOfftask", "SY ASSISTments Usage"]
    assert (logs.groupby("ITEST_id")[constant].nunique() == 1).all().all()
    per_student = logs.groupby("ITEST_id")
    np.testing.assert_allclose(per_student["correct"].mean(), per_student["AveCorrect"].first(), atol=1e-6)
    np.testing.assert_array_equal(per_student.size(), per_student["NumActions"].first())
    np.testing.assert_allclose(per_student["RES_BORED"].mean(), per_student["AveResBored"].first(), atol=1e-5)
    assert (logs["endTime"] - logs["startTime"] == logs["timeTaken"]).all()
    ordered = logs.sort_values(["ITEST_id", "actionId"])
    same = ordered["ITEST_id"].to_numpy()[1:] == ordered["ITEST_id"].to_numpy()[:-1]
    assert (ordered["startTime"].to_numpy()[1:][same] >= ordered["endTime"].to_numpy()[:-1][same]).all()
    assert (logs.loc[logs["hint"] == 1, "correct"] == 0).all() and (logs["scaffold"] == 1 - logs["original"]).all()
    assert logs["correct"].isin([0, 1]).all() and logs["Ln"].between(0, 1).all()
    assert schema.NO_SKILL in set(logs["skill"]) or logs["skill"].nunique() <= 102
    training = pd.read_csv(os.path.join(manual_dir, schema.TRAINING_LABEL_FILE))
    validation = pd.read_csv(os.path.join(manual_dir, schema.VALIDATION_LABEL_FILE))
    assert list(training.columns) == list(schema.TRAINING_LABEL_COLUMNS)
    assert list(validation.columns) == list(schema.VALIDATION_LABEL_COLUMNS)
    assert (len(training), training["ITEST_id"].nunique(), len(validation)) == (16 + 2, 16, 6)
    assert len(set(training["ITEST_id"]) & set(validation["ITEST_id"])) == 2
    assert training["MCAS"].between(0, 54).where(training["MCAS"] != -999, True).all()


def test_ground_truth_saved_next_to_release_with_planted_effects(tmp_path):
    summary = generate(str(tmp_path / "rel"), num_students=400, length_median=120.0, seed=0)
    gt = summary["ground_truth_dir"]
    assert os.path.dirname(gt) == str(tmp_path) and not os.listdir(gt) == []
    assert sorted(os.listdir(gt)) == ["effects.json", "mastery.npz", "students.csv"]
    effects = json.load(open(os.path.join(gt, "effects.json")))
    assert effects["stem_mastery"]["cohens_d"] > 0.5 and effects["learning_gain"]["cohens_d"] > 0.3
    assert effects["mean_final_mastery"]["stem_mean"] > effects["mean_final_mastery"]["non_stem_mean"]
    assert 0.15 < effects["stem_rate"] < 0.35
    truth = pd.read_csv(os.path.join(gt, "students.csv"))
    assert len(truth) == 400 and truth["in_training_label"].sum() == round(467 * 400 / 1709)
    mastery = np.load(os.path.join(gt, "mastery.npz"))
    assert mastery["final_mastery"].shape == (400, 102)
    assert (mastery["final_mastery"] >= mastery["initial_mastery"] - 1e-12).all()


def test_builder_splits_features_and_cleaning(release, tmp_path):
    manual_dir, _ = release
    builder = registry.build("assistments2017", manual_dir, str(tmp_path))
    meta = builder.info.metadata
    sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
    assert sizes == {"kt_train": 48, "kt_test": 12, "labeled": 16, "submission": 6}
    assert meta["sp_columns"] == list(schema.SP_COLUMNS) and schema.NO_SKILL in meta["skill_vocab"]
    assert meta["num_skills"] == len(meta["skill_vocab"]) and meta["split_seed"] == 0
    assert meta["cleaning"]["duplicate_label_rows_dropped"] == 2
    logs = _logs(manual_dir).sort_values("actionId")
    training = pd.read_csv(os.path.join(manual_dir, schema.TRAINING_LABEL_FILE)).drop_duplicates()
    validation = pd.read_csv(os.path.join(manual_dir, schema.VALIDATION_LABEL_FILE))
    labeled = registry.data_source("assistments2017", "labeled", str(tmp_path))
    for i in (0, 5):
        ex, row = labeled[i], training.iloc[i]
        student = logs[logs["ITEST_id"] == row["ITEST_id"]]
        assert ex["student_id"] == str(int(row["ITEST_id"])).encode()
        assert ex["label"] == row["isSTEM"] and ex["has_label"]
        np.testing.assert_array_equal(ex["action_id"], student["actionId"])  # sorted although the rows were shuffled
        assert [meta["skill_vocab"][k] for k in ex["skills"]] == student["skill"].tolist()
        np.testing.assert_array_equal(ex["correct"], student["correct"])
        np.testing.assert_allclose(ex["ln"], student["Ln"], rtol=1e-6)
        expected_sp = student[list(schema.SP_COLUMNS)].iloc[0].to_numpy(np.float64).copy()
        expected_sp[schema.SP_COLUMNS.index("AveCorrect")] = row["AveCorrect"]
        np.testing.assert_allclose(ex["sp"], expected_sp, rtol=1e-6)
        assert ex["school_id"] == row["SchoolId"]
        assert (np.isnan(ex["mcas"]) if row["MCAS"] == -999 else ex["mcas"] == row["MCAS"])
    submission = registry.data_source("assistments2017", "submission", str(tmp_path))
    assert [submission[i]["student_id"] for i in range(6)] == [str(s).encode() for s in validation["ITEST_id"]]
    kt = [registry.data_source("assistments2017", s, str(tmp_path)) for s in ("kt_train", "kt_test")]
    ids = [kt[j][i]["student_id"] for j in range(2) for i in range(len(kt[j]))]
    assert len(set(ids)) == 60
    unlabeled = [ex for ex in (kt[0][i] for i in range(48)) if not ex["has_label"]]
    assert unlabeled and all(ex["label"] == -1 for ex in unlabeled)


def test_builder_reads_single_re_release_file(tmp_path):
    single = generate(str(tmp_path / "single"), single_file=True, **SMALL)
    assert single["log_files"] == [schema.FULL_RELEASE_FILE]
    assert "studentId" in pd.read_csv(os.path.join(single["out_dir"], schema.FULL_RELEASE_FILE), nrows=1).columns
    multi = generate(str(tmp_path / "multi"), **SMALL)
    a, b = load_release(single["out_dir"]), load_release(multi["out_dir"])
    pd.testing.assert_frame_equal(a.actions, b.actions)
    assert a.skill_vocab == b.skill_vocab


def _copy(release, tmp_path) -> str:
    target = str(tmp_path / "copy")
    shutil.copytree(release[0], target)
    return target


def test_mcas_missing_and_mixed_dtypes(release, tmp_path):
    manual_dir = _copy(release, tmp_path)
    path = os.path.join(manual_dir, schema.TRAINING_LABEL_FILE)
    labels = pd.read_csv(path)
    labels.loc[labels["ITEST_id"] == labels["ITEST_id"].iloc[0], "MCAS"] = -999
    labels.to_csv(path, index=False)
    log_path = os.path.join(manual_dir, "student_log_2.csv")
    logs = pd.read_csv(log_path)
    logs["timeTaken"] = logs["timeTaken"].astype(object)
    logs.loc[logs.index[:3], "timeTaken"] = "n/a"  # a mixed-dtype column: strings among numbers
    logs.to_csv(log_path, index=False)
    loaded = load_release(manual_dir)
    assert np.isnan(loaded.training["MCAS"].iloc[0])
    assert loaded.cleaning["non_numeric_to_nan"] == {"timeTaken": 3}


@pytest.mark.parametrize("case, match", [
    ("no_logs", r"no student_log_\*\.csv nor anonymized_full_release_competition_dataset\.csv"),
    ("no_labels", r"validation_test_label\.csv: label file not found"),
    ("missing_column", r"student_log_4\.csv: missing required column\(s\) \['correct'\]"),
    ("non_numeric_correct", r"student_log_4\.csv, column 'correct', line 6: non-numeric value 'yes'"),
    ("orphan_label", r"training_label\.csv, column 'ITEST_id': student 999999 .*has no actions"),
    ("label_missing_column", r"training_label\.csv: missing required column\(s\) \['isSTEM'\]"),
])
def test_bad_input_names_file_and_column(release, tmp_path, case, match):
    manual_dir = _copy(release, tmp_path)
    log4 = os.path.join(manual_dir, "student_log_4.csv")
    train_labels = os.path.join(manual_dir, schema.TRAINING_LABEL_FILE)
    if case == "no_logs":
        for p in glob.glob(os.path.join(manual_dir, "student_log_*.csv")):
            os.remove(p)
    elif case == "no_labels":
        os.remove(os.path.join(manual_dir, schema.VALIDATION_LABEL_FILE))
    elif case in ("missing_column", "non_numeric_correct"):
        logs = pd.read_csv(log4)
        if case == "missing_column":
            logs = logs.drop(columns=["correct"])
        else:
            logs["correct"] = logs["correct"].astype(object)
            logs.loc[4, "correct"] = "yes"
        logs.to_csv(log4, index=False)
    else:
        labels = pd.read_csv(train_labels)
        if case == "orphan_label":
            labels.loc[len(labels)] = [999999, 1, 0.5, 30, 1]
        else:
            labels = labels.drop(columns=["isSTEM"])
        labels.to_csv(train_labels, index=False)
    with pytest.raises(DatasetError, match=match):
        registry.build("assistments2017", manual_dir, str(tmp_path / "tfds"))
