"""The repository is self-contained: nothing points outside the clone, and the test data lives inside it."""
from __future__ import annotations

import os
import shutil
import subprocess

from tests.conftest import FDP_GOLDEN_PATH, REPO_ROOT

# Split so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "FDP_DKT_" + "SHARED")
SKIP_ANYWHERE = {".git", ".venv", ".cache", "__pycache__", ".pytest_cache"}
SKIP_AT_TOP = {"workdirs", "data", "build", ".whl", ".gl"}  # ignored outputs (.gitignore)
MAX_BYTES = 2_000_000


def _tracked_files() -> list[str]:
    """Files tracked by git (relative paths); without git, every file under the repository root."""
    if shutil.which("git") and os.path.isdir(os.path.join(REPO_ROOT, ".git")):
        proc = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, timeout=60)
        if proc.returncode == 0:
            return [p for p in proc.stdout.decode().split("\0") if p]
    out = []
    for root, dirs, files in os.walk(REPO_ROOT):
        rel_root = os.path.relpath(root, REPO_ROOT)
        dirs[:] = [d for d in dirs if d not in SKIP_ANYWHERE and not d.endswith(".egg-info")
                   and not (rel_root == "." and d in SKIP_AT_TOP)]
        out.extend(os.path.normpath(os.path.join(rel_root, f)) for f in files)
    return out


def _read_text(rel: str) -> str | None:
    path = os.path.join(REPO_ROOT, rel)
    if not os.path.isfile(path) or os.path.getsize(path) > MAX_BYTES:
        return None
    with open(path, "rb") as f:
        raw = f.read()
    if b"\0" in raw:  # binary
        return None
    return raw.decode("utf-8", errors="replace")


def test_no_reference_outside_the_repository():
    files = _tracked_files()
    assert files, "no files found"
    hits = []
    for rel in files:
        text = _read_text(rel)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(word in line for word in FORBIDDEN):
                hits.append(f"{rel}:{lineno}: {line.strip()[:120]}")
    assert not hits, "references to a folder outside the repository:\n" + "\n".join(hits)


def test_golden_vectors_inside_the_repository():
    root = os.path.realpath(REPO_ROOT)
    path = os.path.realpath(FDP_GOLDEN_PATH)
    assert os.path.commonpath([root, path]) == root, f"{path} is outside {root}"
    assert os.path.isfile(path), f"missing {path}"
    assert os.path.isfile(os.path.join(os.path.dirname(path), "README.md"))
