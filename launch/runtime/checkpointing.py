"""Orbax checkpointing of (train state, grain iterator state, JSON metadata) as one step.

Usage::

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=3)
    ckpt.save(step, state, data_iter=it, meta={"epoch": 3})
    restored = ckpt.restore_latest(abstract_state, mesh=mesh, data_iter=fresh_it)
    if restored is not None:
        state, meta = restored.state, restored.meta     # fresh_it now continues where it stopped
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from launch.runtime import mesh as mesh_lib


@dataclasses.dataclass
class Restored:
    step: int
    state: Any
    meta: dict
    data_iter: Any | None


def abstract_like(tree: Any, sharding: jax.sharding.Sharding | None) -> Any:
    """ShapeDtypeStructs of ``tree`` (arrays or ShapeDtypeStructs) placed with ``sharding``."""
    def to_sds(x):
        if not hasattr(x, "shape"):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return jax.tree.map(to_sds, tree)


class Checkpointer:
    """Thin wrapper around ``ocp.CheckpointManager`` with the project's item layout."""

    def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1,
                 async_save: bool = True):
        self.directory = os.path.abspath(directory)
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        }
        try:
            import grain

            handlers["data_iter"] = grain.checkpoint.CheckpointHandler()
        except Exception:  # pragma: no cover - grain is a hard dependency, keep the manager usable
            logging.warning("grain not importable: data iterator state will not be checkpointed.")
        self._has_grain = "data_iter" in handlers
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                 save_interval_steps=save_interval_steps,
                                                 enable_async_checkpointing=async_save,
                                                 create=True),
            item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, *, data_iter: Any | None = None, meta: dict | None = None,
             metrics: dict | None = None, force: bool = False) -> bool:
        items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(dict(meta or {}))}
        if data_iter is not None and self._has_grain:
            import grain

            items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
        return self.manager.save(int(step), args=ocp.args.Composite(**items),
                                 metrics=metrics, force=force)

    def restore(self, step: int, abstract_state: Any, *, mesh: jax.sharding.Mesh | None = None,
                data_iter: Any | None = None) -> Restored:
        """Restores ``step`` into ``abstract_state``'s structure, replicated over ``mesh`` if given."""
        if mesh is not None:
            abstract_state = abstract_like(abstract_state, mesh_lib.replicated(mesh))
        else:
            abstract_state = abstract_like(abstract_state, None)
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if data_iter is not None and self._has_grain:
            import grain

            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        try:
            restored = self.manager.restore(int(step), args=ocp.args.Composite(**items))
        except ValueError as e:  # another model's shapes or parameter tree
            if "shape" not in str(e) and "Structure mismatch" not in str(e):
                raise
            from launch.runtime.workdir import WorkdirError
            raise WorkdirError(
                f"the checkpoint step {step} in {self.directory} belongs to a model of another shape than this "
                f"config's ({str(e).splitlines()[0][:200]}). Resume with the config that wrote it, or start "
                "over with a new --workdir (or delete that checkpoints folder).") from None
        return Restored(step=int(step), state=restored["state"], meta=dict(restored["meta"] or {}),
                        data_iter=restored.get("data_iter") if data_iter is not None else None)

    def restore_latest(self, abstract_state: Any, *, mesh: jax.sharding.Mesh | None = None,
                       data_iter: Any | None = None) -> Restored | None:
        step = self.latest_step()
        if step is None:
            return None
        logging.info("Restoring checkpoint step %d from %s", step, self.directory)
        return self.restore(step, abstract_state, mesh=mesh, data_iter=data_iter)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
