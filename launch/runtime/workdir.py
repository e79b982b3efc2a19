"""The workdir layout shared by all launchers.

    <workdir>/config.json          resolved config (+ code version)
    <workdir>/checkpoints/         orbax steps
    <workdir>/metrics.jsonl        scalar metrics (MetricWriter)
    <workdir>/tensorboard/         TensorBoard event files
    <workdir>/plots/               PNG figures
    <workdir>/results.json, report.md
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from typing import Any


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
        for d in (self.root, self.plots):
            os.makedirs(d, exist_ok=True)
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


def write_config(workdir: Workdir, config: Any, filename: str = "config.json") -> str:
    """Writes the resolved config plus the code version as JSON; returns the path."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    payload = {"code_version": code_version(), "config": data}
    path = workdir.path(filename)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=str)
    return path
