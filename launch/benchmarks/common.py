"""Shared benchmark helpers: timing, peak RSS, XLA FLOP counts, a measured matmul peak, MFU."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def block(x: Any) -> Any:
    return jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)


def time_calls(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> dict:
    """Median/min/max wall time (s) of ``fn()`` after ``warmup`` calls; results are blocked on."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": repeats}


def compiled_flops(jitted: Any, *args, **kwargs) -> float | None:
    """FLOPs of one call from XLA's cost analysis of ``jitted.lower(*args).compile()``."""
    try:
        compiled = jitted.lower(*args, **kwargs).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0] if analysis else {}
        flops = analysis.get("flops") if analysis else None
        return float(flops) if flops is not None and flops > 0 else None
    except Exception:
        return None


def matmul_peak_flops(dtype: Any = None, n: int | None = None, repeats: int = 5) -> dict:
    """Measures achievable matmul FLOP/s on the default device (the MFU denominator).

    float32 on CPU, bfloat16 on GPU/TPU unless ``dtype`` is given.
    """
    backend = jax.default_backend()
    if dtype is None:
        dtype = jnp.float32 if backend == "cpu" else jnp.bfloat16
    if n is None:
        n = 1024 if backend == "cpu" else 8192
    key = jax.random.PRNGKey(0)
    a = jax.random.normal(key, (n, n), dtype)
    b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    t = time_calls(lambda: f(a, b), warmup=2, repeats=repeats)
    flops = 2.0 * n ** 3
    return {"peak_flops_per_s": flops / t["min_s"], "n": n, "dtype": jnp.dtype(dtype).name,
            "backend": backend}


def mfu(flops_per_step: float | None, step_seconds: float, peak_flops_per_s: float) -> float | None:
    if not flops_per_step or not step_seconds or not peak_flops_per_s:
        return None
    return flops_per_step / step_seconds / peak_flops_per_s


def machine_info() -> dict:
    devices = jax.devices()
    return {"platform": jax.default_backend(), "devices": [str(d) for d in devices],
            "device_kind": devices[0].device_kind, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__,
            "machine": platform.machine(), "processor": platform.processor()}


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o))


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A small markdown table."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)
