"""The shared launch runtime: mesh, checkpointing (state + grain iterator), metric writers, registry errors."""
from __future__ import annotations

import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from datasets import registry
from launch.runtime import checkpointing, mesh as mesh_lib, metric_writers, workdir as workdir_lib


def _grain_iter(seed: int = 0):
    ds = grain.MapDataset.range(20).seed(seed).shuffle().batch(4)
    return iter(ds.to_iter_dataset())


def test_mesh_and_shard_batch():
    mesh = mesh_lib.make_data_mesh()
    assert mesh.axis_names == ("data",)
    batch = {"x": np.arange(8, dtype=np.float32).reshape(8, 1)}
    sharded = mesh_lib.shard_batch(batch, mesh)
    np.testing.assert_array_equal(np.asarray(sharded["x"]), batch["x"])
    assert mesh_lib.check_global_batch(8, mesh) == 8
    assert "mesh" in mesh_lib.describe(mesh)


def test_mesh_on_eight_devices():
    from tests.multidevice import run_with_devices

    out = run_with_devices("""
        import json, numpy as np
        from launch.runtime import mesh as mesh_lib
        mesh = mesh_lib.make_data_mesh()
        x = mesh_lib.shard_batch({"x": np.arange(16.0).reshape(16, 1)}, mesh)["x"]
        try:
            mesh_lib.check_global_batch(12, mesh)
            err = ""
        except ValueError as e:
            err = str(e)
        print(json.dumps({"n": mesh.devices.size, "shards": len(x.addressable_shards),
                          "shard_rows": x.addressable_shards[0].data.shape[0], "sum": float(x.sum()), "err": err}))
    """, num_devices=8)
    assert out["n"] == 8 and out["shards"] == 8 and out["shard_rows"] == 2
    assert out["sum"] == float(np.arange(16.0).sum())
    assert "not divisible by the 8 devices" in out["err"]


def test_checkpoint_roundtrip_with_grain_iterator(tmp_path):
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(3)}
    it = _grain_iter()
    first = next(it)
    with checkpointing.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2) as ckpt:
        ckpt.save(1, state, data_iter=it, meta={"epoch": 1})
        expected_next = next(it)  # what a resumed iterator must yield
        ckpt.save(2, jax.tree.map(lambda x: x + 1, state), data_iter=it, meta={"epoch": 2})
        ckpt.save(3, jax.tree.map(lambda x: x + 2, state), data_iter=it, meta={"epoch": 3})
        ckpt.wait()
        assert ckpt.all_steps() == [2, 3]  # max_to_keep honoured
    # A fresh manager (as after a restart) restores the latest step into the mesh.
    mesh = mesh_lib.make_data_mesh()
    fresh = _grain_iter()
    ckpt2 = checkpointing.Checkpointer(str(tmp_path / "ckpt"))
    restored = ckpt2.restore(2, jax.eval_shape(lambda: state), mesh=mesh, data_iter=fresh)
    np.testing.assert_array_equal(np.asarray(restored.state["w"]), np.asarray(state["w"]) + 1)
    assert restored.meta == {"epoch": 2}
    # iterator state saved at step 2 was after two batches: next batch is the third one
    third = next(restored.data_iter)
    it_ref = _grain_iter()
    ref = [next(it_ref) for _ in range(3)]
    np.testing.assert_array_equal(third, ref[2])
    np.testing.assert_array_equal(first, ref[0])
    np.testing.assert_array_equal(expected_next, ref[1])
    latest = ckpt2.restore_latest(jax.eval_shape(lambda: state))
    assert latest.step == 3 and latest.meta["epoch"] == 3
    ckpt2.close()


def test_metric_writer_jsonl_and_tensorboard(tmp_path):
    with metric_writers.MetricWriter(str(tmp_path)) as w:
        w.write_scalars(1, {"loss": np.float32(0.5), "acc": 1, "name": "ignored"}, prefix="train")
        w.write_scalars(2, {"loss": jnp.asarray(0.25)})
    rows = metric_writers.read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["loss"] == 0.5 and rows[0]["prefix"] == "train" and "name" not in rows[0]
    assert rows[1]["loss"] == 0.25
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))


def test_write_config(tmp_path):
    import ml_collections

    wd = workdir_lib.Workdir(str(tmp_path / "wd")).make()
    path = workdir_lib.write_config(wd, ml_collections.ConfigDict({"a": 1}))
    payload = json.load(open(path))
    assert payload["config"] == {"a": 1} and payload["code_version"]


def test_registry_errors(tmp_path):
    with pytest.raises(registry.DatasetError, match="Unknown dataset 'nope'"):
        registry.get_builder("nope")
    assert registry.split_name("casme2/5class") == ("casme2", "5class")
