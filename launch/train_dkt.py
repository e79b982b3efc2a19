"""DKT / DKT+ training loop: data -> chunks -> jitted steps (NamedSharding or pmap) -> early stopping on a
validation split of the training students -> test metrics of the best epoch -> report.

    results = train_and_evaluate(config, workdir)      # resumes when workdir has checkpoints
    params, model_config = load_params(workdir)

Checkpoints (orbax) hold the train state, the best parameters so far and the grain iterator, so a re-run
continues bitwise where the last one stopped.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

import dkt_jax
from datasets import prepare, registry
from dkt_jax import input_pipeline as ip
from dkt_jax import metrics, report, train_steps
from launch.runtime import checkpointing, mesh as mesh_lib
from launch.runtime.cli import ConfigError
from launch.runtime.guard import DivergenceGuard
from launch.runtime.metric_writers import MetricWriter
from launch.runtime.progress import progress, summary
from launch.runtime.workdir import Workdir, write_config

PARAMS_FILE = "best_params.msgpack"
SUMMARY_KEYS = ("train_loss", "val_auc_n", "val_auc_c", "val_w1", "val_w2")  # the one line per epoch


_CHOICES = {"model.encoding": ("onehot", "embedding", "reference_tf"), "model.lstm_impl": ("fused", "hoisted", "flax"),
            "clip": ("global_norm", "per_tensor", "none"), "parallelism": ("jit", "pmap"),
            "packing": ("auto", "on", "off")}
PACK_MIN_GAIN = 1.1  # packing="auto" packs when it cuts the training rows (the LSTM work) by this factor


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
    for field in ("model.hidden_size", "model.embedding_dim", "min_len", "patience", "keep_checkpoints"):
        value = config
        for part in field.split("."):
            value = value.get(part)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"config.{field} must be a positive int, got {value!r}.")
    ranges = {"learning_rate": (config.learning_rate, 0.0, math.inf, "> 0"),
              "clip_norm": (config.clip_norm, 0.0, math.inf, "> 0"),
              "max_loss": (config.get("max_loss", 1.0), 0.0, math.inf, "> 0"),
              "model.dropout_rate": (config.model.dropout_rate, -1e-12, 1.0, "in [0, 1)"),
              "val_fraction": (config.val_fraction, -1e-12, 1.0, "in [0, 1)"),
              **{f"loss.{k}": (config.loss.get(k, 0.0), -1e-12, math.inf, ">= 0")
                 for k in ("lambda_r", "lambda_w1", "lambda_w2")}}
    for field, (value, low, high, text) in ranges.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low < value < high):
            raise ConfigError(f"config.{field} must be {text}, got {value!r}.")


def load_data(config: ml_collections.ConfigDict, workdir: str) -> ip.Splits:
    """Builds (generating Simulated-5 first when it is the dataset and has no release yet) and reads the
    train/test splits of ``config.dataset``."""
    base, _ = registry.split_name(config.dataset)
    if base not in registry.BUILDER_MODULES:
        raise registry.DatasetError(f"Unknown dataset {config.dataset!r} in config.dataset. "
                                    f"Known: {', '.join(sorted(registry.BUILDER_MODULES))}.")
    manual_dir = config.get("manual_dir")
    generate = None
    if base == "simulated5":
        from datasets.simulated5 import generate as generate_simulated5
        manual_dir = manual_dir or os.path.join(workdir, "simulated5_raw")
        generate = functools.partial(generate_simulated5, **dict(config.get("simulated5", {}) or {}))
    builder = prepare.prepare_dataset(config.dataset, manual_dir=manual_dir,
                                      data_dir=config.get("data_dir") or os.path.join(workdir, "tfds"),
                                      generate=generate)
    return ip.read_splits(builder, config.get("train_split", "train"), config.get("test_split", "test"))


def training_rows(chunks: ip.ChunkTable, config: ml_collections.ConfigDict) -> ip.ChunkTable | ip.PackedTable:
    """The training rows: ``chunks`` or, per ``config.packing``, several chunks packed per row.

    'auto' packs (with ``lstm_impl='fused'``) when it cuts the rows, i.e. the LSTM work per epoch, by
    ``PACK_MIN_GAIN`` or more; 'on' always packs; 'off' never does.
    """
    mode = config.get("packing", "off")
    if mode == "off" or (mode == "auto" and config.model.lstm_impl != "fused"):
        return chunks
    if config.model.lstm_impl != "fused":
        raise ConfigError("config.packing='on' needs config.model.lstm_impl='fused'.")
    packed = ip.pack_chunks(chunks, config.seed)
    if mode == "auto" and len(packed) * PACK_MIN_GAIN > len(chunks):
        return chunks
    return packed


def _checkpoint_payload(state: train_steps.TrainState, best_params: Any) -> dict:
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
    data = ip.splits_from_sources(dict(sources)) if sources is not None else load_data(config, wd.root)
    config.model.num_skills = data.num_skills
    mesh = mesh_lib.make_data_mesh(config.get("num_devices") or None)
    logging.info(mesh_lib.describe(mesh))
    mesh_lib.check_global_batch(config.batch_size, mesh)

    # Data: validation students carved from train, pyKT chunks, a checkpointable grain iterator.
    train_seqs, val_seqs = ip.split_train_validation(data.train, config.val_fraction, config.seed)
    chunks = ip.make_chunks(train_seqs, config.max_len, config.min_len)
    rows = training_rows(chunks, config)
    ds, steps_per_epoch = ip.train_dataset(rows, config.batch_size, config.seed)
    data_iter = iter(ds)
    packed = isinstance(rows, ip.PackedTable)
    logging.info("train %d students -> %d chunks of <= %d steps (%.0f%% real steps)%s (%d steps/epoch); "
                 "validation %d; test %d", len(train_seqs), len(chunks), config.max_len,
                 100 * ip.fill_ratio(chunks), f" packed into {len(rows)} rows ({100 * ip.fill_ratio(rows):.0f}%)"
                 if packed else "", steps_per_epoch, len(val_seqs), len(data.test))

    # State: fresh, or restored with the best parameters and the iterator.
    model = dkt_jax.model_from_config(config.model)
    rng_init, rng_train = jax.random.split(jax.random.key(config.seed))
    state = train_steps.create_train_state(rng_init, config.model, config)
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
    write_config(wd, config)  # after the restore: a checkpoint of another model leaves the workdir as it was

    # Steps: jit over the mesh (batch split along 'data'), or pmap.
    lambdas = train_steps.lambdas_from(config)
    if config.parallelism == "pmap":
        devices = list(mesh.devices.flat)
        step_fn = train_steps.make_pmap_train_step(model, lambdas, devices)
        state = train_steps.to_pmap_state(jax.device_get(state), devices)
    else:
        jitted = train_steps.make_train_step(model, tuple(sorted(lambdas.items())), mesh)
        step_fn = lambda s, batch, rng: jitted(s, mesh_lib.shard_batch(batch, mesh), rng)  # noqa: E731
    # Evaluation: split over this process's mesh when there is one process; with several, every process
    # evaluates all sequences on its own copy of the parameters (mesh_lib.local_copy), so all agree.
    shard = None
    if jax.process_count() == 1 and config.eval_batch_size % mesh.devices.size == 0:
        shard = functools.partial(mesh_lib.shard_batch, mesh=mesh)
    eval_kw = dict(batch_size=config.eval_batch_size, chunk_len=config.eval_chunk_len, shard=shard)

    writer = MetricWriter(wd.root)
    t_train = time.time()
    epoch = meta["epoch"]
    guard = DivergenceGuard(config.max_loss)
    while epoch < config.num_epochs and not meta["stopped"]:
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.num_epochs}", leave=False)
        t_epoch = time.time()
        sums: dict[str, Any] = {}
        for i in bar:
            state, out = step_fn(state, next(data_iter), rng_train)
            guard.update(epoch * steps_per_epoch + i + 1, out)  # on device; read once per epoch
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
        guard.check()  # a diverged epoch is neither evaluated nor checkpointed
        sums = jax.device_get(mesh_lib.local_copy(sums))
        train_out = {k: float(v) / steps_per_epoch for k, v in sums.items()}
        epoch_s = time.time() - t_epoch  # after device_get: every step of the epoch has finished
        plain = train_steps.from_pmap_state(state) if config.parallelism == "pmap" else state
        epoch += 1
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in train_out.items()}, "train_epoch_s": epoch_s}
        if len(val_seqs):  # early stopping on validation AUC(N)
            val = train_steps.evaluate(mesh_lib.local_copy(plain.params), val_seqs, data.num_skills,
                                       desc="validation", **eval_kw)
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
        step = int(mesh_lib.local_copy(plain.step))
        writer.write_scalars(step, row)
        summary(f"epoch {epoch}/{config.num_epochs}: " + " ".join(
            f"{k}={v:.4f}" for k, v in row.items() if k in SUMMARY_KEYS and isinstance(v, float)))
        ckpt.save(step, _checkpoint_payload(plain, best_params), data_iter=data_iter, meta=meta,
                  force=True)
    ckpt.close()
    train_time = time.time() - t_train

    # Test metrics of the best epoch, and the report.
    test_seqs = data.test if config.get("evaluate_test", True) else data.test.subset([])
    best_local = mesh_lib.local_copy(best_params)
    test = (train_steps.evaluate(best_local, test_seqs, data.num_skills, desc="test", **eval_kw) if len(test_seqs)
            else {k: float("nan") for k in metrics.METRIC_NAMES} | {"num_targets": 0})
    results = {"test": test, **metrics.reference_aucs(test_seqs), "best_epoch": meta["best_epoch"],
               "epochs_run": meta["epoch"], "best_val_auc_n": meta["best_val_auc"],
               "early_stopped": bool(meta["stopped"]), "train_time_s_this_run": train_time,
               "num_skills": data.num_skills, "dataset": config.dataset,
               "lambdas": lambdas, "num_train_students": len(train_seqs),
               "num_val_students": len(val_seqs), "num_test_students": len(test_seqs),
               "mesh": mesh_lib.describe(mesh), "parallelism": config.parallelism,
               "packed": packed, "train_rows": len(rows), "train_chunks": len(chunks),
               "train_fill_ratio": ip.fill_ratio(rows), "steps_per_epoch": steps_per_epoch}
    writer.write_scalars(int(meta["epoch"]), {f"test_{k}": v for k, v in test.items()})
    writer.close()
    if jax.process_index() == 0:
        with open(wd.path(PARAMS_FILE), "wb") as f:
            f.write(flax.serialization.to_bytes(jax.device_get(best_local)))
        with open(wd.path("results.json"), "w", encoding="utf-8") as f:
            json.dump({**results, "history": meta["history"]}, f, indent=2, default=float)
        with open(wd.path("report.md"), "w", encoding="utf-8") as f:
            f.write(report.results_table(results) + "\n")
        report.write_plots(wd.plots, best_local, test_seqs, meta["history"], config)
    return results


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
