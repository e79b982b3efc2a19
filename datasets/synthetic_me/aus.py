"""AU-like displacement fields, emotion -> AU combinations, objective classes and onset/apex/offset timing.

A displacement field is float32 (H, W, 2) in pixels, (dx, dy) with y pointing down; it moves image content
by (dx, dy) (backward warp ``out(p) = in(p - d(p))``). Amplitudes are given at face unit 128 px and scaled.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from datasets.synthetic_me.faces import FaceIdentity, landmarks

# AU -> bumps (landmark, (dx, dy) in px at unit 128, sigma as a fraction of the unit). For lateral landmarks
# dx > 0 means "outward" (away from the face midline); central landmarks have no side.
AU_BUMPS: dict[str, tuple[tuple[str, tuple[float, float], float], ...]] = {
    "1": (("brow_inner", (0.0, -2.6), 0.045),),
    "2": (("brow_outer", (0.0, -2.6), 0.045),),
    "4": (("brow_inner", (-1.3, 2.0), 0.045), ("glabella", (0.0, 1.0), 0.03)),
    "5": (("upper_lid", (0.0, -1.6), 0.025),),
    "6": (("cheek", (0.0, -2.2), 0.055), ("lower_lid", (0.0, -1.0), 0.025)),
    "7": (("lower_lid", (0.0, -1.6), 0.022), ("upper_lid", (0.0, 0.8), 0.022)),
    "9": (("nose_wing", (0.0, -2.2), 0.035), ("glabella", (0.0, 1.2), 0.03)),
    "10": (("upper_lip", (0.0, -2.2), 0.045), ("nose_wing", (0.0, -0.8), 0.03)),
    "12": (("mouth_corner", (1.8, -2.2), 0.04),),
    "14": (("mouth_corner", (2.2, 0.0), 0.032),),
    "15": (("mouth_corner", (0.3, 2.4), 0.04),),
    "17": (("chin", (0.0, -2.2), 0.055), ("lower_lip", (0.0, -1.2), 0.035)),
    "18": (("mouth_corner", (-2.0, 0.0), 0.035),),
    "20": (("mouth_corner", (2.6, 0.6), 0.045),),
    "24": (("upper_lip", (0.0, 1.2), 0.03), ("lower_lip", (0.0, -1.4), 0.03)),
}

# Emotion (lower case) -> weighted AU-combination options, written as in the annotation files.
EMOTION_AUS: dict[str, tuple[tuple[str, float], ...]] = {
    "happiness": (("6+12", 0.55), ("12", 0.3), ("R12", 0.08), ("L12", 0.07)),
    "surprise": (("1+2", 0.8), ("1+2+5", 0.2)),
    "disgust": (("9", 0.35), ("10", 0.3), ("9+10", 0.35)),
    "repression": (("14", 0.3), ("15", 0.25), ("17", 0.25), ("15+17", 0.2)),
    "anger": (("4", 0.6), ("4+7", 0.4)),
    "contempt": (("L14", 0.5), ("R14", 0.5)),
    "fear": (("1+2+4+20", 0.6), ("1+4+20", 0.4)),
    "sadness": (("1+4+15", 0.7), ("4+15", 0.3)),
    "others": (("5", 0.2), ("7", 0.2), ("18", 0.2), ("24", 0.2), ("5+24", 0.1), ("7+18", 0.1)),
}
EMOTION_ALIASES = {"happy": "happiness", "sad": "sadness", "other": "others", "positive": "happiness",
                   "negative": "negative"}
NEGATIVE_EMOTIONS = ("disgust", "anger", "sadness", "fear", "repression")
OBJECTIVE_CLASS = {"happiness": 1, "surprise": 2, "anger": 3, "disgust": 4, "sadness": 5, "repression": 5,
                   "fear": 6, "contempt": 7, "others": 7}
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


def canonical_emotion(emotion: str) -> str:
    """'Happy', 'Other', 'sad' ... -> the key of EMOTION_AUS (negative is resolved by the caller)."""
    e = str(emotion).strip().lower()
    return EMOTION_ALIASES.get(e, e)


def sample_au_string(rng: np.random.Generator, emotion: str) -> str:
    """An AU combination such as '6+12' or 'L14' for ``emotion`` (any EMOTION_AUS key or alias)."""
    e = canonical_emotion(emotion)
    if e == "negative":
        e = NEGATIVE_EMOTIONS[int(rng.integers(len(NEGATIVE_EMOTIONS)))]
    options = EMOTION_AUS[e]
    probs = np.array([p for _, p in options])
    return options[int(rng.choice(len(options), p=probs / probs.sum()))][0]


def parse_au_string(aus: str) -> list[tuple[str, str]]:
    """'6+R12' -> [('6', ''), ('12', 'R')]; unknown AUs raise ValueError."""
    out = []
    for tok in str(aus).split("+"):
        tok = tok.strip()
        side = tok[0] if tok[:1] in ("L", "R") else ""
        au = tok[len(side):]
        if au not in AU_BUMPS:
            raise ValueError(f"AU {tok!r} in {aus!r} has no displacement field (known: {sorted(AU_BUMPS)})")
        out.append((au, side))
    return out


def au_cell(aus: str) -> int | str:
    """How the release stores it: a single plain AU is a number (12), anything else text ('4+7', 'R12')."""
    return int(aus) if str(aus).isdigit() else str(aus)


def _add_bump(field: np.ndarray, x: float, y: float, dx: float, dy: float, sigma: float) -> None:
    h, w = field.shape[:2]
    r = int(np.ceil(3 * sigma))
    x0, x1 = max(int(x) - r, 0), min(int(x) + r + 2, w)
    y0, y1 = max(int(y) - r, 0), min(int(y) + r + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma * sigma))
    field[y0:y1, x0:x1, 0] += dx * g
    field[y0:y1, x0:x1, 1] += dy * g


def au_field(face: FaceIdentity, aus: str) -> np.ndarray:
    """Displacement field (H, W, 2) at full intensity of the AU combination ``aus`` (e.g. '1+2', 'L14')."""
    h, w = face.frame_hw
    field = np.zeros((h, w, 2), np.float32)
    pts = landmarks(face)
    scale = face.unit / 128.0
    for au, side in parse_au_string(aus):
        for name, (dx, dy), sigma in AU_BUMPS[au]:
            if f"{name}_L" in pts:
                for s, sign in (("L", 1.0), ("R", -1.0)):
                    if side and side != s:
                        continue
                    x, y = pts[f"{name}_{s}"]
                    _add_bump(field, x, y, sign * dx * scale, dy * scale, sigma * face.unit)
            else:
                k = 0.5 if side else 1.0
                x, y = pts[name]
                if side:  # a unilateral AU pulls the central point towards its side only a little
                    x += (1.0 if side == "L" else -1.0) * 0.03 * face.unit
                _add_bump(field, x, y, k * dx * scale, k * dy * scale, sigma * face.unit)
    return field


def blink_field(face: FaceIdentity) -> np.ndarray:
    """Displacement (H, W, 2) that closes both eyes: the upper lid slides down over the eye."""
    h, w = face.frame_hw
    field = np.zeros((h, w, 2), np.float32)
    pts = landmarks(face)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for s in ("L", "R"):
        x, y = pts[f"eye_{s}"]
        g = np.exp(-((xx - x) / (face.eye_rx * 1.3)) ** 2 / 2 - ((yy - y) / (face.eye_ry * 1.6)) ** 2 / 2)
        field[..., 1] += 2.2 * face.eye_ry * g
    return field


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def intensity_profile(frames: Sequence[int] | np.ndarray, onset: int, apex: int, offset: int) -> np.ndarray:
    """Expression intensity in [0, 1] at absolute ``frames``: 0 at onset, 1 at apex, back to 0 at offset."""
    n = np.asarray(frames, np.float64)
    rise = smoothstep((n - onset) / max(apex - onset, 1e-6))
    fall = smoothstep((offset - n) / max(offset - apex, 1e-6))
    out = np.where(n <= apex, rise, fall)
    out[(n < onset) | (n > offset)] = 0.0
    return out.astype(np.float32)


def blink_profile(frames: Sequence[int] | np.ndarray, start: int, duration: int) -> np.ndarray:
    """Eye closure in [0, 1]: a sin^2 bump over ``duration`` frames from ``start``."""
    t = (np.asarray(frames, np.float64) - start) / max(duration, 1)
    return np.where((t >= 0) & (t <= 1), np.sin(np.pi * t) ** 2, 0.0).astype(np.float32)
