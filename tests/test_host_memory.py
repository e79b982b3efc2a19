"""launch.runtime.host_memory: after keep_freed_host_memory, re-allocating a freed large block causes no page faults."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import ctypes, ctypes.util, resource, sys
    from launch.runtime.host_memory import keep_freed_host_memory
    applied = keep_freed_host_memory() if sys.argv[1] == "keep" else False

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def faults_of_touching_a_fresh_block():  # plain malloc (numpy would madvise huge pages)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(256 * 2 ** 20)  # 256 MB: glibc mmaps it by default
        ctypes.memset(block, 1, 256 * 2 ** 20)
        libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_touching_a_fresh_block()  # first use: the heap grows (faults either way)
    print(applied, faults_of_touching_a_fresh_block())
""")


def _run(setting: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, setting], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only on Linux")
def test_keep_freed_host_memory_removes_refaults():
    applied, kept = _run("keep")
    _, default = _run("default")
    assert applied == "True"
    assert default > 30_000   # 256 MB of 4 KB pages faulted again after the free
    assert kept < 2_000       # reused from the heap


_RELEASE_CHILD = textwrap.dedent("""
    import ctypes, ctypes.util, os, sys
    import jax
    from launch.runtime import host_memory
    host_memory.keep_freed_host_memory()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    rss_mb = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    keep = libc.malloc(1 << 20)                    # something live above the freed block
    block = libc.malloc(256 * 2 ** 20)
    ctypes.memset(block, 1, 256 * 2 ** 20)
    top = libc.malloc(1 << 20)                     # keeps the freed block in the middle of the heap
    libc.free(block)
    before = rss_mb()
    if sys.argv[1] == "direct":
        host_memory.release_free_host_memory()
    else:                                          # what jax reports after an XLA compilation of 2 s
        host_memory.release_after_compiles()
        host_memory.release_after_compiles()       # idempotent
        jax.monitoring.record_event_duration_secs("/jax/core/compile/backend_compile_duration", 0.1)
        short = rss_mb()
        jax.monitoring.record_event_duration_secs("/jax/core/compile/backend_compile_duration", 2.0)
        if before - short > 100:
            sys.exit(f"a 0.1 s compile released memory: {before} -> {short} MB")
    print(round(before - rss_mb()))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim only on Linux")
@pytest.mark.parametrize("how", ["direct", "after_compile_event"])
def test_release_free_host_memory_returns_kept_pages(how):
    out = subprocess.run([sys.executable, "-c", _RELEASE_CHILD, how], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) > 200   # the freed 256 MB block left the RSS
