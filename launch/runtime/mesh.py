"""Device mesh, distributed init and batch sharding, shared by every launcher.

All launchers use one 1-D mesh with a ``data`` axis spanning every device of every
process. Parameters are replicated; batches are split along their leading axis.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

_MULTI_PROCESS_ENV = (
    "JAX_COORDINATOR_ADDRESS",  # explicit jax.distributed
    "TPU_WORKER_HOSTNAMES",  # Cloud TPU pods
    "SLURM_NTASKS",  # SLURM clusters
    "OMPI_COMM_WORLD_SIZE",  # Open MPI
)


def maybe_initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize()`` when a multi-process environment is detected.

    Environments: an explicit ``JAX_COORDINATOR_ADDRESS`` (+ ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``: e.g.
    two CPU processes on 127.0.0.1), Cloud TPU pod slices (``TPU_WORKER_HOSTNAMES``), SLURM (``SLURM_NTASKS``)
    and Open MPI (``OMPI_COMM_WORLD_SIZE``); the last three are auto-detected by JAX itself. CPU processes
    exchange collectives through gloo. Returns True when distributed initialisation ran; safe to call twice.
    """
    if getattr(maybe_initialize_distributed, "_done", False):
        return True
    wanted = False
    for name in _MULTI_PROCESS_ENV:
        value = os.environ.get(name)
        if value is None:
            continue
        if name == "TPU_WORKER_HOSTNAMES":
            wanted = len(value.split(",")) > 1
        elif name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
            wanted = int(value) > 1
        else:
            wanted = True
        if wanted:
            break
    if not wanted:
        return False
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = {"coordinator_address": os.environ["JAX_COORDINATOR_ADDRESS"]}
        for key, env in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
            if os.environ.get(env):
                kwargs[key] = int(os.environ[env])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only used by the CPU backend
    logging.info("Multi-process environment detected: calling jax.distributed.initialize(%s).", kwargs)
    jax.distributed.initialize(**kwargs)
    maybe_initialize_distributed._done = True  # type: ignore[attr-defined]
    return True


def local_copy(tree: Any) -> Any:
    """This process's copy of a replicated (possibly multi-process) pytree, as single-device arrays.

    Use it to run host-side work (evaluation over this process's data, saving) on replicated parameters:
    a multi-process global array cannot be mixed with process-local inputs under jit or read with device_get.
    """
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x
    return jax.tree.map(one, tree)


def make_data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``num_devices`` (default: all global devices)."""
    devices = jax.devices()
    if num_devices is not None and num_devices > 0:
        if num_devices > len(devices):
            raise ValueError(f"Asked for {num_devices} devices but only {len(devices)} are visible: {devices}")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, optimizer state)."""
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over ``data``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def describe(mesh: Mesh) -> str:
    """One line describing the mesh, for logs and reports."""
    kinds = sorted({d.platform for d in mesh.devices.flat})
    return (f"mesh {dict(mesh.shape)} on {mesh.devices.size} {'/'.join(kinds)} device(s), "
            f"{jax.process_count()} process(es), this is process {jax.process_index()}")


def check_global_batch(global_batch_size: int, mesh: Mesh) -> int:
    """Returns the per-process batch size; raises a clear error if the batch does not split evenly."""
    n = mesh.devices.size
    if global_batch_size % n:
        raise ValueError(
            f"Global batch size {global_batch_size} is not divisible by the {n} devices of the mesh; "
            f"choose a multiple of {n} (or set config.num_devices).")
    return global_batch_size // jax.process_count()


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Turns a per-process host batch (pytree of numpy arrays) into global arrays split over ``data``."""
    sharding = data_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree replicated on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


WAIT_FOR_PROCESS_0_S = 7 * 24 * 3600  # how long the other processes wait for a stage of process 0
_KV_PREFIX, _OK, _FAILED = "launch/on_process_0/", "ok:", "failed:"


def on_process_0(key: str, fn: Callable[[], str]) -> str:
    """``fn()`` run on process 0 only; its string result is handed to every process.

    With one process this is ``fn()``. With several, the others block on the ``jax.distributed`` key-value
    store (no device collective, so the wait may be long) until process 0 has published ``key``. An
    exception of ``fn`` is re-raised on process 0 and raised on the others as well (the same user-error type,
    else ``RuntimeError``), so none of them waits for a result that never comes. ``key``: unique per run.
    """
    if jax.process_count() == 1:
        return fn()
    from launch.runtime.cli import USER_ERRORS  # lazy: cli imports the workdir and guard modules
    from jax._src import distributed  # the coordination-service client made by jax.distributed.initialize

    client, key = distributed.global_state.client, _KV_PREFIX + key
    if jax.process_index() == 0:
        try:
            value = fn()
        except BaseException as e:
            client.key_value_set(key, f"{_FAILED}{type(e).__name__}:{e}")
            raise
        client.key_value_set(key, _OK + value)
        return value
    value = client.blocking_key_value_get(key, WAIT_FOR_PROCESS_0_S * 1000)
    if value.startswith(_FAILED):
        kind, _, message = value[len(_FAILED):].partition(":")
        error = next((e for e in USER_ERRORS if e.__name__ == kind), None)
        raise (error(f"(process 0) {message}") if error else RuntimeError(f"process 0 failed: {kind}: {message}"))
    return value[len(_OK):]
