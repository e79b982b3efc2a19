r"""Why the dynamic-image decoder does not beat the mean baseline: oracle predictors, an 8-clip fit, a steps curve.

    python -m launch.benchmark --model=fdp_decoder --fdp_decoder_workdir=W/seed_0 \
        [--fdp_decoder_subject=sub01] [--fdp_decoder_fit_steps=400] [--fdp_decoder_curve_steps=600] \
        [--fdp_decoder_curve_ce_weight=0] [--fdp_decoder_probe_steps=2400] \
        [--fdp_decoder_json=docs/bench/fdp_decoder.json] [--fdp_decoder_png=docs/fdp_decoder_diagnosis.png] \
        [--fdp_decoder_reconstructions_png=docs/fdp_decoder_reconstructions.png]

``W/seed_0`` is a finished ``launch.fdp`` workdir (e.g. of ``fdp_demo.py``); its synthetic release and TFDS
build are read from it or its parent (``--config.seeds`` runs keep them there). Four measurements:

1. **Oracles** (numpy, every fold): the PSNR of the held-out targets under the decoder, the training-mean
   DI (the report's baseline), the true class's training-mean DI, and one constant per clip (its median).
2. **8-clip fit** (fold ``subject``, a fixed batch of 8 training clips, DI loss only, Adam at the run's rate):
   the SegNet alone fed one fixed random code per clip, against the full FDP model; the MSE with batch
   statistics (train mode) and with running statistics (eval mode) every 100 steps; then the full model's
   running statistics re-estimated with its final parameters (60 train-mode passes, no update).
3. **Steps curve** (fold ``subject``, the run's settings unless ``curve_ce_weight`` is given): the eval-mode
   DI PSNR on the held-out subject and on every third training clip, minus the mean baseline, every
   ``curve_steps / 8`` steps.
4. **Frames probe** (fold ``subject``): the SegNet alone (the run's width), fed each clip's 8 normalised
   frames as its 8 input channels instead of FDP's rank features, trained on the fold's training clips with
   the DI loss (Adam at the run's rate, the run's batch): the held-out gain every ``probe_steps / 8`` steps
   and the reconstructions of 8 held-out clips, beside the run's own (``reconstructions_png``). The DI is a
   fixed linear map of the frames followed by a per-clip min-max stretch, so this bounds what the decoder
   can learn in a number of steps when it is handed the spatial information.
"""
from __future__ import annotations

import json
import os
import time

from absl import flags, logging

_WORKDIR = flags.DEFINE_string("fdp_decoder_workdir", None, "A finished launch.fdp workdir (one seed).")
_SUBJECT = flags.DEFINE_string("fdp_decoder_subject", "sub01", "The fold of the fit and the curve.")
_FIT_STEPS = flags.DEFINE_integer("fdp_decoder_fit_steps", 400, "Steps of the 8-clip fit (0: skip).")
_CURVE_STEPS = flags.DEFINE_integer("fdp_decoder_curve_steps", 600, "Steps of the curve (0: skip).")
_CURVE_CE = flags.DEFINE_float("fdp_decoder_curve_ce_weight", None,
                                "The curve's CE weight (default: the run's; 0 trains the dynamic image only).")
_PROBE_STEPS = flags.DEFINE_integer("fdp_decoder_probe_steps", 0, "Steps of the frames probe (0: skip).")
_JSON = flags.DEFINE_string("fdp_decoder_json", None, "JSON result path.")
_RECON_PNG = flags.DEFINE_string("fdp_decoder_reconstructions_png", None,
                                 "Figure: held-out targets, the run's reconstructions, the frames probe's.")
_PNG = flags.DEFINE_string("fdp_decoder_png", None, "Figure path.")


def psnr(pred, target) -> float:
    """PSNR (dB, peak 1) of ``pred`` against ``target`` (broadcast to its shape): ``fdp_jax.metrics``'s."""
    import numpy as np

    from fdp_jax import metrics

    target = np.asarray(target)
    return metrics.dynamic_image_error(np.broadcast_to(pred, target.shape), target)["di_psnr"]


