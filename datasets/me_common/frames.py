"""Release-folder discovery and frame lookup by the absolute frame number in the file name.

Frames are never selected by counting or sorting directory entries: each image file name is parsed for its
last integer (``img46.jpg`` -> 46, ``reg_img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562, ``img001.jpg`` -> 1,
``355.jpg`` -> 355) and frames are looked up by that number. Non-image junk (``.avi``, ``.lnk``) is ignored.
"""
from __future__ import annotations

import os
import re
from typing import Iterable

import cv2
import numpy as np

from datasets.registry import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


def frame_number(filename: str) -> int | None:
    """The last integer in an image file name's stem, or None for non-images / names without digits."""
    stem, ext = os.path.splitext(os.path.basename(filename))
    if ext.lower() not in IMAGE_EXTENSIONS:
        return None
    match = _LAST_INT.search(stem)
    return int(match.group(1)) if match else None


def frame_digits(filename: str) -> int:
    """Number of digits of the frame number in a file name (``006_05562.jpg`` -> 5)."""
    match = _LAST_INT.search(os.path.splitext(os.path.basename(filename))[0])
    return len(match.group(1)) if match else 0


def frame_map(clip_dir: str) -> dict[int, str]:
    """{absolute frame number: path} for the image files in ``clip_dir`` (junk files ignored).

    Raises DatasetError if two files claim the same frame number.
    """
    out: dict[int, str] = {}
    for name in os.listdir(clip_dir):
        number = frame_number(name)
        if number is None or not os.path.isfile(os.path.join(clip_dir, name)):
            continue
        if number in out:
            raise DatasetError(f"{clip_dir}: two image files have frame number {number}: "
                               f"{os.path.basename(out[number])!r} and {name!r}")
        out[number] = os.path.join(clip_dir, name)
    return out


def find_dir(parent: str, name: str) -> str | None:
    """``parent/name`` matched case-insensitively (exact match first), or None."""
    exact = os.path.join(parent, name)
    if os.path.isdir(exact):
        return exact
    if not os.path.isdir(parent):
        return None
    lower = name.lower()
    for entry in sorted(os.listdir(parent)):
        if entry.lower() == lower and os.path.isdir(os.path.join(parent, entry)):
            return os.path.join(parent, entry)
    return None


def subject_clip_resolver(root: str):
    """A resolver ``ann -> root/<ann.subject>/<ann.clip>`` (each level matched case-insensitively), or None."""
    def resolve(ann) -> str | None:
        subject_dir = find_dir(root, ann.subject)
        return find_dir(subject_dir, ann.clip) if subject_dir else None
    return resolve


def find_release_dir(manual_dir: str, relative_paths: Iterable[str], *, max_depth: int = 2) -> str | None:
    """Finds a release folder such as ``Cropped`` or ``CASME2_RAW_selected`` under ``manual_dir``.

    Tries each relative path (e.g. ``'Cropped-updated/Cropped'``) at ``manual_dir`` and up to ``max_depth``
    folder levels below it, and follows the doubled ``X/X/`` folder that unzipping often leaves.
    Returns the first match (in the order of ``relative_paths``) or None.
    """
    roots = [manual_dir]
    frontier = [manual_dir]
    for _ in range(max_depth):
        nxt = []
        for d in frontier:
            try:
                nxt += [os.path.join(d, e) for e in sorted(os.listdir(d)) if os.path.isdir(os.path.join(d, e))]
            except OSError:
                continue
        roots += nxt
        frontier = nxt
    for rel in relative_paths:
        for root in roots:
            path = root
            for part in rel.split("/"):
                path = find_dir(path, part) if path else None
            if path:
                doubled = find_dir(path, os.path.basename(path))
                return doubled or path
    return None


def find_file(manual_dir: str, patterns: Iterable[str], *, max_depth: int = 2) -> str | None:
    """The first file under ``manual_dir`` (up to ``max_depth`` levels) whose name matches one of the regex
    ``patterns`` (case-insensitive), tried in order of ``patterns``; shallower files win."""
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    found: list[tuple[int, int, str]] = []
    base_depth = manual_dir.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(manual_dir):
        depth = root.rstrip(os.sep).count(os.sep) - base_depth
        if depth >= max_depth:
            dirs[:] = []
        dirs.sort()
        for name in sorted(files):
            if name.startswith("~$"):  # Excel lock files
                continue
            for rank, pattern in enumerate(compiled):
                if pattern.fullmatch(name):
                    found.append((rank, depth, os.path.join(root, name)))
                    break
    return min(found)[2] if found else None


def read_gray(path: str) -> np.ndarray | None:
    """Reads an image as uint8 grayscale (H, W) with 0.299R+0.587G+0.114B; None if it cannot be decoded."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return image


def find_parent_of(manual_dir: str, child_pattern: str, *, max_depth: int = 5, min_matches: int = 1) -> str | None:
    """The shallowest folder under ``manual_dir`` (itself included) with at least ``min_matches`` sub-folders
    whose names fully match the regex ``child_pattern`` (case-insensitive), e.g. CAS(ME)^3's ``spNO.<n>``."""
    pattern = re.compile(child_pattern, re.IGNORECASE)
    frontier = [manual_dir]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            try:
                subdirs = [e for e in sorted(os.listdir(d)) if os.path.isdir(os.path.join(d, e))]
            except OSError:
                continue
            if sum(bool(pattern.fullmatch(e)) for e in subdirs) >= min_matches:
                return d
            nxt += [os.path.join(d, e) for e in subdirs]
        frontier = nxt
    return None
