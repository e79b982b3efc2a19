"""FDP training with leave-one-subject-out (LOSO) evaluation.

    results = train_and_evaluate(config, workdir)   # python -m launch.fdp --config=... --workdir=...

For every subject of the protocol: a fresh initialisation trained on the other subjects, a model chosen
*without* the held-out subject (last step of a fixed schedule, or best ``selection_metric`` on a validation
split of training subjects), its predictions on the held-out subject. Then every fold's predictions are
pooled and scored once; results.json, report.md and plots/*.png go to the workdir.

Resumable: a finished fold has ``folds/<subject>/predictions.npz`` and is not retrained; an interrupted fold
continues from ``folds/<subject>/checkpoints`` (train state + grain iterator + the best step so far). The
step functions are compiled once (same shapes in every fold; the last eval batch is padded and masked) and
reused by every fold.

``select_on_test=True`` reproduces the official code's leaky choice of each fold's best step on the test
subject; the report labels such results as leaky.

``config.seeds`` (e.g. ``--config.seeds=0,1,2``) runs the whole protocol once per seed into ``<workdir>/seed_<s>/``
(``train_and_evaluate_seeds``) and writes the mean ± std over seeds into ``<workdir>``; empty = one run of
``config.seed`` in ``<workdir>`` itself.
"""
from __future__ import annotations

import functools
import gc
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from datasets import prepare, registry
from fdp_jax import configs, input_pipeline, metrics, models, report, train_steps
from launch.runtime import checkpointing, mesh as mesh_lib, metric_writers, progress, workdir as workdir_lib
from launch.runtime import host_memory
from launch.runtime.cli import ConfigError
from launch.runtime.guard import DEFAULT_MAX_LOSS, DivergenceGuard

Batch = Mapping[str, np.ndarray]
StepFn = Callable[..., Any]


# ------------------------------------------------------------------------------------------ data
def load_data(config: ml_collections.ConfigDict, workdir: str) -> tuple[input_pipeline.ClipTable, dict]:
    """All clips of ``config.data.name`` and ``{'subjects', 'num_classes', 'class_names'}``.

    Builds the dataset into ``data.data_dir`` ('' = <workdir>/tfds) from ``data.manual_dir`` unless it is built
    already; with ``data.synthetic.enabled`` and no ``manual_dir``, a synthetic release is generated first into
    ``data.synthetic.out_dir`` ('' = <workdir>/synthetic/<dataset>) unless that folder holds one.
    """
    data = config.data
    dataset = registry.split_name(data.name)[0]
    manual_dir = data.get("manual_dir") or None
    synthetic = data.get("synthetic")
    generate = None
    if not manual_dir and synthetic is not None and synthetic.enabled:
        from datasets import synthetic_me

        manual_dir = synthetic.get("out_dir") or os.path.join(workdir, "synthetic", dataset)
        generate = functools.partial(synthetic_me.generate, dataset=dataset, num_subjects=synthetic.num_subjects,
                                     clips_per_subject=synthetic.clips_per_subject, seed=synthetic.seed,
                                     show_progress=True, **dict(synthetic.get("generator_kwargs") or {}))
    data_dir = data.get("data_dir") or os.path.join(workdir, "tfds")
    try:
        prepare.prepare_dataset(data.name, manual_dir=manual_dir, data_dir=data_dir, generate=generate)
    except registry.DatasetError as e:
        if manual_dir:
            raise
        raise registry.DatasetError(f"{e} (FDP configs: --config.data.manual_dir=PATH, or "
                                    "--config.data.synthetic.enabled=True for a synthetic release)") from None
    return input_pipeline.load_dataset(data.name, data_dir)


