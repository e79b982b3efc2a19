"""The common TFDS builder of the micro-expression datasets (TF-free: array_record + data_source).

Each dataset module defines ``class Builder(MEBuilder)`` with its annotation file patterns, its frame-folder
variants and its class protocols. Builder configs are ``<protocol>`` (uniform 8-frame sampling over
onset..offset, the paper's intent) and ``<protocol>_reference`` (the official ``i*floor(L/8)`` sampling).
"""
from __future__ import annotations

import abc
import dataclasses
import os
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from datasets.me_common import annotations as ann_lib
from datasets.me_common import frames as frames_lib
from datasets.me_common import preprocess
from datasets.me_common.report import BuildReport
from datasets.registry import DatasetError

PREDICTOR_ENV = "ME_DLIB_PREDICTOR"  # optional path of shape_predictor_68_face_landmarks.dat


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A class protocol: ordered class names and the map from normalised emotion label to class name
    (labels of the dataset absent from ``mapping`` are excluded by this protocol and counted)."""
    classes: tuple[str, ...]
    mapping: dict[str, str]
    description: str = ""


class MEConfig(tfds.core.BuilderConfig):
    """Builder config = class protocol x temporal sampling mode."""

    def __init__(self, *, protocol: Protocol, sampling: str = "uniform", **kwargs: Any):
        super().__init__(**kwargs)
        if sampling not in preprocess.SAMPLING_MODES:
            raise ValueError(f"sampling {sampling!r} not in {preprocess.SAMPLING_MODES}")
        self.protocol = protocol
        self.sampling = sampling


def make_configs(protocols: dict[str, Protocol]) -> list[MEConfig]:
    """``<name>`` (uniform sampling) for every protocol, then ``<name>_reference`` (official sampling)."""
    out = []
    for sampling, suffix, what in (("uniform", "", "8 frames uniformly over onset..offset"),
                                   ("reference", "_reference", "official i*floor(L/8) sampling")):
        for name, protocol in protocols.items():
            out.append(MEConfig(name=name + suffix, protocol=protocol, sampling=sampling,
                                description=f"{protocol.description}; {what}."))
    return out


@dataclasses.dataclass(frozen=True)
class FrameVariant:
    """A frame folder of the release: ``resolve(annotation)`` -> clip folder or None."""
    name: str
    cropped: bool  # the dataset's own face crops (no detection needed)
    resolve: Callable[[ann_lib.ClipAnnotation], str | None]
    root: str


class _SkipClip(Exception):
    pass


class MEBuilder(tfds.core.GeneratorBasedBuilder, abc.ABC):
    """Base builder. Options (constructor keywords, defaults in brackets):

    - ``frames_variant`` ['auto']: 'auto' uses the dataset's own cropped frames when a clip has them, else
      the raw frames; 'cropped' / 'raw' force one variant (clips without it are skipped and counted);
    - ``landmark_predictor`` [env ``ME_DLIB_PREDICTOR`` or None]: dlib 68-landmark predictor file; when set,
      every clip is aligned with the official landmark recipe (one alignment per clip from the landmarks
      averaged over its frames; per frame, as in the official code, in the ``*_reference`` configs);
    - ``box_enlarge`` [1.2]: enlargement of the Haar face box (the official landmark box uses 2.5 on the
      eye/nose/mouth box, which corresponds to about 1.2 on a whole-face Haar box).
    """
    name = "me_base"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    ANNOTATION_PATTERNS: Sequence[str] = ()
    KNOWN_LABELS: frozenset = frozenset()
    CITATION = ""
    HOMEPAGE = ""

    def __init__(self, *, frames_variant: str = "auto", landmark_predictor: str | None = None,
                 box_enlarge: float = 1.2, **kwargs: Any):
        super().__init__(**kwargs)
        if frames_variant not in ("auto", "cropped", "raw"):
            raise ValueError(f"frames_variant {frames_variant!r} not in ('auto', 'cropped', 'raw')")
        self._frames_variant = frames_variant
        self._landmark_predictor = landmark_predictor or os.environ.get(PREDICTOR_ENV) or None
        self._box_enlarge = box_enlarge

    # ---------------------------------------------------------------- dataset-specific parts
    @abc.abstractmethod
    def parse(self, path: str, report: BuildReport) -> list[ann_lib.ClipAnnotation]:
        """Annotation rows of the spreadsheet at ``path``."""

    @abc.abstractmethod
    def frame_variants(self, manual_dir: str) -> list[FrameVariant]:
        """The frame folders found under ``manual_dir``, preferred (cropped) first."""

    # ---------------------------------------------------------------- TFDS API
    def _info(self) -> tfds.core.DatasetInfo:
        protocol = self.builder_config.protocol
        n = preprocess.NUM_FRAMES
        size = preprocess.IMAGE_SIZE
        zlib = tfds.features.Encoding.ZLIB
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "frames": tfds.features.Tensor(shape=(n, size, size, 1), dtype=np.uint8, encoding=zlib),
                "di_target": tfds.features.Tensor(shape=(size, size), dtype=np.uint8, encoding=zlib),
                "label": tfds.features.ClassLabel(names=list(protocol.classes)),
                "label_name": tfds.features.Text(),
                "emotion": tfds.features.Text(),
                "subject": tfds.features.Text(),
                "clip_id": tfds.features.Text(),
                "onset": tfds.features.Scalar(dtype=np.int32),
                "apex": tfds.features.Scalar(dtype=np.int32),
                "offset": tfds.features.Scalar(dtype=np.int32),
                "frame_numbers": tfds.features.Tensor(shape=(n,), dtype=np.int32),
                "aus": tfds.features.Text(),
                "flags": tfds.features.Text(),
                "variant": tfds.features.Text(),
            }),
            supervised_keys=("frames", "label"),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        if not os.path.isdir(manual_dir):
            raise DatasetError(f"manual_dir {manual_dir} does not exist; see datasets/{self.name}/README.md")
        return {"train": self._generate_examples(manual_dir)}

    def annotation_file(self, manual_dir: str) -> str:
        path = frames_lib.find_file(manual_dir, self.ANNOTATION_PATTERNS)
        if path is None:
            raise DatasetError(f"no annotation file under {manual_dir} matching {list(self.ANNOTATION_PATTERNS)}; "
                               f"see datasets/{self.name}/README.md")
        return path

    def input_files(self, manual_dir: str) -> tuple[list[str], list[str]]:
        """The annotation file (hashed) and the frame-folder roots (size + mtime of their images) this builder
        reads, for the input fingerprint."""
        variants = self.frame_variants(manual_dir)
        if self._frames_variant != "auto":
            variants = [v for v in variants if v.cropped == (self._frames_variant == "cropped")]
        return [self.annotation_file(manual_dir)], [v.root for v in variants]

    def _generate_examples(self, manual_dir: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The examples; the build report is written at the end, and also when the build fails (then next to
        the version folder, see datasets/build_report.py)."""
        report = BuildReport(self.name, self.builder_config.name)
        try:
            yield from self._examples(manual_dir, report)
        except Exception as e:
            report.write_failed(self, e)
            raise
        report.info["status"] = "ok"
        report.write(os.fspath(self.data_dir))

    def _examples(self, manual_dir: str, report: BuildReport) -> Iterator[tuple[str, dict[str, Any]]]:
        from tqdm.auto import tqdm

        config = self.builder_config
        path = self.annotation_file(manual_dir)
        rows = self.parse(path, report)
        variants = self.frame_variants(manual_dir)
        if self._frames_variant != "auto":
            variants = [v for v in variants if v.cropped == (self._frames_variant == "cropped")]
        if not variants:
            raise DatasetError(f"no frame folder ({self._frames_variant}) found under {manual_dir}; "
                               f"see datasets/{self.name}/README.md for the expected layout")
        report.info.update(annotation_file=os.path.relpath(path, manual_dir), sampling=config.sampling,
                           classes=list(config.protocol.classes), annotation_rows=len(rows),
                           frame_variants={v.name: os.path.relpath(v.root, manual_dir) for v in variants},
                           landmark_alignment=bool(self._landmark_predictor))
        crop = self._cropper(report)
        per_class: dict[str, int] = {}
        per_subject: dict[str, int] = {}
        in_protocol = 0
        for ann in tqdm(rows, total=len(rows), desc=f"{self.name}/{config.name}", mininterval=1.0):
            if ann.emotion not in self.KNOWN_LABELS:
                report.skip("unknown_label", file=ann.source, row=ann.row, clip=ann.key, label=ann.emotion)
                continue
            label = config.protocol.mapping.get(ann.emotion)
            if label is None:
                report.note("excluded_by_protocol", label=ann.emotion)
                continue
            in_protocol += 1
            found = [(v, d) for v in variants if (d := v.resolve(ann))]
            if not found:
                report.skip("folder_missing", file=ann.source, row=ann.row, clip=ann.key,
                            searched=[v.root for v in variants])
                continue
            variant, clip_dir = found[0]
            try:
                example = self._example(ann, label, clip_dir, variant, crop, report)
            except _SkipClip:
                continue
            report.note(f"variant_{variant.name}")
            per_class[label] = per_class.get(label, 0) + 1
            per_subject[ann.subject] = per_subject.get(ann.subject, 0) + 1
            yield ann.key, example
        report.info.update(examples=sum(per_class.values()), per_class=per_class,
                           per_subject=dict(sorted(per_subject.items())))
        if not per_class:
            raise DatasetError(self._no_examples_message(path, rows, in_protocol, variants, report))

    def _no_examples_message(self, path: str, rows: Sequence[ann_lib.ClipAnnotation], in_protocol: int,
                             variants: Sequence[FrameVariant], report: BuildReport) -> str:
        skips = dict(report.counts["skips"])
        head = (f"{path}: no annotation row gave an example for {self.name}/{self.builder_config.name} "
                f"({len(rows)} usable rows, {in_protocol} in the classes {list(self.builder_config.protocol.classes)}"
                f"; skipped: {skips or 'none'}).")
        missing = report.events.get("skips/folder_missing")
        if missing:
            first = missing[0]
            return (f"{head} Expected a frame folder for each row under {', '.join(v.root for v in variants)}; "
                    f"the first one not found is {first['file']} row {first['row']} ({first['clip']}). "
                    f"See datasets/{self.name}/README.md for the folder layout.")
        if in_protocol == 0:
            return f"{head} Expected rows labelled with one of {sorted(self.builder_config.protocol.mapping)}."
        return f"{head} Expected rows whose frames can be read; see the skipped rows in build_report.json."

    # ---------------------------------------------------------------- per clip
    def _cropper(self, report: BuildReport) -> Callable:
        if self._landmark_predictor:
            landmarker = preprocess.dlib_landmarker(self._landmark_predictor)
            per_frame = self.builder_config.sampling == "reference"  # the official per-frame alignment
            report.info["face"] = "dlib landmarks (" + ("per frame, official" if per_frame else "one per clip") + ")"

            def crop(raw: np.ndarray, variant: FrameVariant) -> np.ndarray | None:
                if per_frame:
                    affines = [preprocess.clip_landmark_affine([f], landmarker) for f in raw]
                    if any(a is None for a in affines):
                        return None
                    return np.stack([preprocess.warp(f, a) for f, a in zip(raw, affines)])
                affine = preprocess.clip_landmark_affine(list(raw), landmarker)
                return None if affine is None else np.stack([preprocess.warp(f, affine) for f in raw])
            return crop
        detector = preprocess.haar_detector()
        report.info["face"] = "dataset crops, else " + ("OpenCV Haar cascade (one box per clip)" if detector
                                                        else "centre crop (this OpenCV has no Haar cascade)")

        def crop(raw: np.ndarray, variant: FrameVariant) -> np.ndarray | None:
            if variant.cropped:
                return np.stack([preprocess.resize_full(f) for f in raw])
            box = preprocess.clip_box(list(raw), detector, box_enlarge=self._box_enlarge)
            if box is None:
                return None
            return np.stack([preprocess.warp(f, preprocess.box_affine(box)) for f in raw])
        return crop

    def _example(self, ann: ann_lib.ClipAnnotation, label: str, clip_dir: str, variant: FrameVariant,
                 crop: Callable, report: BuildReport) -> dict[str, Any]:
        where = {"file": ann.source, "row": ann.row, "clip": ann.key}
        try:
            fmap = frames_lib.frame_map(clip_dir)
        except DatasetError as e:  # two files with one frame number: ambiguous, leave the clip out
            report.skip("duplicate_frame_numbers", error=str(e), **where)
            raise _SkipClip from e
        if not fmap:
            report.skip("no_frames", folder=clip_dir, **where)
            raise _SkipClip
        last = max(fmap)
        digits = frames_lib.frame_digits(fmap[last])
        if digits != len(str(last)):  # zero-padded names (SAMM: 4 or 5 digits, CAS(ME)^2 rawpic: img001)
            report.note(f"frame_names_padded_to_{digits}_digits")
        if ann.clip_offset is None:  # offset 0: apex + (apex - onset), at most the last frame on disk
            end = ann.apex + (ann.apex - ann.clip_onset) if ann.apex > ann.clip_onset else last
            end = min(max(end, ann.clip_onset), last)
        else:
            end = ann.clip_offset
        numbers = sorted(n for n in fmap if ann.clip_onset <= n <= end)
        if not numbers:
            report.skip("no_frames_in_range", folder=clip_dir, onset=ann.clip_onset, offset=end,
                        on_disk=f"{min(fmap)}..{last}", **where)
            raise _SkipClip
        if len(numbers) < 2:  # 8 copies of one frame: no motion, and the DI target would be stretched noise
            report.skip("single_frame_clip", folder=clip_dir, onset=ann.clip_onset, offset=end,
                        frame=numbers[0], **where)
            raise _SkipClip
        if len(numbers) != end - ann.clip_onset + 1:
            ann.flags.append("frames_missing")
            report.fix("frames_missing", expected=end - ann.clip_onset + 1, found=len(numbers), **where)
        ann_lib.finish_apex(ann, end)
        if len(numbers) < preprocess.NUM_FRAMES:
            ann.flags.append("short_clip_interpolated")
            report.fix("short_clip_interpolated", frames=len(numbers), **where)
        positions = preprocess.sample_positions(len(numbers), mode=self.builder_config.sampling)
        shape: list[tuple[int, int]] = []

        def load(i: int) -> np.ndarray:
            order = sorted(range(len(numbers)), key=lambda j: (abs(j - i), j))
            for j in order:
                image = frames_lib.read_gray(fmap[numbers[j]])
                if image is None:
                    report.fix("corrupt_frame", path=fmap[numbers[j]], **where)
                    if "corrupt_frame" not in ann.flags:
                        ann.flags.append("corrupt_frame")
                    continue
                if shape and image.shape != shape[0]:
                    report.fix("frame_size_mismatch", path=fmap[numbers[j]], **where)
                    image = preprocess.cv2.resize(image, shape[0][::-1], interpolation=preprocess.cv2.INTER_AREA)
                shape[:] = shape or [image.shape]
                return image
            report.skip("all_frames_corrupt", folder=clip_dir, **where)
            raise _SkipClip

        raw = preprocess.gather_frames(positions, load)
        frames = crop(raw, variant)
        if frames is None:
            ann.flags.append("no_face_found")
            report.fix("no_face_found", **where)
            box = preprocess.centre_box(raw.shape[1:])
            frames = np.stack([preprocess.warp(f, preprocess.box_affine(box)) for f in raw])
        return {
            "frames": frames[..., None].astype(np.uint8),
            "di_target": preprocess.dynamic_image(frames),
            "label": label,
            "label_name": label,
            "emotion": ann.emotion,
            "subject": ann.subject,
            "clip_id": ann.key,
            "onset": np.int32(ann.onset),
            "apex": np.int32(ann.apex),
            "offset": np.int32(ann.offset),
            "frame_numbers": np.array([numbers[int(np.floor(p))] for p in positions], np.int32),
            "aus": ann.aus,
            "flags": ",".join(ann.flags),
            "variant": variant.name,
        }
