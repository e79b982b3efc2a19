"""DKT training: 8-fake-device parity (jit-sharded / pmap / single device), optimiser clipping, the input
pipeline, checkpoint resume, load_params and a tiny end-to-end launch.dkt run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from datasets.registry import DatasetError
from dkt_jax import input_pipeline as ip
from dkt_jax import train_steps
from launch import train_dkt
from launch.configs import dkt_tiny
from tests.conftest import REPO_ROOT
from tests.multidevice import run_with_devices

PARITY_CODE = r"""
import json, functools, jax, jax.numpy as jnp, numpy as np
import dkt_jax
from dkt_jax import train_steps
from launch.runtime import mesh as mesh_lib
from launch.configs import dkt_tiny

cfg = dkt_tiny.get_config(); cfg.model.num_skills = 7; cfg.model.dropout_rate = 0.0
model = dkt_jax.model_from_config(cfg.model)
lambdas = {"r": 0.1, "w1": 0.3, "w2": 3.0}
rng = np.random.default_rng(0)
B, T = 16, 9
batch = {"skills": rng.integers(0, 7, (B, T)).astype(np.int32),
         "correct": rng.integers(0, 2, (B, T)).astype(np.int32),
         "lengths": rng.integers(0, T + 1, (B,)).astype(np.int32)}   # uneven valid counts per device
key = jax.random.key(0)

def grads_of(step_fn, state):
    new_state, out = step_fn(state, batch, key)
    return out

def flat(tree):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])

state0 = jax.device_get(train_steps.create_train_state(jax.random.key(1), cfg.model, cfg))  # host copy: steps donate
res = {}
# single device: plain jit on device 0
one = mesh_lib.make_data_mesh(1)
loss_grad = jax.jit(jax.value_and_grad(functools.partial(train_steps.loss_fn, model=model, lambdas=lambdas),
                                       has_aux=True))
(l1, _), g1 = loss_grad(state0.params, batch, key)
lam = tuple(sorted(lambdas.items()))
s1, o1 = train_steps.make_train_step(model, lam, one)(mesh_lib.replicate(state0, one),
                                                      mesh_lib.shard_batch(batch, one), key)
mesh = mesh_lib.make_data_mesh(8)
devices = list(mesh.devices.flat)
sj, oj = train_steps.make_train_step(model, lam, mesh)(mesh_lib.replicate(state0, mesh),
                                                       mesh_lib.shard_batch(batch, mesh), key)
pmap_step = train_steps.make_pmap_train_step(model, lambdas, devices)
sp, op = pmap_step(train_steps.to_pmap_state(state0, devices), batch, key)
sp = train_steps.from_pmap_state(sp)
# pmap gradients themselves, through the same loss with pooled counts
pgrad = jax.pmap(lambda p, b: jax.lax.psum(jax.grad(lambda q: train_steps.loss_fn(q, b, key, model=model,
                 lambdas=lambdas, axis_name="data")[0])(p), "data"), axis_name="data", in_axes=(None, 0))
