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


def _shapes_by_path(tree: Any) -> dict[str, tuple]:
    """'a/b/0' -> shape of every array leaf (dict keys, attributes and indices alike)."""
    def name(entry: Any) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                return str(getattr(entry, attr))
        return str(entry)
    return {"/".join(name(e) for e in path): tuple(getattr(leaf, "shape", ()) or ())
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0] if leaf is not None}


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
        self._check_shapes(step, abstract_state)
        restored = self.manager.restore(int(step), args=ocp.args.Composite(**items))
        return Restored(step=int(step), state=restored["state"], meta=dict(restored["meta"] or {}),
                        data_iter=restored.get("data_iter") if data_iter is not None else None)

    def _check_shapes(self, step: int, abstract_state: Any) -> None:
        """Raises ``WorkdirError`` when checkpoint ``step`` holds another parameter tree or other shapes
        (checked on the stored metadata, before any array is read)."""
        from launch.runtime.workdir import WorkdirError

        try:
            stored = self.manager.item_metadata(int(step))["state"]
        except Exception:  # noqa: BLE001 - no readable metadata: let the restore itself report
            return
        stored = getattr(stored, "tree", stored)
        flat_stored, flat_wanted = _shapes_by_path(stored), _shapes_by_path(abstract_state)
        diff = sorted(k for k in set(flat_stored) | set(flat_wanted) if flat_stored.get(k) != flat_wanted.get(k))
        if diff:
            k = diff[0]
            self.close()
            raise WorkdirError(
                f"the checkpoint step {step} in {self.directory} belongs to a model of another shape than this "
                f"config's ({len(diff)} arrays differ, e.g. {k}: stored {flat_stored.get(k)}, this config "
                f"{flat_wanted.get(k)}). Resume with the config that wrote it, or start over with a new "
                "--workdir (or delete that checkpoints folder).")

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
