"""FDP training with leave-one-subject-out (LOSO) evaluation.

``train_and_evaluate(config, workdir)`` runs, for every subject of the protocol, a fresh
initialisation trained on the other subjects, predicts the held-out subject with a model chosen
*without* it (last step of a fixed schedule, or best score on a validation split of training
subjects), pools every fold's predictions and writes results.json, report.md and PNGs.

Resumable: a fold that finished has ``folds/<subject>/predictions.npz`` and is not retrained; an
interrupted fold continues from ``folds/<subject>/checkpoints`` (train state + grain iterator).
The step functions are compiled once (same shapes in every fold; the last eval batch is padded and
masked) and reused across folds.

``select_on_test=True`` reproduces the official code's leaky choice of each fold's best epoch on
the test subject; the report labels such results as leaky.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from fdp_jax import metrics, report
from launch.runtime import checkpointing, mesh as mesh_lib, metric_writers, progress, workdir as workdir_lib

try:  # the model engineer's step functions (re-exported here, used by default)
    from fdp_jax.train_steps import create_train_state, eval_step, train_step  # noqa: F401
except ImportError:  # pragma: no cover - only while fdp_jax.train_steps has not landed
    create_train_state = eval_step = train_step = None

Batch = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class StepFns:
    """What the LOSO loop needs from the model: compiled once, reused by every fold.

    init(rng) -> state placed on the mesh; train(state, batch, rng) -> (state, scalar metrics);
    evaluate(state, batch) -> dict with 'logits' (B, C) and 'di_pred' (B, 64, 64);
    train_bn_frozen: the same step with BN in eval mode (official quirk, see config
    ``eval_mode_after_first_epoch``), or None.
    """
    init: Callable[[jax.Array], Any]
    train: Callable[[Any, Batch, jax.Array], tuple[Any, Mapping[str, Any]]]
    evaluate: Callable[[Any, Batch], Mapping[str, Any]]
    train_bn_frozen: Callable[[Any, Batch, jax.Array], tuple[Any, Mapping[str, Any]]] | None = None


@dataclasses.dataclass
class FoldData:
    """One fold's data: checkpointable infinite train iterator of per-process host batches, and
    fixed-size padded eval batches (``mask`` 0 marks padding) for the test subject and validation."""
    train_iter: Iterator[Batch]
    test_batches: list[Batch]
    val_batches: list[Batch] | None
    info: dict


@dataclasses.dataclass(frozen=True)
class LosoComponents:
    """Pluggable parts of the LOSO loop (the defaults use the project's builders, pipeline and model).

    prepare_source(config, wd) -> (random-access source, dataset dict with 'subjects', 'num_classes',
    'class_names'); make_step_fns(config, mesh, num_classes) -> StepFns;
    make_fold_data(source, test_subject, config, dataset) -> FoldData.
    """
    prepare_source: Callable[[ml_collections.ConfigDict, workdir_lib.Workdir], tuple[Any, dict]]
    make_step_fns: Callable[[ml_collections.ConfigDict, Any, int], StepFns]
    make_fold_data: Callable[[Any, str, ml_collections.ConfigDict, dict], FoldData]


def protocol_subjects(available: Sequence[str], requested: Sequence[str] | None) -> list[str]:
    """The LOSO subjects: ``requested`` (e.g. the official 25-subject CASME II list) or all available.

    A requested subject without clips is an error naming it (an empty fold cannot be scored).
    """
    available = sorted({str(s) for s in available})
    if not requested:
        return available
    missing = [str(s) for s in requested if str(s) not in available]
    if missing:
        raise ValueError(f"config.data.subjects lists subjects without clips in the dataset: {missing}; "
                         f"available: {available}")
    return [str(s) for s in requested]


def fold_key(seed: int, fold_index: int) -> jax.Array:
    """The PRNG key of fold ``fold_index`` (fresh init and per-step rngs derive from it)."""
    return jax.random.fold_in(jax.random.key(seed), fold_index)


def _to_host(x: Any) -> np.ndarray:
    """A global (possibly multi-process) array or a per-process host array as one host numpy array."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def predict(step_fns: StepFns, state: Any, batches: Sequence[Batch], mesh) -> dict[str, np.ndarray]:
    """Runs ``evaluate`` over padded batches; returns unpadded 'logits' (N, C), 'predictions' (N,),
    'labels' (N,), 'di_pred' and 'di_target' (N, H, W), gathered to the host (all processes)."""
    out: dict[str, list] = {"logits": [], "labels": [], "di_pred": [], "di_target": []}
    for batch in batches:
        outputs = step_fns.evaluate(state, mesh_lib.shard_batch(batch, mesh))
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


def selection_mode(config: ml_collections.ConfigDict) -> str:
    """'test' (leaky, official), 'val' (best on a validation split of training subjects) or 'last'."""
    if config.get("select_on_test", False):
        return "test"
    return "val" if config.data.get("validation_subjects", 0) else "last"


def selection_score(outputs: Mapping[str, np.ndarray], num_classes: int, metric: str) -> float:
    """Score used to pick a fold's step (higher is better): 'accuracy' (official) or 'uf1'."""
    if not len(outputs["labels"]):
        return float("nan")
    scores = metrics.classification_metrics(outputs["labels"], outputs["predictions"], num_classes)
    return scores[metric]


def _save_npz(path: str, **arrays) -> None:
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def run_fold(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir, subject: str, fold_index: int,
             data: FoldData, step_fns: StepFns, mesh, writer: metric_writers.MetricWriter,
             on_step: Callable[[str, int], None] | None = None) -> dict[str, np.ndarray]:
    """Trains one fold (resuming from its checkpoints) and returns its test outputs (see ``predict``)."""
    fold_dir = wd.path("folds", subject)
    os.makedirs(fold_dir, exist_ok=True)
    key = fold_key(config.seed, fold_index)
    init_key, step_key = jax.random.split(key)
    state = step_fns.init(init_key)
    mode = selection_mode(config)
    num_steps = int(config.num_steps)
    eval_every = int(config.eval_every) if config.eval_every > 0 else int(data.info["steps_per_epoch"])
    candidate: dict | None = None  # best step so far: its step, score and test outputs
    start = 0
    ckpt = checkpointing.Checkpointer(os.path.join(fold_dir, "checkpoints"), max_to_keep=2,
                                      async_save=config.get("async_checkpointing", True))
    try:
        restored = ckpt.restore_latest(state, mesh=mesh, data_iter=data.train_iter)
        if restored is not None:
            state, start = restored.state, int(restored.meta["step"])
            data.train_iter = restored.data_iter if restored.data_iter is not None else data.train_iter
            logging.info("Fold %s: resumed at step %d.", subject, start)
            if restored.meta.get("candidate_step") is not None:  # the best step as of that checkpoint
                candidate = dict(np.load(os.path.join(fold_dir, f"candidate_step{restored.meta['candidate_step']}.npz")))
        bar = progress.progress(total=num_steps, initial=start, desc=f"fold {subject}", leave=False,
                                unit="step")
        for step in range(start, num_steps):
            if on_step is not None:
                on_step(subject, step)
            batch = mesh_lib.shard_batch(next(data.train_iter), mesh)
            step_fn = step_fns.train
            if config.get("eval_mode_after_first_epoch", False) and step >= data.info["steps_per_epoch"]:
                step_fn = step_fns.train_bn_frozen  # official code: model.eval() is never undone
            state, step_metrics = step_fn(state, batch, jax.random.fold_in(step_key, step))
            done = step + 1
            if done % config.log_every == 0 or done == num_steps:
                scalars = {k: float(v) for k, v in jax.device_get(dict(step_metrics)).items()}
                writer.write_scalars(done, scalars, prefix=f"fold_{subject}/train")
                bar.set_postfix(loss=f"{scalars.get('loss', float('nan')):.3f}")
            if mode != "last" and (done % eval_every == 0 or done == num_steps):
                scored = predict(step_fns, state, data.test_batches if mode == "test" else data.val_batches, mesh)
                score = selection_score(scored, data.info["num_classes"], config.selection_metric)
                writer.write_scalars(done, {"score": score}, prefix=f"fold_{subject}/select")
                if candidate is None or score > float(candidate["score"]):
                    test = scored if mode == "test" else predict(step_fns, state, data.test_batches, mesh)
                    candidate = {"step": np.int64(done), "score": np.float64(score), **test}
                    _save_npz(os.path.join(fold_dir, f"candidate_step{done}.npz"), **candidate)
            if done % config.checkpoint_every == 0 or done == num_steps:
                # The final step is kept too: launch.fdp_predict loads it (with the fold's normalisation).
                meta = {"step": done, "subject": subject, "class_names": data.info.get("class_names"),
                        "normalization": (data.info.get("normalization") or {}).get("train"),
                        "candidate_step": None if candidate is None else int(candidate["step"])}
                ckpt.save(done, state, data_iter=data.train_iter, meta=meta, force=done == num_steps)
            bar.update(1)
        bar.close()
    finally:
        ckpt.close()
    if mode == "last":
        outputs = predict(step_fns, state, data.test_batches, mesh)
        outputs["step"] = np.int64(num_steps)
    else:
        outputs = {k: v for k, v in candidate.items() if k != "score"}
    return outputs


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       components: "LosoComponents | None" = None,
                       on_step: Callable[[str, int], None] | None = None) -> dict:
    """Runs the whole LOSO protocol of ``config`` in ``workdir`` and returns the results dict.

    ``components`` default to the project's data (TFDS builders + ``fdp_jax.input_pipeline``) and
    model (``fdp_jax.train_steps``); tests may pass stand-ins. ``on_step(subject, step)`` is called
    before every train step (e.g. to interrupt a run in a test).
    """
    components = components or default_components()
    started = time.time()
    mesh_lib.maybe_initialize_distributed()
    wd = workdir_lib.Workdir(os.path.abspath(workdir)).make()
    workdir_lib.write_config(wd, config)
    mesh = mesh_lib.make_data_mesh(config.get("num_devices") or None)
    logging.info("%s", mesh_lib.describe(mesh))
    mesh_lib.check_global_batch(config.batch_size, mesh)
    source, dataset = components.prepare_source(config, wd)
    subjects = protocol_subjects(dataset["subjects"], config.data.get("subjects") or None)
    num_classes = dataset["num_classes"]
    step_fns = components.make_step_fns(config, mesh, num_classes)
    writer = metric_writers.MetricWriter(wd.root)
    folds = []
    try:
        for fold_index, subject in enumerate(progress.progress(subjects, desc="LOSO folds", unit="fold")):
            pred_path = wd.path("folds", subject, "predictions.npz")
            if os.path.exists(pred_path):
                outputs = dict(np.load(pred_path))
                logging.info("Fold %s already finished: keeping its predictions.", subject)
            else:
                data = components.make_fold_data(source, subject, config, dataset)
                fold_started = time.time()
                outputs = run_fold(config, wd, subject, fold_index, data, step_fns, mesh, writer, on_step)
                outputs["wall_time_s"] = np.float64(time.time() - fold_started)
                _save_npz(pred_path, **outputs)
                fold_scores = metrics.per_fold_rows([{"subject": subject, **outputs}], num_classes)[0]
                writer.write_scalars(fold_index, {k: v for k, v in fold_scores.items() if k != "subject"},
                                     prefix=f"fold_{subject}/test")
            folds.append({"subject": subject, "selected_step": int(outputs["step"]), **outputs})
    finally:
        writer.close()
    pooled = metrics.pooled_results(folds, num_classes)
    records = metric_writers.read_jsonl(wd.path("metrics.jsonl")) if os.path.exists(wd.path("metrics.jsonl")) else []
    plots = report.write_plots(wd, pooled, dataset["class_names"], folds, records)
    mode = selection_mode(config)
    results = {
        "dataset": config.data.name,
        "class_names": list(dataset["class_names"]),
        "subjects": list(subjects),
        "select_on_test": mode == "test",
        "selection": {"last": f"last step of a fixed {config.num_steps}-step schedule",
                      "val": f"best {config.selection_metric} on {config.data.validation_subjects} validation "
                             "subjects drawn from the training subjects",
                      "test": f"best {config.selection_metric} on the TEST subject (leaky, official code)"}[mode],
        "pooled": {k: v for k, v in pooled.items()},
        "mesh": mesh_lib.describe(mesh),
        "wall_time_s": time.time() - started,
        "config": config.to_dict(),
        "plots": plots,
    }
    return report.write_results(wd, results)