# ------------------------------------------------------------------------------------------ model
def compute_dtype(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> str:
    """``config.compute_dtype``; 'auto' = float32 when the mesh's devices are CPUs, else bfloat16."""
    wanted = config.get("compute_dtype", "auto")
    if wanted != "auto":
        return wanted
    return "float32" if mesh.devices.flat[0].platform == "cpu" else "bfloat16"


def make_init_state(config: ml_collections.ConfigDict, model_config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh) -> Callable[[jax.Array], train_steps.TrainState]:
    """``init_state(rng)``: a fresh TrainState replicated on ``mesh``.

    Every state shares one template's static fields (apply_fn, tx), which are part of the jit cache key: the
    compiled steps are shared by all folds.
    """
    spec = models.build_model(model_config).spec
    init_variables = functools.partial(models.init_variables, spec=spec)  # one batched draw (fdp_jax.initializers)
    opt = config.optimizer
    template = jax.eval_shape(lambda: train_steps.create_train_state(
        jax.random.key(0), model_config, optimizer=opt.name,
        learning_rate=train_steps.learning_rate_schedule(opt, config.num_steps),
        weight_decay=opt.weight_decay, variables=init_variables(jax.random.key(0))))

    def init_state(rng: jax.Array) -> train_steps.TrainState:
        variables = init_variables(rng)
        state = template.replace(step=0, params=variables["params"], batch_stats=variables["batch_stats"],
                                 opt_state=template.tx.init(variables["params"]))
        return mesh_lib.replicate(state, mesh)

    return init_state


def make_steps(config: ml_collections.ConfigDict, model_config: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh) -> tuple[Callable, StepFn, StepFn | None, StepFn]:
    """(init_state, train_step, frozen_bn_step or None, eval_step) of ``config``: compiled once, used by every fold."""
    step_kwargs = dict(ce_weight=config.loss.ce_weight, mse_weight=config.loss.di_weight,
                       donate=config.get("donate_state", True))
    frozen_bn_step = (train_steps.make_train_step(mesh, bn_train=False, **step_kwargs)
                      if config.get("eval_mode_after_first_epoch", False) else None)
    train_step = train_steps.make_train_step(mesh, bn_train=True, **step_kwargs)
    return make_init_state(config, model_config, mesh), train_step, frozen_bn_step, train_steps.make_eval_step(mesh)


def fold_key(seed: int, fold_index: int) -> jax.Array:
    """The PRNG key of fold ``fold_index`` (its fresh init and per-step rngs derive from it)."""
    return jax.random.fold_in(jax.random.key(seed), fold_index)


def selection_mode(config: ml_collections.ConfigDict) -> str:
    """'test' (leaky, official), 'val' (best on a validation split of training subjects) or 'last'."""
    if config.get("select_on_test", False):
        return "test"
    return "val" if config.data.get("validation_subjects", 0) else "last"


# ------------------------------------------------------------------------------------------ predict
def _to_host(x: Any) -> np.ndarray:
    """A global (possibly multi-process) array or a per-process host array as one host numpy array."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def predict(eval_step: StepFn, state: Any, batches: Sequence[Batch], mesh: jax.sharding.Mesh) -> dict[str, np.ndarray]:
    """``eval_step`` over padded batches; returns unpadded 'logits' (N, C), 'predictions' (N,), 'labels' (N,),
    'di_pred' and 'di_target' (N, H, W), gathered to the host (all processes)."""
    out: dict[str, list] = {"logits": [], "labels": [], "di_pred": [], "di_target": []}
    for batch in batches:
        outputs = eval_step(state, mesh_lib.shard_batch(batch, mesh))
        keep = _to_host(batch["mask"]) > 0
        di_target = _to_host(batch["di_target"]).astype(np.float32)
        out["logits"].append(_to_host(outputs["logits"]).astype(np.float32)[keep])
        out["di_pred"].append(_to_host(outputs["di_pred"]).astype(np.float32).reshape(di_target.shape)[keep])
        out["labels"].append(_to_host(batch["label"])[keep])
        out["di_target"].append(di_target[keep])
    result = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in out.items()}
    result["labels"] = result["labels"].astype(np.int64)
    result["predictions"] = (np.argmax(result["logits"], axis=-1).astype(np.int64) if len(result["logits"])
                             else np.zeros((0,), np.int64))
    return result


def _save_npz(path: str, **arrays: Any) -> None:
    """Atomic ``np.savez``, by process 0 only (every process holds the same gathered arrays)."""
    if jax.process_index() != 0:
        return
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ one fold
def train_fold(config: ml_collections.ConfigDict, fold: input_pipeline.Fold, fold_dir: str, fold_index: int, *,
               init_state: Callable[[jax.Array], Any], train_step: StepFn, frozen_bn_step: StepFn | None,
               eval_step: StepFn, mesh: jax.sharding.Mesh,
               writer: metric_writers.MetricWriter) -> dict[str, np.ndarray]:
    """Trains one fold (resuming from ``fold_dir``/checkpoints) and returns the test outputs of its selected step
    (see ``predict``) plus 'step'."""
    subject = fold.info["test_subject"]
    num_steps = int(config.num_steps)
    steps_per_epoch = int(fold.info["steps_per_epoch"])
    eval_every = int(config.eval_every) if config.eval_every > 0 else steps_per_epoch
    mode = selection_mode(config)
    init_key, step_key = jax.random.split(fold_key(config.seed, fold_index))
    state = init_state(init_key)
    train_iter = fold.train_iter
    candidate: dict | None = None  # the best step so far: its step, score and test outputs
    start = 0
    ckpt = checkpointing.Checkpointer(os.path.join(fold_dir, "checkpoints"), max_to_keep=2,
                                      async_save=config.get("async_checkpointing", True))
    try:
        restored = ckpt.restore_latest(state, mesh=mesh, data_iter=train_iter)
        if restored is not None:
            state, start = restored.state, int(restored.meta["step"])
            train_iter = restored.data_iter if restored.data_iter is not None else train_iter
            logging.info("Fold %s: resumed at step %d.", subject, start)
            best = restored.meta.get("candidate_step")  # the best step as of that checkpoint
            if best is not None:
                candidate = dict(np.load(os.path.join(fold_dir, f"candidate_step{best}.npz")))
        bar = progress.progress(total=num_steps, initial=start, desc=f"fold {subject}", leave=False, unit="step")
        guard = DivergenceGuard(config.get("max_loss", DEFAULT_MAX_LOSS), where=f"fold {subject}")
        for step in range(start, num_steps):
            batch = mesh_lib.shard_batch(next(train_iter), mesh)
            # Official quirk: model.eval() is never undone, so epochs 2+ train with BN frozen.
            step_fn = frozen_bn_step if frozen_bn_step is not None and step >= steps_per_epoch else train_step
            state, step_metrics = step_fn(state, batch, jax.random.fold_in(step_key, step))
            done = step + 1
            guard.update(done, step_metrics)  # on device; read at the logging / checkpoint cadence
            if done % config.log_every == 0 or done == num_steps:
                guard.check()
                scalars = {k: float(v) for k, v in jax.device_get(mesh_lib.local_copy(dict(step_metrics))).items()}
                writer.write_scalars(done, scalars, prefix=f"fold_{subject}/train")
                bar.set_postfix(loss=f"{scalars.get('loss', float('nan')):.3f}")
            if mode != "last" and (done % eval_every == 0 or done == num_steps):
                scored = predict(eval_step, state, fold.test_batches if mode == "test" else fold.val_batches, mesh)
                score = metrics.selection_score(scored["labels"], scored["predictions"], fold.info["num_classes"],
                                                config.selection_metric)
                writer.write_scalars(done, {"score": score}, prefix=f"fold_{subject}/select")
                if candidate is None or score > float(candidate["score"]):
                    test = scored if mode == "test" else predict(eval_step, state, fold.test_batches, mesh)
                    candidate = {"step": np.int64(done), "score": np.float64(score), **test}
                    _save_npz(os.path.join(fold_dir, f"candidate_step{done}.npz"), **candidate)
            if done % config.checkpoint_every == 0 or done == num_steps:
                guard.check()  # only good states are saved
                # The final step is kept too: launch.fdp_predict loads it (with the fold's normalisation).
                meta = {"step": done, "subject": subject, "class_names": fold.info["class_names"],
                        "normalization": fold.info["normalization"]["train"],
                        "candidate_step": None if candidate is None else int(candidate["step"])}
                ckpt.save(done, state, data_iter=train_iter, meta=meta, force=done == num_steps)
            bar.update(1)
        bar.close()
    finally:
        ckpt.close()
        for it in (train_iter, fold.train_iter):  # stop grain's prefetch threads / workers now, not at GC
            if hasattr(it, "close"):
                it.close()
    if mode == "last":
        return {**predict(eval_step, state, fold.test_batches, mesh), "step": np.int64(num_steps)}
    return {k: v for k, v in candidate.items() if k != "score"}


# ------------------------------------------------------------------------------------------ LOSO
def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks types and ranges of the launch.fdp fields up front (``ConfigError`` names the field)."""
    if selection_mode(config) != "last" and config.selection_metric not in metrics.SELECTION_METRICS:
        raise ConfigError(f"config.selection_metric={config.selection_metric!r}; choose one of "
                          f"{metrics.SELECTION_METRICS}.")
    for field in ("batch_size", "num_steps", "log_every", "checkpoint_every"):
        if not isinstance(config.get(field), int) or config.get(field) <= 0:
            raise ConfigError(f"config.{field} must be a positive int, got {config.get(field)!r}.")
    if not isinstance(config.get("eval_every", 0), int) or config.get("eval_every", 0) < 0:
        raise ConfigError(f"config.eval_every must be an int >= 0, got {config.get('eval_every')!r}.")
    ranges = {"optimizer.learning_rate": (config.optimizer.learning_rate, 0.0, math.inf, "> 0"),
              "optimizer.weight_decay": (config.optimizer.get("weight_decay", 0.0), -1e-12, math.inf, ">= 0"),
              "loss.ce_weight": (config.loss.ce_weight, -1e-12, math.inf, ">= 0"),
              "loss.di_weight": (config.loss.di_weight, -1e-12, math.inf, ">= 0"),
              "max_loss": (config.get("max_loss", DEFAULT_MAX_LOSS), 0.0, math.inf, "> 0"),
              **{f"model.{k}": (config.model.get(k, 0.0), -1e-12, 1.0, "in [0, 1)")
                 for k in ("drop", "attn_drop", "path_dropout")}}
    for field, (value, low, high, text) in ranges.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low < value < high):
            raise ConfigError(f"config.{field} must be {text}, got {value!r}.")


