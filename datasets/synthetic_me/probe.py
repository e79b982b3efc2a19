"""Learnability probe and preview figure for a generated release.

``linear_probe`` answers "does the motion carry the class, and not a single frame?": subject-grouped
cross-validation of a linear classifier on the onset frame, the apex frame and the apex - onset difference.
``preview_png`` draws onset / apex / difference per class.

CLI: ``python -m datasets.synthetic_me.probe --dataset=casme2 --out_dir=workdirs/casme2_demo --png=demo.png``
(generates the release with the given size first unless --reuse).
"""
from __future__ import annotations

import collections
import json
import os
import re
from typing import Any

import cv2
import numpy as np


def frame_path(folder: str, number: int) -> str:
    """The JPEG in ``folder`` whose trailing integer is ``number`` (works for img46, 006_05562, 355...)."""
    for name in os.listdir(folder):
        m = re.search(r"(\d+)\.jpg$", name)
        if m and int(m.group(1)) == number:
            return os.path.join(folder, name)
    raise FileNotFoundError(f"no frame {number} in {folder}")


def _load(out_dir: str, clip: dict[str, Any], variant: str, number: int, size: int,
          box: list[int] | None) -> np.ndarray:
    img = cv2.imread(frame_path(os.path.join(out_dir, clip["frame_dirs"][variant]), number), cv2.IMREAD_GRAYSCALE)
    if box is not None:  # raw frames: cut the subject's face box (what a face detector would give)
        x0, y0, x1, y1 = box
        img = img[y0:y1, x0:x1]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def probe_features(summary: dict[str, Any], variant: str, size: int = 32, min_fraction: float = 0.08,
                   face_crop: bool | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Onset, apex and apex - onset features (N, size*size) of the micro rows, labels (N,), subjects (N,).

    ``face_crop`` (default: for every variant but 'cropped') cuts ``summary['face_boxes']`` out of raw frames.
    Classes holding fewer than ``min_fraction`` (8%) of the rows are left out (e.g. CASME II fear/sadness)."""
    out_dir = summary["out_dir"]
    face_crop = variant != "cropped" if face_crop is None else face_crop
    clips = [c for c in summary["clips"] if not c["macro"] and variant in c["frame_dirs"]]
    counts = collections.Counter(c["emotion"].lower() for c in clips)
    keep = {e for e, n in counts.items() if n >= min_fraction * len(clips)}
    feats: dict[str, list[np.ndarray]] = {"onset": [], "apex": [], "apex-onset": []}
    labels, groups = [], []
    for c in clips:
        if c["emotion"].lower() not in keep:
            continue
        box = summary["face_boxes"][c["subject"]] if face_crop else None
        onset = _load(out_dir, c, variant, c["onset"], size, box)
        apex = _load(out_dir, c, variant, c["apex"], size, box)
        feats["onset"].append(onset.ravel())
        feats["apex"].append(apex.ravel())
        feats["apex-onset"].append((apex - onset).ravel())
        labels.append(c["emotion"].lower())
        groups.append(c["subject"])
    return {k: np.stack(v) for k, v in feats.items()}, np.array(labels), np.array(groups)


def linear_probe(summary: dict[str, Any], variant: str = "cropped", size: int = 32, folds: int = 5,
                 model: str = "logreg") -> dict[str, Any]:
    """Subject-grouped CV accuracy of a linear model on onset / apex / apex-onset features.

    model: 'logreg' (StandardScaler + LogisticRegression(C=0.1)) or 'ridge' (StandardScaler + RidgeClassifier).
    """
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    feats, labels, groups = probe_features(summary, variant, size)
    classes = sorted(set(labels))
    result: dict[str, Any] = {"n": int(len(labels)), "subjects": int(len(set(groups))), "classes": classes,
                              "majority": float(max(np.mean(labels == k) for k in classes)),
                              "uniform_chance": 1.0 / len(classes), "variant": variant, "size": size,
                              "model": model, "folds": folds}
    for name, x in feats.items():
        clf = (make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)) if model == "logreg"
               else make_pipeline(StandardScaler(), RidgeClassifier(alpha=100.0)))
        with threadpool_limits(1):
            scores = cross_val_score(clf, x, labels, groups=groups, cv=GroupKFold(n_splits=folds))
        result[name] = float(np.mean(scores))
    return result


def preview_png(summary: dict[str, Any], path: str, variant: str = "cropped", per_class: int = 1) -> str:
    """A grid: for ``per_class`` clips of each class, onset | apex | 4x(apex - onset). Returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = summary["out_dir"]
    by_class: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for c in summary["clips"]:
        if not c["macro"] and variant in c["frame_dirs"] and len(by_class[c["emotion"]]) < per_class:
            by_class[c["emotion"]].append(c)
    rows = [c for e in sorted(by_class) for c in by_class[e]]
    fig, axes = plt.subplots(len(rows), 3, figsize=(4.5, 1.6 * len(rows)), squeeze=False)
    for ax_row, c in zip(axes, rows):
        folder = os.path.join(out_dir, c["frame_dirs"][variant])
        onset = cv2.imread(frame_path(folder, c["onset"]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        apex = cv2.imread(frame_path(folder, c["apex"]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        for ax, img, title in zip(ax_row, (onset, apex, np.clip(128 + 4 * (apex - onset), 0, 255)),
                                  ("onset", "apex", "4x(apex-onset)")):
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
        ax_row[0].set_ylabel(f"{c['emotion']}\nAU {c['aus']}", fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> None:
    from absl import flags

    from datasets.synthetic_me.generator import generate
    del argv
    f = flags.FLAGS
    frame_size = [int(v) for v in f.frame_size] if f.frame_size else None
    summary = generate(f.out_dir, f.dataset, num_subjects=f.num_subjects, clips_per_subject=f.clips_per_subject,
                       seed=f.seed, frame_size=frame_size, quirks=False, show_progress=True)
    variant = f.variant or ("cropped" if f.dataset in ("casme2", "casme_sq") else "raw")
    result = {"generate_seconds": summary["seconds"], "files": summary["files_written"],
              **linear_probe(summary, variant=variant, size=f.size, model=f.model)}
    if f.png:
        result["png"] = preview_png(summary, f.png, variant=variant)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    from absl import app, flags as _flags

    _flags.DEFINE_enum("dataset", "casme2", ["casme2", "samm", "casme_sq", "casme3"], "Release layout.")
    _flags.DEFINE_string("out_dir", None, "Where the release is written.", required=True)
    _flags.DEFINE_integer("num_subjects", 20, "Subjects.")
    _flags.DEFINE_integer("clips_per_subject", 12, "Clips per subject.")
    _flags.DEFINE_integer("seed", 0, "Seed.")
    _flags.DEFINE_list("frame_size", None, "Raw frame H,W.")
    _flags.DEFINE_string("variant", None, "Frame variant to probe (default cropped where it exists).")
    _flags.DEFINE_integer("size", 32, "Features are frames resized to size x size.")
    _flags.DEFINE_enum("model", "logreg", ["logreg", "ridge"], "Linear model.")
    _flags.DEFINE_string("png", None, "Optional preview figure path.")
    app.run(main)
