"""FDP train/eval steps: single device, jit + NamedSharding and pmap on 8 fake CPU devices."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from fdp_jax import train_steps as ts
from fdp_jax.configs import get_model_config
from tests.multidevice import start_with_devices


def _batch(b, size=32, seed=0, masked=0):
    rng = np.random.default_rng(seed)
    batch = {"frames": rng.standard_normal((b, 8, size, size, 1)).astype(np.float32),
             "di_target": rng.uniform(size=(b, size, size)).astype(np.float32),
             "label": rng.integers(0, 5, b).astype(np.int32)}
    if masked:
        batch["mask"] = np.r_[np.ones(b - masked), np.zeros(masked)].astype(np.float32)
    return batch


def test_optimizers():
    params = {"w": np.ones(3, np.float32)}
    grads = {"w": np.zeros(3, np.float32)}
    for name, moves in (("adam_l2", True), ("adamw", True), ("adam", False)):
        tx = ts.make_optimizer(name, 1e-2, 1e-1)
        updates, _ = tx.update(grads, tx.init(params), params)
        assert bool(np.any(np.asarray(updates["w"]) != 0)) == moves, name
    # coupled L2: decay enters Adam's normalisation -> |update| = lr for any wd > 0 with zero grads
    tx = ts.make_optimizer("adam_l2", 1e-2, 1e-1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -1e-2, rtol=1e-4)
    tx = ts.make_optimizer("adamw", 1e-2, 1e-1)  # decoupled: lr * wd * w
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), -1e-3, rtol=1e-4)


def test_train_step_single_device_and_eval_mode_quirk():
    cfg = get_model_config("tiny", "reference_compat", platform="cpu")
    state = ts.create_train_state(jax.random.PRNGKey(0), cfg, learning_rate=1e-3)
    stats0 = jax.tree.map(np.asarray, state.batch_stats)
    batch = _batch(4, masked=1)
    step = ts.make_train_step(donate=False)
    losses = []
    for i in range(3):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        losses.append(float(metrics["loss"]))
    assert set(metrics) == {"loss", "ce", "mse", "accuracy", "count"} and float(metrics["count"]) == 3.0
    assert int(state.step) == 3 and losses[-1] < losses[0]
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.batch_stats, stats0)
    assert max(jax.tree.leaves(moved)) > 0  # BN running statistics updated in train mode
    # official quirk: after epoch 1 training runs in eval mode -> running stats frozen, params still move
    frozen = ts.make_train_step(bn_train=False, donate=False)
    new_state, m2 = frozen(state, batch, jax.random.PRNGKey(9))
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), new_state.batch_stats,
                        state.batch_stats)
    assert all(jax.tree.leaves(same))
    assert not np.allclose(new_state.params["mer"]["fc2"]["kernel"], state.params["mer"]["fc2"]["kernel"])
    out = ts.make_eval_step()(new_state, batch)
    assert out["logits"].shape == (4, 5) and out["di_pred"].shape == (4, 32, 32)
    np.testing.assert_array_equal(out["mask"], batch["mask"])
    assert out["ce"].shape == (4,) and out["correct"].shape == (4,)


MULTI = r"""
import json, os
import jax, numpy as np, optax
from fdp_jax import train_steps as ts
from fdp_jax.configs import get_model_config
from launch.runtime.mesh import make_data_mesh, shard_batch, replicate
cfg = get_model_config("tiny", "paper", path_dropout=0.0, remat=REMAT, platform="cpu")
rng = np.random.default_rng(0)
B = 16
batch = {"frames": rng.standard_normal((B, 8, 32, 32, 1)).astype(np.float32),
         "di_target": rng.uniform(size=(B, 32, 32)).astype(np.float32),
         "label": rng.integers(0, 5, B).astype(np.int32),
         "mask": np.r_[np.ones(13), np.zeros(3)].astype(np.float32)}
key = jax.random.PRNGKey(3)
# SGD: Adam's first step is lr * sign(g), which flips on gradients that are zero up to rounding
# (e.g. BN-cancelled directions) and would hide real disagreements behind +-lr noise. Gradients of convs
# followed by train-mode BN are differences of large, nearly cancelling float32 sums, so a different
# reduction order (8 shards) moves them by ~1% of their size: compare updates relative to their scale.
tx = optax.sgd(1e-5)  # the random tiny net has gradients ~50: keep step 2 in the linear regime
def run(step, state, b, n=2):
    ms, states = [], []
    for i in range(n):
        state, m = step(state, b, jax.random.fold_in(key, i))
        ms.append({k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()})
        states.append(jax.tree.map(np.asarray, (state.params, state.batch_stats)))
    return states, ms
