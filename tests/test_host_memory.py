"""launch.host_memory: after keep_freed_host_memory, re-allocating a freed large block causes no page faults."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import ctypes, ctypes.util, resource, sys
    from launch.host_memory import keep_freed_host_memory
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
