"""DKT / DKT+ training: pure jitted steps (NamedSharding data parallelism or pmap), early stopping on a
validation split of the training students, orbax checkpoints (train state + grain iterator), final
test metrics.

    results = train_and_evaluate(config, workdir)      # resumes when workdir has checkpoints
    params, model_config = load_params(workdir)
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state as train_state_lib

import dkt_jax
from dkt_jax import data as data_lib
from dkt_jax import input_pipeline as ip
from dkt_jax import losses, metrics, plots
from launch.runtime import checkpointing, mesh as mesh_lib
from launch.runtime.metric_writers import MetricWriter
from launch.runtime.progress import progress
from launch.runtime.workdir import Workdir, write_config

TrainState = train_state_lib.TrainState
PARAMS_FILE = "best_params.msgpack"


class ConfigError(ValueError):
    """A bad launch config value (reported by launch.dkt without a traceback)."""


_CHOICES = {"model.encoding": ("onehot", "embedding", "reference_tf"), "model.lstm_impl": ("fused", "hoisted", "flax"),
            "clip": ("global_norm", "per_tensor", "none"), "parallelism": ("jit", "pmap")}


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks enumerated fields and ranges up front, naming the field."""
    for field, choices in _CHOICES.items():
        value = config
        for part in field.split("."):
            value = value.get(part) if hasattr(value, "get") else None
        if value not in choices:
            raise ConfigError(f"config.{field}={value!r}; choose one of {list(choices)}.")
    for field in ("batch_size", "max_len", "num_epochs", "eval_batch_size", "eval_chunk_len"):
        if not isinstance(config.get(field), int) or config.get(field) <= 0:
            raise ConfigError(f"config.{field} must be a positive int, got {config.get(field)!r}.")
    for field in ("lambda_r", "lambda_w1", "lambda_w2"):
        if config.loss.get(field, 0.0) < 0:
            raise ConfigError(f"config.loss.{field} must be >= 0, got {config.loss.get(field)}.")


