"""Run a snippet of Python in a subprocess that sees N fake CPU devices; start subprocesses in the background.

XLA's device count is fixed at backend start, so multi-device checks cannot share the test
process. The snippet should print one JSON object on its last stdout line; it is returned parsed.

The machine running the suite may have only 2 cores and the test process is mostly single-threaded
Python, so a module starts its independent subprocesses early (:func:`start`, :func:`start_with_devices`)
and collects their results in the tests that check them: the subprocess runs while other tests do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Background:
    """A subprocess started now; :meth:`result` waits for it and returns its ``CompletedProcess`` (text output).

    stdout / stderr go to temporary files, not pipes, so a chatty child never blocks on a full pipe."""

    def __init__(self, args: list[str], *, env: dict | None = None, cwd: str = REPO_ROOT, timeout: float = 600):
        self.args, self.timeout = args, timeout
        self._out, self._err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._out, stderr=self._err, text=True)
        self._done: subprocess.CompletedProcess | None = None

    def result(self) -> subprocess.CompletedProcess:
        if self._done is None:
            try:
                self._proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise
            outputs = []
            for f in (self._out, self._err):
                f.seek(0)
                outputs.append(f.read())
                f.close()
            self._done = subprocess.CompletedProcess(self.args, self._proc.returncode, *outputs)
        return self._done

    def kill(self) -> None:
        """Stops the child if it still runs (a fixture's teardown when its test was not reached)."""
        if self._done is None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def start(args: list[str], *, env: dict | None = None, cwd: str = REPO_ROOT, timeout: float = 600) -> Background:
    return Background(args, env=env, cwd=cwd, timeout=timeout)


class DevicesRun:
    """:func:`start_with_devices`'s handle: :meth:`result` is :func:`run_with_devices`'s parsed JSON."""

    def __init__(self, job: Background):
        self.job = job

    def result(self) -> dict:
        proc = self.job.result()
        if proc.returncode != 0:
            raise AssertionError(f"subprocess failed (rc={proc.returncode}):\nSTDOUT:\n{proc.stdout[-4000:]}\n"
                                 f"STDERR:\n{proc.stderr[-8000:]}")
        lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
        return json.loads(lines[-1])

    def kill(self) -> None:
        self.job.kill()


def start_with_devices(code: str, num_devices: int = 8, timeout: float = 600) -> DevicesRun:
    """Starts ``code`` in a subprocess with ``num_devices`` fake CPU devices; ``.result()`` waits for its JSON."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={num_devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return DevicesRun(start([sys.executable, "-c", textwrap.dedent(code)], env=env, timeout=timeout))


def run_with_devices(code: str, num_devices: int = 8, timeout: float = 600) -> dict:
    return start_with_devices(code, num_devices, timeout).result()