def oracle_psnrs(targets, train_mean, class_means=None, labels=None, decoder=None) -> dict:
    """PSNR of ``targets`` (N, H, W) under the decoder's ``decoder`` (N, H, W), the training mean (H, W), the
    true class's training mean (``class_means`` {label: (H, W)}) and each clip's own median (one constant)."""
    import numpy as np

    targets = np.asarray(targets, np.float64)
    out = {"mean baseline": psnr(train_mean, targets),
           "oracle: clip's median": psnr(np.median(targets, axis=(1, 2), keepdims=True), targets)}
    if decoder is not None:
        out["decoder"] = psnr(decoder, targets)
    if class_means is not None:
        out["oracle: true class's mean"] = psnr(np.stack([class_means.get(int(c), train_mean) for c in labels]),
                                                targets)
    return out


def _pooled_oracles(workdir: str, config, clips) -> dict:
    """oracle_psnrs pooled over every finished fold (sums of squared errors, then PSNR)."""
    import numpy as np

    from fdp_jax import input_pipeline

    sse: dict = {}
    count = 0
    for subject in sorted(os.listdir(os.path.join(workdir, "folds"))):
        path = os.path.join(workdir, "folds", subject, "predictions.npz")
        if not os.path.exists(path):
            continue
        stored = np.load(path)
        fit, _ = input_pipeline.split_subjects(clips.subject.tolist(), subject, config.data.validation_subjects,
                                               config.seed)
        train = np.isin(clips.subject, fit)
        train_di = clips.di_target[train].astype(np.float64) / 255.0
        class_means = {int(c): train_di[clips.label[train] == c].mean(0) for c in np.unique(clips.label[train])}
        fold = oracle_psnrs(stored["di_target"], train_di.mean(0), class_means, stored["labels"], stored["di_pred"])
        n = stored["di_target"].size
        for name, value in fold.items():
            sse[name] = sse.get(name, 0.0) + n * 10 ** (-value / 10)
        count += n
    if not count:
        raise FileNotFoundError(f"{workdir}/folds/*/predictions.npz: no finished fold.")
    result = {name: float(10 * np.log10(count / total)) for name, total in sse.items()}
    return {name: {"psnr_db": round(v, 2), "gain_db": round(v - result["mean baseline"], 2)}
            for name, v in result.items()}


def _segnet_step(net, tx):
    """Jitted Adam step of the SegNet alone on the DI loss: (params, stats, opt, inputs (B, H, W, C), target
    (B, H, W)) -> (params, stats, opt, train-mode MSE)."""
    import jax
    import jax.numpy as jnp
    import optax

    @jax.jit
    def step(params, stats, opt, inputs, target):
        def loss(p):
            logits, upd = net.apply({"params": p, "batch_stats": stats}, inputs, True, mutable=["batch_stats"])
            return jnp.mean((jax.nn.sigmoid(logits[..., 0]) - target) ** 2), upd["batch_stats"]
        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), stats, opt, value
    return step


