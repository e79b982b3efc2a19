"""Procedural grayscale faces: one identity per subject, rendered once, deformed per frame.

All geometry is expressed in units of ``unit`` (the face scale in pixels; AU amplitudes are defined at
``unit == 128``). A rendered identity is a float32 (H, W) image in [0, 255], a dict of landmarks in pixel
coordinates, and the face box used for the "cropped" release variants.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# Lateral landmarks exist twice: suffix '_L' is the subject's left (image right), '_R' the subject's right.
LATERAL_LANDMARKS = ("brow_inner", "brow_outer", "upper_lid", "lower_lid", "eye", "cheek", "nose_wing",
                     "mouth_corner")
CENTRAL_LANDMARKS = ("glabella", "nose_tip", "upper_lip", "lower_lip", "chin")


@dataclasses.dataclass(frozen=True)
class FaceIdentity:
    """Geometry, tone, texture and lighting of one synthetic subject (all lengths in px)."""
    frame_hw: tuple[int, int]
    unit: float
    center: tuple[float, float]
    half_w: float
    half_h: float
    skin: float
    background: float
    hair: float
    hairline: float
    eye_dy: float
    eye_dx: float
    eye_rx: float
    eye_ry: float
    iris: float
    brow_gap: float
    brow_thick: float
    brow_tilt: float
    brow_dark: float
    nose_len: float
    nostril_dx: float
    mouth_dy: float
    mouth_half_w: float
    lip_thick: float
    lip_dark: float
    texture_amp: float
    light_angle: float
    light_strength: float
    noise_sigma: float
    tint: tuple[float, float, float]
    texture_seed: int


def sample_identity(rng: np.random.Generator, frame_hw: tuple[int, int]) -> FaceIdentity:
    """Draws one subject's face parameters. ``frame_hw`` is the raw frame (H, W)."""
    h, w = frame_hw
    unit = 0.8 * min(h, w)
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    skin = u(105.0, 200.0)
    # Keep the background clearly different from the skin so the head outline is visible.
    background = u(20.0, skin - 45.0) if rng.random() < 0.6 or skin > 185 else u(min(skin + 45.0, 235.0), 245.0)
    half_h = unit * u(0.44, 0.49)
    return FaceIdentity(
        frame_hw=(int(h), int(w)), unit=float(unit),
        center=(w / 2 + unit * u(-0.05, 0.05), h / 2 + unit * u(0.0, 0.04)),
        half_w=unit * u(0.33, 0.39), half_h=half_h, skin=skin, background=background,
        hair=u(10.0, 70.0), hairline=u(0.55, 0.72),
        eye_dy=unit * u(-0.10, -0.06), eye_dx=unit * u(0.125, 0.155),
        eye_rx=unit * u(0.050, 0.062), eye_ry=unit * u(0.022, 0.030), iris=u(30.0, 90.0),
        brow_gap=unit * u(0.065, 0.085), brow_thick=unit * u(0.014, 0.022), brow_tilt=u(-0.18, 0.12),
        brow_dark=u(0.30, 0.55), nose_len=unit * u(0.10, 0.14), nostril_dx=unit * u(0.030, 0.042),
        mouth_dy=unit * u(0.22, 0.27), mouth_half_w=unit * u(0.085, 0.115), lip_thick=unit * u(0.012, 0.02),
        lip_dark=u(0.55, 0.8), texture_amp=u(2.0, 8.0), light_angle=u(0, 2 * np.pi),
        light_strength=u(0.0, 0.22), noise_sigma=u(1.0, 2.5),
        tint=(u(0.80, 0.92), u(0.90, 0.97), 1.0), texture_seed=int(rng.integers(2**31)))


