"""Classify one micro-expression clip (a folder of frames or a video file) with a trained FDP fold checkpoint.

    python -m launch.fdp_predict --checkpoint=workdirs/fdp_demo/folds/sub01/checkpoints \
        --frames=path/to/clip_frames [--out_png=clip_dynamic_image.png] [--crop=auto|face|none]

``--checkpoint`` is a fold's ``checkpoints`` folder of a ``launch.fdp`` workdir (or the workdir itself:
then the first finished fold is used). The run's ``config.json`` gives the model; the checkpoint's meta
gives the class names and the training normalisation. Like the builders, the frames (sorted by the last
integer of their file names) are sampled to 8 uniformly from first to last, cropped to the face (one box
per clip from OpenCV's Haar cascade; ``--crop=none`` for frames that are already face crops) and resized
to 64x64 grayscale. Prints the class probabilities as JSON and writes the clip's dynamic image (the
approximate-rank-pooling target) next to the model's reconstruction as a PNG.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
from absl import app, flags

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A fold's checkpoints dir (or a launch.fdp workdir).")
_FRAMES = flags.DEFINE_string("frames", None, "Folder with the clip's frames (jpg/png/bmp), or a video file.")
_OUT_PNG = flags.DEFINE_string("out_png", None, "Where to write the dynamic image (default: <frames>_di.png).")
_CROP = flags.DEFINE_enum("crop", "auto", ["auto", "face", "none"],
                          "auto: Haar face box, else the whole frame; face: Haar box, error if none; none: resize.")
flags.mark_flags_as_required(["checkpoint", "frames"])


def resolve_checkpoint(path: str) -> tuple[str, str]:
    """(checkpoints dir, config.json) for a fold checkpoints dir or a workdir."""
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, "folds")):
        folds = sorted(d for d in os.listdir(os.path.join(path, "folds"))
                       if os.path.isdir(os.path.join(path, "folds", d, "checkpoints")))
        if not folds:
            raise FileNotFoundError(f"{path}: no folds/<subject>/checkpoints found.")
        path = os.path.join(path, "folds", folds[0], "checkpoints")
    config_json = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(path))), "config.json")
    if not os.path.isfile(config_json):
        raise FileNotFoundError(f"{config_json} not found: --checkpoint must be <workdir>/folds/<subject>/checkpoints.")
    return path, config_json


def read_video_gray(path: str) -> list[np.ndarray]:
    """All frames of a video file as (H, W) uint8 grayscale (OpenCV ``VideoCapture``)."""
    import cv2

    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
    capture.release()
    if not frames:
        raise ValueError(f"{path}: OpenCV could not read any frame (not a video, or an unsupported codec).")
    return frames


def load_clip(frames_dir: str, crop: str) -> np.ndarray:
    """(8, 64, 64) uint8 grayscale frames of the clip in ``frames_dir`` (see module docstring)."""
    from datasets.me_common import frames as frames_lib, preprocess

    if os.path.isfile(frames_dir):  # a video file, read with OpenCV (already a dependency)
        video = read_video_gray(frames_dir)
        positions = preprocess.sample_positions(len(video), preprocess.NUM_FRAMES, "uniform")

        def load(i: int) -> np.ndarray:
            return video[i]
    else:
        if not os.path.isdir(frames_dir):
            raise FileNotFoundError(f"--frames {frames_dir!r} is neither a folder of frames nor a video file.")
        numbered = frames_lib.frame_map(frames_dir)
        if not numbered:
            raise ValueError(f"{frames_dir}: no image files (jpg/jpeg/png/bmp with a frame number in the name).")
        paths = [numbered[k] for k in sorted(numbered)]
        positions = preprocess.sample_positions(len(paths), preprocess.NUM_FRAMES, "uniform")

        def load(i: int) -> np.ndarray:
            image = frames_lib.read_gray(paths[i])
            if image is None:
                raise ValueError(f"{paths[i]}: not a readable image.")
            return image

    raw = preprocess.gather_frames(positions, load)
    box = None if crop == "none" else preprocess.clip_box(list(raw), preprocess.haar_detector())
    if box is None:
        if crop == "face":
            raise ValueError(f"{frames_dir}: no face found (try --crop=none for pre-cropped frames).")
        return np.stack([preprocess.resize_full(f) for f in raw])
    return np.stack([preprocess.warp(f, preprocess.box_affine(box)) for f in raw])


def predict_clip(checkpoint_dir: str, config_json: str, frames: np.ndarray) -> dict:
    """Class probabilities and dynamic images for (8, 64, 64) uint8 ``frames``."""
    import jax
    import ml_collections
    import orbax.checkpoint as ocp

    from datasets.me_common import preprocess
    from fdp_jax import configs, input_pipeline, models, train_steps
    from launch.runtime import checkpointing

    with open(config_json, encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f)["config"])
    ckpt = checkpointing.Checkpointer(checkpoint_dir, async_save=False)
    step = ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(f"{checkpoint_dir}: no checkpoint steps.")
    meta = ckpt.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.num_classes = len(meta["class_names"])
    model_config.dtype = "float32"
    model_config = configs.with_platform(model_config, jax.devices()[0])
    model = models.build_model(model_config)
    abstract = jax.eval_shape(lambda: train_steps.create_train_state(
        jax.random.key(0), model_config, optimizer=config.optimizer.name,
        learning_rate=train_steps.learning_rate_schedule(config.optimizer, config.num_steps),
        weight_decay=config.optimizer.weight_decay,
        variables=model.init({"params": jax.random.key(0)}, models.dummy_clips(model.spec, 1), train=False)))
    state = ckpt.restore(step, abstract).state
    ckpt.close()
    norm = meta.get("normalization")
    if norm is None:
        raise ValueError(f"{checkpoint_dir} step {step}: checkpoint meta has no training normalisation.")
    fields = {f.name for f in dataclasses.fields(input_pipeline.Normalizer)}  # older runs' meta has retired ones
    normalizer = input_pipeline.Normalizer(**{k: v for k, v in norm.items() if k in fields})
    clip = normalizer(frames[None, ..., None].astype(np.float32) / 255.0)
    outputs = train_steps.make_eval_step()(state, {"frames": clip})
    probabilities = np.asarray(jax.nn.softmax(outputs["logits"][0].astype(np.float32)))
    return {"checkpoint": checkpoint_dir, "step": int(step), "class_names": list(meta["class_names"]),
            "probabilities": {n: float(p) for n, p in zip(meta["class_names"], probabilities)},
            "predicted": meta["class_names"][int(np.argmax(probabilities))],
            "dynamic_image": preprocess.dynamic_image(frames).astype(np.float32) / 255.0,
            "reconstruction": np.asarray(outputs["di_pred"][0], np.float32)}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from fdp_jax import report
    from launch.runtime.progress import set_default_verbosity

    set_default_verbosity()
    try:
        checkpoint_dir, config_json = resolve_checkpoint(_CHECKPOINT.value)
        frames = load_clip(_FRAMES.value, _CROP.value)
        result = predict_clip(checkpoint_dir, config_json, frames)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"fdp_predict: {e}")
    out_png = _OUT_PNG.value or os.path.abspath(_FRAMES.value).rstrip(os.sep) + "_di.png"
    report.plot_dynamic_images(result["dynamic_image"][None], result["reconstruction"][None], out_png,
                               captions=[f"pred: {result['predicted']}"])
    print(json.dumps({k: result[k] for k in ("predicted", "probabilities", "step", "checkpoint")}, indent=1))
    print(f"Dynamic image: {out_png}")


if __name__ == "__main__":
    app.run(main)