def _fit_eight(config, model_config, fold, clips, steps: int) -> dict:
    """MSE of the SegNet alone (random codes) and of the full model on 8 fixed training clips, DI loss only."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from fdp_jax import input_pipeline, train_steps
    from fdp_jax.configs import model_spec
    from fdp_jax.decoder import SegNet

    norm = input_pipeline.Normalizer(**fold.info["normalization"]["train"])
    rows = np.asarray(fold.info["train_indices"])
    batch = input_pipeline.eval_batches(clips, rows[:: max(1, len(rows) // 8)][:8], 8, norm)[0]
    target = jnp.asarray(batch["di_target"])
    lr = float(config.optimizer.learning_rate)
    out = {"constant_image_mse": float(jnp.mean((target - target.mean(0)) ** 2)),
           "clip_median_mse": float(jnp.mean((target - jnp.median(target, axis=(1, 2), keepdims=True)) ** 2)),
           "segnet_alone": [], "full_model": []}

    net = SegNet(model_spec(model_config))
    codes = jax.random.normal(jax.random.key(5), target.shape + (model_config.num_frames,))
    variables = net.init(jax.random.key(0), codes, False)
    tx = optax.adam(lr)
    params, stats, opt = variables["params"], variables["batch_stats"], tx.init(variables["params"])

    adam_step = _segnet_step(net, tx)
    segnet_step = lambda params, stats, opt: adam_step(params, stats, opt, codes, target)  # noqa: E731

    segnet_eval = jax.jit(lambda p, s: jax.nn.sigmoid(net.apply({"params": p, "batch_stats": s}, codes, False)[..., 0]))
    state = train_steps.create_train_state(jax.random.key(0), model_config, learning_rate=lr,
                                           optimizer=config.optimizer.name, weight_decay=config.optimizer.weight_decay)
    full_step = train_steps.make_train_step(ce_weight=0.0, mse_weight=float(config.loss.di_weight), donate=False)
    full_eval = train_steps.make_eval_step()
    for step in range(1, steps + 1):
        params, stats, opt, seg_mse = segnet_step(params, stats, opt)
        state, metrics = full_step(state, batch, jax.random.key(step))
        if step % 100 == 0 or step == steps:
            out["segnet_alone"].append({"step": step, "train_mode_mse": float(seg_mse), "eval_mode_mse": float(
                jnp.mean((segnet_eval(params, stats) - target) ** 2))})
            out["full_model"].append({"step": step, "train_mode_mse": float(metrics["mse"]), "eval_mode_mse": float(
                jnp.mean((full_eval(state, batch)["di_pred"] - target) ** 2))})
            logging.info("8-clip fit, step %d: SegNet alone %s, full model %s", step, out["segnet_alone"][-1],
                         out["full_model"][-1])
    # The full model's running statistics re-estimated with its final parameters (train-mode passes over the
    # batch, no update; momentum 0.1 -> converged): how much of the eval-mode gap is running statistics lagging.
    refreshed = state.batch_stats
    for i in range(60):
        _, updates = state.apply_fn({"params": state.params, "batch_stats": refreshed}, batch["frames"], train=True,
                                    mutable=["batch_stats"], rngs={"droppath": jax.random.key(i),
                                                                   "dropout": jax.random.key(i)})
        refreshed = updates["batch_stats"]
    out["full_model_refreshed_bn_eval_mse"] = float(
        jnp.mean((full_eval(state.replace(batch_stats=refreshed), batch)["di_pred"] - target) ** 2))
    logging.info("8-clip fit: full model, eval mode after re-estimating the BN statistics: %.5f",
                 out["full_model_refreshed_bn_eval_mse"])
    out["segnet_pred"], out["target"] = np.asarray(segnet_eval(params, stats)), np.asarray(target)
    return out


def _curve(config, model_config, fold, clips, steps: int, mesh) -> list[dict]:
    """Eval-mode DI PSNR minus the mean baseline on the held-out subject and on every third training clip."""
    import jax
    import numpy as np

    from fdp_jax import input_pipeline
    from launch import train_fdp
    from launch.runtime import mesh as mesh_lib

    config = config.copy_and_resolve_references()
    config.num_steps = steps
    if _CURVE_CE.value is not None:
        config.loss.ce_weight = _CURVE_CE.value
    init_state, train_step, _, eval_step = train_fdp.make_steps(config, model_config, mesh)
    norm = input_pipeline.Normalizer(**fold.info["normalization"]["train"])
    rows = np.asarray(fold.info["train_indices"])
    train_batches = input_pipeline.eval_batches(clips, rows[::3], config.batch_size, norm)
    mean = clips.di_target[rows].astype(np.float64).mean(0) / 255.0
    init_key, step_key = jax.random.split(train_fdp.fold_key(config.seed, 0))
    state, every, curve, started = init_state(init_key), max(1, steps // 8), [], time.time()
    for step in range(1, steps + 1):
        batch = mesh_lib.shard_batch(next(fold.train_iter), mesh)
        state, _ = train_step(state, batch, jax.random.fold_in(step_key, step))
        if step % every == 0 or step == steps:
            row = {"step": step, "seconds": round(time.time() - started, 1)}
            for name, batches in (("test", fold.test_batches), ("train", train_batches)):
                scored = train_fdp.predict(eval_step, state, batches, mesh)
                row[f"{name}_gain_db"] = round(psnr(scored["di_pred"], scored["di_target"])
                                               - psnr(mean, scored["di_target"]), 3)
            curve.append(row)
            logging.info("curve: %s", row)
    return curve


def _frames_probe(config, model_config, fold, clips, steps: int) -> tuple[list[dict], dict]:
    """The SegNet fed the frames (B, H, W, T): held-out gain vs steps, and its last held-out predictions."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from fdp_jax.configs import model_spec
    from fdp_jax.decoder import SegNet

    net = SegNet(model_spec(model_config))
    to_input = jax.jit(lambda f: jnp.moveaxis(f[..., 0], 1, -1))  # (B, T, H, W, 1) -> (B, H, W, T)
    variables = net.init(jax.random.key(0), to_input(fold.test_batches[0]["frames"]), False)
    tx = optax.adam(float(config.optimizer.learning_rate))
    params, stats = variables["params"], variables["batch_stats"]
    opt = tx.init(params)

    segnet_step = _segnet_step(net, tx)
    step = lambda params, stats, opt, frames, target: segnet_step(params, stats, opt, to_input(frames),  # noqa: E731
                                                                  target)

    predict = jax.jit(lambda p, s, f: jax.nn.sigmoid(net.apply({"params": p, "batch_stats": s}, to_input(f),
                                                                False)[..., 0]))
    rows = np.asarray(fold.info["train_indices"])
    mean = clips.di_target[rows].astype(np.float64).mean(0) / 255.0
    every, curve, started, held_out = max(1, steps // 8), [], time.time(), {}
    for i in range(1, steps + 1):
        batch = next(fold.train_iter)
        params, stats, opt, value = step(params, stats, opt, batch["frames"], batch["di_target"])
        if i % every == 0 or i == steps:
            pred, target = [], []
            for b in fold.test_batches:
                keep = np.asarray(b["mask"]) > 0
                pred.append(np.asarray(predict(params, stats, b["frames"]))[keep])
                target.append(np.asarray(b["di_target"])[keep])
            held_out = {"di_pred": np.concatenate(pred), "di_target": np.concatenate(target)}
            curve.append({"step": i, "seconds": round(time.time() - started, 1),
                          "test_gain_db": round(psnr(held_out["di_pred"], held_out["di_target"])
                                                - psnr(mean, held_out["di_target"]), 3)})
            logging.info("frames probe: %s", curve[-1])
    return curve, held_out


def _reconstructions_figure(path: str, run: dict, probe: dict, probe_steps: int, subject: str) -> None:
    """Rows: held-out targets, the run's decoder, the frames probe (8 clips of ``subject``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = min(8, len(probe["di_target"]))
    picks = np.linspace(0, len(probe["di_target"]) - 1, n).astype(int)
    rows = (("target", probe["di_target"]), ("FDP decoder\n(the run)", run["di_pred"]),
            (f"SegNet fed the frames\n({probe_steps} steps)", probe["di_pred"]))
    fig, axes = plt.subplots(3, n, figsize=(1.7 * n, 5.6), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, k in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(images[k], cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"Held-out dynamic images, fold {subject}: target, the run's reconstruction, and the decoder "
                 "handed the frames", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _figure(path: str, oracles: dict, fit: dict | None, curve: list[dict] | None,
            probe: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    names = list(oracles)
    axes[0].barh(names, [oracles[n]["gain_db"] for n in names], color="C0")
    axes[0].axvline(3, color="r", ls=":", label="+3 dB target")
    axes[0].set_xlabel("DI PSNR gain over the training mean (dB)")
    axes[0].set_title("held-out clips, all folds", fontsize=9)
    axes[0].legend(fontsize=7)
    if fit:
        for key, label, color in (("segnet_alone", "SegNet alone, random codes", "C2"),
                                  ("full_model", "full FDP model", "C3")):
            steps = [r["step"] for r in fit[key]]
            for mode, style in (("train", "o-"), ("eval", "s--")):
                axes[1].plot(steps, [r[f"{mode}_mode_mse"] for r in fit[key]], style, color=color,
                             label=f"{label}, {mode} mode")
        if "full_model_refreshed_bn_eval_mse" in fit:
            axes[1].plot([fit["full_model"][-1]["step"]], [fit["full_model_refreshed_bn_eval_mse"]], "*", ms=12,
                         color="C3", label="full FDP model, eval mode, BN statistics re-estimated")
        axes[1].axhline(fit["constant_image_mse"], color="k", lw=0.8, label="best constant image")
        axes[1].axhline(fit["clip_median_mse"], color="grey", ls=":", label="one constant per clip")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("step (8 fixed training clips, DI loss only)")
        axes[1].set_ylabel("DI MSE")
        axes[1].legend(fontsize=6)
    if curve:
        steps = [r["step"] for r in curve]
        axes[2].plot(steps, [r["test_gain_db"] for r in curve], "o-", label="held-out subject")
        axes[2].plot(steps, [r["train_gain_db"] for r in curve], "s-", label="training clips")
    if probe:
        axes[2].plot([r["step"] for r in probe], [r["test_gain_db"] for r in probe], "^-", color="C2",
                     label="SegNet fed the frames, held-out subject")
    if curve or probe:
        axes[2].axhline(0, color="k", lw=0.8)
        axes[2].set_xlabel("step (the run's settings)")
        axes[2].set_ylabel("gain over the mean baseline (dB)")
        axes[2].legend(fontsize=7)
    fig.suptitle("FDP dynamic-image decoder: what the PSNR gain is made of, and what the model learns", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv):
    del argv
    import ml_collections
    import numpy as np

    from fdp_jax import configs, input_pipeline
    from launch import train_fdp
    from launch.benchmarks import common
    from launch.runtime import mesh as mesh_lib

    workdir = os.path.abspath(_WORKDIR.value or "")
    if not _WORKDIR.value or not os.path.isfile(os.path.join(workdir, "config.json")):
        raise SystemExit(f"--fdp_decoder_workdir={_WORKDIR.value!r}: not a finished launch.fdp workdir "
                         "(no config.json).")
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        stored = json.load(f)
    config = ml_collections.ConfigDict(stored["config"])
    data_root = workdir if os.path.isdir(os.path.join(workdir, "tfds")) else os.path.dirname(workdir)
    clips, info = train_fdp.load_data(config, data_root)
    # The run is named by its folder name and code version, not by a machine-specific path.
    result = {"run": os.path.basename(workdir), "run_code_version": stored.get("code_version"),
              "machine": common.machine_info(),
              "oracles": _pooled_oracles(workdir, config, clips)}
    print(common.format_table([{"predictor": k, **v} for k, v in result["oracles"].items()],
                              ["predictor", "psnr_db", "gain_db"]))
    mesh = mesh_lib.make_data_mesh(1)
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.num_classes, model_config.dtype = info["num_classes"], "float32"
    model_config = configs.with_platform(model_config, mesh)
    fold = input_pipeline.make_fold(clips, _SUBJECT.value, config.data, seed=config.seed,
                                    batch_size=config.batch_size)
    fit = _fit_eight(config, model_config, fold, clips, _FIT_STEPS.value) if _FIT_STEPS.value else None
    if fit:
        result["fit_8_clips"] = {k: v for k, v in fit.items() if not isinstance(v, np.ndarray)}
        print(json.dumps(result["fit_8_clips"], indent=1))
    curve = _curve(config, model_config, fold, clips, _CURVE_STEPS.value, mesh) if _CURVE_STEPS.value else None
    if curve:
        result["curve"] = curve
        print(common.format_table(curve, ["step", "test_gain_db", "train_gain_db", "seconds"]))
    probe = None
    if _PROBE_STEPS.value:  # a fresh fold: the probe sees the same clip order as a run from step 0
        probe_fold = input_pipeline.make_fold(clips, _SUBJECT.value, config.data, seed=config.seed,
                                              batch_size=config.batch_size)
        probe, held_out = _frames_probe(config, model_config, probe_fold, clips, _PROBE_STEPS.value)
        result["frames_probe"] = probe
        print(common.format_table(probe, ["step", "test_gain_db", "seconds"]))
        if _RECON_PNG.value:
            run = dict(np.load(os.path.join(workdir, "folds", _SUBJECT.value, "predictions.npz")))
            _reconstructions_figure(_RECON_PNG.value, run, held_out, _PROBE_STEPS.value, _SUBJECT.value)
    common.write_json(_JSON.value, result)
    if _PNG.value:
        _figure(_PNG.value, result["oracles"], fit, curve, probe)