def landmarks(face: FaceIdentity) -> dict[str, tuple[float, float]]:
    """Named landmark positions (x, y) in raw-frame pixels."""
    cx, cy = face.center
    ey = cy + face.eye_dy
    pts: dict[str, tuple[float, float]] = {}
    for name, sign in (("L", 1.0), ("R", -1.0)):
        ex = cx + sign * face.eye_dx
        brow_y = ey - face.brow_gap
        pts[f"eye_{name}"] = (ex, ey)
        pts[f"upper_lid_{name}"] = (ex, ey - face.eye_ry)
        pts[f"lower_lid_{name}"] = (ex, ey + face.eye_ry)
        pts[f"brow_inner_{name}"] = (ex - sign * face.eye_rx * 0.8, brow_y + face.brow_tilt * face.eye_rx * 0.8)
        pts[f"brow_outer_{name}"] = (ex + sign * face.eye_rx * 0.9, brow_y - face.brow_tilt * face.eye_rx * 0.9)
        pts[f"cheek_{name}"] = (ex + sign * face.eye_rx * 0.3, ey + 0.09 * face.unit)
        pts[f"nose_wing_{name}"] = (cx + sign * face.nostril_dx * 1.3, cy + face.nose_len - 0.01 * face.unit)
        pts[f"mouth_corner_{name}"] = (cx + sign * face.mouth_half_w, cy + face.mouth_dy)
    pts["glabella"] = (cx, ey - face.brow_gap * 0.6)
    pts["nose_tip"] = (cx, cy + face.nose_len)
    pts["upper_lip"] = (cx, cy + face.mouth_dy - face.lip_thick)
    pts["lower_lip"] = (cx, cy + face.mouth_dy + face.lip_thick * 1.3)
    pts["chin"] = (cx, cy + face.mouth_dy + 0.13 * face.unit)
    return pts


