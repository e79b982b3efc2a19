r"""Micro-expression data benchmark: TFDS build throughput and grain loader throughput vs FDP consumption.

    python -m launch.benchmark --model=me_pipeline [--me_pipeline_out=bench/me_pipeline.json]

1. writes a CASME II-sized synthetic release (``datasets.synthetic_me``, 255 clips by default) and times
   ``casme2/5class`` builds from its cropped and its raw frames (clips/s; target >= 10 on 2 cores);
2. times the grain train iterator of one LOSO fold (batch 36, augmentation on) for each worker count;
3. times one FDP train step at the same batch (``fdp_jax.train_steps``, model size flag) and reports the
   loader's headroom = loader clips/s / step clips/s (target >= 3x).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

from absl import flags, logging

_CLIPS = flags.DEFINE_integer("me_pipeline_subjects", 17, "Subjects of the synthetic release.")
_PER_SUBJECT = flags.DEFINE_integer("me_pipeline_clips_per_subject", 15, "Clips per subject (17 x 15 = 255).")
_FRAME_SIZE = flags.DEFINE_list("me_pipeline_frame_size", ["240", "280"], "Raw frame H,W of the release.")
_BATCH = flags.DEFINE_integer("me_pipeline_batch_size", 36, "Train batch size.")
_WORKERS = flags.DEFINE_list("me_pipeline_workers", ["0", "2"], "grain worker counts to time.")
_BATCHES = flags.DEFINE_integer("me_pipeline_batches", 30, "Batches timed per worker count.")
_MODEL = flags.DEFINE_enum("me_pipeline_model_size", "small", ["tiny", "small", "full"],
                           "FDP model size whose train step is the consumer.")
_STEPS = flags.DEFINE_integer("me_pipeline_steps", 3, "Timed FDP train steps.")
_OUT = flags.DEFINE_string("me_pipeline_out", None, "JSON result path.")
_WORKDIR = flags.DEFINE_string("me_pipeline_workdir", None, "Scratch folder (default: a temp dir, removed).")


def _build(name: str, manual: str, data_dir: str, **kwargs) -> tuple[float, int, dict]:
    import tensorflow_datasets as tfds
    from datasets import registry
    from datasets.me_common.report import read_report
    cls = registry.builder_class(name.split("/")[0])
    builder = cls(data_dir=data_dir, file_format="array_record", config=name.split("/")[1], **kwargs)
    t0 = time.perf_counter()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    seconds = time.perf_counter() - t0
    report = read_report(os.fspath(builder.data_dir))
    return seconds, builder.info.splits["train"].num_examples, report


def _loader(clips, subject: str, workers: int, batch: int, batches: int) -> dict:
    from fdp_jax import input_pipeline as ip
    config = ip.default_config()
    config.worker_count = workers
    fold = ip.make_fold(clips, subject, config, seed=0, batch_size=batch)
    it = fold.train_iter
    t0 = time.perf_counter()
    next(it)  # start-up (worker spawn) measured separately
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - t0
    return {"workers": workers, "startup_s": startup, "batches": batches,
            "clips_per_s": batches * batch / seconds, "batch_ms": 1000 * seconds / batches}


def _fdp_step(size: str, batch: int, steps: int) -> dict:
    import jax
    import numpy as np
    from fdp_jax import configs, train_steps
    from launch.benchmarks import common
    model_config = configs.with_platform(configs.get_model_config(size, num_classes=5), jax.devices()[0])
    state = train_steps.create_train_state(jax.random.key(0), model_config)
    step = train_steps.make_train_step(donate=False)
    hw = model_config.image_size
    rng = np.random.default_rng(0)
    data = {"frames": rng.standard_normal((batch, 8, hw, hw, 1)).astype(np.float32),
            "di_target": rng.random((batch, hw, hw)).astype(np.float32),
            "label": rng.integers(0, 5, batch).astype(np.int32), "mask": np.ones(batch, np.float32)}
    key = jax.random.key(1)
    timing = common.time_calls(lambda: step(state, data, key), warmup=1, repeats=steps)
    return {"model_size": size, "step_s": timing["median_s"], "clips_per_s": batch / timing["median_s"]}


def _plot(path: str, clips, builds: list[dict], loaders: list[dict], step: dict) -> None:
    """Bars of build / loader / FDP-step clips/s, and one built clip (8 frames + DI target) per class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    classes = sorted(set(clips.label.tolist()))
    fig = plt.figure(figsize=(12, 2.2 + 1.2 * len(classes)))
    grid = fig.add_gridspec(len(classes), 3, width_ratios=[1.2, 4, 0.5])
    ax = fig.add_subplot(grid[:, 0])
    names = [f"build {b['variant']}" for b in builds] + [f"loader w={r['workers']}" for r in loaders]
    values = [b["clips_per_s"] for b in builds] + [r["clips_per_s"] for r in loaders]
    ax.barh(names + [f"FDP {step['model_size']} step"], values + [step["clips_per_s"]], color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("clips / s")
    for row, c in enumerate(classes):
        i = int(np.flatnonzero(clips.label == c)[0])
        strip = np.concatenate(list(clips.frames[i, ..., 0]), axis=1)
        a = fig.add_subplot(grid[row, 1])
        a.imshow(strip, cmap="gray", vmin=0, vmax=255)
        a.set_axis_off()
        a.set_title(f"{clips.class_names[c]}: {clips.clip_id[i]}", fontsize=8)
        d = fig.add_subplot(grid[row, 2])
        d.imshow(clips.di_target[i], cmap="gray")
        d.set_axis_off()
        d.set_title("DI", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv) -> None:
    del argv
    from datasets.synthetic_me.generator import generate
    from fdp_jax import input_pipeline as ip
    from launch.benchmarks import common

    root = _WORKDIR.value or tempfile.mkdtemp(prefix="me_pipeline_")
    try:
        manual = os.path.join(root, "casme2_release")
        h, w = (int(v) for v in _FRAME_SIZE.value)
        t0 = time.perf_counter()
        if not os.path.isdir(manual):
            generate(manual, "casme2", num_subjects=_CLIPS.value, clips_per_subject=_PER_SUBJECT.value, seed=0,
                     frame_size=(h, w), show_progress=True)
        gen_s = time.perf_counter() - t0
        builds = []
        for variant in ("cropped", "raw"):
            data_dir = os.path.join(root, f"tfds_{variant}")
            shutil.rmtree(data_dir, ignore_errors=True)
            seconds, n, report = _build("casme2/5class", manual, data_dir, frames_variant=variant)
            builds.append({"variant": variant, "clips_in_release": report["info"]["annotation_rows"],
                           "examples": n, "build_s": seconds,
                           "clips_per_s": report["info"]["annotation_rows"] / seconds,
                           "face": report["info"]["face"]})
            logging.info("build %s: %s", variant, builds[-1])
        clips, dataset = ip.load_dataset("casme2/5class", os.path.join(root, "tfds_cropped"))
        subject = max(dataset["subjects"], key=lambda s: (clips.subject == s).sum())
        loaders = [_loader(clips, subject, int(k), _BATCH.value, _BATCHES.value) for k in _WORKERS.value]
        step = _fdp_step(_MODEL.value, _BATCH.value, _STEPS.value)
        for row in loaders:
            row["headroom_vs_fdp_step"] = row["clips_per_s"] / step["clips_per_s"]
        payload = {"machine": common.machine_info(), "release": {"clips": len(clips), "frame_size": [h, w],
                                                                  "generate_s": gen_s},
                   "builds": builds, "loader": loaders, "fdp_step": step, "peak_rss_mb": common.peak_rss_mb()}
        print(common.format_table(builds, ["variant", "clips_in_release", "examples", "build_s", "clips_per_s"]))
        print(common.format_table(loaders, ["workers", "startup_s", "batch_ms", "clips_per_s",
                                            "headroom_vs_fdp_step"]))
        print(common.format_table([step], ["model_size", "step_s", "clips_per_s"]))
        common.write_json(_OUT.value, payload)
        if _OUT.value:
            _plot(os.path.splitext(_OUT.value)[0] + ".png", clips, builds, loaders, step)
    finally:
        if not _WORKDIR.value:
            shutil.rmtree(root, ignore_errors=True)