# ------------------------------------------------------------------ default components (real data + FDP)
def _prepare_source(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir) -> tuple[Any, dict]:
    """Builds (if needed) and loads ``config.data.name``; generates a synthetic release first when
    ``config.data.synthetic.enabled`` and no ``manual_dir`` is given."""
    from datasets import registry
    from fdp_jax import input_pipeline

    data = config.data
    dataset_name = registry.split_name(data.name)[0]
    manual_dir = data.get("manual_dir") or ""
    synthetic = data.get("synthetic")
    if not manual_dir and synthetic is not None and synthetic.enabled:
        manual_dir = os.path.join(synthetic.get("out_dir") or wd.path("synthetic"), dataset_name)
        marker = os.path.join(manual_dir, "synthetic_summary.json")
        if not os.path.exists(marker):
            from datasets.synthetic_me import generate
            logging.info("Generating a synthetic %s release into %s", dataset_name, manual_dir)
            summary = generate(manual_dir, dataset_name, num_subjects=synthetic.num_subjects,
                               clips_per_subject=synthetic.clips_per_subject, seed=synthetic.seed,
                               show_progress=True, **dict(synthetic.get("generator_kwargs") or {}))
            with open(marker, "w", encoding="utf-8") as f:
                json.dump({k: v for k, v in summary.items() if k != "clips"}, f, indent=1, default=str)
    if not manual_dir:
        raise registry.DatasetError(
            f"config.data.manual_dir is empty for {data.name!r}: pass --config.data.manual_dir=<the unpacked "
            f"release> (see datasets/{dataset_name}/README.md), or enable config.data.synthetic.")
    data_dir = data.get("data_dir") or wd.path("tfds")
    registry.build(data.name, manual_dir, data_dir)
    return input_pipeline.load_dataset(data.name, data_dir)


