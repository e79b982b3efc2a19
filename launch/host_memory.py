"""Host (CPU) memory allocator setting for XLA:CPU / PyTorch CPU steps.

XLA:CPU allocates each step's temporary buffers (GBs for the full FDP step) with ``malloc``. glibc serves
allocations above 32 MB with fresh ``mmap`` pages and returns them to the OS on ``free``, so every step
page-faults its whole working set again: ~1.5 M minor page faults per batch-36 ``reference_compat`` step on the
project's 2-core CPU, ~1.9 s of a 9.4 s step. :func:`keep_freed_host_memory` tells glibc (``mallopt``) to
serve large blocks from the heap (``M_MMAP_MAX = 0``), in one arena (``M_ARENA_MAX = 1``), and never to trim
it (``M_TRIM_THRESHOLD = -1``): freed memory is reused by the next step without faults. Peak RSS is
unchanged (the heap grows to the same peak); the process simply keeps it until exit. The same effect as
``MALLOC_MMAP_MAX_=0 MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=...`` in the environment, or a caching
allocator (tcmalloc/jemalloc) via ``LD_PRELOAD``.

Call it once, early (before the first large allocation). It does nothing, and says why, on non-glibc
platforms (macOS, musl) and on accelerators it is harmless (device memory is not malloc'ed).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

from absl import logging

# glibc <malloc.h> parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8


def keep_freed_host_memory() -> bool:
    """Keep freed host memory in the process for reuse (glibc only). Returns True when applied."""
    if not sys.platform.startswith("linux"):
        logging.info("keep_freed_host_memory: not Linux (%s); allocator left as is.", sys.platform)
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        logging.info("keep_freed_host_memory: no glibc mallopt (%s); allocator left as is.", e)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    results = {name: mallopt(param, value) for name, param, value in
               (("M_ARENA_MAX", M_ARENA_MAX, 1), ("M_MMAP_MAX", M_MMAP_MAX, 0),
                ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, -1))}
    failed = [name for name, ok in results.items() if ok != 1]
    if failed:
        logging.warning("keep_freed_host_memory: mallopt refused %s; allocator partly unchanged.", failed)
        return False
    logging.info("keep_freed_host_memory: glibc keeps freed memory for reuse (no per-step page faults).")
    return True
