"""The synthetic micro-expression generator: layouts, headers, sheets, quirks, counts, determinism, learnability.

Everything is read back the way a user's parser would (pandas / openpyxl / cv2), independent of the builders.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import cv2
import openpyxl
import pandas as pd
import pytest

from datasets.synthetic_me import generate

TINY = dict(num_subjects=3, clips_per_subject=4, frame_size=(48, 56), clip_len=(8, 11))


def _frame_numbers(folder: str) -> list[int]:
    """Trailing integers of the JPEG names in ``folder`` (junk files ignored)."""
    return sorted(int(re.search(r"(\d+)\.jpg$", f).group(1)) for f in os.listdir(folder) if f.endswith(".jpg"))


def _tree_digest(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def test_casme2_layout_headers_frames_and_junk(tmp_path):
    s = generate(str(tmp_path), "casme2", **TINY)
    path = tmp_path / "CASME2-coding-20190701.xlsx"
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Sheet1", "Sheet2", "Sheet3"]
    assert wb["Sheet2"].max_row == 1 and wb["Sheet2"]["A1"].value is None
    ws = wb["Sheet1"]
    assert [c.value for c in ws[1]] == ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                                        "Action Units", "Estimated Emotion", "Objective Classes"]
    assert ws["A2"].data_type == "s" and ws["A2"].value == "01"  # Subject stored as text
    df = pd.read_excel(path, sheet_name=0, dtype={"Subject": str})
    assert list(df.columns)[2] == "Unnamed: 2" and list(df.columns)[6] == "Unnamed: 6"
    assert len(df) == 12 and set(df["Subject"]) == {"01", "02", "03"}
    types = {type(v) for v in df["Action Units"]}
    assert types <= {int, str} and len(types) >= 1
    for r, row in zip(s["clips"], df.itertuples(index=False)):
        onset, offset = int(row.OnsetFrame), int(row.OffsetFrame)
        for kind, prefix in (("raw", "img"), ("cropped", "reg_img")):
            folder = tmp_path / r["frame_dirs"][kind]
            assert _frame_numbers(str(folder)) == list(range(onset, offset + 1)), folder
            assert all(f.startswith(prefix) for f in os.listdir(folder) if f.endswith(".jpg"))
        raw = cv2.imread(str(tmp_path / r["frame_dirs"]["raw"] / f"img{onset}.jpg"), cv2.IMREAD_UNCHANGED)
        crop = cv2.imread(str(tmp_path / r["frame_dirs"]["cropped"] / f"reg_img{onset}.jpg"), cv2.IMREAD_UNCHANGED)
        assert raw.shape == (48, 56, 3) and crop.shape[2] == 3 and crop.shape[0] < 48
    assert s["junk_files"] and all((tmp_path / j).is_file() for j in s["junk_files"])
    assert any(j.endswith(".avi") for j in s["junk_files"]) and any(j.endswith(".lnk") for j in s["junk_files"])


def test_samm_preamble_header_formula_grayscale_and_padding(tmp_path):
    s = generate(str(tmp_path), "samm", num_subjects=4, clips_per_subject=4, frame_size=48, clip_len=(8, 10))
    path = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["MICRO_ONLY"]
    ws = wb["MICRO_ONLY"]
    assert ws["A1"].value == "SAMM Dataset - Master FACS Codes"
    assert [c.value for c in ws[14]] == ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
                                         "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
                                         "Objective Classes", "Notes"]
    assert ws["A15"].value == "006" and ws["A15"].data_type == "s"
    assert ws["G15"].value == "=SUM(F15-D15)+1"  # a formula, with a cached value for pandas
    df = pd.read_excel(path, sheet_name="MICRO_ONLY", header=13, dtype={"Subject": str})
    assert len(df) == 16 and set(df["Micro"]) == {"Micro - 1/2"}
    assert (df["Duration"] == df["Offset Frame"] - df["Onset Frame"] + 1).all()
    assert all(f.split("_")[1] == str(i) for f, i in zip(df["Filename"], df["Inducement Code"]))
    widths = set()
    for clip in s["clips"]:
        folder = tmp_path / clip["frame_dirs"]["raw"]
        assert folder.parent.name == clip["subject"]
        names = sorted(os.listdir(folder))
        widths |= {len(n.split("_")[1].split(".")[0]) for n in names}
        assert _frame_numbers(str(folder)) == list(range(clip["onset"], clip["offset"] + 1))
        img = cv2.imread(str(folder / names[0]), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 2  # grayscale release
    assert widths == {4, 5}


def test_casme_sq_headerless_sheet_naming_rules_and_folders(tmp_path):
    s = generate(str(tmp_path), "casme_sq", variants=("raw", "cropped", "rawpic"), **TINY)
    path = tmp_path / "CAS(ME)^2code_final.xlsx"
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["CASFEcode_final", "naming rule1", "naming rule2"]
    assert wb["naming rule2"]["A1"].value == "0101" and wb["naming rule2"]["A1"].data_type == "s"
    assert [c.value for c in wb["naming rule1"][1]] == [15, "s15", 1]
    df = pd.read_excel(path, sheet_name=0, header=None)
    assert df.shape[1] == 9 and df.iloc[0, 7] in ("micro-expression", "macro-expression")  # row 1 is data
    assert set(df[6]) <= {"negative", "positive", "surprise", "others"}
    assert (df[df[4] == 0][7] == "macro-expression").all() and (df[4] == 0).sum() >= 1
    assert "happyiness" in set(df[8])
    for clip in s["clips"]:
        raw, crop = clip["frame_dirs"]["raw"], clip["frame_dirs"]["cropped"]
        nn = raw.split("/")[1][1:]
        assert raw.startswith(f"selectedpic/s{nn}/") and crop.startswith(f"cropped/{nn}/")
        assert _frame_numbers(str(tmp_path / crop)) == list(range(clip["onset"], clip["offset"] + 1))
    rawpic = [d for d in (tmp_path / "rawpic" / "s15").iterdir()]
    assert rawpic and all(re.fullmatch(r"15_\d{4}[a-z]+", d.name) for d in rawpic)
    assert all(re.fullmatch(r"img\d{3,}\.jpg", f) for d in rawpic for f in os.listdir(d))


def test_casme3_label_sheet_keys_and_both_frame_layouts(tmp_path):
    s = generate(str(tmp_path), "casme3", variants=("raw", "clip"), **TINY)
    path = tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
    assert openpyxl.load_workbook(path).sheetnames == ["label", "Sheet1", "Sheet3"]
    df = pd.read_excel(path, sheet_name="label")
    assert list(df.columns) == ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    assert not df.duplicated(["Subject", "Filename", "Onset"]).any()
    assert "Others" in set(df["emotion"]) and (df["Onset"] > df["Apex"]).any()
    assert set(df["Objective class"]) <= {"I", "II", "III", "IV", "V", "VI", "VII"}
    for clip in s["clips"]:
        raw = tmp_path / clip["frame_dirs"]["raw"]
        assert raw.name == "color" and raw.parent.parent.name == clip["subject"]
        assert set(range(clip["onset"], clip["offset"] + 1)) <= set(_frame_numbers(str(raw)))
        clip_dir = tmp_path / clip["frame_dirs"]["clip"]
        assert clip_dir.parent == tmp_path / "Part_A_ME_clip" / "frame"
        assert _frame_numbers(str(clip_dir)) == list(range(clip["onset"], clip["offset"] + 1))


@pytest.mark.parametrize("dataset,expected", [
    ("casme2", {"apex_slash", "apex_equals_onset", "apex_equals_offset", "irregular_filename"}),
    ("samm", {"apex_before_onset", "apex_after_offset", "five_digit_frame_names"}),
    ("casme_sq", {"offset_zero", "happyiness_typo"}),
    ("casme3", {"Others_capitalised", "onset_typo", "short_clip"}),
])
def test_quirks_are_planted_where_reported(tmp_path, dataset, expected):
    s = generate(str(tmp_path), dataset, write_frames=False, **{**TINY, "num_subjects": 4})
    assert expected <= {q["quirk"] for q in s["quirks"]}
    wb = openpyxl.load_workbook(tmp_path / s["annotation_file"], data_only=True)
    ws = wb.worksheets[0]
    for q in s["quirks"]:
        if q["excel_row"] is None:
            continue
        cells = [c.value for c in ws[q["excel_row"]]]
        if q["quirk"] == "apex_slash":
            assert cells[4] == "/"
        elif q["quirk"] == "apex_before_onset":
            assert cells[4] < cells[3]
        elif q["quirk"] == "apex_after_offset":
            assert cells[4] > cells[5]
        elif q["quirk"] == "offset_zero":
            assert cells[4] == 0 and cells[7] == "macro-expression"
        elif q["quirk"] == "happyiness_typo":
            assert cells[8] == "happyiness"
        elif q["quirk"] == "onset_typo":
            assert cells[2] > cells[3]
        elif q["quirk"] == "Others_capitalised":
            assert cells[7] == "Others"
    assert not generate(str(tmp_path / "clean"), dataset, write_frames=False, quirks=False, **TINY)["quirks"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(num_subjects=2, clips_per_subject=2, frame_size=40, clip_len=(6, 8))
    a = generate(str(tmp_path / "a"), "casme2", seed=3, **kw)
    b = generate(str(tmp_path / "b"), "casme2", seed=3, **kw)
    c = generate(str(tmp_path / "c"), "casme2", seed=4, **kw)
    da, db, dc = (_tree_digest(str(tmp_path / k)) for k in "abc")
    assert da == db and "CASME2-coding-20190701.xlsx" in da  # byte-identical, spreadsheet included
    assert a["clips"] == b["clips"] and a["quirks"] == b["quirks"]
    assert a["clips"] != c["clips"] and da != dc


def _protocol(df: pd.DataFrame, column: str, mapping: dict[str, str]) -> tuple[dict[str, int], int]:
    labels = df[column].astype(str).str.strip().str.lower().map(mapping)
    kept = df[labels.notna()]
    return labels.dropna().value_counts().to_dict(), kept["Subject"].nunique()


def test_official_counts_reproduce_the_documented_tables(tmp_path):
    def gen(name):
        s = generate(str(tmp_path / name), name, profile="official_counts", write_frames=False)
        return s, tmp_path / name / s["annotation_file"]

    _, path = gen("casme2")
    df = pd.read_excel(path, dtype={"Subject": str})
    assert len(df) == 255 and df["Subject"].nunique() == 26
    assert df.groupby("Subject").size().tolist() == [9, 13, 7, 5, 19, 5, 9, 3, 14, 14, 10, 12, 8, 4, 3, 4, 36, 3,
                                                    16, 11, 2, 2, 12, 10, 7, 17]
    five = {k: k for k in ("happiness", "disgust", "repression", "surprise", "others")}
    assert _protocol(df, "Estimated Emotion", five) == (
        {"others": 99, "disgust": 63, "happiness": 32, "surprise": 28, "repression": 27}, 26)
    megc = {"happiness": "positive", "disgust": "negative", "repression": "negative", "surprise": "surprise"}
    assert _protocol(df, "Estimated Emotion", megc) == ({"negative": 90, "positive": 32, "surprise": 28}, 24)
    mmnet = {**megc, "fear": "negative", "sadness": "negative"}
    assert _protocol(df, "Estimated Emotion", mmnet) == ({"negative": 96, "positive": 32, "surprise": 28}, 25)

    _, path = gen("samm")
    df = pd.read_excel(path, header=13, dtype={"Subject": str})
    assert len(df) == 159 and df["Subject"].nunique() == 29 and df["Filename"].is_unique
    five = {k: k for k in ("anger", "happiness", "contempt", "surprise", "other")}
    assert _protocol(df, "Estimated Emotion", five) == (
        {"anger": 57, "other": 26, "happiness": 26, "surprise": 15, "contempt": 12}, 27)
    three = {"happiness": "positive", "surprise": "surprise", **{k: "negative" for k in
             ("anger", "contempt", "disgust", "fear", "sadness")}}
    assert _protocol(df, "Estimated Emotion", three) == ({"negative": 92, "positive": 26, "surprise": 15}, 28)

    _, path = gen("casme_sq")
    df = pd.read_excel(path, header=None).rename(columns={0: "Subject"})
    micro = df[df[7] == "micro-expression"]
    assert len(micro) == 57 and micro["Subject"].nunique() == 14 and df["Subject"].nunique() == 22
    assert _protocol(micro, 6, {k: k for k in ("negative", "others", "surprise", "positive")}) == (
        {"negative": 21, "others": 19, "surprise": 9, "positive": 8}, 14)
    assert _protocol(micro, 6, {k: k for k in ("negative", "surprise", "positive")})[1] == 9
    assert (df[df[4] == 0][7] == "macro-expression").sum() == 44

    _, path = gen("casme3")
    df = pd.read_excel(path, sheet_name="label")
    assert len(df) == 860 and df["Subject"].nunique() == 94 and (df["emotion"] == "Others").sum() == 3
    seven = {k: k for k in ("happy", "surprise", "disgust", "anger", "fear", "sad", "others")}
    assert _protocol(df, "emotion", seven)[0] == {"disgust": 250, "surprise": 187, "others": 161, "fear": 86,
                                                  "anger": 64, "sad": 57, "happy": 55}
    three = {"happy": "positive", "surprise": "surprise", **{k: "negative" for k in ("disgust", "anger", "fear",
                                                                                     "sad")}}
    assert _protocol(df, "emotion", three) == ({"negative": 457, "surprise": 187, "positive": 55}, 88)


def test_motion_carries_the_class_not_the_onset_frame(tmp_path):
    """Across subjects (GroupKFold), a linear model is at chance on onset frames, well above on apex - onset."""
    from datasets.synthetic_me.probe import linear_probe

    s = generate(str(tmp_path), "casme2", num_subjects=10, clips_per_subject=12, frame_size=64, clip_len=(8, 12),
                 variants=("cropped",), quirks=False, seed=1)
    result = linear_probe(s, variant="cropped", size=24, model="ridge")
    assert set(result["classes"]) == {"disgust", "happiness", "others", "repression", "surprise"}
    assert result["subjects"] == 10 and result["n"] >= 100
    chance = result["majority"]
    assert result["onset"] < chance + 0.15, result
    assert result["apex-onset"] > chance + 0.3, result
    assert result["apex-onset"] > result["apex"] > result["onset"] - 0.1, result


def test_preview_png(tmp_path):
    from datasets.synthetic_me.probe import preview_png

    s = generate(str(tmp_path / "r"), "samm", num_subjects=1, clips_per_subject=3, frame_size=40, clip_len=(5, 6))
    path = preview_png(s, str(tmp_path / "preview.png"), variant="raw", per_class=1)
    img = cv2.imread(path)
    assert img is not None and img.shape[0] > 100


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        generate(str(tmp_path), "smic")
    with pytest.raises(ValueError, match="not available for samm"):
        generate(str(tmp_path), "samm", variants=("cropped",))
    with pytest.raises(ValueError, match="official_counts"):
        generate(str(tmp_path), "casme2", profile="official_counts", num_subjects=3)
    with pytest.raises(ValueError, match="clip_len"):
        generate(str(tmp_path), "casme2", clip_len=(9, 4))


def test_cli_writes_a_release(tmp_path):
    out = tmp_path / "release"
    proc = subprocess.run([sys.executable, "-m", "datasets.synthetic_me", "--dataset=samm", f"--out_dir={out}",
                           "--num_subjects=1", "--clips_per_subject=1", "--frame_size=40", "--clip_len=5,6"],
                          capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"dataset": "samm"' in proc.stdout
    assert (out / "SAMM_Micro_FACS_Codes_v2.xlsx").is_file() and (out / "SAMM" / "006").is_dir()


@pytest.mark.parametrize("dataset", ["samm", "casme_sq", "casme3"])
def test_annotation_files_are_byte_deterministic(tmp_path, dataset):
    kw = dict(num_subjects=2, clips_per_subject=3, write_frames=False, seed=7)
    a = generate(str(tmp_path / "a"), dataset, **kw)
    generate(str(tmp_path / "b"), dataset, **kw)
    name = a["annotation_file"]
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