def compute_dtype(config: ml_collections.ConfigDict) -> str:
    """config.compute_dtype, with 'auto' = bfloat16 on GPU/TPU and float32 on CPU."""
    wanted = config.get("compute_dtype", "auto")
    if wanted == "auto":
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    return wanted


def learning_rate_schedule(optimizer_config: ml_collections.ConfigDict, num_steps: int) -> Any:
    """``optimizer.learning_rate`` as a float ('constant') or an optax schedule ('warmup_cosine')."""
    name = optimizer_config.get("schedule", "constant")
    peak = float(optimizer_config.learning_rate)
    if name == "constant":
        return peak
    if name == "warmup_cosine":
        warmup = int(optimizer_config.get("warmup_steps", 0))
        if not 0 <= warmup < num_steps:
            raise ValueError(f"optimizer.warmup_steps={warmup} must be in [0, num_steps={num_steps}).")
        return optax.warmup_cosine_decay_schedule(0.0 if warmup else peak, peak, warmup, num_steps, 0.0)
    raise ValueError(f"optimizer.schedule={name!r}: expected 'constant' or 'warmup_cosine'.")


def _make_step_fns(config: ml_collections.ConfigDict, mesh, num_classes: int) -> StepFns:
    """FDP StepFns from ``fdp_jax.train_steps``: jit + NamedSharding over ``mesh``, compiled once."""
    from fdp_jax import models, train_steps

    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.num_classes = num_classes
    model_config.dtype = compute_dtype(config)
    model = models.build_model(model_config)
    init_variables = jax.jit(lambda rng: model.init({"params": rng}, models.dummy_clips(model.spec, 1),
                                                    train=False))
    opt = config.optimizer
    # One template state: its static fields (apply_fn, tx) are part of the jit cache key, so every fold's
    # fresh state reuses them and the compiled steps are shared by all folds.
    template = jax.eval_shape(lambda: train_steps.create_train_state(
        jax.random.key(0), model_config, optimizer=opt.name,
        learning_rate=learning_rate_schedule(opt, config.num_steps),
        weight_decay=opt.weight_decay, variables=init_variables(jax.random.key(0))))

    def init(rng: jax.Array):
        variables = init_variables(rng)
        state = template.replace(step=0, params=variables["params"], batch_stats=variables["batch_stats"],
                                 opt_state=template.tx.init(variables["params"]))
        return mesh_lib.replicate(state, mesh)

    kwargs = dict(ce_weight=config.loss.ce_weight, mse_weight=config.loss.di_weight,
                  donate=config.get("donate_state", True))
    return StepFns(init=init, train=train_steps.make_train_step(mesh, bn_train=True, **kwargs),
                   evaluate=train_steps.make_eval_step(mesh),
                   train_bn_frozen=train_steps.make_train_step(mesh, bn_train=False, **kwargs))


def default_components() -> LosoComponents:
    """The project's builders + grain pipeline + FDP model.

    Folds come from ``fdp_jax.input_pipeline.make_fold_data`` (its ``Fold`` has the fields of ``FoldData``)."""
    from fdp_jax import input_pipeline

    return LosoComponents(_prepare_source, _make_step_fns, input_pipeline.make_fold_data)
