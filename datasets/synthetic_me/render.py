"""Renders one video timeline (events = expressions, blinks, head jitter, noise) and writes its frames.

A video is rendered frame by frame at absolute frame numbers; every output (a release folder such as
``CASME2_RAW_selected/sub01/EP02_01f`` or ``Cropped/sub01/EP02_01f``) receives a subset of those frames.
"""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from datasets.synthetic_me import aus as au_lib
from datasets.synthetic_me.faces import FaceIdentity, face_box, render_face


@dataclasses.dataclass(frozen=True)
class Event:
    """One facial expression: true (rendered) onset/apex/offset frame numbers and its AU combination."""
    onset: int
    apex: int
    offset: int
    aus: str
    intensity: float


@dataclasses.dataclass(frozen=True)
class Output:
    """Frames ``frames`` written as ``directory/pattern.format(n=frame)`` in the raw or the cropped variant."""
    kind: str  # 'raw' | 'cropped'
    directory: str
    pattern: str
    frames: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class VideoPlan:
    subject: str
    fps: float
    events: tuple[Event, ...]
    outputs: tuple[Output, ...]
    color: bool
    seed: int


@dataclasses.dataclass
class SubjectAssets:
    """Per-subject cache: identity, neutral render, face box, the motion region and AU fields within it."""
    face: FaceIdentity
    base: np.ndarray
    box: tuple[int, int, int, int]
    region: tuple[int, int, int, int]
    grid: tuple[np.ndarray, np.ndarray]
    blink: np.ndarray
    fields: dict[str, np.ndarray]

    @classmethod
    def create(cls, face: FaceIdentity) -> "SubjectAssets":
        h, w = face.frame_hw
        x0, y0, x1, y1 = face_box(face)
        mx, my = int(0.15 * (x1 - x0)), int(0.1 * (y1 - y0))
        region = (max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, w), min(y1 + my, h))
        rx0, ry0, rx1, ry1 = region
        yy, xx = np.mgrid[ry0:ry1, rx0:rx1].astype(np.float32)
        return cls(face=face, base=render_face(face), box=(x0, y0, x1, y1), region=region, grid=(xx, yy),
                   blink=au_lib.blink_field(face)[ry0:ry1, rx0:rx1].copy(), fields={})

    def field(self, aus: str) -> np.ndarray:
        """The AU field restricted to the motion region, (h_region, w_region, 2)."""
        if aus not in self.fields:
            rx0, ry0, rx1, ry1 = self.region
            self.fields[aus] = au_lib.au_field(self.face, aus)[ry0:ry1, rx0:rx1].copy()
        return self.fields[aus]


def _to_uint8(img: np.ndarray, color: bool, tint: tuple[float, float, float]) -> np.ndarray:
    np.clip(img, 0.0, 255.0, out=img)
    if not color:
        return cv2.convertScaleAbs(img)
    return cv2.merge([cv2.convertScaleAbs(img, alpha=t) for t in tint])


def render_video(assets: SubjectAssets, plan: VideoPlan, out_dir: str, jpeg_quality: int = 92) -> int:
    """Renders ``plan`` and writes every output's frames under ``out_dir``. Returns the number of files."""
    face = assets.face
    rng = np.random.default_rng(plan.seed)
    frames = sorted({n for o in plan.outputs for n in o.frames})
    if not frames:
        return 0
    h, w = face.frame_hw
    scale = face.unit / 128.0
    # Blinks: a Poisson number per video, each about 0.15 s long, at random times in the rendered span.
    span = frames[-1] - frames[0] + 1
    n_blinks = rng.poisson(0.3 + 0.35 * span / plan.fps)
    blink_len = max(int(round(0.15 * plan.fps)), 2)
    blinks = [int(rng.integers(frames[0] - blink_len, frames[-1] + 1)) for _ in range(n_blinks)]
    # Head jitter: a per-video offset plus a slow random walk; the cropped ("registered") variant keeps 20%.
    walk = np.cumsum(rng.normal(0.0, 0.06 * scale * np.sqrt(200.0 / plan.fps), (span, 2)), axis=0)
    jitter = walk - walk.mean(axis=0) + rng.uniform(-1.5, 1.5, 2) * scale
    # Per-video lighting: gain and a gradient; per-frame flicker.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    light = (rng.uniform(0.9, 1.1) * (1.0 + rng.uniform(0.0, 0.06) *
             ((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)) / face.unit)).astype(np.float32)
    event_fields = [(au_lib.intensity_profile(frames, ev.onset, ev.apex, ev.offset), assets.field(ev.aus)
                     * np.float32(ev.intensity)) for ev in plan.events]
    closure = np.zeros(len(frames), np.float32)
    for b in blinks:
        closure = np.maximum(closure, au_lib.blink_profile(frames, b, blink_len))
    bx0, by0, bx1, by1 = assets.box
    rx0, ry0, rx1, ry1 = assets.region
    gx, gy = assets.grid
    by_frame: dict[int, list[Output]] = {}
    for o in plan.outputs:
        os.makedirs(os.path.join(out_dir, o.directory), exist_ok=True)
        for n in o.frames:
            by_frame.setdefault(n, []).append(o)
    written = 0
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    frame0 = assets.base.copy()
    for i, n in enumerate(frames):
        disp = np.zeros(gx.shape + (2,), np.float32)
        for profile, field in event_fields:
            if profile[i] > 0:
                disp += profile[i] * field
        if closure[i] > 0:
            disp += closure[i] * assets.blink
        frame0[ry0:ry1, rx0:rx1] = cv2.remap(assets.base, gx - disp[..., 0], gy - disp[..., 1], cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_REFLECT)
        jx, jy = jitter[n - frames[0]]
        flicker = np.float32(1.0 + rng.normal(0.0, 0.004))
        images = {}
        for kind in sorted({o.kind for o in by_frame[n]}):
            if kind == "raw":
                img = cv2.warpAffine(frame0, np.float32([[1, 0, jx], [0, 1, jy]]), (w, h),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                lit = light
            else:  # registered crop: only 20% of the head motion is left
                m = np.float32([[1, 0, 0.2 * jx - bx0], [0, 1, 0.2 * jy - by0]])
                img = cv2.warpAffine(frame0, m, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT)
                lit = light[by0:by1, bx0:bx1]
            img *= lit
            img *= flicker
            noise = rng.standard_normal(img.shape, dtype=np.float32)
            noise *= np.float32(face.noise_sigma)
            img += noise
            images[kind] = _to_uint8(img, plan.color, face.tint)
        for o in by_frame[n]:
            ok, buf = cv2.imencode(".jpg", images[o.kind], params)
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {o.directory}/{o.pattern.format(n=n)}")
            buf.tofile(os.path.join(out_dir, o.directory, o.pattern.format(n=n)))
            written += 1
    return written
