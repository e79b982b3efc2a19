"""Micro-expression builders (casme2, samm, casme_sq, casme3) on tiny releases in the official layouts.

Fixture releases are written here (``write_release``): official file names, sheets and headers, the
documented quirks, and small face-like frames whose mouth moves over the clip.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pandas as pd
import pytest

from datasets import registry
from datasets.me_common import frames as frames_lib
from datasets.me_common import preprocess
from datasets.registry import DatasetError


# ------------------------------------------------------------------------------------------ fixtures
def face_frame(seed: int, t: float, size: tuple[int, int] = (60, 52)) -> np.ndarray:
    """A small grey face (H, W) uint8 whose mouth opens with t in [0, 1]."""
    h, w = size
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 40 + seed % 30, np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 3, h // 2 - 4), 0, 0, 360, 170, -1)
    for ex in (w // 2 - w // 8, w // 2 + w // 8):
        cv2.circle(img, (ex, h // 2 - h // 8), 2, 60, -1)
    cv2.ellipse(img, (w // 2, h // 2 + h // 5), (w // 8, 1 + int(round(4 * t))), 0, 0, 360, 80, -1)
    return np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def write_frames(folder: str, names: list[tuple[int, str]], seed: int) -> None:
    os.makedirs(folder, exist_ok=True)
    n = len(names)
    for i, (_, name) in enumerate(names):
        cv2.imwrite(os.path.join(folder, name), face_frame(seed, i / max(1, n - 1)))


def _xlsx(path: str, sheets: dict[str, pd.DataFrame], header: bool = True) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False, header=header)


CASME2_ROWS = [  # subject, filename, onset, apex, offset, AUs, emotion
    ("01", "EP02_01f", 46, 59, 66, 12, "happiness"),
    ("01", "EP03_02", 131, 139, 146, "18", "others"),
    ("01", "EP19_05f", 396, 416, 420, "4+7+L10", "disgust"),
    ("04", "EP12_01f", 20, "/", 32, "4+7", "disgust"),       # apex '/'
    ("05", "EP09_05f", 69, 69, 80, "R12", "repression"),     # apex == onset
    ("05", "EP10_01", 5, 8, 9, "1+2", "surprise"),           # 5 frames: interpolated
    ("07", "EP06_02_01", 10, 14, 22, "14", "sadness"),       # excluded by the 5-class protocol
    ("07", "EP07_01", 30, 35, 44, "1+2", "surprise"),
]


def write_casme2(root: str, rows=CASME2_ROWS, *, variant: str = "cropped", version: str = "20190701",
                 doubled: bool = True) -> str:
    """CASME II layout: coding xlsx + Cropped/subXX/EP/reg_imgN.jpg (or CASME2_RAW_selected/.../imgN.jpg)."""
    frame = pd.DataFrame([{"Subject": s, "Filename": f, "Unnamed: 2": None, "OnsetFrame": on, "ApexFrame": ap,
                           "OffsetFrame": off, "Unnamed: 6": None, "Action Units": au, "Estimated Emotion": em,
                           "Objective Classes": 1} for s, f, on, ap, off, au, em in rows])
    frame.columns = [c if not c.startswith("Unnamed") else "" for c in frame.columns]
    _xlsx(os.path.join(root, f"CASME2-coding-{version}.xlsx"), {"Sheet1": frame, "Sheet2": pd.DataFrame()})
    top, prefix = ("Cropped", "reg_img") if variant == "cropped" else ("CASME2_RAW_selected", "img")
    base = os.path.join(root, top, top) if doubled else os.path.join(root, top)
    for k, (s, f, on, _, off, _, _) in enumerate(rows):
        write_frames(os.path.join(base, f"sub{s}", f), [(n, f"{prefix}{n}.jpg") for n in range(on, off + 1)], k)
    junk = os.path.join(base, f"sub{rows[0][0]}", rows[0][1], "clip.avi")
    open(junk, "wb").write(b"not a video")
    return root


def build(name: str, manual_dir: str, data_dir: str, **kwargs):
    from datasets.registry import get_builder
    import tensorflow_datasets as tfds
    builder = get_builder(name, data_dir)
    if kwargs:
        builder = type(builder)(data_dir=data_dir, file_format="array_record", config=builder.builder_config.name,
                                **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    source = builder.as_data_source(split="train")
    examples = [source[i] for i in range(len(source))]
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        report = json.load(f)
    return examples, report


def by_key(examples):
    return {e["clip_id"].decode(): e for e in examples}


# --------------------------------------------------------------------------------------------- CASME II
def test_casme2_5class_counts_quirks_and_frames(tmp_path):
    manual = write_casme2(str(tmp_path / "casme2"))
    examples, report = build("casme2/5class", manual, str(tmp_path / "tfds"))
    clips = by_key(examples)
    assert sorted(clips) == sorted(f"sub{s}/{f}" for s, f, *_, em in CASME2_ROWS if em != "sadness")
    assert report["info"]["per_class"] == {"happiness": 1, "others": 1, "disgust": 2, "repression": 1,
                                           "surprise": 2}
    assert report["info"]["per_subject"] == {"sub01": 3, "sub04": 1, "sub05": 2, "sub07": 1}
    assert report["fixes"]["apex_missing"] == 1 and report["fixes"]["apex_eq_onset"] == 1
    assert report["fixes"]["short_clip_interpolated"] == 1
    assert report["notes"]["excluded_by_protocol"] == 1
    missing = clips["sub04/EP12_01f"]
    assert int(missing["apex"]) == -1 and "apex_missing" in missing["flags"].decode()
    assert "apex_eq_onset" in clips["sub05/EP09_05f"]["flags"].decode()
    assert "short_clip_interpolated" in clips["sub05/EP10_01"]["flags"].decode()
    # Frames and DI equal a direct computation from the JPEGs (uniform sampling over onset..offset).
    ex = clips["sub01/EP19_05f"]
    folder = os.path.join(manual, "Cropped", "Cropped", "sub01", "EP19_05f")
    numbers = np.round(np.linspace(396, 420, 8)).astype(int)
    expected = np.stack([cv2.resize(cv2.imread(os.path.join(folder, f"reg_img{n}.jpg"), cv2.IMREAD_GRAYSCALE),
                                    (64, 64), interpolation=cv2.INTER_AREA) for n in numbers])
    assert ex["frames"].shape == (8, 64, 64, 1) and ex["frames"].dtype == np.uint8
    np.testing.assert_array_equal(ex["frame_numbers"], numbers)
    np.testing.assert_array_equal(ex["frames"][..., 0], expected)
    np.testing.assert_array_equal(ex["di_target"], preprocess.dynamic_image(expected))
    assert ex["label_name"].decode() == "disgust" and ex["subject"].decode() == "sub01"
    assert (int(ex["onset"]), int(ex["apex"]), int(ex["offset"])) == (396, 416, 420)


def test_casme2_reference_sampling_and_raw_variant(tmp_path):
    rows = [("02", "EP01_01", 100, 110, 120, "12", "happiness"), ("03", "EP02_01", 10, 12, 14, "1", "surprise")]
    manual = write_casme2(str(tmp_path / "m"), rows, variant="raw", version="20140508", doubled=False)
    examples, report = build("casme2/5class_reference", manual, str(tmp_path / "tfds"))
    clips = by_key(examples)
    # Official sampling: i * (L // 8) from the clip start (L = 21 -> step 2).
    np.testing.assert_array_equal(clips["sub02/EP01_01"]["frame_numbers"], 100 + 2 * np.arange(8))
    assert clips["sub02/EP01_01"]["variant"].decode() == "raw"
    assert report["info"]["annotation_file"] == "CASME2-coding-20140508.xlsx"
    # Raw frames: one box per clip (Haar when this OpenCV ships it, else the counted centre-crop fallback).
    if preprocess.haar_detector() is None:
        assert report["fixes"]["no_face_found"] == 2
    # 5 frames (10..14) are interpolated to 8: positions linspace(0, 4, 8) blend neighbouring frames.
    short = clips["sub03/EP02_01"]
    assert "short_clip_interpolated" in short["flags"].decode()


def _generated(tmp_path_factory, dataset: str, **kwargs) -> str:
    from datasets.synthetic_me.generator import generate
    out = str(tmp_path_factory.mktemp(dataset))
    generate(out, dataset, **kwargs)
    return out


@pytest.mark.parametrize("name,total,per_class,subjects", [
    ("casme2/5class", 249, {"others": 99, "disgust": 63, "happiness": 32, "surprise": 28, "repression": 27}, 26),
    ("casme2/3class", 150, {"negative": 90, "positive": 32, "surprise": 28}, 24),
    ("samm/5class", 136, {"anger": 57, "others": 26, "happiness": 26, "surprise": 15, "contempt": 12}, 27),
    ("samm/3class", 133, {"negative": 92, "positive": 26, "surprise": 15}, 28),
    ("casme_sq/4class", 57, {"negative": 21, "others": 19, "surprise": 9, "positive": 8}, 14),
    ("casme_sq/3class", 38, {"negative": 21, "surprise": 9, "positive": 8}, 9),
    ("casme3/7class", 860, {"disgust": 250, "surprise": 187, "others": 161, "fear": 86, "anger": 64, "sad": 57,
                            "happy": 55}, 94),
    ("casme3/3class", 699, {"negative": 457, "surprise": 187, "positive": 55}, 88),
])
def test_official_count_tables(name, total, per_class, subjects, tmp_path_factory):
    """mer_datasets.md §5 tables, on synthetic releases with the official class and subject tables."""
    from datasets.synthetic_me import generator
    dataset = name.split("/")[0]
    cache = tmp_path_factory.getbasetemp() / f"official_{dataset}"
    if not cache.exists():
        generator.generate(str(cache), dataset, profile="official_counts", seed=0)
    examples, report = build(name, str(cache), str(tmp_path_factory.mktemp("tfds")))
    assert len(examples) == total and report["skips"] == {}
    assert report["info"]["per_class"] == per_class
    assert len(report["info"]["per_subject"]) == subjects
    labels = [e["label_name"].decode() for e in examples]
    assert {c: labels.count(c) for c in per_class} == per_class


def test_casme3_4class_mapping_of_the_official_table():
    """casme3/4class maps the 7 emotions of the v2 table (860 rows) onto 457/187/161/55 (the 4class build
    shares the 7class rows, so it is checked through its mapping instead of a third 860-clip build)."""
    from datasets.casme3.casme3_dataset_builder import PROTOCOLS
    table = {"disgust": 250, "surprise": 187, "others": 161, "fear": 86, "anger": 64, "sad": 57, "happy": 55}
    counts: dict[str, int] = {}
    for emotion, n in table.items():
        counts[PROTOCOLS["4class"].mapping[emotion]] = counts.get(PROTOCOLS["4class"].mapping[emotion], 0) + n
    assert counts == {"negative": 457, "surprise": 187, "others": 161, "positive": 55}


# ------------------------------------------------------------------------------------------------ SAMM
def write_samm(root: str, rows, *, preamble: int = 13) -> str:
    header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
              "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
    cells = [["SAMM Dataset - Master FACS Codes"] + [None] * 11] + [[f"note {i}"] + [None] * 11
                                                                    for i in range(preamble - 1)]
    cells += [header] + [[s, f, int(f.split("_")[1]), on, ap, off, off - on + 1, "Micro - 1/2", au, em, 3, None]
                         for s, f, on, ap, off, au, em, _ in rows]
    _xlsx(os.path.join(root, "SAMM_Micro_FACS_Codes_v2.xlsx"), {"MICRO_ONLY": pd.DataFrame(cells)}, header=False)
    for k, (s, f, on, _, off, _, _, digits) in enumerate(rows):
        write_frames(os.path.join(root, "SAMM", s, f), [(n, f"{s}_{n:0{digits}d}.jpg") for n in range(on, off + 1)], k)
    return root


def test_samm_header_search_digits_and_apex_out_of_range(tmp_path):
    rows = [("006", "006_1_2", 5562, 5570, 5580, "4+7", "Anger", 5),
            ("006", "006_1_3", 3912, 3920, 3930, "4", "Anger", 4),
            ("032", "032_3_1", 4896, 1930, 4910, "12", "Happiness", 4),   # apex < onset
            ("028", "028_4_1", 1100, 1143, 1120, "12", "Other", 4),       # apex > offset
            ("037", "037_4_1", 1488, 1490, 1500, "24", "Fear", 4)]        # excluded by 5class
    manual = write_samm(str(tmp_path / "samm"), rows)
    examples, report = build("samm/5class", manual, str(tmp_path / "tfds"))
    clips = by_key(examples)
    assert sorted(clips) == ["006_1_2", "006_1_3", "028_4_1", "032_3_1"]
    assert report["fixes"]["preamble_rows"] == 1 and report["fixes"]["apex_out_of_range"] == 2
    assert report["notes"]["frame_names_padded_to_5_digits"] == 1
    assert clips["006_1_2"]["frame_numbers"][0] == 5562 and clips["006_1_2"]["frame_numbers"][-1] == 5580
    assert clips["028_4_1"]["label_name"].decode() == "others" and clips["006_1_2"]["subject"].decode() == "006"
    assert "apex_out_of_range" in clips["032_3_1"]["flags"].decode()


# ------------------------------------------------------------------------------------------- CAS(ME)^2
def write_casme_sq(root: str, rows) -> str:
    """Header-less sheet 0 + naming rule sheets; cropped/<nn>/ (no 's') and selectedpic/s<nn>/ folders."""
    sheet0 = pd.DataFrame([[i, c, on, ap, off, au, em, kind, self_] for i, c, on, ap, off, au, em, kind, self_, _
                           in rows])
    rule1 = pd.DataFrame([[15, "s15", 1], [16, "s16", 2], [19, "s19", 3]])
    rule2 = pd.DataFrame([["0401", "anger1"], ["0502", "happy1"], ["0101", "disgust1"]])
    _xlsx(os.path.join(root, "CAS(ME)^2", "CAS(ME)^2code_final.xlsx"),
          {"CASFEcode_final": sheet0, "naming rule1": rule1, "naming rule2": rule2}, header=False)
    folders = {1: 15, 2: 16, 3: 19}
    for k, (i, c, on, _, off, _, _, kind, _, where) in enumerate(rows):
        nn = folders[i]
        off = off or on + 12
        names = [(n, f"img{n}.jpg") for n in range(on, off + 1)]
        if where == "cropped":
            write_frames(os.path.join(root, "CAS(ME)^2", "cropped", f"{nn}", c), names, k)
        elif where == "selectedpic":
            write_frames(os.path.join(root, "CAS(ME)^2", "selectedpic", f"s{nn}", c), names, k)
        elif where == "rawpic":
            code = {"anger1": "0401", "happy1": "0502", "disgust1": "0101"}[c.rsplit("_", 1)[0]]
            video = os.path.join(root, "CAS(ME)^2", "rawpic", f"s{nn}", f"{nn + 4}_{code}video")
            write_frames(video, [(n, f"img{n:03d}.jpg") for n in range(1, off + 20)], k)
    return root


def test_casme_sq_positional_sheet_micro_only_and_variants(tmp_path):
    rows = [(1, "anger1_1", 557, 560, 570, "4+10", "negative", "micro-expression", "anger", "cropped"),
            (1, "anger1_2", 600, 610, 640, "4", "negative", "macro-expression", "anger", None),
            (2, "happy1_4", 285, 291, 0, "6+12", "positive", "micro-expression", "happyiness", "selectedpic"),
            (3, "disgust1_3", 99, 103, 107, "NULL", "others", "micro-expression", "disgust", "rawpic"),
            (3, "happy1_2", 50, 55, 60, "12", "positive", "micro-expression", "happiness", "rawpic")]
    manual = write_casme_sq(str(tmp_path / "m"), rows)
    examples, report = build("casme_sq/4class", manual, str(tmp_path / "tfds"))
    clips = by_key(examples)
    assert sorted(clips) == ["1/anger1_1", "2/happy1_4", "3/disgust1_3", "3/happy1_2"]
    assert report["notes"]["macro_expression_rows"] == 1
    assert report["fixes"]["self_report_typo"] == 1 and report["fixes"]["offset_zero"] == 1
    assert {k: v["variant"].decode() for k, v in clips.items()} == {
        "1/anger1_1": "cropped", "2/happy1_4": "selectedpic", "3/disgust1_3": "rawpic", "3/happy1_2": "rawpic"}
    assert clips["1/anger1_1"]["subject"].decode() == "s15" and clips["3/happy1_2"]["subject"].decode() == "s19"
    # offset 0 -> apex + (apex - onset) = 297
    assert clips["2/happy1_4"]["frame_numbers"][-1] == 297 and "offset_zero" in clips["2/happy1_4"]["flags"].decode()
    np.testing.assert_array_equal(clips["3/disgust1_3"]["frame_numbers"][[0, -1]], [99, 107])
    examples3, _ = build("casme_sq/3class", manual, str(tmp_path / "tfds"))
    assert sorted(by_key(examples3)) == ["1/anger1_1", "2/happy1_4", "3/happy1_2"]


# ------------------------------------------------------------------------------------------- CAS(ME)^3
def write_casme3(root: str, rows, *, layout: str = "part_a") -> str:
    frame = pd.DataFrame([{"Subject": s, "Filename": f, "Onset": on, "Apex": ap, "Offset": off, "AU": au,
                           "Objective class": "I", "emotion": em} for s, f, on, ap, off, au, em in rows])
    _xlsx(os.path.join(root, "annotation", "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"),
          {"label": frame, "Sheet1": pd.DataFrame()})
    videos: dict[tuple[str, str], list[int]] = {}
    for s, f, on, ap, off, *_ in rows:
        marks = [v for v in (on, ap, off) if v > 0]
        videos.setdefault((s, f), []).extend(range(max(1, min(marks) - 30), max(marks) + 11))
    for k, ((s, f), numbers) in enumerate(videos.items()):
        numbers = sorted(set(numbers))
        if layout == "part_a":
            folder = os.path.join(root, "part_A", "data", "part_A_split", "part_A", s, f, "color")
            write_frames(folder, [(n, f"{n}.jpg") for n in numbers], k)
    if layout == "clip":
        for k, (s, f, on, ap, off, *_) in enumerate(rows):
            folder = os.path.join(root, "Part_A_ME_clip", "frame", f"{s.replace('NO', 'No')}_{f}_{on}")
            write_frames(folder, [(n, f"{n}.jpg") for n in range(on, max(off, on + 10) + 1)], k)
    return root


CASME3_ROWS = [("spNO.1", "e", 62, 68, 96, "R12", "others"),
               ("spNO.1", "e", 100, 102, 106, "R12", "Others"),            # 2nd ME in the video; 'Others'
               ("spNO.1", "b", 166, 175, 179, "4", "disgust"),
               ("spNO.216", "d", 3647, 2668, 2694, "4", "happy"),          # onset typo (> offset)
               ("spNO.149", "d", 112, 83, 130, "1+2", "surprise")]         # apex < onset


@pytest.mark.parametrize("layout", ["part_a", "clip"])
def test_casme3_keys_label_case_and_onset_typo(tmp_path, layout):
    rows = CASME3_ROWS if layout == "part_a" else CASME3_ROWS[:3]
    manual = write_casme3(str(tmp_path / "m"), rows, layout=layout)
    examples, report = build("casme3/7class", manual, str(tmp_path / "tfds"))
    clips = by_key(examples)
    assert sorted(clips) == sorted(f"{s}/{f}/{on}" for s, f, on, *_ in rows)
    assert report["fixes"]["label_case"] == 1 and clips["spNO.1/e/100"]["label_name"].decode() == "others"
    assert {e["variant"].decode() for e in examples} == {"part_a" if layout == "part_a" else "me_clip"}
    if layout == "part_a":
        typo = clips["spNO.216/d/3647"]
        assert "onset_after_offset" in typo["flags"].decode() and int(typo["onset"]) == 3647
        np.testing.assert_array_equal(typo["frame_numbers"][[0, -1]], [2642, 2694])  # apex - (offset - apex)
        assert report["fixes"]["onset_after_offset"] == 1 and report["fixes"]["apex_out_of_range"] == 1
    examples3, _ = build("casme3/3class", manual, str(tmp_path / "tfds"))
    assert all(e["label_name"].decode() != "others" for e in examples3)


# ------------------------------------------------------------------------------------------- bad input
def test_missing_manual_dir(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        registry.build("casme2/5class", str(tmp_path / "nope"), str(tmp_path / "tfds"))


def test_missing_annotation_file(tmp_path):
    manual = write_casme2(str(tmp_path / "m"), CASME2_ROWS[:2])
    os.remove(os.path.join(manual, "CASME2-coding-20190701.xlsx"))
    with pytest.raises(DatasetError, match="no annotation file"):
        build("casme2/5class", manual, str(tmp_path / "tfds"))


def test_renamed_required_column(tmp_path):
    manual = write_casme2(str(tmp_path / "m"), CASME2_ROWS[:2])
    path = os.path.join(manual, "CASME2-coding-20190701.xlsx")
    frame = pd.read_excel(path).rename(columns={"OnsetFrame": "Onset"})
    _xlsx(path, {"Sheet1": frame})
    with pytest.raises(DatasetError, match=r"CASME2-coding-20190701\.xlsx.*OnsetFrame"):
        build("casme2/5class", manual, str(tmp_path / "tfds"))


def test_missing_folder_corrupt_jpeg_and_unknown_label(tmp_path):
    rows = CASME2_ROWS[:3] + [("09", "EP01_01", 1, 3, 12, "12", "joy")]
    manual = write_casme2(str(tmp_path / "m"), rows)
    import shutil
    shutil.rmtree(os.path.join(manual, "Cropped", "Cropped", "sub01", "EP03_02"))
    corrupt = os.path.join(manual, "Cropped", "Cropped", "sub01", "EP02_01f", "reg_img46.jpg")
    open(corrupt, "wb").write(b"\xff\xd8 this is not a jpeg")
    examples, report = build("casme2/5class", manual, str(tmp_path / "tfds"))
    assert sorted(by_key(examples)) == ["sub01/EP02_01f", "sub01/EP19_05f"]
    assert report["skips"] == {"folder_missing": 1, "unknown_label": 1}
    assert report["events"]["skips/folder_missing"][0]["row"] == 3
    assert report["events"]["skips/unknown_label"][0] == {"file": "CASME2-coding-20190701.xlsx", "row": 5,
                                                          "clip": "sub09/EP01_01", "label": "joy"}
    assert report["fixes"]["corrupt_frame"] == 1
    assert report["events"]["fixes/corrupt_frame"][0]["path"].endswith("reg_img46.jpg")
    ex = by_key(examples)["sub01/EP02_01f"]
    assert "corrupt_frame" in ex["flags"].decode() and ex["frames"].shape == (8, 64, 64, 1)


# ------------------------------------------------------------------------------------------ unit maths
def test_frame_number_parsing():
    assert [frames_lib.frame_number(n) for n in ("img46.jpg", "reg_img46.jpg", "006_05562.jpg", "img001.jpg",
                                                  "355.jpg", "EP02.avi", "Desktop - Shortcut.lnk")] == \
        [46, 46, 5562, 1, 355, None, None]


def test_rank_pooling_coefficients_and_dynamic_image():
    alpha = preprocess.rank_pooling_coefficients(8)
    np.testing.assert_allclose(alpha, [-8.46071, -1.46071, 1.03929, 2.03929, 2.28929, 2.08929, 1.58929, 0.875],
                               atol=1e-5)
    h = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, 9))])
    closed_form = [2 * (8 - t + 1) - 9 * (h[8] - h[t - 1]) for t in range(1, 9)]
    np.testing.assert_allclose(alpha, closed_form)
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64), dtype=np.uint8)
    di = np.tensordot(alpha, frames / 255.0, axes=(0, 0))
    expected = cv2.normalize(di, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    np.testing.assert_array_equal(preprocess.dynamic_image(frames), expected)


def test_sampling_positions():
    np.testing.assert_array_equal(preprocess.sample_positions(22, mode="reference"), 2 * np.arange(8))
    uniform = preprocess.sample_positions(22)
    assert uniform[0] == 0 and uniform[-1] == 21 and len(set(uniform)) == 8
    short = preprocess.sample_positions(5)
    np.testing.assert_allclose(short, np.linspace(0, 4, 8))
    blended = preprocess.gather_frames(np.array([0.5]), lambda i: np.full((2, 2), 10 * (i + 1), np.uint8))
    assert blended[0, 0, 0] == 15


def test_landmark_alignment_and_clip_box():
    # A frontal face rotated by 10 degrees: alignment must level the eyes and centre the face.
    base = np.zeros((68, 2))
    base[36:42] = (-20.0, -10.0)
    base[42:48] = (20.0, -10.0)
    base[30] = (0.0, 5.0)
    base[48], base[54] = (-15.0, 20.0), (15.0, 20.0)
    angle = np.deg2rad(10)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = base @ rot.T + (100.0, 80.0)
    affine = preprocess.landmark_affine(landmarks, box_enlarge=2.5)
    mapped = np.c_[landmarks, np.ones(68)] @ affine.T
    left, right = mapped[36:42].mean(0), mapped[42:48].mean(0)
    assert abs(left[1] - right[1]) < 1e-6                      # eyes level
    five = np.stack([left, right, mapped[30], mapped[48], mapped[54]])
    np.testing.assert_allclose((five.min(0) + five.max(0)) / 2, [31.5, 31.5], atol=1e-6)  # box centred
    assert (five.max(0) - five.min(0)).max() == pytest.approx(63 / 2.5)                 # enlarge 2.5
    # Haar path: one median box per clip from a (fake) detector; frames without a face are ignored.
    boxes = iter([[(10, 10, 40, 40)], [], [(12, 10, 40, 40), (0, 0, 5, 5)], [(14, 10, 44, 44)]])
    box = preprocess.clip_box([np.zeros((80, 80), np.uint8)] * 4, lambda f: next(boxes), box_enlarge=1.0,
                              max_frames=4)
    assert box == preprocess.Box(32.0, 30.0, 20.0)
    assert preprocess.clip_box([np.zeros((8, 8), np.uint8)], lambda f: [], box_enlarge=1.2) is None


def test_landmark_alignment_path_with_a_fake_dlib(tmp_path, monkeypatch):
    """The dlib path (predictor given) without dlib: a stand-in landmarker; no landmarks -> counted fallback."""
    landmarks = np.zeros((68, 2))
    landmarks[36:42], landmarks[42:48] = (18.0, 22.0), (34.0, 22.0)
    landmarks[30], landmarks[48], landmarks[54] = (26.0, 32.0), (20.0, 40.0), (32.0, 40.0)
    calls = []

    def fake_landmarker(path):
        assert path == "predictor.dat"

        def find(gray):
            calls.append(gray.shape)
            return None if gray.mean() > 250 else landmarks  # "no face" in white frames
        return find

    monkeypatch.setattr(preprocess, "dlib_landmarker", fake_landmarker)
    rows = [("01", "EP01_01", 1, 5, 12, "12", "happiness"), ("02", "EP01_01", 1, 5, 12, "12", "surprise")]
    manual = write_casme2(str(tmp_path / "m"), rows, variant="raw", doubled=False)
    white = os.path.join(manual, "CASME2_RAW_selected", "sub02", "EP01_01")
    for name in os.listdir(white):
        if name.endswith(".jpg"):
            cv2.imwrite(os.path.join(white, name), np.full((60, 52), 255, np.uint8))
    examples, report = build("casme2/5class", manual, str(tmp_path / "tfds"), landmark_predictor="predictor.dat")
    clips = by_key(examples)
    assert report["info"]["face"].startswith("dlib landmarks") and report["fixes"]["no_face_found"] == 1
    folder = os.path.join(manual, "CASME2_RAW_selected", "sub01", "EP01_01")
    affine = preprocess.landmark_affine(landmarks)
    expected = [preprocess.warp(cv2.imread(os.path.join(folder, f"img{n}.jpg"), cv2.IMREAD_GRAYSCALE), affine)
                for n in clips["sub01/EP01_01"]["frame_numbers"]]
    np.testing.assert_array_equal(clips["sub01/EP01_01"]["frames"][..., 0], np.stack(expected))
    assert "no_face_found" in clips["sub02/EP01_01"]["flags"].decode()


QUIRK_FLAGS = {"apex_slash": "apex_missing", "apex_equals_onset": "apex_eq_onset", "apex_before_onset":
               "apex_out_of_range", "apex_after_offset": "apex_out_of_range", "onset_typo": "onset_after_offset"}


@pytest.mark.parametrize("name", ["casme2/5class", "samm/5class", "casme_sq/4class", "casme3/7class"])
def test_generated_release_round_trip(name, tmp_path):
    """A small generated release (default variants, quirks on): every micro-expression row of the protocol is
    built under its key with its label, and every planted annotation quirk is flagged on its clip."""
    from datasets import registry as reg
    from datasets.synthetic_me.generator import generate
    dataset, config = name.split("/")
    summary = generate(str(tmp_path / "m"), dataset, num_subjects=2, clips_per_subject=4, seed=1,
                       frame_size=(48, 64))
    examples, report = build(name, str(tmp_path / "m"), str(tmp_path / "tfds"))
    clips = by_key(examples)
    mapping = next(c for c in reg.builder_class(dataset).BUILDER_CONFIGS if c.name == config).protocol.mapping
    expected = {c["key"]: mapping[c["emotion"].lower()] for c in summary["clips"]
                if not c["macro"] and c["emotion"].lower() in mapping}
    assert report["skips"] == {}
    assert {k: v["label_name"].decode() for k, v in clips.items()} == expected
    for quirk in summary["quirks"]:
        if quirk["quirk"] in QUIRK_FLAGS and quirk["key"] in clips:
            assert QUIRK_FLAGS[quirk["quirk"]] in clips[quirk["key"]]["flags"].decode(), quirk
    if any(q["quirk"] == "Others_capitalised" for q in summary["quirks"]):
        assert report["fixes"]["label_case"] >= 1
