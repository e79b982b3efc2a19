"""Shared pytest fixtures. The suite runs on 1 CPU device; multi-device checks use
``tests.multidevice.run_with_devices`` (a subprocess with 8 fake CPU devices).

The test session uses JAX's persistent compilation cache (folder from ``FDP_DKT_TEST_JAX_CACHE``, default
``<repo>/.cache/jax-tests``), so the tiny configs and the launcher subprocesses share compiled steps. The
settings are also exported as ``JAX_*`` environment variables at import time, before any test starts a
subprocess, so children inherit them.

The suite compiles with XLA's backend optimisation level 0 (``XLA_FLAGS=--xla_backend_optimization_level=0``,
exported the same way): the tiny test programs then compile about 3x faster, which is most of a cold run,
and they run on a few steps only. Results agree with the default level to rounding, and no test depends on
the level. ``FDP_DKT_TEST_XLA_OPT=default`` runs the suite at XLA's default level instead.
"""
from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

TEST_DATA_DIR = os.path.join(REPO_ROOT, "tests", "data")
FDP_GOLDEN_PATH = os.path.join(TEST_DATA_DIR, "fdp_golden_seed20251.npz")

JAX_CACHE_DIR = os.path.abspath(os.environ.get("FDP_DKT_TEST_JAX_CACHE")
                                or os.path.join(REPO_ROOT, ".cache", "jax-tests"))
JAX_CACHE_MIN_COMPILE_SECS = 0.5

if os.environ.get("FDP_DKT_TEST_JAX_CACHE"):  # an explicit test-cache folder wins over an inherited one
    os.environ["JAX_COMPILATION_CACHE_DIR"] = JAX_CACHE_DIR
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", JAX_CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(JAX_CACHE_MIN_COMPILE_SECS))

FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
if (os.environ.get("FDP_DKT_TEST_XLA_OPT", "fast") != "default"
        and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_FLAG).strip()


def _enable_compilation_cache() -> None:
    from launch.runtime.compile_cache import enable_compilation_cache

    enable_compilation_cache(os.environ["JAX_COMPILATION_CACHE_DIR"])  # min time: the environment's (above)


_enable_compilation_cache()


@pytest.fixture(scope="session")
def fdp_golden_path() -> str:
    """The golden vectors of the official FDP model (``tests/data/README.md``)."""
    if not os.path.exists(FDP_GOLDEN_PATH):
        pytest.fail(f"golden vectors not found: {FDP_GOLDEN_PATH} (tracked in the repository: tests/data/)")
    return FDP_GOLDEN_PATH
