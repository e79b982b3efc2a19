"""Metric writers: JSON lines plus TensorBoard (tensorboardX, TF-free)."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import numpy as np


def _to_python(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if hasattr(value, "shape") and getattr(value, "shape", None) == ():
        return float(value)
    return value


class MetricWriter:
    """Writes scalar metrics to ``<logdir>/metrics.jsonl`` and TensorBoard event files.

    Only process 0 writes. ``prefix`` groups related scalars (e.g. ``fold_03/train``).
    """

    def __init__(self, logdir: str, *, filename: str = "metrics.jsonl", tensorboard: bool = True,
                 enabled: bool | None = None):
        import jax

        self.enabled = (jax.process_index() == 0) if enabled is None else enabled
        self.logdir = logdir
        self._jsonl = None
        self._tb = None
        if not self.enabled:
            return
        os.makedirs(logdir, exist_ok=True)
        self._jsonl = open(os.path.join(logdir, filename), "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(logdir, "tensorboard"))

    def write_scalars(self, step: int, scalars: Mapping[str, Any], prefix: str = "") -> None:
        if not self.enabled:
            return
        clean = {}
        for key, value in scalars.items():
            value = _to_python(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                clean[key] = float(value)
        record = {"step": int(step), "time": time.time(), **({"prefix": prefix} if prefix else {}), **clean}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, value in clean.items():
                if math.isfinite(value):
                    self._tb.add_scalar(f"{prefix}/{key}" if prefix else key, value, int(step))

    def flush(self) -> None:
        if self._jsonl:
            self._jsonl.flush()
        if self._tb:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
            self._jsonl = None
        if self._tb:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str) -> list[dict]:
    """Reads a metrics.jsonl file back into a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
