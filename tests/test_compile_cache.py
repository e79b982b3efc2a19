"""The launchers' persistent compilation cache (launch/runtime/compile_cache.py): default folder, the flag,
and a real launcher run that fills the folder it was given."""
from __future__ import annotations

import os
import subprocess
import sys

from launch.runtime import compile_cache
from tests.conftest import REPO_ROOT


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "explicit"))
    assert compile_cache.default_cache_dir() == str(tmp_path / "explicit")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_cache_dir() == str(tmp_path / "xdg" / "fdp_dkt_jax" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.default_cache_dir() == str(tmp_path / "home" / ".cache" / "fdp_dkt_jax" / "jax")


def test_off_and_unwritable_folders_turn_the_cache_off(tmp_path):
    assert compile_cache.enable_compilation_cache("") is None
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert compile_cache.enable_compilation_cache(str(blocker / "cache")) is None


def test_launcher_run_fills_the_cache_folder(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    proc = subprocess.run([sys.executable, "-m", "launch.dkt", "--config=launch/configs/dkt_tiny.py",
                           "--config.num_epochs=1", f"--workdir={tmp_path / 'wd'}", f"--compile_cache_dir={cache}"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cache.is_dir() and len(os.listdir(cache)) >= 2  # at least the train and eval steps
