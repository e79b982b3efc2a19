"""Bad inputs: every builder either fails with a clear DatasetError naming the file and the row / field, or skips
the row and counts + lists it in build_report.json; nothing is guessed, nothing is lost.

To add a case, append to ``BUILDER_CASES`` (a ``Case``: which release to start from, how to break it, what must
happen) or to ``CLI_CASES`` (``python -m launch.build`` in a subprocess). Releases are tiny (written here or by
the synthetic generators at their smallest size) and shared per module; each case edits its own copy.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import openpyxl
import pandas as pd
import pytest

from datasets import fingerprint, prepare, registry
from datasets.registry import DatasetError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KT_TRAIN = "4\n5,9,9,100,\n1,0,1,1,\n3\n9,5,9\n1,1,0\n3\n100,100,5\n0,0,1\n"
KT_TEST = "3\n9,100,9,\n0,1,1,\n"


# ------------------------------------------------------------------------------------------- releases
def _write(path: str, data: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _kt_csv(out: str) -> None:
    _write(os.path.join(out, "skill_id_train.csv"), KT_TRAIN)
    _write(os.path.join(out, "skill_id_test.csv"), KT_TEST)


def _simulated5(out: str) -> None:
    from datasets.simulated5 import generate
    generate(out, num_students=10, num_train=6, seed=0, alpha_grid_size=11, gain_grid_size=2)


def _assistments2017(out: str) -> None:
    from datasets.synthetic_assistments2017 import generate
    generate(out, num_students=30, length_median=12.0, max_length=30, seed=1, effect_cv=False)


def _me(dataset: str, **kwargs: Any) -> Callable[[str], None]:
    def make(out: str) -> None:
        from datasets.synthetic_me.generator import generate
        generate(out, dataset, num_subjects=1, clips_per_subject=3, seed=0, frame_size=(32, 32), clip_len=(8, 9),
                 **kwargs)
    return make


RELEASES: dict[str, Callable[[str], None]] = {
    "kt_csv": _kt_csv, "simulated5": _simulated5, "assistments2017": _assistments2017,
    "casme2": _me("casme2", variants=("cropped",)), "samm": _me("samm"),
    "casme_sq": _me("casme_sq", variants=("cropped",)), "casme3": _me("casme3"),
}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """release name -> a pristine copy made once per module (copy it before editing)."""
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            out = str(tmp_path_factory.mktemp(f"release_{name}"))
            RELEASES[name](out)
            cache[name] = out
        return cache[name]
    return get


def _copy(releases, name: str, tmp_path) -> str:
    target = str(tmp_path / "manual")
    shutil.copytree(releases(name), target)
    return target


# ------------------------------------------------------------------------------------------ edit helpers
def set_line(path: str, line: int, text: str) -> Callable[[str], None]:
    """Replaces 1-based ``line`` of the text file ``path`` (relative to the manual_dir)."""
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        lines = open(full, encoding="utf-8").read().split("\n")
        lines[line - 1] = text
        _write(full, "\n".join(lines))
    return edit


def first_field(path: str, line: int, value: str) -> Callable[[str], None]:
    """Replaces the first comma-separated field of ``line``."""
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        lines = open(full, encoding="utf-8").read().split("\n")
        lines[line - 1] = ",".join([value] + lines[line - 1].split(",")[1:])
        _write(full, "\n".join(lines))
    return edit


def write_file(path: str, data: str | bytes) -> Callable[[str], None]:
    return lambda manual: _write(os.path.join(manual, path), data)


def csv_cell(path: str, row: int, column: str, value: Any) -> Callable[[str], None]:
    """Sets data row ``row`` (0-based; file line row + 2) of ``column`` in a CSV (as text)."""
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        frame = pd.read_csv(full, dtype=str, keep_default_na=False)
        frame.loc[row, column] = value
        frame.to_csv(full, index=False)
    return edit


def xlsx_cell(path: str, row: int, column: str | int, value: Any) -> Callable[[str], None]:
    """Sets Excel ``row`` (1-based) of sheet 0 in the column whose header cell is ``column`` (or the 1-based
    column number)."""
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        wb = openpyxl.load_workbook(full)
        ws = wb.worksheets[0]
        col = column if isinstance(column, int) else next(
            c.column for r in ws.iter_rows(max_row=min(ws.max_row, 30)) for c in r if c.value == column)
        ws.cell(row=row, column=col, value=value)
        wb.save(full)
    return edit


def edits(*fns: Callable[[str], None]) -> Callable[[str], None]:
    def edit(manual: str) -> None:
        for fn in fns:
            fn(manual)
    return edit


def reencode(path: str, encoding: str) -> Callable[[str], None]:
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        text = open(full, encoding="utf-8").read()
        _write(full, text.encode(encoding))
    return edit


def latin1_byte(path: str, line: int) -> Callable[[str], None]:
    """Puts a Latin-1 'é' (byte 0xe9, invalid UTF-8) at the start of 1-based ``line``."""
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        lines = open(full, "rb").read().split(b"\n")
        lines[line - 1] = b"\xe9" + lines[line - 1]
        _write(full, b"\n".join(lines))
    return edit


def npz_edit(change: Callable[[dict], None]) -> Callable[[str], None]:
    def edit(manual: str) -> None:
        path = os.path.join(manual, "ground_truth.npz")
        arrays = dict(np.load(path))
        change(arrays)
        np.savez(path, **arrays)
    return edit


def a17_nan_sp_student(manual: str) -> None:
    """Empties AveResBored in every log row of a student with exactly one training-label row (and no
    validation row): the student and its label row must be skipped."""
    train = pd.read_csv(os.path.join(manual, "training_label.csv"))
    valid = pd.read_csv(os.path.join(manual, "validation_test_label.csv"))
    counts = train["ITEST_id"].value_counts()
    student = next(s for s in train["ITEST_id"] if counts[s] == 1 and s not in set(valid["ITEST_id"]))
    for path in glob.glob(os.path.join(manual, "student_log_*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.loc[frame["ITEST_id"] == str(student), "AveResBored"] = ""
        frame.to_csv(path, index=False)


def a17_all_rows(path: str, column: str, value: str) -> Callable[[str], None]:
    def edit(manual: str) -> None:
        full = os.path.join(manual, path)
        frame = pd.read_csv(full, dtype=str, keep_default_na=False)
        frame[column] = value
        frame.to_csv(full, index=False)
    return edit


def a17_fractional_id(manual: str) -> None:
    csv_cell("student_log_2.csv", 3, "ITEST_id",
             str(float(pd.read_csv(os.path.join(manual, "student_log_2.csv"))["ITEST_id"][3]) + 0.5))(manual)


def a17_fractional_label_id(manual: str) -> None:
    path = os.path.join(manual, "training_label.csv")
    csv_cell("training_label.csv", 0, "ITEST_id", str(float(pd.read_csv(path)["ITEST_id"][0]) + 0.5))(manual)


def rename(old: str, new: str) -> Callable[[str], None]:
    return lambda manual: os.rename(os.path.join(manual, old), os.path.join(manual, new))


# ---------------------------------------------------------------------------------------------- cases
@dataclasses.dataclass(frozen=True)
class Case:
    """``release`` (a RELEASES key) is copied, ``edit(manual_dir)`` breaks it, then ``registry.build(dataset)``
    must raise a DatasetError matching ``error`` (a regex naming the file and row / field), or succeed with
    exactly ``skips`` in its build report, the first event of each kind containing ``event[kind]``."""
    id: str
    dataset: str
    release: str
    edit: Callable[[str], None]
    error: str | None = None
    skips: dict[str, int] | None = None
    event: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    failure_report: dict[str, int] | None = None  # skips the report of the failed build must hold

    def __str__(self) -> str:
        return self.id


CASME2_XLSX = "CASME2-coding-20190701.xlsx"
SAMM_XLSX = "SAMM_Micro_FACS_Codes_v2.xlsx"
CASME_SQ_XLSX = "CAS(ME)^2code_final.xlsx"
CASME3_XLSX = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
SIM_TRAIN = "naive_c5_q50_s10_v1_train.csv"

BUILDER_CASES: list[Case] = [
    # kt_csv: only plain decimal integers; UTF-8 only (errors name file, line and byte offset)
    Case("kt_csv-underscore-skill", "kt_csv/assist2009", "kt_csv", first_field("skill_id_train.csv", 5, "1_000"),
         error=r"skill_id_train\.csv, line 5: skill-id field '1_000' is not an integer"),
    Case("kt_csv-exponent-skill", "kt_csv/assist2009", "kt_csv", first_field("skill_id_train.csv", 2, "1e3"),
         error=r"skill_id_train\.csv, line 2: skill-id field '1e3' is not an integer"),
    Case("kt_csv-huge-skill", "kt_csv/assist2009", "kt_csv", first_field("skill_id_test.csv", 2, str(10 ** 20)),
         error=r"skill_id_test\.csv, line 2: skill-id field '100000000000000000000' is out of range"),
    Case("kt_csv-fullwidth-digit", "kt_csv/assist2009", "kt_csv", first_field("skill_id_train.csv", 2, "１２"),
         error=r"skill_id_train\.csv, line 2: skill-id field '１２' is not an integer"),
    Case("kt_csv-exponent-correct", "kt_csv/assist2009", "kt_csv", first_field("skill_id_train.csv", 3, "1e0"),
         error=r"skill_id_train\.csv, line 3: correctness field '1e0' is not an integer"),
    Case("kt_csv-hex-count", "kt_csv/assist2009", "kt_csv", set_line("skill_id_train.csv", 4, "0x3"),
         error=r"skill_id_train\.csv, line 4: attempt-count field '0x3' is not an integer"),
    Case("kt_csv-utf16", "kt_csv/assist2009", "kt_csv", reencode("skill_id_train.csv", "utf-16"),
         error=r"skill_id_train\.csv, line 1 \(byte offset 0\): not valid UTF-8.*UTF-16"),
    Case("kt_csv-latin1-byte", "kt_csv/assist2009", "kt_csv", latin1_byte("skill_id_test.csv", 2),
         error=r"skill_id_test\.csv, line 2 \(byte offset 2\): not valid UTF-8"),
    # simulated5
    Case("simulated5-corrupt-npz", "simulated5", "simulated5", write_file("ground_truth.npz", b"PK\x03\x04 junk"),
         error=r"ground_truth\.npz: not a readable \.npz file"),
    Case("simulated5-missing-array", "simulated5", "simulated5", npz_edit(lambda a: a.pop("p_bayes")),
         error=r"ground_truth\.npz: missing arrays \['p_bayes'\]"),
    Case("simulated5-num-train-out-of-range", "simulated5", "simulated5",
         npz_edit(lambda a: a.update(num_train=np.int64(10))),
         error=r"ground_truth\.npz: array 'num_train' is 10, expected one integer between 1 and 9"),
    Case("simulated5-exponent-skill", "simulated5", "simulated5", first_field(SIM_TRAIN, 2, "1e0"),
         error=r"naive_c5_q50_s10_v1_train\.csv, line 2: skill-id field '1e0' is not an integer"),
    # assistments2017: skipped rows are counted and listed with file and line; broken files are errors
    Case("assistments2017-nan-skill", "assistments2017", "assistments2017",
         csv_cell("student_log_2.csv", 3, "skill", "NaN"), skips={"nan_skill": 1},
         event={"nan_skill": {"file": "student_log_2.csv", "row": 5, "value": "NaN"}}),
    Case("assistments2017-fractional-log-id", "assistments2017", "assistments2017", a17_fractional_id,
         skips={"non_integer_id": 1},
         event={"non_integer_id": {"file": "student_log_2.csv", "row": 5, "column": "ITEST_id"}}),
    Case("assistments2017-fractional-label-id", "assistments2017", "assistments2017", a17_fractional_label_id,
         skips={"non_integer_id": 1},
         event={"non_integer_id": {"file": "training_label.csv", "row": 2, "column": "ITEST_id"}}),
    Case("assistments2017-nan-sp-of-one-student", "assistments2017", "assistments2017", a17_nan_sp_student,
         skips={"missing_sp": 1, "label_of_skipped_student": 1},
         event={"missing_sp": {"columns": ["AveResBored"]},
                "label_of_skipped_student": {"file": "training_label.csv"}}),
    Case("assistments2017-empty-aveknow-column", "assistments2017", "assistments2017",
         a17_all_rows("student_log_3.csv", "AveKnow", ""),
         error=r"student_log_3\.csv, column 'AveKnow': empty or not a number in every row", failure_report={}),
    Case("assistments2017-empty-training-label", "assistments2017", "assistments2017",
         write_file("training_label.csv", ""), error=r"training_label\.csv: the file is empty"),
    Case("assistments2017-utf16-log", "assistments2017", "assistments2017", reencode("student_log_1.csv", "utf-16"),
         error=r"student_log_1\.csv, line 1 \(byte offset 0\): not valid UTF-8"),
    Case("assistments2017-latin1-byte-in-log", "assistments2017", "assistments2017",
         latin1_byte("student_log_2.csv", 7), error=r"student_log_2\.csv, line 7 \(byte offset \d+\): not valid UTF-8"),
    # micro-expression builders: an onset after the offset that cannot be mirrored about the apex is skipped
    Case("casme2-onset-after-offset", "casme2/5class", "casme2", xlsx_cell(CASME2_XLSX, 3, "OnsetFrame", 400),
         skips={"onset_after_offset": 1}, event={"onset_after_offset": {"file": CASME2_XLSX, "row": 3}}),
    Case("casme2-onset-after-offset-no-apex", "casme2/5class", "casme2", xlsx_cell(CASME2_XLSX, 4, "OnsetFrame", 300),
         skips={"onset_after_offset": 1}, event={"onset_after_offset": {"file": CASME2_XLSX, "row": 4}}),
    Case("casme2-single-frame-clip", "casme2/5class", "casme2",
         edits(xlsx_cell(CASME2_XLSX, 2, "OnsetFrame", 68), xlsx_cell(CASME2_XLSX, 2, "ApexFrame", 68)),
         skips={"single_frame_clip": 1}, event={"single_frame_clip": {"file": CASME2_XLSX, "row": 2}}),
    Case("casme2-no-row-matches-a-folder", "casme2/5class", "casme2", rename("Cropped/sub01", "Cropped/sub99"),
         error=r"CASME2-coding-20190701\.xlsx: no annotation row gave an example .*first one not found is "
               r"CASME2-coding-20190701\.xlsx row 2",
         failure_report={"folder_missing": 3}),
    Case("samm-onset-after-offset", "samm/5class", "samm", xlsx_cell(SAMM_XLSX, 16, "Onset Frame", 9200),
         skips={"onset_after_offset": 1}, event={"onset_after_offset": {"file": SAMM_XLSX, "row": 16}}),
    Case("samm-onset-after-offset-apex-too-early", "samm/5class", "samm",
         xlsx_cell(SAMM_XLSX, 15, "Onset Frame", 800),
         skips={"onset_after_offset": 1}, event={"onset_after_offset": {"file": SAMM_XLSX, "row": 15}}),
    Case("samm-non-numeric-onset", "samm/5class", "samm", xlsx_cell(SAMM_XLSX, 17, "Onset Frame", "abc"),
         skips={"bad_frame_number": 1}, event={"bad_frame_number": {"file": SAMM_XLSX, "row": 17}}),
    Case("casme_sq-onset-after-offset", "casme_sq/4class", "casme_sq",
         edits(xlsx_cell(CASME_SQ_XLSX, 2, 3, 140), xlsx_cell(CASME_SQ_XLSX, 2, 4, 136)),
         skips={"onset_after_offset": 1}, event={"onset_after_offset": {"file": CASME_SQ_XLSX, "row": 2}}),
    Case("casme_sq-corrupt-xlsx", "casme_sq/4class", "casme_sq", write_file(CASME_SQ_XLSX, b"PK\x03\x04 not xlsx"),
         error=r"cannot read annotation file .*CAS\(ME\)\^2code_final\.xlsx"),
    Case("casme3-onset-after-offset", "casme3/7class", "casme3",
         edits(xlsx_cell(CASME3_XLSX, 2, "Onset", 360), xlsx_cell(CASME3_XLSX, 2, "Apex", 354)),
         skips={"onset_after_offset": 1}, event={"onset_after_offset": {"file": CASME3_XLSX, "row": 2}}),
    Case("casme3-renamed-column", "casme3/7class", "casme3", xlsx_cell(CASME3_XLSX, 1, "Apex", "Peak"),
         error=r"cas\(me\)3_part_A_ME_label_JpgIndex_v2\.xlsx: required column\(s\) \['Apex'\] not found"),
]


def _report(builder) -> dict[str, Any]:
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("case", BUILDER_CASES, ids=str)
def test_builder_bad_input(case: Case, releases, tmp_path):
    manual = _copy(releases, case.release, tmp_path)
    case.edit(manual)
    data_dir = str(tmp_path / "tfds")
    if case.error is not None:
        with pytest.raises(DatasetError, match=case.error) as info:
            registry.build(case.dataset, manual, data_dir)
        assert "\n" not in str(info.value)
        builder = registry.get_builder(case.dataset, data_dir)
        assert not builder.is_prepared()
        assert [p for p in os.listdir(data_dir) if p.startswith(".build.")] == []  # temporary folder removed
        if case.failure_report is not None:
            path = os.path.join(os.path.dirname(builder.data_dir), "build_report.json")
            assert f"Build report: {path}" in str(info.value)
            report = json.load(open(path))
            assert report["info"]["status"] == "failed" and report["skips"] == case.failure_report
        return
    builder = registry.build(case.dataset, manual, data_dir)
    report = _report(builder)
    assert report["skips"] == case.skips, report["events"]
    for kind, expected in case.event.items():
        first = report["events"][f"skips/{kind}"][0]
        assert {k: first.get(k) for k in expected} == expected, first


# ------------------------------------------------------------------------------ launch.build (subprocess)
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launch.build", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def _cli_overwrite_keeps_good_build(releases, tmp_path) -> None:
    manual, data_dir = _copy(releases, "kt_csv", tmp_path), str(tmp_path / "tfds")
    registry.build("kt_csv/assist2009", manual, data_dir)
    first_field("skill_id_train.csv", 2, "1e3")(manual)
    proc = _cli("--dataset=kt_csv/assist2009", f"--manual_dir={manual}", f"--data_dir={data_dir}", "--overwrite")
    _assert_one_line_error(proc, "skill_id_train.csv, line 2", "'1e3'")
    source = registry.get_builder("kt_csv/assist2009", data_dir).as_data_source(split="train")
    np.testing.assert_array_equal(source[0]["skills"], [0, 1, 1, 2])  # the good build is still there


def _cli_empty_label_file(releases, tmp_path) -> None:
    manual = _copy(releases, "assistments2017", tmp_path)
    write_file("training_label.csv", "")(manual)
    proc = _cli("--dataset=assistments2017", f"--manual_dir={manual}", f"--data_dir={tmp_path / 'tfds'}")
    _assert_one_line_error(proc, os.path.join(manual, "training_label.csv"), "empty")


def _cli_unwritable_data_dir(releases, tmp_path) -> None:
    manual = _copy(releases, "kt_csv", tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _cli("--dataset=kt_csv/assist2009", f"--manual_dir={manual}", f"--data_dir={blocker / 'tfds'}")
    _assert_one_line_error(proc, "cannot create data_dir", str(blocker / "tfds"))


CLI_CASES: list[Callable] = [_cli_overwrite_keeps_good_build, _cli_empty_label_file, _cli_unwritable_data_dir]


@pytest.mark.parametrize("run", CLI_CASES, ids=lambda f: f.__name__.removeprefix("_cli_"))
def test_launch_build_reports_one_line_error(run, releases, tmp_path):
    run(releases, tmp_path)


# ----------------------------------------------------------- overwrite swap, input fingerprint, lock
KT = "kt_csv/assist2009"


def _train_skills(data_dir: str) -> list[list[int]]:
    source = registry.get_builder(KT, data_dir).as_data_source(split="train")
    return [source[i]["skills"].tolist() for i in range(len(source))]


def test_overwrite_failure_keeps_the_good_build(releases, tmp_path):
    manual, data_dir = _copy(releases, "kt_csv", tmp_path), str(tmp_path / "tfds")
    registry.build(KT, manual, data_dir)
    before = _train_skills(data_dir)
    set_line("skill_id_train.csv", 3, "1,0,7,1")(manual)  # correctness 7
    with pytest.raises(DatasetError, match=r"skill_id_train\.csv, line 3: correctness must be 0 or 1"):
        registry.build(KT, manual, data_dir, overwrite=True)
    assert _train_skills(data_dir) == before
    assert sorted(os.listdir(data_dir)) == ["kt_csv"]  # no temporary build folder left behind


def test_changed_input_is_not_silently_reused_and_overwrite_swaps(releases, tmp_path, monkeypatch):
    manual, data_dir = _copy(releases, "kt_csv", tmp_path), str(tmp_path / "tfds")
    builder = registry.build(KT, manual, data_dir)
    assert builder.build_status == "built"
    stored = fingerprint.read(builder.data_dir)
    assert set(stored["files"]) == {"skill_id_train.csv", "skill_id_test.csv"}
    path = os.path.join(manual, "skill_id_train.csv")
    os.utime(path, (1, 1))  # touched, same content: still the same inputs
    assert registry.build(KT, manual, data_dir).build_status == "reused"
    assert prepare.prepare_dataset(KT, manual_dir=manual, data_dir=data_dir).is_prepared()
    first_field("skill_id_train.csv", 2, "6")(manual)
    for build in (lambda: registry.build(KT, manual, data_dir),
                  lambda: prepare.prepare_dataset(KT, manual_dir=manual, data_dir=data_dir)):
        with pytest.raises(DatasetError, match=r"skill_id_train\.csv changed .*Pass --overwrite \(or overwrite=True\)"):
            build()
    swapped = registry.build(KT, manual, data_dir, overwrite=True)
    assert swapped.build_status == "built" and swapped.data_dir == builder.data_dir
    assert _train_skills(data_dir)[0] == [1, 2, 2, 3]  # 6,9,9,100 with the new vocab 5, 6, 9, 100
    assert registry.get_builder(KT, data_dir).info.metadata["skill_vocab"] == ["5", "6", "9", "100"]
    assert registry.build(KT, manual, data_dir).build_status == "reused"
    os.remove(os.path.join(builder.data_dir, fingerprint.FINGERPRINT_FILE))  # an old build: accepted, warned
    warnings = []
    monkeypatch.setattr(registry.logging, "warning", lambda msg, *a: warnings.append(msg % a))
    first_field("skill_id_train.csv", 2, "7")(manual)
    assert prepare.prepare_dataset(KT, manual_dir=manual, data_dir=data_dir).is_prepared()
    assert any("has no input_fingerprint.json" in w for w in warnings)


def test_removed_input_file_is_a_change(releases, tmp_path):
    manual, data_dir = _copy(releases, "kt_csv", tmp_path), str(tmp_path / "tfds")
    registry.build(KT, manual, data_dir)
    os.remove(os.path.join(manual, "skill_id_test.csv"))
    with pytest.raises(DatasetError, match=r"file skill_id_test\.csv is gone"):
        prepare.prepare_dataset(KT, manual_dir=manual, data_dir=data_dir)
    os.remove(os.path.join(manual, "skill_id_train.csv"))  # nothing left to compare: the build is used
    assert prepare.prepare_dataset(KT, manual_dir=manual, data_dir=data_dir).is_prepared()


def test_changed_frame_folder_is_detected(releases, tmp_path):
    manual, data_dir = _copy(releases, "casme2", tmp_path), str(tmp_path / "tfds")
    builder = registry.build("casme2/5class", manual, data_dir)
    assert list(fingerprint.read(builder.data_dir)["files"]) == [CASME2_XLSX]
    frame = sorted(glob.glob(os.path.join(manual, "Cropped", "sub01", "EP10_03", "*.jpg")))[0]
    with open(frame, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DatasetError, match=r"frame folder Cropped/sub01/EP10_03 changed"):
        prepare.prepare_dataset("casme2/5class", manual_dir=manual, data_dir=data_dir)


def test_failed_build_report_is_replaced_by_a_good_build(releases, tmp_path):
    manual, data_dir = _copy(releases, "casme2", tmp_path), str(tmp_path / "tfds")
    rename("Cropped/sub01", "Cropped/sub99")(manual)
    with pytest.raises(DatasetError, match="Build report: "):
        registry.build("casme2/5class", manual, data_dir)
    failed = os.path.join(data_dir, "casme2", "5class", "build_report.json")
    assert os.path.isfile(failed)
    rename("Cropped/sub99", "Cropped/sub01")(manual)
    builder = registry.build("casme2/5class", manual, data_dir)
    assert not os.path.exists(failed) and _report(builder)["info"]["status"] == "ok"


def test_concurrent_build_waits_for_the_lock_or_fails_clearly(releases, tmp_path):
    manual, data_dir = _copy(releases, "kt_csv", tmp_path), str(tmp_path / "tfds")
    holder = registry.get_builder(KT, data_dir)
    with registry.build_lock(holder, KT):
        for timeout in (0, 0.3):
            with pytest.raises(DatasetError, match=rf"being built by another process \(pid {os.getpid()}, lock "
                                                   r".*\.build\.lock\)"):
                registry.build(KT, manual, data_dir, lock_timeout=timeout)
    acquired = threading.Event()

    def hold() -> None:
        with registry.build_lock(holder, KT):
            acquired.set()
            time.sleep(0.5)
    thread = threading.Thread(target=hold)
    thread.start()
    assert acquired.wait(30)
    start = time.monotonic()
    assert registry.build(KT, manual, data_dir).build_status == "built"  # waited for the holder, then built
    assert time.monotonic() - start >= 0.2
    thread.join()


def test_unwritable_data_dir_is_a_clear_error(releases, tmp_path, monkeypatch):
    manual, data_dir = _copy(releases, "kt_csv", tmp_path), str(tmp_path / "tfds")
    if os.geteuid() != 0:  # root ignores permission bits: simulate what os.access would say
        os.makedirs(data_dir)
        os.chmod(data_dir, 0o500)
    else:
        monkeypatch.setattr(registry.os, "access", lambda path, mode: False)
    try:
        with pytest.raises(DatasetError, match=r"data_dir '.*tfds' is not writable \(permission denied\)"):
            registry.build(KT, manual, data_dir)
    finally:
        if os.path.isdir(data_dir):
            os.chmod(data_dir, 0o700)

    monkeypatch.undo()
    mkdtemp = registry.tempfile.mkdtemp

    def denied(*args, **kwargs):  # the temporary build folder in data_dir cannot be created
        if kwargs.get("dir") == data_dir:
            raise PermissionError(13, "Permission denied", os.path.join(data_dir, ".build.x"))
        return mkdtemp(*args, **kwargs)
    monkeypatch.setattr(registry.tempfile, "mkdtemp", denied)
    with pytest.raises(DatasetError, match=r"permission denied on '.*\.build\.x' \(Permission denied\)"):
        registry.build(KT, manual, data_dir)


# ------------------------------------------------------------------- launchers (python -m launch.<main>)
@dataclasses.dataclass(frozen=True)
class LauncherCase:
    """``python -m launch.<module> <args> --workdir=W`` must exit non-zero with one ``error:`` line that
    contains every needle, and no traceback."""
    name: str
    module: str
    args: tuple[str, ...]
    needles: tuple[str, ...]
    exit_code: int | None = None

    def __str__(self) -> str:
        return self.name


DKT_TINY = "--config=launch/configs/dkt_tiny.py"
STEM_TINY = "--config=launch/configs/stem_tiny.py"
FDP_TINY = "--config=launch/configs/fdp_tiny.py"
LAUNCHER_CASES = [
    LauncherCase("dkt-unknown-field", "launch.dkt", (DKT_TINY, "--config.foo=1"), ("unknown config field 'foo'",), 2),
    LauncherCase("dkt-typo-close-names", "launch.dkt", (DKT_TINY, "--config.model.hiden_size=3"),
                 ("'model.hiden_size'", "close names: model.hidden_size"), 2),
    LauncherCase("dkt-missing-config-file", "launch.dkt", ("--config=launch/configs/no_such.py",),
                 ("launch/configs/no_such.py", "No such file"), 2),
    LauncherCase("dkt-unparsable-value", "launch.dkt", (DKT_TINY, "--config.learning_rate=abc"),
                 ("--config.learning_rate=abc",), 2),
    LauncherCase("dkt-nan-learning-rate", "launch.dkt", (DKT_TINY, "--config.learning_rate=nan"),
                 ("config.learning_rate must be > 0", "nan"), 1),
    LauncherCase("dkt-negative-learning-rate", "launch.dkt", (DKT_TINY, "--config.learning_rate=-0.1"),
                 ("config.learning_rate must be > 0",), 1),
    LauncherCase("dkt-dropout-1.5", "launch.dkt", (DKT_TINY, "--config.model.dropout_rate=1.5"),
                 ("config.model.dropout_rate must be in [0, 1)",), 1),
    LauncherCase("dkt-hidden-size-0", "launch.dkt", (DKT_TINY, "--config.model.hidden_size=0"),
                 ("config.model.hidden_size must be a positive int",), 1),
    LauncherCase("dkt-negative-lambda", "launch.dkt", (DKT_TINY, "--config.loss.lambda_w2=-1"),
                 ("config.loss.lambda_w2 must be >= 0",), 1),
    LauncherCase("dkt-unknown-dataset", "launch.dkt", (DKT_TINY, "--config.dataset=nope"),
                 ("Unknown dataset 'nope'",), 1),
    LauncherCase("fdp-unknown-field", "launch.fdp", (FDP_TINY, "--config.optimizer.lr=1"),
                 ("unknown config field 'optimizer.lr'", "optimizer.learning_rate"), 2),
    LauncherCase("fdp-batch-size-0", "launch.fdp", (FDP_TINY, "--config.batch_size=0"),
                 ("config.batch_size must be a positive int",), 1),
    LauncherCase("fdp-nan-learning-rate", "launch.fdp", (FDP_TINY, "--config.optimizer.learning_rate=nan"),
                 ("config.optimizer.learning_rate must be > 0",), 1),
    LauncherCase("fdp-path-dropout-1.5", "launch.fdp", (FDP_TINY, "--config.model.path_dropout=1.5"),
                 ("config.model.path_dropout must be in [0, 1)",), 1),
    LauncherCase("stem-one-outer-fold", "launch.stem", (STEM_TINY, "--config.sklearn.outer_folds=1"),
                 ("config.sklearn.outer_folds must be an int >= 2",), 1),
    LauncherCase("stem-nan-kt-learning-rate", "launch.stem", (STEM_TINY, "--config.dkt.learning_rate=nan"),
                 ("config.learning_rate must be > 0", "in config.dkt"), 1),
]


def _launch(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _assert_launcher_error(proc: subprocess.CompletedProcess, module: str, needles, exit_code=None) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr[-3000:]
    if exit_code is not None:
        assert proc.returncode == exit_code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].split(": error: ")[0] in (module, module.split(".")[-1] + ".py"), \
        proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("case", LAUNCHER_CASES, ids=str)
def test_launcher_bad_input(case: LauncherCase, tmp_path):
    proc = _launch(case.module, *case.args, f"--workdir={tmp_path / 'wd'}")
    _assert_launcher_error(proc, case.module, case.needles, case.exit_code)
    assert not (tmp_path / "wd" / "tfds").exists()  # config errors come before any data work


def test_launcher_busy_and_unwritable_workdir(tmp_path):
    from launch.runtime import workdir as workdir_lib

    busy = tmp_path / "busy"
    workdir_lib.Workdir(str(busy)).make()  # this process holds the lock now
    proc = _launch("launch.dkt", DKT_TINY, f"--workdir={busy}")
    _assert_launcher_error(proc, "launch.dkt", (str(busy), "in use by another run", f"pid {os.getpid()}"), 1)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _launch("launch.dkt", DKT_TINY, f"--workdir={blocker / 'wd'}")
    _assert_launcher_error(proc, "launch.dkt", ("cannot write the workdir", str(blocker / "wd")), 1)


def test_dkt_divergence_and_resume_with_another_model_shape(tmp_path):
    wd = str(tmp_path / "wd")
    good = _launch("launch.dkt", DKT_TINY, "--config.num_epochs=1", f"--workdir={wd}")
    assert good.returncode == 0, good.stderr[-3000:]
    before = json.load(open(os.path.join(wd, "results.json")))
    # Another hidden size on the same workdir: a clear error; the finished run's outputs are kept.
    proc = _launch("launch.dkt", DKT_TINY, "--config.num_epochs=2", "--config.model.hidden_size=8", f"--workdir={wd}")
    _assert_launcher_error(proc, "launch.dkt", ("model of another shape", "new --workdir"), 1)
    # An exploding learning rate: stops at the first bad epoch, names the step and the terms, no new results.
    proc = _launch("launch.dkt", DKT_TINY, "--config.num_epochs=2", "--config.learning_rate=1e30", f"--workdir={wd}")
    line = _assert_launcher_error(proc, "launch.dkt", ("training diverged at step", "above max_loss", "bce_next="), 1)
    assert "no results were written" in line
    assert not os.path.exists(os.path.join(wd, "results.json"))  # the earlier run's moved to previous/
    kept = glob.glob(os.path.join(wd, "previous", "*", "results.json"))
    assert [json.load(open(p)) for p in kept] == [before]
    steps = [d for d in os.listdir(os.path.join(wd, "checkpoints")) if d.isdigit()]
    assert len(steps) == 1  # only the good run's checkpoint: the diverged epoch was not saved


def test_fdp_divergence_names_the_fold_and_writes_no_report(tmp_path):
    """Before the guard, this run exited 0 with a report of NaN logits (every prediction class 0)."""
    wd = tmp_path / "wd"
    proc = _launch("launch.fdp", FDP_TINY, "--config.optimizer.learning_rate=1e30", "--config.model.num_classes=3",
                   f"--workdir={wd}")
    line = _assert_launcher_error(proc, "launch.fdp", ("training diverged at fold ", "step "), 1)
    assert "ce=" in line and "mse=" in line
    assert not (wd / "results.json").exists() and not (wd / "report.md").exists()
    config = json.load(open(wd / "config.json"))["config"]
    assert config["model"]["num_classes"] == 5  # the data's 5 classes, not the config's 3


def test_interrupted_generation_is_redone(tmp_path):
    """A generation killed half-way leaves no release behind (it writes aside), so the next run redoes it."""
    manual = str(tmp_path / "raw")

    def dies(out_dir: str) -> dict:
        os.makedirs(out_dir)
        _write(os.path.join(out_dir, "half_written.csv"), "1,2\n")
        raise KeyboardInterrupt  # the user's Ctrl-C, or a kill, in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        prepare.ensure_generated(manual, dies)
    assert not os.path.exists(manual)  # no half release under the real name

    def works(out_dir: str) -> dict:
        _kt_csv(out_dir)
        return {"students": 4}

    assert prepare.ensure_generated(manual, works)
    assert sorted(os.listdir(manual)) == sorted(["GENERATED.json", "skill_id_train.csv", "skill_id_test.csv"])
    assert not [d for d in os.listdir(tmp_path) if ".partial-" in d]  # the killed run's folder is cleaned up
    assert not prepare.ensure_generated(manual, dies)  # a finished release is kept