single = ts.create_train_state(jax.random.PRNGKey(0), cfg, tx=tx)
variables = {"params": single.params, "batch_stats": single.batch_stats}  # one init for every state below
s_single, m_single = run(ts.make_train_step(donate=False), single, batch)
mesh = make_data_mesh(8)
mesh_state = replicate(ts.create_train_state(None, cfg, tx=tx, variables=variables), mesh)
s_mesh, m_mesh = run(ts.make_train_step(mesh, donate=False), mesh_state, shard_batch(batch, mesh))
pm_state = ts.replicate(ts.create_train_state(None, cfg, axis_name="data", tx=tx, variables=variables))
s_pmap, m_pmap = run(ts.make_pmap_train_step(), pm_state, ts.split_for_pmap(batch, 8))
s_pmap = [ts.unreplicate(x) for x in s_pmap]
def maxdiff(a, b):
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
# eval: the single-device state evaluated unsharded and sharded over the mesh
ev_state = ts.create_train_state(None, cfg, tx=tx, variables=variables)
ev_single = ts.make_eval_step()(ev_state, batch)
ev_mesh = ts.make_eval_step(mesh)(replicate(ev_state, mesh), shard_batch(batch, mesh))
print(json.dumps({
  "devices": len(jax.devices()), "mesh_sharding": str(ev_mesh["logits"].sharding.spec),
  "loss": [m["loss"] for m in m_single], "loss_mesh": [m["loss"] for m in m_mesh],
  "loss_pmap": [m["loss"] for m in m_pmap],
  "count": [m_single[0]["count"], m_mesh[0]["count"], m_pmap[0]["count"]],
  # after the first step (later steps amplify float32 rounding through the random-init network)
  "param_diff_mesh": maxdiff(s_single[0][0], s_mesh[0][0]) / maxdiff(single.params, s_single[0][0]),
  "param_diff_pmap": maxdiff(s_single[0][0], s_pmap[0][0]) / maxdiff(single.params, s_single[0][0]),
  "stats_diff_mesh": maxdiff(s_single[0][1], s_mesh[0][1]),
  "stats_diff_pmap": maxdiff(s_single[0][1], s_pmap[0][1]),
  "stats_moved": maxdiff(single.batch_stats, s_single[0][1]),
  "param_moved": maxdiff(single.params, s_single[0][0]),
  "logits_diff_mesh": float(np.abs(np.asarray(ev_single["logits"]) - np.asarray(ev_mesh["logits"])).max()),
}))
"""


@pytest.fixture(scope="module", autouse=True)
def multi_runs():
    """Both remat variants' 8-device subprocesses, started when the module starts: they run side by side (and
    beside this module's single-device tests) on a 2-core machine."""
    runs = {remat: start_with_devices(MULTI.replace("REMAT", str(remat)), 8) for remat in (False, True)}
    yield runs
    for run in runs.values():
        run.kill()


@pytest.mark.parametrize("remat", [False, True])
def test_data_parallel_jit_and_pmap_agree_with_single_device(remat, multi_runs):
    """remat=True: the encoder blocks through fdp_jax.lean_vjp.remat_after_cotangent (CPU backend)."""
    r = multi_runs[remat].result()
    assert r["devices"] == 8 and "data" in r["mesh_sharding"]
    assert r["count"] == [13.0, 13.0, 13.0]
    np.testing.assert_allclose(r["loss_mesh"], r["loss"], rtol=1e-3)
    np.testing.assert_allclose(r["loss_pmap"], r["loss"], rtol=1e-3)
    assert r["param_moved"] > 1e-5
    # relative to the size of the first update (a missing psum/pmean or per-device BN statistics gives >= 0.5)
    assert r["param_diff_mesh"] < 5e-2 and r["param_diff_pmap"] < 5e-2, r
    assert r["stats_moved"] > 1e-3  # BN running statistics: global-batch statistics on every path
    stats_tolerance = 1e-5 * max(1.0, r["stats_moved"])
    assert r["stats_diff_mesh"] < stats_tolerance and r["stats_diff_pmap"] < stats_tolerance, r
    assert r["logits_diff_mesh"] < 1e-3, r
