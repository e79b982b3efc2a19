"""The workdir layout shared by all launchers.

    <workdir>/config.json          resolved config (+ code version)
    <workdir>/checkpoints/         orbax steps
    <workdir>/metrics.jsonl        scalar metrics (MetricWriter)
    <workdir>/tensorboard/         TensorBoard event files
    <workdir>/plots/               PNG figures
    <workdir>/results.json, report.md
    <workdir>/previous/<time>/     config.json, results.json, report.md of an earlier run with another config
    <workdir>/.lock                held (fcntl.flock) by the run that uses the workdir

One run at a time: ``Workdir.make()`` takes an exclusive OS lock on ``<workdir>/.lock`` (process 0 of a
multi-process job), so a second run on the same workdir fails at once with a clear message. The OS drops the
lock when its process ends, however it ends, so a killed run leaves no stale lock behind: the next run
simply takes it over.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

import jax
from absl import logging

_HELD_LOCKS: dict[str, int] = {}  # lock file -> fd held by this process (re-entrant within a process)


class WorkdirError(RuntimeError):
    """The workdir cannot be used (not writable, or in use by another run)."""


def acquire_lock(root: str) -> None:
    """Takes the exclusive lock of workdir ``root`` for the rest of this process (no-op when held already).

    Raises ``WorkdirError`` naming the holder when another process holds it."""
    path = os.path.realpath(os.path.join(root, ".lock"))
    if path in _HELD_LOCKS:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 300).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise WorkdirError(f"workdir {root} is in use by another run ({holder}); wait for it to end or choose "
                           "another --workdir.") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
             .encode())
    _HELD_LOCKS[path] = fd


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: str

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def plots(self) -> str:
        return os.path.join(self.root, "plots")

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def make(self) -> "Workdir":
        """Creates the workdir and takes its lock (see the module docstring)."""
        try:
            for d in (self.root, self.plots):
                os.makedirs(d, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            raise WorkdirError(f"cannot write the workdir {self.root}: {e.strerror or e}") from None
        if jax.process_index() == 0:
            acquire_lock(self.root)
        return self


def code_version() -> str:
    """Git commit (with '-dirty' if the tree has local changes), or 'unknown'."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


RUN_OUTPUTS = ("config.json", "results.json", "report.md")


def write_config(workdir: Workdir, config: Any, filename: str = "config.json") -> str:
    """Writes the resolved config plus the code version as JSON; returns the path.

    When the workdir holds a run with another config, that run's config.json, results.json and report.md move
    to ``previous/<time>/`` first, so config.json and results.json always belong to the same run."""
    data = json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else dict(config), default=str))
    payload = {"code_version": code_version(), "config": data}
    path = workdir.path(filename)
    if os.path.exists(path) and jax.process_index() == 0:
        with open(path, encoding="utf-8") as f:
            old = json.load(f).get("config")
        if old != data:
            stamp, n = time.strftime("%Y%m%d-%H%M%S"), 0
            while os.path.exists(workdir.path("previous", f"{stamp}-{n}")):
                n += 1
            keep = workdir.path("previous", f"{stamp}-{n}")
            os.makedirs(keep)
            for name in RUN_OUTPUTS:
                if os.path.exists(workdir.path(name)):
                    shutil.move(workdir.path(name), os.path.join(keep, name))
            changed = sorted(k for k in set(old or {}) | set(data) if (old or {}).get(k) != data.get(k))
            logging.warning("The config differs from the earlier run in %s (top-level fields %s); its config, "
                            "results and report moved to %s.", workdir.root, changed, keep)
    if jax.process_index() == 0:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=str)
    return path