def seed_list(config: ml_collections.ConfigDict) -> list[int]:
    """``config.seeds`` as a list of distinct ints >= 0; [] (the default) = the single ``config.seed`` run."""
    seeds = (config.get("seeds"),) if isinstance(config.get("seeds"), int) else tuple(config.get("seeds") or ())
    if not all(type(s) is int and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"config.seeds must be distinct ints >= 0 (e.g. --config.seeds=0,1,2), got {seeds!r}.")
    return list(seeds)


def train_and_evaluate_seeds(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The LOSO protocol once per seed of ``config.seeds`` into ``<workdir>/seed_<s>/`` (each a single-seed workdir,
    resumable), all on one data release; then results.json / report.md in ``workdir``: each seed's pooled metrics
    and their mean ± sample std (ddof=1) over seeds. Returns that aggregate dict."""
    started = time.time()
    seeds = seed_list(config)
    wd = workdir_lib.Workdir(os.path.abspath(workdir)).make()
    if os.path.isdir(wd.path("folds")):
        raise ConfigError(f"{wd.root} holds a single-seed run (folds/); give the several-seed run another --workdir.")
    base = ml_collections.ConfigDict(config.to_dict())
    base.data.data_dir = base.data.get("data_dir") or wd.path("tfds")  # '' = one build in <workdir>, every seed
    if base.data.get("synthetic") is not None:
        base.data.synthetic.out_dir = (base.data.synthetic.get("out_dir")
                                       or wd.path("synthetic", registry.split_name(base.data.name)[0]))
    runs, steps_cache = [], {}
    for seed in seeds:
        run_config = ml_collections.ConfigDict(dict(base.to_dict(), seed=seed, seeds=()))
        progress.summary(f"seed {seed} ({len(runs) + 1} of {len(seeds)}): {wd.path(f'seed_{seed}')}")
        runs.append(train_and_evaluate(run_config, wd.path(f"seed_{seed}"), steps_cache))
    per_seed = [{**metrics.seed_row(seed, run["pooled"]), "workdir": f"seed_{seed}"} for seed, run in zip(seeds, runs)]
    results = {key: runs[0][key] for key in ("dataset", "class_names", "subjects", "select_on_test", "selection")}
    results.update(seeds=seeds, per_seed=per_seed, summary=metrics.seed_summary(per_seed),
                   wall_time_s=time.time() - started, config=config.to_dict())
    if jax.process_index() != 0:
        return results
    return report.write_results(wd.root, results, workdir_lib.code_version(), render=report.render_seeds_markdown)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, steps_cache: dict | None = None) -> dict:
    """Runs the whole LOSO protocol of ``config`` in ``workdir`` (resuming what is there); returns the results
    dict also written to results.json. With ``config.seeds``: ``train_and_evaluate_seeds``. ``steps_cache``: a
    dict shared by several calls reuses the compiled steps of an equal model / optimiser / mesh."""
    if seed_list(config):
        return train_and_evaluate_seeds(config, workdir)
    started = time.time()
    config = ml_collections.ConfigDict(config.to_dict())  # unlocked private copy (num_classes is set below)
    validate_config(config)
    mode = selection_mode(config)
    mesh_lib.maybe_initialize_distributed()
    wd = workdir_lib.Workdir(os.path.abspath(workdir)).make()
    mesh = mesh_lib.make_data_mesh(config.get("num_devices") or None)
    logging.info("%s", mesh_lib.describe(mesh))
    mesh_lib.check_global_batch(config.batch_size, mesh)

    # Data: every clip in memory; folds are index sets over it.
    clips, dataset = load_data(config, wd.root)
    try:
        subjects = input_pipeline.protocol_subjects(dataset["subjects"], config.data.get("subjects") or None)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    num_classes = dataset["num_classes"]
    if config.model.get("num_classes") not in (None, num_classes):  # the data decide; config.json records it
        logging.warning("config.model.num_classes=%s but %s has %d classes: using %d.", config.model.num_classes,
                        config.data.name, num_classes, num_classes)
    config.model.num_classes = num_classes
    workdir_lib.write_config(wd, config)

    # Model and steps, compiled once for all folds.
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.num_classes = num_classes
    model_config.dtype = compute_dtype(config, mesh)
    model_config = configs.with_platform(model_config, mesh)  # the CPU-specific kernels only on CPU meshes
    key = (repr(model_config), repr(config.optimizer), repr(config.loss), config.num_steps,
           config.get("donate_state", True), config.get("eval_mode_after_first_epoch", False), mesh)
    steps_cache = {} if steps_cache is None else steps_cache  # the several-seed runs share their compiled steps
    if key not in steps_cache:
        steps_cache[key] = make_steps(config, model_config, mesh)
    init_state, train_step, frozen_bn_step, eval_step = steps_cache[key]

    # Folds: train, select, predict the held-out subject (finished folds are read back).
    writer = metric_writers.MetricWriter(wd.root)
    folds = []
    try:
        for fold_index, subject in enumerate(progress.progress(subjects, desc="LOSO folds", unit="fold")):
            pred_path = wd.path("folds", subject, "predictions.npz")
            if os.path.exists(pred_path):
                with np.load(pred_path) as stored:
                    outputs = dict(stored)
                logging.info("Fold %s already finished: keeping its predictions.", subject)
            else:
                fold = input_pipeline.make_fold(clips, subject, config.data, seed=config.seed,
                                                batch_size=config.batch_size)
                fold_started = time.time()
                os.makedirs(wd.path("folds", subject), exist_ok=True)
                outputs = train_fold(config, fold, wd.path("folds", subject), fold_index, init_state=init_state,
                                     train_step=train_step, frozen_bn_step=frozen_bn_step, eval_step=eval_step,
                                     mesh=mesh, writer=writer)
                # The "predict the training mean" DI baseline (Fetch's float32 / 255 targets), pooled like di_mse.
                train_di = clips.di_target[fold.info["train_indices"]].astype(np.float32) / 255.0
                outputs.update(metrics.mean_di_baseline(train_di, outputs["di_target"]))
                outputs["wall_time_s"] = np.float64(time.time() - fold_started)
                fold_scores = metrics.per_fold_rows([{"subject": subject, **outputs}], num_classes)[0]
                del fold, train_di  # the fold's batches and (closed) grain iterator: nothing per fold outlives it
                gc.collect()
                host_memory.release_free_host_memory()
                # Memory across folds, measured after everything a fold does (the first fold's scoring imports
                # sklearn, ~60 MB, once per process).
                outputs["host_rss_mb"] = np.float64(host_memory.current_rss_mb())
                _save_npz(pred_path, **outputs)
                writer.write_scalars(fold_index, {k: v for k, v in fold_scores.items() if k != "subject"},
                                     prefix=f"fold_{subject}/test")
                progress.summary(f"fold {subject}: {fold_scores['n']} test clips, accuracy "
                                 f"{fold_scores.get('accuracy', float('nan')):.3f}, macro F1 "
                                 f"{fold_scores.get('macro_f1', float('nan')):.3f} (step {int(outputs['step'])}), "
                                 f"{float(outputs['wall_time_s']):.0f} s")
            folds.append({"subject": subject, "selected_step": int(outputs["step"]), **outputs})
    finally:
        writer.close()

    # Pooled report.
    pooled = metrics.pooled_results(folds, num_classes)
    records = metric_writers.read_jsonl(wd.path("metrics.jsonl")) if os.path.exists(wd.path("metrics.jsonl")) else []
    plots = (report.write_plots(wd.root, pooled, dataset["class_names"], folds, records)
             if jax.process_index() == 0 else {})
    results = {
        "dataset": config.data.name,
        "class_names": list(dataset["class_names"]),
        "subjects": list(subjects),
        "select_on_test": mode == "test",
        "selection": {"last": f"last step of a fixed {config.num_steps}-step schedule",
                      "val": f"best {config.selection_metric} on {config.data.validation_subjects} validation "
                             "subjects drawn from the training subjects",
                      "test": f"best {config.selection_metric} on the TEST subject (leaky, official code)"}[mode],
        "pooled": pooled,
        "mesh": mesh_lib.describe(mesh),
        "wall_time_s": time.time() - started,
        "config": config.to_dict(),
        "plots": plots,
    }
    if jax.process_index() != 0:
        return results
    return report.write_results(wd.root, results, workdir_lib.code_version())
