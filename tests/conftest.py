"""Shared pytest fixtures. The suite runs on 1 CPU device; multi-device checks use
``tests.multidevice.run_with_devices`` (a subprocess with 8 fake CPU devices)."""
from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def shared_dir() -> str:
    """The project's ``../shared`` folder (override with FDP_DKT_SHARED)."""
    return os.environ.get("FDP_DKT_SHARED", os.path.join(os.path.dirname(REPO_ROOT), "shared"))


@pytest.fixture(scope="session")
def shared_path() -> str:
    path = shared_dir()
    if not os.path.isdir(path):
        pytest.fail(f"../shared not found at {path}; set FDP_DKT_SHARED to its location.")
    return path