gp = jax.tree.map(lambda x: x[0], pgrad(state0.params, jax.tree.map(lambda x: x.reshape((8, -1) + x.shape[1:]), batch)))
res["n_devices"] = len(jax.devices())
res["loss"] = [float(l1), float(o1["loss"]), float(oj["loss"]), float(op["loss"])]
res["grad_norm"] = [float(o1["grad_norm"]), float(oj["grad_norm"]), float(op["grad_norm"])]
res["pmap_grad_maxdiff"] = float(np.abs(flat(gp) - flat(g1)).max())
res["grad_scale"] = float(np.abs(flat(g1)).max())
res["param_maxdiff_jit"] = float(np.abs(flat(sj.params) - flat(s1.params)).max())
res["param_maxdiff_pmap"] = float(np.abs(flat(sp.params) - flat(s1.params)).max())
res["sharding"] = str(sj.params["output"]["kernel"].sharding.spec)
print(json.dumps(res))
"""


def test_eight_device_parity_jit_pmap_single():
    r = run_with_devices(PARITY_CODE, 8)
    assert r["n_devices"] == 8
    np.testing.assert_allclose(r["loss"], r["loss"][0], rtol=1e-5)
    np.testing.assert_allclose(r["grad_norm"], r["grad_norm"][0], rtol=1e-4)  # a psum/pmean slip shows x8
    assert r["pmap_grad_maxdiff"] < 1e-5 * max(1.0, r["grad_scale"])
    assert r["param_maxdiff_jit"] < 1e-6 and r["param_maxdiff_pmap"] < 1e-6


def test_per_tensor_and_global_clipping():
    cfg = dkt_tiny.get_config()
    grads = {"a": jnp.full((4,), 10.0), "b": jnp.full((1,), 0.1)}
    per = train_steps.clip_by_tensor_norm(5.0).update(grads, None)[0]
    np.testing.assert_allclose(np.linalg.norm(per["a"]), 5.0, rtol=1e-6)
    np.testing.assert_allclose(per["b"], grads["b"])  # small tensors untouched
    cfg.clip = "global_norm"
    cfg.clip_norm = 1.0
    tx = train_steps.make_optimizer(cfg)
    assert tx.init(grads) is not None
    cfg.clip = "bogus"
    with pytest.raises(ValueError, match="config.clip"):
        train_steps.make_optimizer(cfg)


def _toy_sources(n_train=24, n_test=10, m=5, seed=0):
    rng = np.random.default_rng(seed)
    def make(n):
        out = []
        for i in range(n):
            t = int(rng.integers(3, 15))
            out.append({"student_id": f"s{i}", "skills": rng.integers(0, m, t).astype(np.int32),
                        "correct": rng.integers(0, 2, t).astype(np.int32)})
        return out
    return {"train": make(n_train), "test": make(n_test), "num_skills": m}


def test_bad_config_values_are_named(tmp_path):
    for field, value in (("parallelism", "spmd"), ("clip", "bogus"), ("batch_size", 0)):
        with pytest.raises(train_dkt.ConfigError, match=f"config.{field}"):
            train_dkt.train_and_evaluate(_tiny_config(**{field: value}), str(tmp_path), sources=_toy_sources())
    cfg = _tiny_config()
    cfg.model.encoding = "twohot"
    with pytest.raises(train_dkt.ConfigError, match="config.model.encoding"):
        train_dkt.train_and_evaluate(cfg, str(tmp_path), sources=_toy_sources())


def test_read_sequences_errors_name_the_example():
    good = {"skills": np.array([0, 1, 2]), "correct": np.array([1, 0, 1])}
    with pytest.raises(DatasetError, match=r"src\[1\].*'correct' must be 0/1"):
        ip.read_sequences([good, {"skills": np.array([0, 1]), "correct": np.array([1, 2])}], name="src")
    with pytest.raises(DatasetError, match=r"src\[0\].*3 steps but 'correct' has 2"):
        ip.read_sequences([{"skills": np.array([0, 1, 2]), "correct": np.array([1, 0])}], name="src")
    with pytest.raises(DatasetError, match="num_skills=3"):
        ip.read_sequences([{"skills": np.array([0, 3]), "correct": np.array([1, 0])}], num_skills=3, name="src")
    with pytest.raises(DatasetError, match="missing feature 'correct'"):
        ip.read_sequences([{"skills": np.array([0])}], name="src")


def test_chunks_batches_and_deterministic_iterator_state():
    seqs = ip.read_sequences([{"skills": np.arange(12) % 4, "correct": np.ones(12, int)},
                              {"skills": np.arange(4), "correct": np.zeros(4, int)}], num_skills=4)
    chunks = ip.make_chunks(seqs, max_len=5, min_len=3)
    # 12 -> 5 + 5 + 2 (remainder < 3 dropped); 4 -> 4
    assert list(chunks.lengths) == [5, 5, 4]
    assert chunks.skills.shape == (3, 5) and chunks.skills[2, 4] == -1
    ds, steps = ip.train_dataset(chunks, global_batch_size=2, seed=3)
    assert steps == 1
    it = iter(ds)
    first = [next(it) for _ in range(3)]
    state = it.get_state()
    rest = [next(it)["lengths"].tolist() for _ in range(3)]
    it2 = iter(ds)
    it2.set_state(state)
    assert [next(it2)["lengths"].tolist() for _ in range(3)] == rest
    assert first[0]["skills"].shape == (2, 5)
    tr, va = ip.split_train_validation(ip.read_sequences(_toy_sources()["train"], num_skills=5), 0.25, 0)
    assert len(tr) == 18 and len(va) == 6 and not set(tr.ids) & set(va.ids)


def _tiny_config(**overrides):
    cfg = dkt_tiny.get_config()
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def test_train_resume_and_load_params(tmp_path):
    sources = _toy_sources()
    wd = str(tmp_path / "run")
    r1 = train_dkt.train_and_evaluate(_tiny_config(num_epochs=1), wd, sources=sources)
    assert r1["epochs_run"] == 1
    hist1 = json.load(open(os.path.join(wd, "results.json")))["history"]
    # re-running with more epochs continues from the checkpoint (epoch 2 only)
    r2 = train_dkt.train_and_evaluate(_tiny_config(num_epochs=2), wd, sources=sources)
    hist2 = json.load(open(os.path.join(wd, "results.json")))["history"]
    assert r2["epochs_run"] == 2 and len(hist2) == 2 and hist2[0] == hist1[0]
    # ... and gives the same epoch 2 as an uninterrupted 2-epoch run (params, data order, dropout)
    r3 = train_dkt.train_and_evaluate(_tiny_config(num_epochs=2), str(tmp_path / "straight"), sources=sources)
    assert r3["test"]["auc_n"] == pytest.approx(r2["test"]["auc_n"], abs=1e-6)
    assert r3["best_val_auc_n"] == pytest.approx(r2["best_val_auc_n"], abs=1e-6)
    params, model_cfg = train_dkt.load_params(wd)
    assert model_cfg.num_skills == 5
    import dkt_jax
    out = dkt_jax.apply(params, np.zeros((1, 4), np.int32), np.ones((1, 4), np.int32), np.array([4]))
    assert out.shape == (1, 4, 5)
    with pytest.raises(FileNotFoundError, match="finished launch.dkt workdir"):
        train_dkt.load_params(str(tmp_path / "nothing"))


def test_launch_dkt_end_to_end_tiny(tmp_path):
    wd = tmp_path / "tiny"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "launch.dkt", "--config=launch/configs/dkt_tiny.py", f"--workdir={wd}",
           "--config.num_epochs=1"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AUC(N)" in proc.stdout and "Bayes-optimal AUC" in proc.stdout and "oracle AUC" in proc.stdout
    results = json.load(open(wd / "results.json"))
    for k in ("auc_n", "auc_c", "w1", "w2", "m1", "m2"):
        assert np.isfinite(results["test"][k])
    assert 0.5 < results["oracle_auc"] <= 1 and 0.5 < results["bayes_auc"] <= 1
    for f in ("plots/knowledge_state.png", "plots/training.png", "metrics.jsonl", "report.md", "config.json"):
        assert (wd / f).stat().st_size > 0
    assert any((wd / "checkpoints").iterdir())
    # Quiet logs: the progress bars, one summary line per epoch, no INFO log lines (orbax steps, data...).
    log_lines = [ln for ln in proc.stderr.replace("\r", "\n").splitlines() if re.match(r"[IWEF]\d{4} ", ln)]
    assert len(log_lines) < 5, log_lines
    assert not [ln for ln in log_lines if ln.startswith("I")], log_lines
    assert len(re.findall(r"^epoch 1/1: train_loss=", proc.stderr, flags=re.M)) == 1, proc.stderr[-2000:]
    # unknown dataset: a clear one-line error, no traceback
    bad = subprocess.run(cmd[:-1] + ["--config.dataset=nope", f"--workdir={tmp_path / 'bad'}"], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "Unknown dataset 'nope'" in bad.stderr and "Traceback" not in bad.stderr
