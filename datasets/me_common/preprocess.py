"""Temporal sampling, face crop / alignment to 64x64 grayscale, and the dynamic-image target.

Shapes: a clip is ``(T, H, W)`` uint8 grayscale; the output frames are ``(8, 64, 64)`` uint8 and the
dynamic image ``(64, 64)`` uint8.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Sequence

import cv2
import numpy as np

NUM_FRAMES = 8
IMAGE_SIZE = 64
SAMPLING_MODES = ("uniform", "reference")
DETECT_SIZE = 160.0  # Haar detection runs on frames downscaled to this long side (faces fill most of a frame)


# ----------------------------------------------------------------------------------------------- sampling
def sample_positions(length: int, num_frames: int = NUM_FRAMES, mode: str = "uniform") -> np.ndarray:
    """Fractional positions (num_frames,) into a clip of ``length`` available frames (0-based).

    - ``uniform`` (default, the paper's intent): ``linspace(0, length-1, num_frames)`` rounded to the nearest
      frame, so the first frame is the onset and the last the offset;
    - ``reference`` (official FDP code): ``i * (length // num_frames)`` from the clip start.
    Clips shorter than ``num_frames`` get fractional positions ``linspace(0, length-1)`` in both modes, to be
    linearly interpolated (see ``gather_frames``).
    """
    if length < 1:
        raise ValueError("a clip needs at least one frame")
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode {mode!r} not in {SAMPLING_MODES}")
    if length < num_frames:
        return np.linspace(0.0, length - 1, num_frames)
    if mode == "reference":
        return np.arange(num_frames, dtype=np.float64) * (length // num_frames)
    return np.round(np.linspace(0.0, length - 1, num_frames))


def gather_frames(positions: np.ndarray, load: Callable[[int], np.ndarray]) -> np.ndarray:
    """Frames at fractional ``positions``: integer positions are loaded, fractional ones are linear blends
    of their two neighbours (temporal interpolation). ``load(i)`` returns frame i as (H, W) uint8.
    Returns (len(positions), H, W) uint8 (rounded)."""
    cache: dict[int, np.ndarray] = {}

    def get(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = load(i).astype(np.float64)
        return cache[i]

    out = []
    for p in positions:
        lo = int(np.floor(p))
        w = float(p - lo)
        if w < 1e-9:
            out.append(get(lo))
        else:
            out.append((1.0 - w) * get(lo) + w * get(lo + 1))
    return np.clip(np.round(np.stack(out)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- dynamic image
def rank_pooling_coefficients(num_frames: int = NUM_FRAMES) -> np.ndarray:
    """Approximate rank pooling coefficients (Bilen et al. 2016), 0-based n:
    ``alpha[n] = sum_{i=n+1..T} (2i - T - 1) / i``. For T=8 they sum to 0."""
    t = num_frames
    return np.array([sum((2.0 * i - t - 1) / i for i in range(n + 1, t + 1)) for n in range(t)])


def dynamic_image(frames: np.ndarray) -> np.ndarray:
    """The official DI target of ``frames`` (T, H, W) uint8: sum_t alpha_t * frame_t/255 in float64, per-image
    min-max to 0..255 (``cv2.NORM_MINMAX``), then ``astype(uint8)`` (truncation). Returns (H, W) uint8."""
    gray = frames.astype(np.float64) / 255.0
    alpha = rank_pooling_coefficients(frames.shape[0])
    di = np.tensordot(alpha, gray, axes=(0, 0))
    if di.max() - di.min() <= 0:
        return np.zeros(di.shape, np.uint8)
    return cv2.normalize(di, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # the official arithmetic


# -------------------------------------------------------------------------------------------- face crop
@dataclasses.dataclass(frozen=True)
class Box:
    """A square crop box: centre (cx, cy) and half side, in pixels of the source frame."""
    cx: float
    cy: float
    half: float


def haar_detector() -> Callable[[np.ndarray], list[tuple[int, int, int, int]]] | None:
    """OpenCV's bundled frontal-face Haar cascade as ``detect(gray) -> [(x, y, w, h), ...]``, or None when this
    OpenCV build ships no cascades (OpenCV 5 moved ``CascadeClassifier`` out of the main wheel)."""
    cascade_cls = getattr(cv2, "CascadeClassifier", None)
    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if cascade_cls is None or not data_dir:
        return None
    import os
    path = os.path.join(data_dir, "haarcascade_frontalface_default.xml")
    if not os.path.isfile(path):
        return None
    cascade = cascade_cls(path)
    if cascade.empty():
        return None

    def detect(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        scale = min(1.0, DETECT_SIZE / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        boxes = cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(max(16, small.shape[0] // 8),) * 2)
        return [tuple(int(round(v / scale)) for v in b) for b in boxes]

    return detect


def clip_box(frames: Sequence[np.ndarray], detect: Callable | None, *, box_enlarge: float = 1.2,
             max_frames: int = 3) -> Box | None:
    """One box for the whole clip: the largest detection of each of ``max_frames`` evenly spaced frames
    (first, middle, last by default), the median centre and size over the frames with a detection (robust
    temporal smoothing), enlarged by ``box_enlarge``. None if no face."""
    if detect is None:
        return None
    found = []
    picks = np.unique(np.round(np.linspace(0, len(frames) - 1, min(max_frames, len(frames)))).astype(int))
    for frame in (frames[i] for i in picks):
        boxes = detect(frame)
        if len(boxes):
            x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
            found.append((x + w / 2.0, y + h / 2.0, max(w, h) / 2.0))
    if not found:
        return None
    cx, cy, half = np.median(np.asarray(found, np.float64), axis=0)
    return Box(float(cx), float(cy), float(half * box_enlarge))


def centre_box(shape: tuple[int, int]) -> Box:
    """The largest centred square of an (H, W) frame (the no-face fallback)."""
    h, w = shape
    return Box((w - 1) / 2.0, (h - 1) / 2.0, min(h, w) / 2.0)


def box_affine(box: Box, size: int = IMAGE_SIZE) -> np.ndarray:
    """2x3 affine mapping the square ``box`` onto a ``size`` x ``size`` image (official scale convention)."""
    s = (size - 1) / 2.0 / box.half
    return np.array([[s, 0.0, s * (box.half - box.cx)], [0.0, s, s * (box.half - box.cy)]])


def warp(frame: np.ndarray, affine: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Bilinear ``cv2.warpAffine`` to (size, size) with the official border value 128."""
    return cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=128)


def resize_full(frame: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A dataset-cropped face frame resized to (size, size) (area interpolation)."""
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------ dlib landmark alignment
def landmark_affine(landmarks: np.ndarray, *, box_enlarge: float = 2.5, size: int = IMAGE_SIZE) -> np.ndarray:
    """The official FDP / JAA-Net alignment (fdp_spec §4.3) from 68 landmarks (68, 2) -> 2x3 affine.

    Rotation by the eye line (eye centres = mean of landmarks 36-41 and 42-47); the box of the rotated eye
    centres, nose tip (30) and mouth corners (48, 54), half size = 0.5 * box_enlarge * max(width, height);
    scale = (size - 1) / 2 / half.
    """
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {pts.shape}")
    left, right = pts[36:42].mean(0), pts[42:48].mean(0)
    dx, dy = right - left
    length = float(np.hypot(dx, dy))
    cos, sin = dx / length, dy / length
    rot = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    five = np.stack([left, right, pts[30], pts[48], pts[54]])
    rotated = (rot[:2, :2] @ five.T).T
    lo, hi = rotated.min(0), rotated.max(0)
    cx, cy = (lo + hi) / 2.0
    half = 0.5 * box_enlarge * float(max(hi - lo))
    s = (size - 1) / 2.0 / half
    scale = np.array([[s, 0.0, s * (half - cx)], [0.0, s, s * (half - cy)], [0.0, 0.0, 1.0]])
    return (scale @ rot)[:2]


def dlib_landmarker(predictor_path: str) -> Callable[[np.ndarray], np.ndarray | None]:
    """``landmarks(gray) -> (68, 2) | None`` with dlib's frontal detector (upsample 1) and the given 68-point
    shape predictor. dlib is imported lazily (it is an optional dependency)."""
    try:
        dlib = importlib.import_module("dlib")
    except ImportError as e:
        raise ImportError("landmark alignment needs dlib (pip install dlib) and a "
                          "shape_predictor_68_face_landmarks.dat file") from e
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(predictor_path)

    def landmarks(gray: np.ndarray) -> np.ndarray | None:
        dets = detector(gray, 1)
        if len(dets) == 0:
            return None
        shape = predictor(gray, dets[0])
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)

    return landmarks


def clip_landmark_affine(frames: Sequence[np.ndarray], landmarker: Callable, *,
                         box_enlarge: float = 2.5) -> np.ndarray | None:
    """One alignment for the whole clip: landmarks averaged over the frames where a face was found (temporal
    smoothing; the official code aligns every frame independently). None if no face in any frame."""
    found = [lm for lm in (landmarker(f) for f in frames) if lm is not None]
    if not found:
        return None
    return landmark_affine(np.mean(found, axis=0), box_enlarge=box_enlarge)
