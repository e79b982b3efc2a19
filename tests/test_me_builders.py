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
    junk = os.path.join(base, "sub01", "EP02_01f", "EP02_01f.avi")
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
