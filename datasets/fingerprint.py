"""Input fingerprint of a built dataset (``input_fingerprint.json`` in its version folder).

It records what the builder read from ``manual_dir``, by path relative to ``manual_dir``:

- ``files`` (annotation spreadsheets, label files, CSVs, .npz): size, mtime and a SHA-256 of the content; a file
  counts as changed only when its content changed (touching it is fine);
- ``frame_dirs`` (the big frame folders): per folder holding images, the number of images, their total size and
  a digest of (name, size, mtime) of each image; images are never read, so checking stays cheap.

``datasets.registry`` writes it after each build and compares it on every later build / ``prepare_dataset``
without ``overwrite``; a difference is a ``DatasetError`` naming the first changed files.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Sequence

FINGERPRINT_FILE = "input_fingerprint.json"
FORMAT_VERSION = 1
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_CHUNK = 1 << 20


def _rel(manual_dir: str, path: str) -> str:
    return os.path.relpath(os.path.abspath(path), manual_dir).replace(os.sep, "/")


def file_entry(path: str) -> dict[str, Any] | None:
    """size, mtime_ns and sha256 of one file (None if it does not exist)."""
    try:
        st = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest.hexdigest()}


def frame_dir_entry(folder: str) -> dict[str, Any] | None:
    """images, bytes and a digest of (name, size, mtime) of the images directly in ``folder`` (None if none)."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return None
    lines, total = [], 0
    for e in entries:
        if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
            st = e.stat()
            total += st.st_size
            lines.append(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}")
    if not lines:
        return None
    digest = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8", "surrogateescape")).hexdigest()
    return {"images": len(lines), "bytes": total, "digest": digest}


def _image_folders(roots: Iterable[str]) -> list[str]:
    """Every folder under ``roots`` (symlinks followed once) that directly holds image files."""
    out, seen = [], set()
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:
                dirs[:] = []
                continue
            seen.add(real)
            dirs.sort()
            if any(os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS for f in files):
                out.append(folder)
    return out


def compute(manual_dir: str, files: Sequence[str], frame_roots: Sequence[str] = ()) -> dict[str, Any]:
    """The fingerprint of ``files`` (hashed) and of the image folders under ``frame_roots`` (stat only)."""
    manual_dir = os.path.abspath(manual_dir)
    out: dict[str, Any] = {"format": FORMAT_VERSION, "manual_dir": manual_dir, "files": {}, "frame_dirs": {}}
    for path in files:
        entry = file_entry(path)
        if entry is not None:
            out["files"][_rel(manual_dir, path)] = entry
    for folder in _image_folders(frame_roots):
        entry = frame_dir_entry(folder)
        if entry is not None:
            out["frame_dirs"][_rel(manual_dir, folder)] = entry
    return out


def recompute(manual_dir: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The current state of exactly the entries of ``stored`` (used when the builder cannot list its inputs
    any more, e.g. because a file was removed)."""
    manual_dir = os.path.abspath(manual_dir)
    out: dict[str, Any] = {"format": FORMAT_VERSION, "manual_dir": manual_dir, "files": {}, "frame_dirs": {}}
    for rel in stored.get("files", {}):
        if (entry := file_entry(os.path.join(manual_dir, rel))) is not None:
            out["files"][rel] = entry
    for rel in stored.get("frame_dirs", {}):
        if (entry := frame_dir_entry(os.path.join(manual_dir, rel))) is not None:
            out["frame_dirs"][rel] = entry
    return out


def diff(stored: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(changes, missing): human-readable differences, and the stored entries that are gone now."""
    changes, missing = [], []
    for section, key, what in (("files", "sha256", "file"), ("frame_dirs", "digest", "frame folder")):
        old, new = stored.get(section, {}), current.get(section, {})
        for rel, entry in sorted(old.items()):
            now = new.get(rel)
            if now is None:
                missing.append(f"{what} {rel} is gone")
            elif now[key] != entry[key]:
                if section == "files":
                    changes.append(f"{rel} changed (content differs; size {entry['size']} -> {now['size']} bytes)")
                else:
                    changes.append(f"frame folder {rel} changed ({entry['images']} -> {now['images']} images; "
                                   f"sizes or modification times differ)")
        for rel in sorted(set(new) - set(old)):
            changes.append(f"{rel} is new" if section == "files" else f"frame folder {rel} is new")
    return changes, missing


def write(directory: str, fingerprint: dict[str, Any]) -> str:
    path = os.path.join(directory, FINGERPRINT_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fingerprint, f, indent=1, sort_keys=True)
    return path


def read(directory: str) -> dict[str, Any] | None:
    """The stored fingerprint, or None when the build has none (built before fingerprints existed, or not
    through ``datasets.registry.build``)."""
    path = os.path.join(directory, FINGERPRINT_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT_VERSION else None