def face_box(face: FaceIdentity) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the face crop (brows to chin, cheek to cheek), clipped to the frame."""
    cx, cy = face.center
    h, w = face.frame_hw
    x0 = int(round(cx - face.half_w * 1.02))
    x1 = int(round(cx + face.half_w * 1.02))
    y0 = int(round(cy + face.eye_dy - face.brow_gap - 0.1 * face.unit))
    y1 = int(round(cy + face.half_h * 1.0))
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             angle: float = 0.0) -> np.ndarray:
    """Anti-aliased filled ellipse mask in [0, 1] (edge about one pixel wide)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    u, v = (c * dx + s * dy) / rx, (-s * dx + c * dy) / ry
    d = np.sqrt(u * u + v * v)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0).astype(np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    img *= 1.0 - mask
    img += mask * value


def render_face(face: FaceIdentity) -> np.ndarray:
    """The neutral face of ``face`` as float32 (H, W) in [0, 255] (no noise, no per-clip lighting)."""
    h, w = face.frame_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = face.center
    tex_rng = np.random.default_rng(face.texture_seed)
    img = np.full((h, w), face.background, np.float32)
    img += cv2.GaussianBlur(tex_rng.standard_normal((h, w)).astype(np.float32), (0, 0), 6.0) * 25.0
    # Neck and shoulders, then hair (a slightly larger head), then the skin below the hairline.
    neck = np.clip(np.minimum(np.abs(xx - cx) < face.half_w * 0.55, yy > cy), 0, 1).astype(np.float32)
    _paint(img, neck, face.skin * 0.8)
    _paint(img, _ellipse(xx, yy, cx, cy + face.half_h * 1.4, face.half_w * 2.2, face.half_h * 0.55),
           face.background * 0.5 + 40)
    _paint(img, _ellipse(xx, yy, cx, cy - face.half_h * 0.04, face.half_w * 1.07, face.half_h * 1.04), face.hair)
    face_mask = _ellipse(xx, yy, cx, cy, face.half_w, face.half_h)
    hair_y = cy - face.half_h * face.hairline
    below_hairline = np.clip((yy - hair_y) / 2.0 + 0.5, 0.0, 1.0)
    r2 = ((xx - cx) / face.half_w) ** 2 + ((yy - cy) / face.half_h) ** 2
    skin = face.skin * (1.0 - 0.28 * np.clip(r2, 0, 1) ** 2)
    skin += cv2.GaussianBlur(tex_rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.2) * face.texture_amp
    _paint(img, face_mask * below_hairline, skin)
    s = face.skin
    pts = landmarks(face)
    ey = cy + face.eye_dy
    for side, sign in (("L", 1.0), ("R", -1.0)):
        ex = cx + sign * face.eye_dx
        # Eye socket shading, lash line, sclera, iris, pupil.
        _paint(img, 0.35 * _ellipse(xx, yy, ex, ey - face.eye_ry * 0.3, face.eye_rx * 1.7, face.eye_ry * 3.2), s * 0.6)
        _paint(img, _ellipse(xx, yy, ex, ey, face.eye_rx + 1.2, face.eye_ry + 1.0), s * 0.35)
        _paint(img, _ellipse(xx, yy, ex, ey, face.eye_rx, face.eye_ry), min(s + 45.0, 235.0))
        _paint(img, _ellipse(xx, yy, ex, ey, face.eye_ry * 1.05, face.eye_ry * 1.05), face.iris)
        _paint(img, _ellipse(xx, yy, ex, ey, face.eye_ry * 0.45, face.eye_ry * 0.45), 15.0)
        # Brow: a tilted bar between the inner and outer brow landmarks.
        (bx0, by0), (bx1, by1) = pts[f"brow_inner_{side}"], pts[f"brow_outer_{side}"]
        angle = float(np.arctan2(by1 - by0, bx1 - bx0))
        length = float(np.hypot(bx1 - bx0, by1 - by0))
        _paint(img, _ellipse(xx, yy, (bx0 + bx1) / 2, (by0 + by1) / 2, length * 0.62, face.brow_thick, angle),
               s * face.brow_dark)
        # Nostril, nose wing shading, nasolabial fold.
        nx, ny = pts[f"nose_wing_{side}"]
        _paint(img, 0.5 * _ellipse(xx, yy, nx, ny, face.nostril_dx * 0.7, face.nostril_dx * 0.6), s * 0.7)
        _paint(img, _ellipse(xx, yy, cx + sign * face.nostril_dx * 0.75, ny + 0.004 * face.unit,
                             face.nostril_dx * 0.38, face.nostril_dx * 0.2), s * 0.35)
        mx, my = pts[f"mouth_corner_{side}"]
        fx, fy = (nx + mx + sign * 4) / 2 + sign * 3, (ny + my) / 2
        fold_angle = float(np.arctan2(my - ny, mx + sign * 4 - nx))
        _paint(img, 0.45 * _ellipse(xx, yy, fx, fy, np.hypot(my - ny, mx - nx) * 0.6, 1.3, fold_angle), s * 0.7)
    # Nose bridge highlight and tip.
    _paint(img, 0.35 * _ellipse(xx, yy, cx, (ey + cy + face.nose_len) / 2, face.nostril_dx * 0.45,
                                (cy + face.nose_len - ey) / 2), min(s * 1.12, 250.0))
    _paint(img, 0.4 * _ellipse(xx, yy, cx, cy + face.nose_len - 0.015 * face.unit, face.nostril_dx * 0.8,
                               face.nostril_dx * 0.55), min(s * 1.1, 250.0))
    # Lips and the mouth line.
    my = cy + face.mouth_dy
    _paint(img, _ellipse(xx, yy, cx, my - face.lip_thick * 0.5, face.mouth_half_w, face.lip_thick),
           s * face.lip_dark)
    _paint(img, _ellipse(xx, yy, cx, my + face.lip_thick * 0.8, face.mouth_half_w * 0.85, face.lip_thick * 1.2),
           s * (face.lip_dark + 0.1))
    _paint(img, _ellipse(xx, yy, cx, my, face.mouth_half_w * 1.02, 0.9), s * 0.3)
    _paint(img, 0.3 * _ellipse(xx, yy, cx, my + 0.12 * face.unit, face.mouth_half_w * 0.7, 0.03 * face.unit),
           s * 0.85)
    # Global directional lighting.
    ux = ((xx - cx) * np.cos(face.light_angle) + (yy - cy) * np.sin(face.light_angle)) / face.unit
    img *= 1.0 + face.light_strength * ux
    return np.clip(img, 0.0, 255.0).astype(np.float32)