# ----------------------------------------------------------------------------------------- optimiser
def clip_by_tensor_norm(max_norm: float) -> optax.GradientTransformation:
    """Clips every gradient tensor to L2 norm ``max_norm`` separately (TF ``clip_by_norm`` per variable)."""
    def clip(updates, params=None):
        del params
        def one(g):
            norm = jnp.sqrt(jnp.sum(jnp.square(g)))
            return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
        return jax.tree.map(one, updates)
    return optax.stateless(clip)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with ``config.clip`` in {'global_norm', 'per_tensor', 'none'} at ``config.clip_norm``."""
    clips = {"global_norm": lambda: optax.clip_by_global_norm(config.clip_norm),
             "per_tensor": lambda: clip_by_tensor_norm(config.clip_norm),
             "none": optax.identity}
    if config.clip not in clips:
        raise ValueError(f"config.clip must be one of {sorted(clips)}, got {config.clip!r}")
    return optax.chain(clips[config.clip](), optax.adam(config.learning_rate))


def lambdas_from(config: ml_collections.ConfigDict) -> dict[str, float]:
    return {"r": float(config.loss.lambda_r), "w1": float(config.loss.lambda_w1),
            "w2": float(config.loss.lambda_w2)}


def create_train_state(rng: jax.Array, model_config: Any, config: ml_collections.ConfigDict) -> TrainState:
    model = dkt_jax.model_from_config(model_config)
    params = dkt_jax.init(rng, model_config)
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(config))


# ----------------------------------------------------------------------------------------- steps
def loss_fn(params: Any, batch: Mapping[str, jax.Array], rng: jax.Array, *, model: Any,
            lambdas: Mapping[str, float], axis_name: str | None = None) -> tuple[jax.Array, dict]:
    """Scalar objective for one (local) batch. With ``axis_name`` the counts are pooled over devices,
    so ``psum`` of this loss (and of its gradient) equals the single-device value."""
    _, logits = model.apply({"params": params}, batch["skills"], batch["correct"], batch["lengths"],
                            train=True, return_carry=False, rngs={"dropout": rng})
    terms = losses.loss_terms(logits, batch["skills"], batch["correct"], batch["lengths"])
    if axis_name is not None:
        terms = {k: (s, jax.lax.psum(n, axis_name)) for k, (s, n) in terms.items()}
    return losses.combine(terms, lambdas)


def train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, *, model: Any,
               lambdas: Mapping[str, float], axis_name: str | None = None) -> tuple[TrainState, dict]:
    """One Adam step. Pure; ``axis_name`` set means it runs under ``pmap`` over that axis."""
    step_rng = jax.random.fold_in(rng, state.step)
    if axis_name is not None:
        step_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(axis_name))
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, means), grads = grad_fn(state.params, batch, step_rng, model=model, lambdas=lambdas,
                                   axis_name=axis_name)
    if axis_name is not None:  # pmap: per-device partial sums -> global values
        loss, means, grads = jax.lax.psum((loss, means, grads), axis_name)
    new_state = state.apply_gradients(grads=grads)
    out = {"loss": loss, "grad_norm": optax.global_norm(grads), **means}
    return new_state, out


def make_train_step(model: Any, lambdas: Mapping[str, float], parallelism: str,
                    mesh: jax.sharding.Mesh) -> Callable:
    """``step(state, host_batch, rng) -> (state, metrics)`` for ``parallelism`` 'jit' or 'pmap'.

    'jit': state replicated, batch split over the mesh's ``data`` axis (NamedSharding); XLA inserts the
    gradient all-reduce. 'pmap': state must be replicated with a leading device axis
    (:func:`to_pmap_state`); the batch is reshaped to (devices, local, ...).
    """
    if parallelism == "jit":
        jitted = _jitted_train_step(model, tuple(sorted(lambdas.items())), mesh)
        def step(state, batch, rng):
            return jitted(state, mesh_lib.shard_batch(batch, mesh), rng)
        return step
    if parallelism == "pmap":
        pmapped = jax.pmap(functools.partial(train_step, model=model, lambdas=lambdas, axis_name="data"),
                           axis_name="data", in_axes=(0, 0, None), donate_argnums=0,
                           devices=list(mesh.devices.flat))
        n = mesh.devices.size
        def step(state, batch, rng):
            batch = jax.tree.map(lambda x: np.asarray(x).reshape((n, -1) + x.shape[1:]), batch)
            state, out = pmapped(state, batch, rng)
            return state, jax.tree.map(lambda x: x[0], out)
        return step
    raise ValueError(f"config.parallelism must be 'jit' or 'pmap', got {parallelism!r}")


@functools.lru_cache(maxsize=8)
def _jitted_train_step(model: Any, lambdas: tuple, mesh: jax.sharding.Mesh) -> Callable:
    """One compiled step per (model, lambdas, mesh): repeated runs in one process reuse it."""
    repl = mesh_lib.replicated(mesh)
    return jax.jit(functools.partial(train_step, model=model, lambdas=dict(lambdas)), donate_argnums=0,
                   in_shardings=(repl, mesh_lib.data_sharded(mesh), repl), out_shardings=(repl, repl))


def to_pmap_state(state: Any, mesh: jax.sharding.Mesh) -> Any:
    return flax.jax_utils.replicate(state, devices=list(mesh.devices.flat))


def from_pmap_state(state: Any) -> Any:
    return jax.tree.map(lambda x: x[0], state)


# ----------------------------------------------------------------------------------------- evaluation
_predict_chunk = jax.jit(dkt_jax.knowledge_states)


_batch_statistics = jax.jit(metrics.batch_statistics)


def evaluate(params: Any, seqs: ip.Sequences, num_skills: int, *, batch_size: int, chunk_len: int,
             mesh: jax.sharding.Mesh | None = None, desc: str = "eval") -> dict[str, float]:
    """dkt_spec §2.6 metrics of ``params`` on full-length ``seqs`` (chunked inference with carried state)."""
    acc = metrics.MetricAccumulator(num_skills)
    n_batches = -(-len(seqs) // batch_size)
    for batch in progress(ip.eval_batches(seqs, batch_size, chunk_len), total=n_batches, desc=desc,
                          leave=False):
        arrays = {k: batch[k] for k in ("skills", "correct", "lengths")}
        if mesh is not None and batch_size % mesh.devices.size == 0:
            arrays = mesh_lib.shard_batch(arrays, mesh)
        t = batch["skills"].shape[1]
        chunk = min(chunk_len, t)
        carry, outs = None, []
        for i in range(t // chunk):
            sl = slice(i * chunk, (i + 1) * chunk)
            lengths = jnp.clip(arrays["lengths"] - i * chunk, 0, chunk)
            states, carry = _predict_chunk(params, arrays["skills"][:, sl], arrays["correct"][:, sl],
                                           lengths, carry)
            outs.append(states)
        probs = jnp.concatenate(outs, axis=1)
        acc.add(_batch_statistics(probs, arrays["skills"], arrays["correct"], arrays["lengths"]))
    return acc.result()


def reference_aucs(seqs: ip.Sequences) -> dict[str, float]:
    """Oracle / Bayes-optimal AUC over the same next-step targets, from ``p_true`` / ``p_bayes`` extras."""
    out = {}
    if not len(seqs):
        return out
    labels = np.concatenate([c[1:] for c in seqs.correct])
    for name, key in (("oracle_auc", "p_true"), ("bayes_auc", "p_bayes")):
        if key in seqs.extras:
            scores = np.concatenate([np.asarray(p)[1:] for p in seqs.extras[key]])
            out[name] = metrics.roc_auc(labels, scores)
    return out


# ----------------------------------------------------------------------------------------- main loop
def _checkpoint_payload(state: TrainState, best_params: Any) -> dict:
    return {"state": state, "best_params": best_params}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       sources: Mapping[str, Any] | None = None) -> dict:
    """Trains with early stopping on a validation split, then evaluates the best epoch on test.

    ``sources`` (optional, for tests/notebooks) bypasses TFDS: ``{'train': src, 'test': src,
    'num_skills': M}`` with random-access sources of ``{'skills', 'correct'}`` dicts. Returns the
    results dict also written to ``<workdir>/results.json``.
    """
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked private copy
    validate_config(config)
    mesh_lib.maybe_initialize_distributed()
    wd = Workdir(workdir).make()
    data = data_lib.load_splits(config, wd.root, sources)
    config.model.num_skills = data.num_skills
    write_config(wd, config)
    mesh = mesh_lib.make_data_mesh(config.get("num_devices") or None)
    logging.info(mesh_lib.describe(mesh))
    mesh_lib.check_global_batch(config.batch_size, mesh)

    train_seqs, val_seqs = ip.split_train_validation(data.train, config.val_fraction, config.seed)
    chunks = ip.make_chunks(train_seqs, config.max_len, config.min_len)
    ds, steps_per_epoch = ip.train_dataset(chunks, config.batch_size, config.seed)
    data_iter = iter(ds)
    logging.info("train %d students -> %d chunks of <= %d steps (%d steps/epoch); validation %d; test %d",
                 len(train_seqs), len(chunks), config.max_len, steps_per_epoch, len(val_seqs), len(data.test))

    model = dkt_jax.model_from_config(config.model)
    rng_init, rng_train = jax.random.split(jax.random.key(config.seed))
    state = create_train_state(rng_init, config.model, config)
    best_params = state.params
    meta = {"epoch": 0, "best_epoch": 0, "best_val_auc": -1.0, "bad_epochs": 0, "stopped": False,
            "history": []}
    ckpt = checkpointing.Checkpointer(wd.checkpoints, max_to_keep=config.keep_checkpoints)
    restored = ckpt.restore_latest(_checkpoint_payload(state, best_params), mesh=mesh, data_iter=data_iter)
    if restored is not None:
        state, best_params = restored.state["state"], restored.state["best_params"]
        meta, data_iter = {**meta, **restored.meta}, restored.data_iter
        logging.info("Resumed from step %d (epoch %d).", restored.step, meta["epoch"])
    else:
        state, best_params = mesh_lib.replicate((state, best_params), mesh)

    eval_kw = dict(batch_size=config.eval_batch_size, chunk_len=config.eval_chunk_len, mesh=mesh)
    lambdas = lambdas_from(config)
    step_fn = make_train_step(model, lambdas, config.parallelism, mesh)
    if config.parallelism == "pmap":
        state = to_pmap_state(jax.device_get(state), mesh)
    writer = MetricWriter(wd.root)
    t_train = time.time()
    epoch = meta["epoch"]
    while epoch < config.num_epochs and not meta["stopped"]:
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.num_epochs}", leave=False)
        sums: dict[str, float] = {}
        for _ in bar:
            state, out = step_fn(state, next(data_iter), rng_train)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
        train_out = {k: float(v) / steps_per_epoch for k, v in jax.device_get(sums).items()}
        plain = from_pmap_state(state) if config.parallelism == "pmap" else state
        epoch += 1
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in train_out.items()}}
        if len(val_seqs):
            val = evaluate(plain.params, val_seqs, data.num_skills, desc="validation", **eval_kw)
            row.update({f"val_{k}": v for k, v in val.items()})
            if val["auc_n"] > meta["best_val_auc"] + config.min_delta:
                meta.update(best_val_auc=val["auc_n"], best_epoch=epoch, bad_epochs=0)
                best_params = jax.tree.map(jnp.copy, plain.params)  # the next step donates state
            else:
                meta["bad_epochs"] += 1
            meta["stopped"] = meta["bad_epochs"] >= config.patience
        else:  # no validation split: keep the last epoch
            meta.update(best_epoch=epoch)
            best_params = jax.tree.map(jnp.copy, plain.params)
        meta["epoch"] = epoch
        meta["history"].append(row)
        writer.write_scalars(int(plain.step), row)
        logging.info("epoch %d: %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in row.items()
                                                     if isinstance(v, float)))
        ckpt.save(int(plain.step), _checkpoint_payload(plain, best_params), data_iter=data_iter, meta=meta,
                  force=True)
    ckpt.close()
    train_time = time.time() - t_train

    test_seqs = data.test if config.get("evaluate_test", True) else data.test.subset([])
    test = (evaluate(best_params, test_seqs, data.num_skills, desc="test", **eval_kw) if len(test_seqs)
            else {k: float("nan") for k in metrics.METRIC_NAMES} | {"num_targets": 0})
    results = {"test": test, **reference_aucs(test_seqs), "best_epoch": meta["best_epoch"],
               "epochs_run": meta["epoch"], "best_val_auc_n": meta["best_val_auc"],
               "early_stopped": bool(meta["stopped"]), "train_time_s_this_run": train_time,
               "num_skills": data.num_skills, "dataset": config.dataset,
               "lambdas": lambdas, "num_train_students": len(train_seqs),
               "num_val_students": len(val_seqs), "num_test_students": len(test_seqs),
               "mesh": mesh_lib.describe(mesh), "parallelism": config.parallelism}
    writer.write_scalars(int(meta["epoch"]), {f"test_{k}": v for k, v in test.items()})
    writer.close()
    if jax.process_index() == 0:
        with open(wd.path(PARAMS_FILE), "wb") as f:
            f.write(flax.serialization.to_bytes(jax.device_get(best_params)))
        with open(wd.path("results.json"), "w", encoding="utf-8") as f:
            json.dump({**results, "history": meta["history"]}, f, indent=2, default=float)
        with open(wd.path("report.md"), "w", encoding="utf-8") as f:
            f.write(results_table(results) + "\n")
        plots.write_plots(wd, best_params, test_seqs, meta["history"], config)
    return results


def results_table(results: Mapping[str, Any]) -> str:
    """Markdown table of the test metrics, plus oracle / Bayes-optimal AUC rows when known."""
    t = results["test"]
    lines = ["| metric | value |", "|---|---|"]
    for key, label in (("auc_n", "AUC(N)"), ("auc_c", "AUC(C)"), ("w1", "w1"), ("w2", "w2"), ("m1", "m1"),
                       ("m2", "m2")):
        lines.append(f"| {label} | {t[key]:.4f} |")
    for key, label in (("oracle_auc", "oracle AUC (true p)"), ("bayes_auc", "Bayes-optimal AUC")):
        if key in results:
            lines.append(f"| {label} | {results[key]:.4f} |")
    lines.append(f"| test targets | {t['num_targets']} |")
    return "\n".join(lines)


def load_params(workdir: str) -> tuple[Any, ml_collections.ConfigDict]:
    """``(params, model_config)`` of the best epoch saved by :func:`train_and_evaluate` in ``workdir``."""
    cfg_path, params_path = os.path.join(workdir, "config.json"), os.path.join(workdir, PARAMS_FILE)
    for p in (cfg_path, params_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p} not found: is {workdir!r} a finished launch.dkt workdir?")
    with open(cfg_path, encoding="utf-8") as f:
        model_config = ml_collections.ConfigDict(json.load(f)["config"]["model"])
    template = dkt_jax.init(jax.random.key(0), model_config)
    with open(params_path, "rb") as f:
        params = flax.serialization.from_bytes(template, f.read())
    return params, model_config
