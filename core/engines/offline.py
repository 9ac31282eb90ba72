"""The offline engine: zero-cost, no-network avatars made with OpenCV and Pillow.

Every style has its own hand-built pipeline (face detection with OpenCV's Haar cascades, cheap
GrabCut segmentation where a style needs the person apart from the background, then colour,
line and texture work in numpy). Edits understand a fixed vocabulary (accessories drawn on the
detected face, colour adjustments and a caption); anything else raises `Unsupported`.

All pixel work runs in an executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import math
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.engines.base import BadRequest, EngineError, EngineResult, Portrait, RenderOptions, Unsupported
from core.i18n import N_, _
from core.styles import Style

Array = np.ndarray[Any, Any]

OFFLINE_EDIT_HELP = N_(
    "The offline engine understands: add a crown, party hat, sunglasses, mustache, halo or horns; "
    "warmer, cooler, brighter, darker, more contrast, black and white, sepia; write \"TEXT\". "
    "Free-form edits need the Gemini engine."
)

MAX_FUSE_PEOPLE = 8
_MAX_SIDE = 2048  # larger inputs are scaled down before any work
_POSTER_MAX = 1536
_JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------
# Face detection
# --------------------------------------------------------------------------------------------

_CASCADE_LOCK = threading.Lock()
_DETECT_LOCK = threading.Lock()  # one classifier instance is shared; detection calls are serialised
_cascades: tuple[Any, Any] | None = None
_cascades_loaded = False


def _get_cascades() -> tuple[Any, Any] | None:
    """The (face, eye) Haar cascades, loaded once; None when this OpenCV build lacks them."""
    global _cascades, _cascades_loaded
    if not _cascades_loaded:
        with _CASCADE_LOCK:
            if not _cascades_loaded:
                try:
                    base = cv2.data.haarcascades  # type: ignore[attr-defined]
                    face = cv2.CascadeClassifier(base + "haarcascade_frontalface_default.xml")
                    eye = cv2.CascadeClassifier(base + "haarcascade_eye.xml")
                    _cascades = None if face.empty() else (face, eye if not eye.empty() else None)
                except Exception:
                    _cascades = None
                _cascades_loaded = True
    return _cascades


@dataclass(frozen=True)
class Face:
    """A face box in image pixels plus eye centres (detected or estimated from the box)."""

    x: float
    y: float
    w: float
    h: float
    left_eye: tuple[float, float]  # the eye on the image's left
    right_eye: tuple[float, float]
    detected: bool = True
    eyes_detected: bool = False
    confidence: float = 0.0  # how sure detection is that this is a face (see `detect_faces`)

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def eye_y(self) -> float:
        return (self.left_eye[1] + self.right_eye[1]) / 2

    @property
    def eye_angle(self) -> float:
        """Tilt of the eye line in degrees (positive: the right eye is lower)."""
        if not self.eyes_detected:
            return 0.0
        dx = self.right_eye[0] - self.left_eye[0]
        dy = self.right_eye[1] - self.left_eye[1]
        angle = math.degrees(math.atan2(dy, dx))
        return angle if abs(angle) <= 20 else 0.0

    def scaled(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> Face:
        return Face(self.x * sx + dx, self.y * sy + dy, self.w * sx, self.h * sy,
                    (self.left_eye[0] * sx + dx, self.left_eye[1] * sy + dy),
                    (self.right_eye[0] * sx + dx, self.right_eye[1] * sy + dy),
                    self.detected, self.eyes_detected, self.confidence)

    @staticmethod
    def from_box(x: float, y: float, w: float, h: float, *, detected: bool) -> Face:
        return Face(x, y, w, h, (x + 0.31 * w, y + 0.39 * h), (x + 0.69 * w, y + 0.39 * h),
                    detected=detected)


def default_face(width: int, height: int) -> Face:
    """Where a face usually is in a selfie (upper centre), for when detection finds none."""
    side = 0.36 * min(width, height)
    return Face.from_box((width - side) / 2, height * 0.2, side, side, detected=False)


def detect_faces(rgb: Array) -> list[Face]:
    """Faces in an RGB uint8 image, the most confident first (empty when none are found).

    A Haar cascade also fires on hands, ears and patterned cloth; what tells a face from those is a
    pair of eyes in the right place, how far through the cascade's last stage the window got (its
    level weight) and size. `confidence` adds the three, so a raised hand never outranks the face.
    """
    cascades = _get_cascades()
    if cascades is None:
        return []
    face_cc, eye_cc = cascades
    h, w = rgb.shape[:2]
    scale = min(1.0, 512 / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(20, int(min(gray.shape) * 0.08))
    with _DETECT_LOCK:
        rects, votes = face_cc.detectMultiScale2(gray, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(min_side, min_side))
        if len(rects) == 0:
            rects, votes = face_cc.detectMultiScale2(gray, scaleFactor=1.05, minNeighbors=4,
                                                     minSize=(min_side, min_side))
    if len(rects) == 0:
        return []
    # Neighbour votes are a good confidence: false positives (shuttles, patches) get few.
    best = int(np.max(votes))
    kept = [tuple(int(v) for v in r) for r, n in zip(rects, votes, strict=True) if n >= max(4, 0.3 * best)]
    faces: list[Face] = []
    for fx, fy, fw, fh in sorted(kept, key=lambda r: -r[2] * r[3]):
        weight = _level_weight(gray, face_cc, fx, fy, fw, fh)
        eyes = _detect_eyes(gray, eye_cc, fx, fy, fw, fh)
        if eyes is None:
            box = Face.from_box(fx, fy, fw, fh, detected=True)
            face = Face(fx, fy, fw, fh, box.left_eye, box.right_eye, confidence=weight)
        else:
            face = Face(fx, fy, fw, fh, eyes[0], eyes[1], eyes_detected=True, confidence=weight + _EYES_BONUS)
        faces.append(face.scaled(1 / scale, 1 / scale))
    if faces:  # keep faces comparable to the largest: small ones are usually false positives
        faces = [f for f in faces if f.w >= 0.55 * faces[0].w]
        # A selfie's face is its largest: size breaks ties between windows without eyes (a stylised
        # face against a hand beside it).
        faces = [Face(f.x, f.y, f.w, f.h, f.left_eye, f.right_eye, f.detected, f.eyes_detected,
                      f.confidence + _SIZE_BONUS * f.w / faces[0].w) for f in faces]
    faces.sort(key=lambda f: -f.confidence)
    return faces[:MAX_FUSE_PEOPLE]


_EYES_BONUS = 10.0  # a pair of eyes outweighs any level weight a non-face window reaches
_SIZE_BONUS = 3.0  # the largest window gets this much on top; one half its width, half of it


def main_face(rgb: Array) -> Face | None:
    """The one face an overlay or a crop is for: the most confident, eyes first; None if none."""
    faces = detect_faces(rgb)
    return faces[0] if faces else None


def _level_weight(gray: Array, face_cc: Any, x: int, y: int, w: int, h: int) -> float:
    """How clearly the window passes the cascade's last stage (detectMultiScale3's level weight)."""
    pad = max(2, w // 5)
    x0, y0 = max(0, x - pad), max(0, y - pad)
    roi = gray[y0:y + h + pad, x0:x + w + pad]
    with _DETECT_LOCK:
        found = face_cc.detectMultiScale3(roi, scaleFactor=1.05, minNeighbors=1,
                                          minSize=(int(w * 0.8), int(h * 0.8)),
                                          maxSize=(int(w * 1.25) + 1, int(h * 1.25) + 1),
                                          outputRejectLevels=True)
    weights = found[2]
    return float(np.max(weights)) if len(weights) else 0.0


def _detect_eyes(gray: Array, eye_cc: Any, fx: int, fy: int, fw: int, fh: int
                 ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if eye_cc is None:
        return None
    roi = gray[fy:fy + int(fh * 0.6), fx:fx + fw]
    if roi.size == 0:
        return None
    with _DETECT_LOCK:
        found = eye_cc.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=4,
                                        minSize=(max(6, fw // 9), max(6, fw // 9)),
                                        maxSize=(fw // 2, fw // 2))
    left: tuple[float, float, float] | None = None
    right: tuple[float, float, float] | None = None
    for ex, ey, ew, eh in found:
        cx, cy, size = ex + ew / 2, ey + eh / 2, float(ew * eh)
        if not 0.18 * fh <= cy <= 0.55 * fh:
            continue
        if cx < 0.5 * fw and 0.12 * fw <= cx and (left is None or size > left[2]):
            left = (cx, cy, size)
        elif cx >= 0.5 * fw and cx <= 0.88 * fw and (right is None or size > right[2]):
            right = (cx, cy, size)
    if left is None or right is None:
        return None
    if not 0.22 * fw <= right[0] - left[0] <= 0.65 * fw or abs(right[1] - left[1]) > 0.2 * fh:
        return None
    return (fx + left[0], fy + left[1]), (fx + right[0], fy + right[1])


# --------------------------------------------------------------------------------------------
# Small image helpers (RGB, float32 in 0..1 unless the name says u8)
# --------------------------------------------------------------------------------------------


def _f(rgb: Array) -> Array:
    return rgb.astype(np.float32) * np.float32(1 / 255)


def _u8(img: Array) -> Array:
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _lum(img: Array) -> Array:
    return (img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114).astype(np.float32)


def _resize(img: Array, width: int, height: int, interp: int = cv2.INTER_LINEAR) -> Array:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (max(1, width), max(1, height)), interpolation=interp)


def _fit(img: Array, long_side: int) -> tuple[Array, float]:
    """`img` scaled down so its long side is at most `long_side`, and the scale used."""
    h, w = img.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale >= 1.0:
        return img, 1.0
    return _resize(img, round(w * scale), round(h * scale), cv2.INTER_AREA), scale


def _smooth(rgb: Array, work: int = 512, passes: int = 2, d: int = 9, sigma_color: float = 40,
            sigma_space: float = 7) -> Array:
    """Edge-preserving colour smoothing, done at a working size and scaled back (uint8)."""
    h, w = rgb.shape[:2]
    small, _ = _fit(rgb, work)
    for _n in range(passes):
        small = cv2.bilateralFilter(small, d, sigma_color, sigma_space)
    return _resize(small, w, h, cv2.INTER_LINEAR)


def _blur(img: Array, sigma: float) -> Array:
    if sigma <= 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _fast_blur(img: Array, sigma: float) -> Array:
    """A wide Gaussian blur, done at a quarter size when the blur is big enough not to show it."""
    h, w = img.shape[:2]
    if sigma < 8:
        return _blur(img, sigma)
    small = _resize(img, max(1, w // 4), max(1, h // 4), cv2.INTER_AREA)
    return _resize(_blur(small, sigma / 4), w, h, cv2.INTER_LINEAR)


def _noise(h: int, w: int, rng: np.random.Generator, cell: float) -> Array:
    """Smooth value noise in roughly -1..1 with features about `cell` pixels across."""
    gh, gw = max(2, int(h / max(cell, 1)) + 2), max(2, int(w / max(cell, 1)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) * np.float32(0.7)


def _grain(h: int, w: int, rng: np.random.Generator, amount: float, coarse: bool = True) -> Array:
    """Film grain: slightly soft Gaussian noise."""
    g: Array
    if coarse:
        g = rng.standard_normal((h // 2 + 1, w // 2 + 1)).astype(np.float32)
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        g = rng.standard_normal((h, w)).astype(np.float32)
    return g * np.float32(amount)


def _radial(h: int, w: int, cx: float | None = None, cy: float | None = None) -> Array:
    """Normalised distance from a centre: 0 there, about 1 at the corners of a centred frame."""
    cx = w / 2 if cx is None else cx
    cy = h / 2 if cy is None else cy
    ys = (np.arange(h, dtype=np.float32) - cy) / (h / 2)
    xs = (np.arange(w, dtype=np.float32) - cx) / (w / 2)
    return np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2) / np.float32(math.sqrt(2))


def _vignette(h: int, w: int, strength: float, start: float = 0.35, cx: float | None = None,
              cy: float | None = None) -> Array:
    r = _radial(h, w, cx, cy)
    t = np.clip((r - start) / (1.0 - start), 0, 1)
    return (1 - strength * t * t * (3 - 2 * t)).astype(np.float32)


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float, soft: float = 0.0) -> Array:
    """1 inside the ellipse, 0 outside, with a soft edge `soft` (fraction of the radius)."""
    ys = (np.arange(h, dtype=np.float32) - cy) / max(ry, 1)
    xs = (np.arange(w, dtype=np.float32) - cx) / max(rx, 1)
    d = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    if soft <= 0:
        return (d <= 1).astype(np.float32)
    return np.clip((1 + soft - d) / (2 * soft), 0, 1).astype(np.float32)


def _blob(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> Array:
    """A Gaussian blob with standard deviations rx, ry."""
    ys = (np.arange(h, dtype=np.float32) - cy) / max(ry, 1)
    xs = (np.arange(w, dtype=np.float32) - cx) / max(rx, 1)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


def _screen(a: Array, b: Array) -> Array:
    return 1 - (1 - a) * (1 - b)


def _saturate(img: Array, amount: float) -> Array:
    lum = _lum(img)[..., None]
    return np.clip(lum + (img - lum) * np.float32(amount), 0, 1)


def _smoothstep(e0: float, e1: float, x: Array) -> Array:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _kmeans(pixels: Array, k: int, rng: np.random.Generator, iters: int = 10, sample: int = 6000) -> Array:
    """k cluster centres of float pixels (N x C) by Lloyd's algorithm on a sample (k-means++ start)."""
    data = pixels.reshape(-1, pixels.shape[-1]).astype(np.float32)
    if len(data) > sample:
        data = data[rng.choice(len(data), sample, replace=False)]
    k = max(1, min(k, len(data)))
    centres = [data[rng.integers(len(data))]]
    d2 = np.sum((data - centres[0]) ** 2, axis=1)
    for _n in range(1, k):
        total = float(d2.sum())
        idx = int(rng.choice(len(data), p=d2 / total)) if total > 0 else int(rng.integers(len(data)))
        centres.append(data[idx])
        d2 = np.minimum(d2, np.sum((data - data[idx]) ** 2, axis=1))
    c = np.array(centres, dtype=np.float32)
    for _n in range(iters):
        labels = _nearest(data, c)
        for j in range(k):
            members = data[labels == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return c


def _nearest(data: Array, centres: Array) -> Array:
    """Index of the nearest centre for each row of `data` (N x C)."""
    flat = data.reshape(-1, centres.shape[1]).astype(np.float32)
    d = (np.sum(centres * centres, axis=1)[None, :] - 2 * flat @ centres.T)
    return np.argmin(d, axis=1).astype(np.int32)


def _quantize(img: Array, centres: Array) -> tuple[Array, Array]:
    """Each pixel replaced by its nearest centre; returns (image, labels HxW)."""
    h, w = img.shape[:2]
    labels = _nearest(img.reshape(-1, img.shape[-1]), centres).reshape(h, w)
    return centres[labels], labels


def _canny(gray_u8: Array, lo: int, hi: int) -> Array:
    return (cv2.Canny(gray_u8, lo, hi) > 0).astype(np.float32)


def _ink_lines(gray_u8: Array, block: int, c: int, median: int = 7, min_area: int = 0) -> Array:
    """Cartoon ink from an adaptive threshold of a median-blurred grey image (1 = ink)."""
    g = cv2.medianBlur(gray_u8, median)
    block = max(3, block | 1)
    edges = cv2.adaptiveThreshold(g, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, c)
    ink = (edges == 0).astype(np.uint8)
    if min_area > 0:  # drop specks
        n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
        keep = np.zeros(n, dtype=np.uint8)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
        ink = keep[labels]
    return ink.astype(np.float32)


def _dot_screen(h: int, w: int, period: float, angle_deg: float = 45.0) -> Array:
    """A halftone screen in 0..1 (0 at dot centres); threshold it against a tone to get dots."""
    a = math.radians(angle_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs * math.cos(a) + ys * math.sin(a)) * np.float32(2 * math.pi / period)
    v = (-xs * math.sin(a) + ys * math.cos(a)) * np.float32(2 * math.pi / period)
    return (0.5 - 0.25 * (np.cos(u) + np.cos(v))).astype(np.float32)


def _line_screen(h: int, w: int, period: float, angle_deg: float) -> Array:
    """Parallel lines in 0..1 (0 on the line centres)."""
    a = math.radians(angle_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs * math.cos(a) + ys * math.sin(a)) * np.float32(2 * math.pi / period)
    return (0.5 - 0.5 * np.cos(u)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Per-image context: the face and (lazily) masks that several pipelines share
# --------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    rgb: Array  # uint8 HxWx3
    rng: np.random.Generator
    face: Face
    _person: Array | None = field(default=None, repr=False)

    @property
    def h(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def w(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def scale(self) -> float:
        """Size relative to a 1024 px image, for resolution-independent parameters."""
        return max(self.h, self.w) / 1024

    def person(self) -> Array:
        if self._person is None:
            self._person = _person_mask(self.rgb, self.face)
        return self._person


def _make_ctx(rgb: Array, rng: np.random.Generator, face: Face | None = None) -> _Ctx:
    if face is None:
        faces = detect_faces(rgb)
        face = faces[0] if faces else default_face(rgb.shape[1], rgb.shape[0])
    return _Ctx(rgb, rng, face)


def _person_mask(rgb: Array, face: Face) -> Array:
    """A soft foreground (person) mask in 0..1 from GrabCut seeded around the face."""
    h, w = rgb.shape[:2]
    small, s = _fit(rgb, 176)
    sh, sw = small.shape[:2]
    f = face.scaled(s, s)
    mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    head = ((xs - f.cx) / (0.72 * f.w)) ** 2 + ((ys - (f.cy - 0.08 * f.h)) / (0.85 * f.h)) ** 2 <= 1
    chin = f.y + f.h
    half = np.where(ys > chin, 0.55 * f.w + (ys - chin) * 1.3, 0)
    body = (ys > chin - 0.1 * f.h) & (np.abs(xs - f.cx) <= half)
    mask[head | body] = cv2.GC_PR_FGD
    core = ((xs - f.cx) / (0.33 * f.w)) ** 2 + ((ys - f.cy) / (0.42 * f.h)) ** 2 <= 1
    torso = (ys > chin + 0.45 * f.h) & (np.abs(xs - f.cx) <= 0.45 * f.w)
    if f.detected:
        mask[core | torso] = cv2.GC_FGD
    far = ~(head | body)
    border = (ys < 2) | (xs < 2) | (xs >= sw - 2)
    mask[far & border & (ys < chin + 0.5 * f.h)] = cv2.GC_BGD
    fallback = _ellipse(sh, sw, f.cx, f.cy + 0.6 * f.h, 1.3 * f.w, 1.8 * f.h, soft=0.15)
    try:
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(20240917)  # GrabCut's k-means uses OpenCV's per-thread RNG: keep it repeatable
        cv2.grabCut(small, mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n > 1:  # keep the component under the face plus any large ones
            anchor = labels[int(np.clip(f.cy, 0, sh - 1)), int(np.clip(f.cx, 0, sw - 1))]
            keep = np.zeros(n, np.uint8)
            keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.15 * stats[1:, cv2.CC_STAT_AREA].max()
            if anchor:
                keep[anchor] = 1
            fg = keep[labels]
        soft = fg.astype(np.float32)
        coverage = float(soft.mean())
        if not 0.05 <= coverage <= 0.9:
            soft = fallback
    except cv2.error:
        soft = fallback
    soft = _blur(soft, 1.2)
    return np.clip(_resize(soft, w, h, cv2.INTER_LINEAR), 0, 1)


def _skin_mask(ctx: _Ctx) -> Array:
    """Soft mask of the face and neck skin, from the colour of the middle of the face."""
    h, w, f = ctx.h, ctx.w, ctx.face
    ycc = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    x0, x1 = int(max(0, f.cx - 0.2 * f.w)), int(min(w, f.cx + 0.2 * f.w))
    y0, y1 = int(max(0, f.y + 0.5 * f.h)), int(min(h, f.y + 0.75 * f.h))
    patch = ycc[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1), 1:].reshape(-1, 2)
    if len(patch) < 4:
        patch = ycc[..., 1:].reshape(-1, 2)
    mean = np.median(patch, axis=0)
    std = np.maximum(patch.std(axis=0) * 1.2, 5.0)
    d = np.sqrt(((ycc[..., 1] - mean[0]) / std[0]) ** 2 + ((ycc[..., 2] - mean[1]) / std[1]) ** 2)
    colour = np.clip((3.2 - d) / 1.4, 0, 1)
    colour *= np.clip((ycc[..., 0] - 35) / 30, 0, 1)
    prior = np.maximum(_ellipse(h, w, f.cx, f.cy - 0.05 * f.h, 0.72 * f.w, 0.8 * f.h, soft=0.2),
                       _ellipse(h, w, f.cx, f.y + 1.35 * f.h, 0.55 * f.w, 0.6 * f.h, soft=0.3))
    m = colour * prior
    if f.detected:
        m = np.maximum(m, 0.85 * _ellipse(h, w, f.cx, f.cy + 0.05 * f.h, 0.36 * f.w, 0.45 * f.h, soft=0.3))
    return _blur(m.astype(np.float32), max(1.0, f.w * 0.025))


# --------------------------------------------------------------------------------------------
# The ten style pipelines: each takes a context and returns an RGB uint8 image
# --------------------------------------------------------------------------------------------


def _zombie(ctx: _Ctx) -> Array:
    h, w, f, rng = ctx.h, ctx.w, ctx.face, ctx.rng
    img = _f(ctx.rgb)
    lum = _lum(img)
    skin = _skin_mask(ctx)
    sk = skin[..., None]
    # Undead skin: pale grey-green with the skin's own texture exaggerated, mottled and veined.
    detail = lum - _blur(lum, max(2.0, f.w * 0.03))
    ll = np.clip(lum * 0.85 + 0.08 + detail * 1.8, 0, 1)[..., None]
    mottle = _noise(h, w, rng, f.w * 0.09)[..., None]
    blotch = _smoothstep(0.2, 0.9, _noise(h, w, rng, f.w * 0.2))[..., None]
    vein_noise = _noise(h, w, rng, f.w * 0.12)
    veins = np.clip(1 - np.abs(vein_noise) * 14, 0, 1) * _smoothstep(0.1, 0.6, _noise(h, w, rng, f.w * 0.3))
    dead = ll * np.array([0.79, 0.86, 0.74], np.float32) + np.array([0.0, 0.025, 0.015], np.float32)
    dead = dead * (1 + 0.12 * mottle)
    dead = dead * (1 - 0.35 * blotch * np.array([0.7, 0.85, 0.6], np.float32))  # bruised blotches
    dead = dead * (1 - 0.35 * veins[..., None] * np.array([0.55, 0.75, 0.45], np.float32))
    out = img * (1 - 0.95 * sk) + dead * 0.95 * sk
    # Sunken sockets: dark bruised hollows around the eyes, with pale milky irises.
    sockets = np.zeros((h, w), np.float32)
    milky = np.zeros((h, w), np.float32)
    for ex, ey in (f.left_eye, f.right_eye):
        sockets = np.maximum(sockets, _blob(h, w, ex, ey + 0.015 * f.h, 0.105 * f.w, 0.075 * f.h))
        milky = np.maximum(milky, _blob(h, w, ex, ey, 0.028 * f.w, 0.024 * f.h))
    sockets = np.clip(sockets * 1.25, 0, 1)[..., None]
    out = out * (1 - 0.8 * sockets) + sockets * 0.8 * np.array([0.09, 0.04, 0.07], np.float32)
    out = out + (np.array([0.86, 0.88, 0.74], np.float32) - out) * (0.8 * np.clip(milky * 1.6, 0, 1)[..., None])
    # Rot: a few dark, raw lesions on the cheeks and brow, rimmed darker.
    lesion = _smoothstep(0.55, 0.8, _noise(h, w, rng, f.w * 0.07)) * _smoothstep(0.6, 0.9, skin)
    lesion = lesion * (1 - _ellipse(h, w, f.cx, f.eye_y, 0.45 * f.w, 0.14 * f.h, soft=0.5))  # not the eyes
    rim = np.clip(_blur(lesion, f.w * 0.012) - lesion, 0, 1)[..., None] * 2.5
    out = out * (1 - 0.5 * rim)
    out = out + (np.array([0.30, 0.08, 0.07], np.float32) - out) * (0.75 * lesion[..., None])
    # Lips: the reddish pixels around the mouth go dark grey-purple; grey the teeth.
    mouth = _ellipse(h, w, f.cx, f.y + 0.82 * f.h, 0.24 * f.w, 0.1 * f.h, soft=0.4)
    redness = np.clip((img[..., 0] - img[..., 1] - 0.1) * 4, 0, 1)
    lips = (mouth * redness)[..., None]
    out = out * (1 - 0.7 * lips) + lips * 0.7 * np.array([0.26, 0.18, 0.24], np.float32)
    teeth = (mouth * np.clip((lum - 0.6) * 4, 0, 1) * (1 - redness))[..., None]
    out = out * (1 - 0.5 * teeth) + teeth * 0.5 * np.array([0.62, 0.6, 0.45], np.float32)
    # Blood running from the corners of the mouth down the chin.
    blood = np.zeros((h, w), np.float32)
    mouth_y = f.y + 0.82 * f.h
    for side in (-1, 1):
        x0 = f.cx + side * 0.17 * f.w
        for _n in range(2):
            x = x0 + rng.uniform(-0.04, 0.04) * f.w
            length = rng.uniform(0.12, 0.3) * f.h
            width = max(1, round(rng.uniform(0.012, 0.022) * f.w))
            end = (round(x + rng.uniform(-0.02, 0.02) * f.w), round(mouth_y + length))
            cv2.line(blood, (round(x), round(mouth_y)), end, 1.0, width, cv2.LINE_AA)
            cv2.circle(blood, end, max(1, round(width * 0.9)), 1.0, -1, cv2.LINE_AA)
    blood = np.maximum(blood, 0.8 * lips[..., 0])
    blood = (_blur(blood, max(0.8, f.w * 0.004)) * _smoothstep(0.3, 0.7, skin + lips[..., 0]))[..., None]
    out = out + (np.array([0.36, 0.02, 0.03], np.float32) - out) * (0.85 * blood)
    # Cold, desaturated horror grade with crushed blacks; the rest of the scene sinks into gloom.
    out = _saturate(out, 0.45) * (1 - 0.55 * blood) + out * 0.55 * blood  # the blood stays red
    out = out * (1 - 0.25 * (1 - sk))
    out = out * np.array([0.9, 1.0, 0.95], np.float32) + np.array([0.0, 0.015, 0.01], np.float32)
    out = np.clip((out - 0.06) * 1.2, 0, 1) ** np.float32(1.15)
    out = out + _grain(h, w, rng, 0.05)[..., None]
    out = out * _vignette(h, w, 0.9, start=0.2, cx=f.cx, cy=f.cy + 0.4 * f.h)[..., None]
    return _u8(out)


def _comic(ctx: _Ctx) -> Array:
    h, w, rng, s = ctx.h, ctx.w, ctx.rng, ctx.scale
    smooth = _smooth(ctx.rgb, work=512, passes=3, d=9, sigma_color=45, sigma_space=9)
    img = _saturate(_f(smooth), 1.45)
    img = np.clip((img - 0.5) * 1.15 + 0.52, 0, 1)
    small, _ = _fit(img, 256)
    centres = _kmeans(small.reshape(-1, 3), 9, rng)
    centres = _saturate(centres[:, None, :], 1.25)[:, 0, :]
    flat, _labels = _quantize(img, centres)
    # Ben-Day dots in the shadows: darker dots of the same flat colour.
    lum = _lum(_f(smooth))
    shade = np.clip((0.55 - lum) / 0.4, 0, 1)
    dots = (_dot_screen(h, w, max(5.0, 9 * s), 45) < shade * 0.85)[..., None]
    out = np.where(dots, flat * 0.45, flat)
    # Highlights get small white dots too (a printed look on big flat areas).
    hi = np.clip((lum - 0.8) / 0.2, 0, 1)
    hdots = (_dot_screen(h, w, max(5.0, 9 * s), 15) < hi * 0.35)[..., None]
    out = np.where(hdots, 1.0, out)
    # Bold black ink.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    ink = _ink_lines(gray, int(9 * s) | 1, 5, median=5, min_area=int(30 * s * s))
    edges = _canny(cv2.GaussianBlur(gray, (0, 0), 1.5 * s), 40, 110)
    edges = cv2.dilate(edges, np.ones((max(2, round(2.5 * s)),) * 2, np.uint8))
    ink = np.maximum(ink, edges)
    out = np.where(ink[..., None] > 0.5, np.array([0.06, 0.04, 0.08], np.float32), out)
    # A panel border.
    b = max(3, round(8 * s))
    out[:b], out[-b:], out[:, :b], out[:, -b:] = 0.05, 0.05, 0.05, 0.05
    return _u8(out)


def _manga(ctx: _Ctx) -> Array:
    h, w, f, s = ctx.h, ctx.w, ctx.face, ctx.scale
    smooth = _smooth(ctx.rgb, work=512, passes=2, d=9, sigma_color=35, sigma_space=7)
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(6, 6))
    g = _f(clahe.apply(gray))
    g = _blur(g, 1.5 * s)
    lo, hi = np.percentile(g, [3, 97])
    g = np.clip((g - lo) / max(hi - lo, 1e-3), 0, 1)
    out = np.ones((h, w), np.float32)
    dots_fine = _dot_screen(h, w, max(4.0, 7 * s), 45)
    lines = _line_screen(h, w, max(3.0, 6 * s), 45)
    cross = np.minimum(lines, _line_screen(h, w, max(3.0, 6 * s), -45))
    tone1 = (g < 0.72) & (g >= 0.5)
    tone2 = (g < 0.5) & (g >= 0.3)
    tone3 = (g < 0.3) & (g >= 0.14)
    out[tone1] = np.where(dots_fine[tone1] < 0.22, 0.0, 1.0)
    out[tone2] = np.where(lines[tone2] < 0.28, 0.0, 1.0)
    out[tone3] = np.where(cross[tone3] < 0.3, 0.0, 1.0)
    out[g < 0.14] = 0.0
    # Crisp ink lines.
    ink = _ink_lines(gray, int(11 * s) | 1, 4, median=5, min_area=int(24 * s * s))
    edges = _canny(cv2.GaussianBlur(gray, (0, 0), 1.4 * s), 50, 130)
    edges = cv2.dilate(edges, np.ones((max(1, round(1.6 * s)),) * 2, np.uint8))
    out = np.where(np.maximum(ink, edges) > 0.5, 0.0, out)
    # Focus lines radiating from the face, only over blank paper.
    out = _focus_lines(out, f, ctx.rng, s)
    out = 0.06 + out * 0.92  # ink black and paper white
    return cv2.cvtColor(_u8(out), cv2.COLOR_GRAY2RGB)


def _focus_lines(page: Array, f: Face, rng: np.random.Generator, s: float) -> Array:
    h, w = page.shape
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    cx, cy = f.cx, f.cy
    reach = math.hypot(w, h)
    inner = 1.25 * max(f.w, f.h)
    for _n in range(150):
        a = rng.uniform(0, 2 * math.pi)
        r0 = inner * rng.uniform(1.0, 1.9)
        width = rng.uniform(0.004, 0.012)
        p0 = (cx + r0 * math.cos(a), cy + r0 * math.sin(a))
        p1 = (cx + reach * math.cos(a - width), cy + reach * math.sin(a - width))
        p2 = (cx + reach * math.cos(a + width), cy + reach * math.sin(a + width))
        draw.polygon([p0, p1, p2], fill=255)
    lines = np.asarray(layer, np.float32) / 255
    paper = cv2.erode((page > 0.5).astype(np.uint8), np.ones((max(3, int(9 * s)),) * 2, np.uint8))
    blank = _blur(paper.astype(np.float32), 3 * s) > 0.98
    return np.where(blank & (lines > 0.5), 0.0, page).astype(np.float32)


def _anime(ctx: _Ctx) -> Array:
    h, w, rng, s = ctx.h, ctx.w, ctx.rng, ctx.scale
    smooth = _smooth(ctx.rgb, work=512, passes=3, d=9, sigma_color=50, sigma_space=9)
    lab = cv2.cvtColor(_f(smooth), cv2.COLOR_RGB2Lab)
    # Cel shading in Lab: lightness posterised in steps centred on the face's own tone (so every
    # skin keeps its colour), chroma taken from a blurred copy so noise never turns into blotches.
    skin = _skin_mask(ctx)
    light = _blur(lab[..., 0], 2.5 * s) * (1 - skin) + _blur(lab[..., 0], 7 * s) * skin  # smooth skin
    core = skin > 0.6
    m = float(np.median(light[core])) if core.sum() > 50 else float(np.median(light))
    cel_l = m + 15.0 * np.round((light - m) / 15.0)
    # Skin is flat: one base tone, one soft shadow, and only the darkest features (eyes, brows,
    # mouth) keep their own tones.
    dark = (light < m - 26).astype(np.uint8)
    k = max(3, int(ctx.face.w * 0.09)) | 1
    broad = cv2.morphologyEx(dark, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    small_dark = (dark > 0) & (broad == 0)  # eyes, brows, nostrils: dark but small
    skin_l = np.where(light >= m - 9, m, np.where(small_dark, cel_l - 12, m - 13))  # inked-in features
    cel_l = cel_l * (1 - skin) + skin_l * skin
    cel_l = _blur(cel_l.astype(np.float32), 0.8 * s)
    cel_l = np.clip(cel_l * 0.9 + 12, 0, 100)  # anime is bright: lift, but keep the order of tones
    chroma = _blur(lab[..., 1:], 3.0 * s) * np.float32(1.15)
    if core.sum() > 50:  # one skin colour, not a patchwork of reds and browns
        tone = np.median(chroma[core], axis=0).astype(np.float32)
        chroma = (chroma + (tone - chroma) * (0.7 * skin)[..., None]).astype(np.float32)
    cel = cv2.cvtColor(np.dstack([cel_l, chroma]).astype(np.float32), cv2.COLOR_Lab2RGB)
    cel = np.clip(cel, 0, 1)
    # Clean thin lines in a dark shade of the local colour, and an outline around the person.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    lines = _canny(cv2.GaussianBlur(gray, (0, 0), 1.2 * s), 35, 95)
    # Eyes, brows, nose and mouth inked boldly (a flat cel face needs them to read, thumbnails too).
    work, _ = _fit(gray, 512)
    wf = _f(work)
    dog = _blur(wf, 1.2) - 0.98 * _blur(wf, 1.9)
    feature = _resize((dog < -0.018).astype(np.float32), w, h) * _smoothstep(0.5, 0.8, skin)
    lines = np.maximum(lines, (feature > 0.5).astype(np.float32))
    person = ctx.person()
    outline = cv2.morphologyEx((person > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT,
                               np.ones((max(2, round(3 * s)),) * 2, np.uint8)).astype(np.float32)
    lines = np.maximum(lines, outline)
    if s > 0.75:
        lines = cv2.dilate(lines, np.ones((2, 2), np.uint8))
    lines = _blur(lines, 0.6)[..., None]
    cel = cel * (1 - 0.85 * lines) + cel * 0.15 * 0.85 * lines
    # Pastel sky behind the person.
    pm = _blur(person, 1.0)[..., None]
    sky = _anime_sky(h, w, rng)
    out = cel * pm + sky * (1 - pm)
    # Bloom: the bright parts glow, softly.
    bright = np.clip((out - 0.7) / 0.3, 0, 1)
    glow = _fast_blur(bright, 14 * s)
    out = _screen(out, glow * 0.35)
    out = _screen(out, _fast_blur(out, 10 * s) * 0.08)
    return _u8(out)


def _anime_sky(h: int, w: int, rng: np.random.Generator) -> Array:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top = np.array([0.55, 0.75, 1.0], np.float32)
    mid = np.array([0.80, 0.85, 1.0], np.float32)
    bottom = np.array([1.0, 0.82, 0.90], np.float32)
    sky = np.where(t < 0.55, top + (mid - top) * (t / 0.55), mid + (bottom - mid) * ((t - 0.55) / 0.45))
    sky = np.broadcast_to(sky, (h, w, 3)).astype(np.float32)
    clouds = _noise(h, w, rng, max(h, w) / 6) + 0.5 * _noise(h, w, rng, max(h, w) / 14)
    clouds = _smoothstep(0.35, 0.9, clouds) * (1 - np.linspace(0, 0.6, h, dtype=np.float32)[:, None])
    sky = sky + (1 - sky) * (0.85 * clouds[..., None])
    # A few sparkles.
    sparkle = np.zeros((h, w), np.float32)
    for _n in range(14):
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.7))
        r = max(2, int(rng.uniform(0.004, 0.01) * max(h, w)))
        cv2.line(sparkle, (x - 3 * r, y), (x + 3 * r, y), 1.0, 1, cv2.LINE_AA)
        cv2.line(sparkle, (x, y - 3 * r), (x, y + 3 * r), 1.0, 1, cv2.LINE_AA)
        cv2.circle(sparkle, (x, y), max(1, r // 2), 1.0, -1, cv2.LINE_AA)
    sparkle = np.maximum(sparkle, _blur(sparkle, 3) * 2)
    return _screen(sky, np.clip(sparkle, 0, 1)[..., None] * 0.9)


# Pop-art colourways: background, highlight, midtone, ink.
_POP_COLOURWAYS: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((255, 35, 150), (255, 222, 80), (205, 20, 125), (45, 0, 60)),     # hot pink
    ((255, 222, 0), (255, 250, 210), (245, 125, 0), (60, 25, 0)),      # electric yellow
    ((0, 205, 235), (215, 255, 250), (0, 105, 210), (0, 25, 70)),      # cyan
    ((255, 115, 0), (255, 210, 150), (220, 30, 50), (70, 5, 0)),       # orange
)


def _pop_panel(rgb: Array, person: Array, face: Face, colourway: int) -> Array:
    """One silkscreen panel: background flat colour, the person in three flat tones plus ink."""
    h, w = rgb.shape[:2]
    s = max(h, w) / 512
    smooth = _smooth(rgb, work=384, passes=2, d=7, sigma_color=40, sigma_space=6)
    g = _f(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY))
    inside = person > 0.5
    sample = g[inside] if inside.sum() > 100 else g.ravel()
    t1, t2 = np.percentile(sample, [28, 62])
    bg, light, mid, ink = (np.array(c, np.float32) / 255 for c in _POP_COLOURWAYS[colourway % 4])
    tone = np.where(g >= t2, 2, np.where(g >= t1, 1, 0))
    tone = cv2.medianBlur(tone.astype(np.uint8), 5)
    person_col = np.where((tone == 2)[..., None], light, np.where((tone == 1)[..., None], mid, ink))
    m = (person > 0.5).astype(np.float32)[..., None]
    out = person_col * m + bg * (1 - m)
    # Misregistered black silkscreen ink (shadows and lines), shifted a little.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    lines = _ink_lines(gray, int(9 * s) | 1, 5, median=5, min_area=int(20 * s * s)) * m[..., 0]
    dark = (g < t1 * 0.75).astype(np.float32) * m[..., 0]
    black = np.maximum(lines, dark)
    shift = max(1, round(3 * s))
    moved = np.zeros_like(black)
    moved[shift:, shift:] = black[:-shift, :-shift]
    black = moved
    out = np.where(black[..., None] > 0.5, np.array([0.05, 0.03, 0.06], np.float32), out)
    return _u8(out)


def _popart(ctx: _Ctx) -> Array:
    h, w = ctx.h, ctx.w
    pw, ph = w // 2, h // 2
    panel_rgb = _resize(ctx.rgb, pw, ph, cv2.INTER_AREA)
    person = _resize(ctx.person(), pw, ph, cv2.INTER_AREA)
    face = ctx.face.scaled(pw / w, ph / h)
    panels = [_pop_panel(panel_rgb, person, face, i) for i in range(4)]
    grid = np.vstack([np.hstack(panels[:2]), np.hstack(panels[2:])])
    gutter = max(2, round(4 * ctx.scale))
    grid[ph - gutter // 2:ph + (gutter + 1) // 2] = 10
    grid[:, pw - gutter // 2:pw + (gutter + 1) // 2] = 10
    return _resize(grid, w, h, cv2.INTER_NEAREST)


def _pixel(ctx: _Ctx) -> Array:
    h, w, f, rng = ctx.h, ctx.w, ctx.face, ctx.rng
    block = max(2, round(max(h, w) / 72))
    sw, sh = math.ceil(w / block), math.ceil(h / block)
    smooth = _smooth(ctx.rgb, work=384, passes=2, d=7, sigma_color=40, sigma_space=5)
    small_u8 = _resize(smooth, sw, sh, cv2.INTER_AREA)
    # Sprites are flat: the background flattened harder than the person.
    person = _resize(ctx.person(), sw, sh, cv2.INTER_AREA) > 0.5
    flat_bg = cv2.medianBlur(small_u8, 5) if min(sw, sh) >= 5 else small_u8
    sharp = _f(small_u8)
    sharp = np.clip(sharp + 0.6 * (sharp - _blur(sharp, 1.2)), 0, 1)  # crisp eyes and mouth at sprite scale
    small = np.where(person[..., None], sharp, _f(flat_bg))
    small = np.clip((_saturate(small, 1.15) - 0.5) * 1.05 + 0.5, 0, 1)
    # A small palette (12 colours) chosen in Lab, leaning on the face so skin, eyes and mouth get
    # their shades; no dithering: flat areas of colour read as a sprite, dots as a photo mosaic.
    lab = cv2.cvtColor(small.astype(np.float32), cv2.COLOR_RGB2Lab)
    fs = f.scaled(sw / w, sh / h)
    fy0, fy1 = int(max(0, fs.y)), int(min(sh, fs.y + fs.h))
    fx0, fx1 = int(max(0, fs.x)), int(min(sw, fs.x + fs.w))
    face_px = lab[fy0:fy1, fx0:fx1].reshape(-1, 3)
    sample = np.concatenate([lab.reshape(-1, 3)] + [face_px] * 3)
    centres = _kmeans(sample, 12, rng, iters=12, sample=12000)
    _, labels = _quantize(lab, centres)
    palette = np.clip(cv2.cvtColor(centres[None, :, :].astype(np.float32), cv2.COLOR_Lab2RGB)[0], 0, 1)
    quant = palette[labels]
    # One-pixel dark outlines: around the person and along the picture's strong edges.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    edges = _canny(cv2.GaussianBlur(gray, (0, 0), 2.0 * block / 8), 70, 160)
    edges = cv2.dilate(edges, np.ones((max(1, block // 3),) * 2, np.uint8))
    ink = _resize(edges, sw, sh, cv2.INTER_AREA) > 0.35
    silhouette = cv2.morphologyEx(person.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8)) > 0
    ink = (ink | (silhouette & person)) & ~_sprite_eyes(fs, sw, sh)
    outline = palette[int(np.argmin(centres[:, 0]))] * 0.45
    quant = np.where(ink[..., None], outline, quant)
    big = np.repeat(np.repeat(_u8(quant), block, axis=0), block, axis=1)
    return np.ascontiguousarray(big[:h, :w])


def _sprite_eyes(f: Face, sw: int, sh: int) -> Array:
    """Cells around the eyes, kept free of outline so the eyes read as eyes, not a black bar."""
    keep = np.zeros((sh, sw), bool)
    for ex, ey in (f.left_eye, f.right_eye):
        x0, x1 = int(max(0, ex - 0.08 * f.w)), int(min(sw, ex + 0.08 * f.w + 1))
        y0, y1 = int(max(0, ey - 0.05 * f.h)), int(min(sh, ey + 0.05 * f.h + 1))
        keep[y0:y1, x0:x1] = True
    return keep


def _sketch(ctx: _Ctx) -> Array:
    h, w, rng, s = ctx.h, ctx.w, ctx.rng, ctx.scale
    gray = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.bilateralFilter(_fit(gray, 512)[0], 7, 30, 5)
    # Local contrast first: a dark face gets the same range of pencil tones as a light one.
    small = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(6, 6)).apply(small)
    # Contours: an extended difference of Gaussians (XDoG) drawn where the picture has edges.
    sf = _f(small)
    dog = _blur(sf, 1.3) - 0.98 * _blur(sf, 2.1)
    contour = np.where(dog >= -0.01, 1.0, 1 + np.tanh(40 * (dog + 0.01))).astype(np.float32)
    contour = _resize(np.clip(contour, 0, 1), w, h)
    g = _resize(small, w, h).astype(np.float32)
    # Colour dodge of the inverted blur: soft pencil shading along the forms.
    blur = _blur(255 - g, 10 * s)
    dodge = np.clip(g * 255 / np.maximum(255 - blur, 1), 0, 255) / 255
    lines = np.clip(dodge, 0, 1) ** np.float32(2.2) * (0.25 + 0.75 * contour)
    # Hatching in the darker tones, following the tone of a soft copy of the picture.
    tone = _fast_blur(g / 255, 4 * s)
    dark = np.clip((0.72 - tone) / 0.6, 0, 1)
    hatch1 = _hatching(h, w, rng, 35, s)
    hatch2 = _hatching(h, w, rng, -50, s)
    shade = 1 - 0.5 * dark * hatch1 - 0.4 * np.clip(dark * 1.6 - 0.6, 0, 1) * hatch2
    shade = shade - 0.1 * dark  # a smudge of soft graphite under the strokes
    # Soft graphite tone under the lines, so forms (and a whole face) read at a glance, thumbnails too.
    value = np.clip(lines * shade * (0.62 + 0.38 * _smoothstep(0.1, 0.75, tone)), 0, 1)
    # The drawing fades out towards the edges of the page, as sketches do.
    f = ctx.face
    r = _radial(h, w, f.cx, f.cy + 1.2 * f.h)
    fade = _smoothstep(0.55, 0.85, r + _noise(h, w, rng, 50 * s) * 0.08)
    fade = np.maximum(fade, 0.5 * (1 - _blur(ctx.person(), 6 * s)))  # the background only suggested
    fade = fade * (1 - _ellipse(h, w, f.cx, f.cy, 0.95 * f.w, 1.15 * f.h, soft=0.35))  # a close-up keeps its face
    value = value + (1 - value) * fade * 0.85
    # Off-white paper with tooth.
    tooth = _grain(h, w, rng, 0.025, coarse=False) + 0.02 * _noise(h, w, rng, 40 * s)
    paper = np.array([0.965, 0.955, 0.94], np.float32)
    graphite = np.array([0.22, 0.22, 0.24], np.float32)
    out = graphite + (paper - graphite) * value[..., None]
    out = out + (tooth * (0.4 + 0.6 * value))[..., None]
    return _u8(out)


def _hatching(h: int, w: int, rng: np.random.Generator, angle: float, s: float) -> Array:
    """Pencil strokes along `angle`: noise smeared along a line kernel, in 0..1."""
    hs, ws = max(8, h // 2), max(8, w // 2)
    noise = rng.random((hs, ws)).astype(np.float32)
    length = max(5, int(14 * s)) | 1
    kernel = np.zeros((length, length), np.float32)
    c = length // 2
    a = math.radians(angle)
    for t in np.linspace(-c, c, length * 2):
        kernel[round(c - t * math.sin(a)), round(c + t * math.cos(a))] = 1
    kernel /= kernel.sum()
    strokes = cv2.filter2D(noise, -1, kernel)
    strokes = np.clip((strokes - 0.5) * 6 + 0.5, 0, 1)
    return _resize(strokes, w, h)


def _cyberpunk(ctx: _Ctx) -> Array:
    h, w, f, rng, s = ctx.h, ctx.w, ctx.face, ctx.rng, ctx.scale
    img = _f(ctx.rgb)
    person = ctx.person()[..., None]
    lum = _lum(img)
    # Split-tone: shadows deep indigo, highlights cyan/magenta lit from either side.
    base = _saturate(img, 0.35)
    base = np.clip((base - 0.5) * 1.5 + 0.42, 0, 1)
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    magenta = np.array([1.0, 0.12, 0.72], np.float32)
    cyan = np.array([0.0, 0.88, 1.0], np.float32)
    side = _smoothstep(f.cx - 0.45 * f.w, f.cx + 0.45 * f.w, xs)  # split-lit face
    light = magenta * (1 - side) + cyan * side
    shadow = np.array([0.10, 0.02, 0.22], np.float32)
    ll = lum[..., None]
    ll = _smoothstep(0.05, 0.95, ll)
    graded = shadow * (1 - ll) + light * ll
    out = base * 0.35 + graded * 0.9 * (0.3 + 0.7 * ll)
    # The background goes to a dark night city with neon bokeh.
    night = _neon_bokeh(h, w, rng, s)
    out = out * (person * 1.0 + (1 - person) * 0.12) + night * (1 - person)
    # Rim glow: coloured edges of the person, blurred into a halo.
    edge = np.clip(cv2.morphologyEx(ctx.person(), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)), 0, 1)
    gray = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2GRAY)
    lines = _canny(cv2.GaussianBlur(gray, (0, 0), 2 * s), 40, 110) * ctx.person()
    rim = (edge + 0.5 * lines)[..., None] * light
    out = _screen(np.clip(out, 0, 1), np.clip(_blur(rim, 6 * s) * 2.6 + rim * 0.7, 0, 1))
    # Chromatic aberration and scanlines.
    shift = max(1, round(3 * s))
    out[..., 0] = np.roll(out[..., 0], -shift, axis=1)
    out[..., 2] = np.roll(out[..., 2], shift, axis=1)
    period = max(3, round(4 * s))
    scan = np.ones((h, 1, 1), np.float32)
    scan[::period] = 0.78
    out = out * scan
    out = out * _vignette(h, w, 0.55, start=0.4, cx=f.cx, cy=f.cy)[..., None]
    out = out + _grain(h, w, rng, 0.02)[..., None]
    return _u8(out)


def _neon_bokeh(h: int, w: int, rng: np.random.Generator, s: float) -> Array:
    hs, ws = max(8, h // 4), max(8, w // 4)
    night = np.zeros((hs, ws, 3), np.float32)
    t = np.linspace(0, 1, hs, dtype=np.float32)[:, None, None]
    night += np.array([0.05, 0.02, 0.12], np.float32) * (1 - t) + np.array([0.10, 0.0, 0.16], np.float32) * t
    colours = [(1.0, 0.1, 0.7), (0.1, 0.9, 1.0), (0.6, 0.2, 1.0), (1.0, 0.5, 0.1), (0.2, 1.0, 0.6)]
    layer = np.zeros_like(night)
    for _n in range(45):
        x, y = rng.uniform(0, ws), rng.uniform(0, hs)
        r = rng.uniform(0.02, 0.07) * max(hs, ws)
        c = np.array(colours[int(rng.integers(len(colours)))], np.float32) * rng.uniform(0.25, 0.6)
        blob = np.zeros((hs, ws), np.float32)
        cv2.circle(blob, (int(x), int(y)), int(r), 1.0, -1, cv2.LINE_AA)
        layer += blob[..., None] * c
    # A few neon sign bars.
    for _n in range(6):
        x, y = int(rng.uniform(0, ws)), int(rng.uniform(0, hs * 0.8))
        c = np.array(colours[int(rng.integers(len(colours)))], np.float32)
        bar = np.zeros((hs, ws), np.float32)
        if rng.random() < 0.5:
            cv2.line(bar, (x, y), (x, y + int(rng.uniform(0.1, 0.3) * hs)), 1.0, 2, cv2.LINE_AA)
        else:
            cv2.line(bar, (x, y), (x + int(rng.uniform(0.08, 0.25) * ws), y), 1.0, 2, cv2.LINE_AA)
        layer += (_blur(bar, 3) * 1.5 + bar)[..., None] * c
    night = _screen(night, np.clip(_blur(layer, 2.5), 0, 1))
    rain = _line_screen(hs, ws, 7, 100) < 0.02
    night = night + rain[..., None] * 0.04
    return _resize(np.clip(night, 0, 1), w, h)


def _watercolor(ctx: _Ctx) -> Array:
    h, w, f, rng, s = ctx.h, ctx.w, ctx.face, ctx.rng, ctx.scale
    small, _ = _fit(ctx.rgb, 320)
    for _n in range(3):
        small = cv2.bilateralFilter(small, 9, 60, 9)
    # Washes: lightness in a few flat steps, each pixel keeping its own (softened) hue, so skin is
    # painted in skin tones: a palette shared with the background put lilac and green on faces.
    lab = cv2.cvtColor(_f(small), cv2.COLOR_RGB2Lab)
    # Skin is painted in one soft wash (no hard-edged pools on foreheads and noses).
    skin = _resize(_skin_mask(ctx), small.shape[1], small.shape[0], cv2.INTER_AREA)
    lightness = lab[..., 0] * (1 - skin) + _blur(lab[..., 0], 2.0) * skin
    steps = np.round(lightness / 17.0)
    flat_l = _blur((steps * 17.0).astype(np.float32), 0.8)
    flat_l = flat_l * (1 - skin) + _blur(lightness, 1.5) * skin
    chroma = _blur(lab[..., 1:], 1.5)
    quant = np.clip(cv2.cvtColor(np.dstack([flat_l, chroma]).astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)
    wash = _resize(quant, w, h, cv2.INTER_CUBIC)
    # Bleeding: blend the flat washes with a blurred copy so colours run into each other.
    bleed = _fast_blur(wash, 6 * s)
    paint = wash * 0.55 + bleed * 0.45
    # Wet edges: pigment gathers where washes meet.
    edges = cv2.morphologyEx(steps.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edges = _resize(_blur(edges.astype(np.float32), 0.8) * (1 - skin), w, h)
    paint = paint * (1 - 0.3 * edges[..., None])
    # Transparent pigment: lighter, softly saturated, pooling in the paper's tooth.
    paint = _saturate(paint, 1.15)
    # Lift the darks into transparent indigo (watercolour has no solid black); pigment density
    # varies in soft blooms, the same for every channel, so no hue appears that was not there.
    dark = (1 - _lum(paint))[..., None]
    paint = paint * 0.74 + 0.24 + dark * 0.05 * np.array([-0.5, -0.25, 0.5], np.float32)
    bloom = _noise(h, w, rng, 90 * s)[..., None]
    paint = np.clip(paint * (1 + 0.04 * bloom), 0, 1)
    paper_tex = _noise(h, w, rng, 3 * s) * 0.5 + _noise(h, w, rng, 18 * s) * 0.5
    density = (1 - paint) * 0.85 * (1 + 0.14 * paper_tex[..., None])
    paper = np.array([0.985, 0.975, 0.95], np.float32)
    out = paper * (1 - density)
    # Faint pencil underdrawing.
    gray = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = _blur(255 - gray, 6 * s)
    dodge = np.clip(gray * 255 / np.maximum(255 - blur, 1), 0, 255) / 255
    pencil = 1 - (1 - dodge ** np.float32(3)) * 0.45
    out = out * pencil[..., None]
    # Irregular vignette to bare white paper.
    r = _radial(h, w, f.cx, f.cy + 1.1 * f.h)
    edge_noise = _noise(h, w, rng, 70 * s) * 0.12 + _noise(h, w, rng, 25 * s) * 0.05
    fade = _smoothstep(0.55, 0.78, r + edge_noise)
    fade = fade * (1 - _ellipse(h, w, f.cx, f.cy - 0.1 * f.h, 1.0 * f.w, 1.05 * f.h, soft=0.3))
    # The person stays painted longest, but the paper still shows all round the edge of the sheet.
    margin = 0.07 * min(h, w)
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    inner = np.minimum(np.minimum(ys, h - 1 - ys)[:, None], np.minimum(xs, w - 1 - xs)[None, :])
    inner = _smoothstep(0.5 * margin, 1.5 * margin, inner)
    fade = np.maximum(fade * (1 - 0.45 * _blur(ctx.person(), 8 * s) * inner), 1 - inner)
    fade = fade[..., None]
    out = out * (1 - fade) + paper * fade
    out = out + _grain(h, w, rng, 0.012, coarse=False)[..., None]
    return _u8(out)


def _noir(ctx: _Ctx) -> Array:
    h, w, f, rng, s = ctx.h, ctx.w, ctx.face, ctx.rng, ctx.scale
    img = _f(ctx.rgb)
    g = img[..., 0] * 0.55 + img[..., 1] * 0.35 + img[..., 2] * 0.10  # red filter: luminous skin
    clahe = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(4, 4))
    g = _f(clahe.apply(_u8(g)))
    person = ctx.person()
    # Hard key light on the face from the upper left; the rest of the person falls into shadow.
    key = _blob(h, w, f.cx - 0.25 * f.w, f.cy - 0.1 * f.h, 1.6 * f.w, 2.2 * f.h)
    lit = g * (0.55 + 0.65 * key)
    # Venetian-blind light on the wall behind, fainter across the person, faintest on the face.
    period = max(h, w) / 9
    blinds = _blur(_smoothstep(0.3, 0.5, _line_screen(h, w, period, 70)), 3.0 * s)
    # The blinds fall on the wall and the shoulders; the face stays in the clean key light (stripes
    # across a face read as a barcode, not as a film still).
    face_zone = _ellipse(h, w, f.cx, f.cy + 0.05 * f.h, 0.85 * f.w, 1.0 * f.h, soft=0.5)
    # ... and only where the window's light falls: a soft patch on the roomier side of the face.
    wx = f.cx + (w - f.cx) * 0.55 if f.cx < w / 2 else f.cx * 0.45
    window = _smoothstep(0.0, 0.6, _blob(h, w, wx, f.cy - 0.15 * h, 0.3 * w, 0.45 * h))
    blinds = blinds * (0.25 + 0.75 * window)
    depth = 0.85 * (1 - person) + 0.35 * person * (1 - face_zone)
    wall = 0.18 + 0.75 * g * 0.6 + 0.3 * blinds  # window light on the wall
    lit = lit * person + wall * (1 - person)
    lit = lit * (1 - depth * (1 - blinds))
    # Steep S-curve for hard light, a little halation, heavy vignette and grain.
    g = _smoothstep(0.12, 0.78, lit)
    g = _screen(g, _fast_blur(np.clip(g - 0.75, 0, 1), 10 * s) * 0.6)
    g = g * _vignette(h, w, 0.85, start=0.3, cx=f.cx, cy=f.cy)
    g = g + _grain(h, w, rng, 0.05)
    return cv2.cvtColor(_u8(np.clip(g, 0, 1)), cv2.COLOR_GRAY2RGB)


_PIPELINES: dict[str, Callable[[_Ctx], Array]] = {
    "zombie": _zombie,
    "comic": _comic,
    "manga": _manga,
    "anime": _anime,
    "popart": _popart,
    "pixel": _pixel,
    "sketch": _sketch,
    "cyberpunk": _cyberpunk,
    "watercolor": _watercolor,
    "noir": _noir,
}

_PNG_STYLES = frozenset({"pixel"})


def stylize_array(rgb: Array, style_id: str, rng: np.random.Generator, face: Face | None = None) -> Array:
    """Run one style pipeline on an RGB uint8 image (for scripts and tests)."""
    pipeline = _PIPELINES.get(style_id)
    if pipeline is None:
        raise Unsupported(_("The offline engine has no “{style}” style.").format(style=style_id))
    return pipeline(_make_ctx(rgb, rng, face))


# --------------------------------------------------------------------------------------------
# Edits: the parser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditOp:
    """One understood edit: an accessory, a colour adjustment, or a caption."""

    kind: Literal["accessory", "adjust", "text"]
    name: str  # crown, party_hat, sunglasses, mustache, halo, horns; warmer ... sepia; write
    text: str = ""


_W = r"(?<![\w&/])"
_E = r"(?![\w&/])"
_PHRASES: tuple[tuple[str, EditOp], ...] = (
    (r"(?:gold(?:en)?\s+|royal\s+|king'?s\s+|queen'?s\s+)?crowns?|tiara", EditOp("accessory", "crown")),
    (r"(?:party|birthday)\s+hats?", EditOp("accessory", "party_hat")),
    (r"(?:(?:cool|dark|black)\s+)?(?:sun\s*glasses|shades|sunnies)", EditOp("accessory", "sunglasses")),
    (r"(?:handlebar\s+)?(?:moustache|mustache|mustachio)s?", EditOp("accessory", "mustache")),
    (r"(?:angel(?:ic)?\s+|golden\s+)?halos?", EditOp("accessory", "halo")),
    (r"(?:devil(?:ish)?\s+)?horns?", EditOp("accessory", "horns")),
    (r"(?:more\s+|higher\s+|increase\s+(?:the\s+)?|boost\s+(?:the\s+)?)contrast|contrasty|punchier",
     EditOp("adjust", "contrast")),
    (r"black\s*(?:and|&|'?n'?)\s*white|b\s*&\s*w|b/w|bnw|gr[ae]y\s*scale|monochrome",
     EditOp("adjust", "bw")),
    (r"sepia(?:\s+tone[ds]?)?|old[-\s]?tim(?:e|ey|y)", EditOp("adjust", "sepia")),
    (r"warm(?:er|th)?", EditOp("adjust", "warmer")),
    (r"cool(?:er)?|cold(?:er)?", EditOp("adjust", "cooler")),
    (r"bright(?:er|en)?|light(?:er|en)", EditOp("adjust", "brighter")),
    (r"dark(?:er|en)?|dimmer", EditOp("adjust", "darker")),
)
_PHRASE_RES = tuple((re.compile(_W + p + _E, re.IGNORECASE), op) for p, op in _PHRASES)

_TEXT_RE = re.compile(
    r"(?:\b(?:write|add\s+(?:a\s+|the\s+|some\s+)?(?:text|caption|words?|title)|caption(?:\s+it)?|"
    r"(?:that\s+)?says?|put|with\s+(?:the\s+)?(?:text|caption|words?))\s*:?\s*)?"
    r"(?:[\"“”„«»](?P<d>[^\"“”„«»]+)[\"“”„«»]|[‘’'](?P<s>[^‘’']+)[‘’'](?!\w))",
    re.IGNORECASE,
)

_FILLER = frozenset("""
a an the and also plus then with make it its it's me my this that these photo picture pic image avatar
please pls put on onto give him her them some bit little slightly lot much more very too just to turn
wear wearing of top head face in his their i want would like could you can tone tones toned colour
colours color colors look filter effect few slight tad extra super really over up draw pair set apply
let's lets add adding now pretty nice cute big small tiny bits kinda quite somewhat or be looking
style styled version go gimme get got i'd we'd maybe nicely
""".split())


def parse_edit(instruction: str) -> list[EditOp]:
    """The edits an instruction asks for, in order; raises `Unsupported` for anything else."""
    ops: list[tuple[int, EditOp]] = []
    rest = instruction
    for m in _TEXT_RE.finditer(instruction):
        text = (m.group("d") or m.group("s") or "").strip()
        if text:
            ops.append((m.start(), EditOp("text", "write", text[:80])))
    rest = _TEXT_RE.sub(" ", rest)
    for pattern, op in _PHRASE_RES:
        for m in pattern.finditer(rest):
            ops.append((m.start(), op))
        rest = pattern.sub(" ", rest)
    leftover = [w for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", rest.lower()) if w not in _FILLER]
    if leftover or not ops:
        if leftover and ops:
            words = " ".join(leftover[:4])
            sorry = _("Sorry, I can't do “{words}” offline.").format(words=words)
            raise Unsupported(f"{sorry} {_(OFFLINE_EDIT_HELP)}")
        raise Unsupported(_(OFFLINE_EDIT_HELP))
    result: list[EditOp] = []
    for _at, op in sorted(ops, key=lambda item: item[0]):
        if op not in result:
            result.append(op)
    return result


# --------------------------------------------------------------------------------------------
# Edits: accessories, adjustments and captions
# --------------------------------------------------------------------------------------------

_SS = 4  # supersampling factor for anti-aliased drawing

Point = tuple[float, float]


class _Canvas:
    """A transparent layer over part of an image, drawn at 4x and composited back smoothly."""

    def __init__(self, image: Image.Image, box: tuple[float, float, float, float]) -> None:
        x0, y0, x1, y1 = box
        self.x0, self.y0 = math.floor(x0), math.floor(y0)
        self.x1, self.y1 = math.ceil(x1), math.ceil(y1)
        self.w, self.h = max(1, self.x1 - self.x0), max(1, self.y1 - self.y0)
        self.layer = Image.new("RGBA", (self.w * _SS, self.h * _SS), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.layer)
        self.image = image

    def p(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.x0) * _SS, (y - self.y0) * _SS)

    def pts(self, points: Sequence[Point]) -> list[tuple[float, float]]:
        return [self.p(x, y) for x, y in points]

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        a, b = self.p(x0, y0)
        c, d = self.p(x1, y1)
        return (a, b, c, d)

    def n(self, v: float) -> int:
        return max(1, round(v * _SS))

    def composite(self, rotate: float = 0.0, centre: Point | None = None, glow: float = 0.0) -> None:
        layer = self.layer
        if rotate:
            c = self.p(*centre) if centre else None
            layer = layer.rotate(-rotate, resample=Image.Resampling.BICUBIC, center=c)
        small = layer.resize((self.w, self.h), Image.Resampling.LANCZOS)
        if glow > 0:
            halo = small.filter(ImageFilter.GaussianBlur(glow))
            self._paste(halo)
        self._paste(small)

    def _paste(self, layer: Image.Image) -> None:
        """Alpha-composite `layer` at (x0, y0), clipped to the image (the shape may overhang it)."""
        iw, ih = self.image.size
        left, top = max(0, self.x0), max(0, self.y0)
        right, bottom = min(iw, self.x0 + self.w), min(ih, self.y0 + self.h)
        if right <= left or bottom <= top:
            return
        part = layer.crop((left - self.x0, top - self.y0, right - self.x0, bottom - self.y0))
        self.image.alpha_composite(part, (left, top))


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, n: int = 24) -> list[Point]:
    out = []
    for i in range(n + 1):
        t = i / n
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3
        out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                    a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


def _draw_crown(image: Image.Image, f: Face) -> None:
    cw, ch = 0.95 * f.w, 0.55 * f.w
    base_y = f.y - 0.12 * f.h
    if base_y - ch < 0:  # keep it in the picture when the head is near the top
        ch = max(0.3 * f.w, base_y - 0.01 * f.w) if base_y > 0.35 * f.w else 0.3 * f.w
        base_y = max(base_y, ch + 0.02 * f.w)
    x0 = f.cx - cw / 2
    cv = _Canvas(image, (x0 - 0.1 * cw, base_y - ch - 0.15 * cw, x0 + 1.1 * cw, base_y + 0.1 * cw))
    band = 0.22 * ch
    gold, dark = (246, 196, 40, 255), (120, 80, 10, 255)
    # Five points.
    pts: list[Point] = [(x0, base_y)]
    tips = [0.0, 0.25, 0.5, 0.75, 1.0]
    for i, t in enumerate(tips):
        tip_h = ch * (1.0 if i == 2 else 0.82 if i in (1, 3) else 0.72)
        pts.append((x0 + t * cw, base_y - tip_h))
        if i < len(tips) - 1:
            pts.append((x0 + (t + 0.125) * cw, base_y - band - 0.2 * ch))
    pts.append((x0 + cw, base_y))
    cv.draw.polygon(cv.pts(pts), fill=gold, outline=dark, width=cv.n(max(1.5, 0.012 * f.w)))
    # Shading: a lighter left half-face on each point.
    for i, t in enumerate(tips[:-1]):
        tip_h = ch * (1.0 if i == 2 else 0.82 if i in (1, 3) else 0.72)
        shade = [(x0 + t * cw, base_y - tip_h), (x0 + (t + 0.125) * cw, base_y - band - 0.2 * ch),
                 (x0 + (t + 0.125) * cw, base_y - band), (x0 + t * cw + 0.02 * cw, base_y - band)]
        cv.draw.polygon(cv.pts(shade), fill=(255, 226, 110, 255))
    # Band with jewels.
    cv.draw.rounded_rectangle(cv.box(x0 - 0.02 * cw, base_y - band, x0 + 1.02 * cw, base_y),
                              radius=cv.n(band * 0.3), fill=(232, 172, 20, 255), outline=dark,
                              width=cv.n(max(1.5, 0.012 * f.w)))
    cv.draw.line(cv.pts([(x0 + 0.02 * cw, base_y - band * 0.72), (x0 + 0.98 * cw, base_y - band * 0.72)]),
                 fill=(255, 236, 150, 255), width=cv.n(max(1, band * 0.12)))
    jewels = [(0.2, (200, 20, 40)), (0.5, (30, 90, 220)), (0.8, (20, 160, 70))]
    for t, col in jewels:
        r = band * 0.32
        x, y = x0 + t * cw, base_y - band / 2
        cv.draw.ellipse(cv.box(x - r, y - r, x + r, y + r), fill=(*col, 255), outline=dark, width=cv.n(1))
        cv.draw.ellipse(cv.box(x - r * 0.45, y - r * 0.6, x - r * 0.05, y - r * 0.2),
                        fill=(255, 255, 255, 200))
    for i, t in enumerate(tips):
        tip_h = ch * (1.0 if i == 2 else 0.82 if i in (1, 3) else 0.72)
        r = 0.045 * cw
        x, y = x0 + t * cw, base_y - tip_h
        cv.draw.ellipse(cv.box(x - r, y - r, x + r, y + r), fill=(255, 240, 200, 255), outline=dark,
                        width=cv.n(1))
    cv.composite(rotate=f.eye_angle, centre=(f.cx, base_y))


def _draw_party_hat(image: Image.Image, f: Face) -> None:
    bw, hh = 0.62 * f.w, 0.9 * f.w
    base_y = f.y + 0.02 * f.h
    hh = min(hh, max(0.5 * f.w, base_y - 0.12 * f.w))  # the pom-pom stays in the picture
    cx = f.cx + 0.05 * f.w
    tip = (cx + 0.12 * f.w, base_y - hh)
    left, right = (cx - bw / 2, base_y), (cx + bw / 2, base_y)
    cv = _Canvas(image, (cx - bw, tip[1] - 0.2 * f.w, cx + bw, base_y + 0.15 * f.w))
    cone = Image.new("L", cv.layer.size, 0)
    ImageDraw.Draw(cone).polygon(cv.pts([left, tip, right]), fill=255)
    stripes = Image.new("RGBA", cv.layer.size, (40, 160, 240, 255))
    sd = ImageDraw.Draw(stripes)
    step = 0.16 * f.w
    k = -3.0
    while k * step < hh + bw:
        y = base_y - k * step
        band = [(cx - bw * 2, y + 0.6 * bw), (cx + bw * 2, y - 0.6 * bw),
                (cx + bw * 2, y - 0.6 * bw - step / 2), (cx - bw * 2, y + 0.6 * bw - step / 2)]
        sd.polygon(cv.pts(band), fill=(250, 70, 150, 255))
        k += 1
    for i in range(14):  # confetti dots
        t, u = (i * 0.618) % 1, (i * 0.382 + 0.1) % 0.8
        x = left[0] + (tip[0] - left[0]) * u + (right[0] - left[0]) * t * (1 - u)
        y = base_y + (tip[1] - base_y) * u
        r = 0.02 * f.w
        sd.ellipse(cv.box(x - r, y - r, x + r, y + r), fill=(255, 230, 60, 255))
    cv.layer.paste(stripes, (0, 0), cone)
    dark = (40, 30, 60, 255)
    cv.draw.line(cv.pts([left, tip, right]), fill=dark, width=cv.n(max(1.5, 0.012 * f.w)), joint="curve")
    # Frilly brim and a pom-pom.
    r = 0.06 * f.w
    for i in range(8):
        x = left[0] + (right[0] - left[0]) * (i + 0.5) / 8
        cv.draw.ellipse(cv.box(x - r, base_y - r, x + r, base_y + r), fill=(255, 220, 60, 255), outline=dark,
                        width=cv.n(1))
    pr = 0.1 * f.w
    for i in range(10):
        a = i * math.tau / 10
        x, y = tip[0] + pr * 0.55 * math.cos(a), tip[1] + pr * 0.55 * math.sin(a)
        cv.draw.ellipse(cv.box(x - pr * 0.55, y - pr * 0.55, x + pr * 0.55, y + pr * 0.55),
                        fill=(255, 255, 255, 255))
    cv.draw.ellipse(cv.box(tip[0] - pr, tip[1] - pr, tip[0] + pr, tip[1] + pr), outline=(200, 200, 210, 255),
                    width=cv.n(1))
    cv.composite(rotate=f.eye_angle + 8, centre=(cx, base_y))


def _draw_sunglasses(image: Image.Image, f: Face) -> None:
    (lx, ly), (rx, ry) = f.left_eye, f.right_eye
    ey = (ly + ry) / 2
    mid = (lx + rx) / 2
    gap = max(rx - lx, 0.3 * f.w)
    lw, lh = 0.38 * f.w, 0.25 * f.w
    cv = _Canvas(image, (f.x - 0.1 * f.w, ey - 0.4 * f.w, f.x + 1.1 * f.w, ey + 0.4 * f.w))
    frame = (15, 15, 20, 255)
    thick = cv.n(max(1.5, 0.025 * f.w))
    for ex in (mid - gap / 2, mid + gap / 2):
        box = cv.box(ex - lw / 2, ey - lh * 0.42, ex + lw / 2, ey + lh * 0.58)
        lens = Image.new("L", cv.layer.size, 0)
        ImageDraw.Draw(lens).rounded_rectangle(box, radius=cv.n(lh * 0.38), fill=255)
        top, bottom = int(box[1]), int(box[3])
        tint = np.zeros((cv.layer.size[1], cv.layer.size[0], 4), np.uint8)
        t = np.clip((np.arange(tint.shape[0], dtype=np.float32) - top) / max(bottom - top, 1), 0, 1)[:, None]
        for ch_i, (c0, c1) in enumerate(((12, 70), (14, 78), (28, 120), (250, 235))):
            tint[..., ch_i] = (c0 + (c1 - c0) * t).astype(np.uint8)
        cv.layer.paste(Image.fromarray(tint, "RGBA"), (0, 0), lens)
        cv.draw.rounded_rectangle(box, radius=cv.n(lh * 0.38), outline=frame, width=thick)
        gx, gy = ex - lw * 0.25, ey - lh * 0.18
        cv.draw.line(cv.pts([(gx, gy + lh * 0.2), (gx + lw * 0.18, gy - lh * 0.06)]),
                     fill=(255, 255, 255, 200), width=cv.n(max(1, 0.025 * f.w)))
    # Bridge and arms to the sides of the face.
    cv.draw.line(cv.pts(_bezier((mid - gap / 2 + lw / 2, ey - lh * 0.2), (mid - 0.03 * f.w, ey - lh * 0.42),
                                (mid + 0.03 * f.w, ey - lh * 0.42), (mid + gap / 2 - lw / 2, ey - lh * 0.2))),
                 fill=frame, width=thick, joint="curve")
    cv.draw.line(cv.pts([(mid - gap / 2 - lw / 2, ey - lh * 0.3), (f.x + 0.01 * f.w, ey - lh * 0.25)]),
                 fill=frame, width=thick)
    cv.draw.line(cv.pts([(mid + gap / 2 + lw / 2, ey - lh * 0.3), (f.x + 0.99 * f.w, ey - lh * 0.25)]),
                 fill=frame, width=thick)
    cv.composite(rotate=f.eye_angle, centre=(mid, ey))


def _draw_mustache(image: Image.Image, f: Face) -> None:
    cx, y = f.cx, f.y + 0.715 * f.h
    mw = 0.3 * f.w
    cv = _Canvas(image, (cx - mw * 1.3, y - mw * 0.7, cx + mw * 1.3, y + mw * 0.6))
    shape: list[Point] = []
    for sgn in (-1, 1):
        # Upper edge from the middle out to a curled tip, then the lower edge back.
        top = _bezier((cx, y - 0.12 * mw), (cx + sgn * 0.35 * mw, y - 0.38 * mw),
                      (cx + sgn * 0.8 * mw, y - 0.1 * mw), (cx + sgn * 1.05 * mw, y - 0.38 * mw))
        curl = _bezier((cx + sgn * 1.05 * mw, y - 0.38 * mw), (cx + sgn * 1.2 * mw, y - 0.55 * mw),
                       (cx + sgn * 1.3 * mw, y - 0.1 * mw), (cx + sgn * 1.02 * mw, y - 0.05 * mw), 12)
        bottom = _bezier((cx + sgn * 1.02 * mw, y - 0.05 * mw), (cx + sgn * 0.8 * mw, y + 0.3 * mw),
                         (cx + sgn * 0.3 * mw, y + 0.3 * mw), (cx, y + 0.08 * mw))
        side = top + curl + bottom
        shape.extend(side if sgn < 0 else side[::-1])
    cv.draw.polygon(cv.pts(shape), fill=(52, 32, 22, 255), outline=(25, 15, 10, 255), width=cv.n(1))
    for i in range(-6, 7):  # a few hair strokes
        x = cx + i * mw * 0.13
        cv.draw.line(cv.pts([(x, y - 0.12 * mw), (x + i * 0.015 * mw, y + 0.12 * mw)]),
                     fill=(95, 65, 45, 200), width=cv.n(max(1, 0.008 * f.w)))
    cv.composite(rotate=f.eye_angle, centre=(cx, y))


def _draw_halo(image: Image.Image, f: Face) -> None:
    cx, cy = f.cx, f.y - 0.42 * f.h
    rw, rh = 0.42 * f.w, 0.11 * f.w
    cv = _Canvas(image, (cx - rw * 1.5, cy - rh * 3, cx + rw * 1.5, cy + rh * 3))
    thick = cv.n(max(2, 0.05 * f.w))
    cv.draw.ellipse(cv.box(cx - rw, cy - rh, cx + rw, cy + rh), outline=(255, 210, 60, 255), width=thick)
    cv.draw.ellipse(cv.box(cx - rw * 0.97, cy - rh * 0.85, cx + rw * 0.97, cy + rh * 0.85),
                    outline=(255, 250, 200, 255), width=max(1, thick // 3))
    cv.composite(rotate=f.eye_angle, centre=(cx, f.cy), glow=max(2.0, 0.04 * f.w))


def _draw_horns(image: Image.Image, f: Face) -> None:
    cv = _Canvas(image, (f.x - 0.4 * f.w, f.y - 0.9 * f.h, f.x + 1.4 * f.w, f.y + 0.3 * f.h))
    for sgn in (-1, 1):
        bx = f.cx + sgn * 0.27 * f.w
        by = f.y + 0.05 * f.h
        bw = 0.2 * f.w
        tip = (f.cx + sgn * 0.55 * f.w, f.y - 0.55 * f.h)
        outer = _bezier((bx + sgn * bw / 2, by), (bx + sgn * 0.35 * f.w, by - 0.15 * f.h),
                        (tip[0] + sgn * 0.05 * f.w, tip[1] + 0.25 * f.h), tip)
        inner = _bezier(tip, (tip[0] - sgn * 0.02 * f.w, tip[1] + 0.22 * f.h),
                        (bx + sgn * 0.05 * f.w, by - 0.2 * f.h), (bx - sgn * bw / 2, by))
        shape = outer + inner
        cv.draw.polygon(cv.pts(shape), fill=(200, 25, 30, 255), outline=(70, 0, 5, 255),
                        width=cv.n(max(1.5, 0.012 * f.w)))
        # A highlight along the outer curve.
        hl = _bezier((bx + sgn * bw * 0.2, by - 0.05 * f.h), (bx + sgn * 0.25 * f.w, by - 0.18 * f.h),
                     (tip[0] - sgn * 0.01 * f.w, tip[1] + 0.3 * f.h), (tip[0] - sgn * 0.015 * f.w,
                                                                        tip[1] + 0.1 * f.h), 16)
        cv.draw.line(cv.pts(hl), fill=(255, 120, 110, 220), width=cv.n(max(1, 0.02 * f.w)), joint="curve")
    cv.composite(rotate=f.eye_angle, centre=(f.cx, f.y))


_ACCESSORIES: dict[str, Callable[[Image.Image, Face], None]] = {
    "crown": _draw_crown,
    "party_hat": _draw_party_hat,
    "sunglasses": _draw_sunglasses,
    "mustache": _draw_mustache,
    "halo": _draw_halo,
    "horns": _draw_horns,
}
# Drawing order: things on the face first, things on the head last.
_ACCESSORY_ORDER = ("mustache", "sunglasses", "horns", "halo", "party_hat", "crown")


def _adjust(img: Array, name: str) -> Array:
    f = _f(img)
    if name == "warmer":
        f = f * np.array([1.08, 1.01, 0.86], np.float32) + np.array([0.03, 0.01, 0.0], np.float32)
    elif name == "cooler":
        f = f * np.array([0.87, 0.99, 1.08], np.float32) + np.array([0.0, 0.01, 0.03], np.float32)
    elif name == "brighter":
        f = 1 - (1 - f) ** np.float32(1.45)
    elif name == "darker":
        f = f ** np.float32(1.5)
    elif name == "contrast":
        mean = float(_lum(f).mean())
        f = (f - mean) * 1.45 + mean
    elif name == "bw":
        f = np.repeat(_lum(f)[..., None], 3, axis=2)
    elif name == "sepia":
        lum = _lum(f)[..., None]
        f = lum * np.array([1.07, 0.9, 0.68], np.float32) + np.array([0.05, 0.03, 0.0], np.float32)
    return _u8(np.clip(f, 0, 1))


_fonts = threading.local()  # FreeType faces are not shared between threads


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A bold font at `size` px (DejaVu Sans Bold when available), cached per thread."""
    cache: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = _fonts.__dict__.setdefault("cache", {})
    if size not in cache:
        cache[size] = _load_font(size)
    return cache[size]


def _load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                 "Arial Bold.ttf", "arialbd.ttf", "LiberationSans-Bold.ttf",
                 "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
                 "/System/Library/Fonts/Supplemental/Arial Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any, stroke: int = 0) -> float:
    box = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    return float(box[2] - box[0])


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: float, size: int) -> tuple[list[str], Any, int]:
    """Lines and font for `text`: shrinks the font, then wraps into two lines, to fit `width`."""
    for sz in range(size, max(9, size // 3) - 1, -2):
        font = _font(sz)
        stroke = max(1, sz // 12)
        if _text_width(draw, text, font, stroke) <= width:
            return [text], font, stroke
        words = text.split()
        if len(words) > 1 and sz <= size * 0.8:
            best = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(text) / 2))
            lines = [" ".join(words[:best]), " ".join(words[best:])]
            if all(_text_width(draw, ln, font, stroke) <= width for ln in lines):
                return lines, font, stroke
    sz = max(9, size // 3)
    return [text], _font(sz), max(1, sz // 12)


def _caption(image: Image.Image, text: str) -> None:
    w, h = image.size
    draw = ImageDraw.Draw(image)
    lines, font, stroke = _wrap(draw, text, w * 0.9, max(12, int(min(w, h) * 0.1)))
    line_h = font.getbbox("Ag")[3] + stroke * 2 if hasattr(font, "getbbox") else 12
    total = line_h * len(lines) + (len(lines) - 1) * line_h * 0.1
    # A soft dark band behind the words keeps them readable on any picture.
    band_top = int(h - total - h * 0.06)
    shade = Image.new("L", (w, h - band_top), 0)
    grad = np.linspace(0, 120, h - band_top, dtype=np.float32)[:, None]
    shade = Image.fromarray(np.broadcast_to(grad, (h - band_top, w)).astype(np.uint8))
    image.paste((0, 0, 0, 255), (0, band_top, w, h), shade)
    y = h - total - h * 0.035
    for ln in lines:
        tw = _text_width(draw, ln, font, stroke)
        draw.text(((w - tw) / 2, y), ln, font=font, fill=(255, 255, 255, 255), stroke_width=stroke,
                  stroke_fill=(0, 0, 0, 255))
        y += line_h * 1.1


def _face_for_edit(rgb: Array, identity: Array | None) -> Face:
    """The one face overlays go on: a second crown on a raised hand or a poster's neighbour is a bug."""
    face = main_face(rgb)
    if face is not None:
        return face
    h, w = rgb.shape[:2]
    if identity is not None:
        ih, iw = identity.shape[:2]
        if abs(iw / ih - w / h) < 0.02:
            found = main_face(identity)
            if found is not None:
                return found.scaled(w / iw, h / ih)
    return default_face(w, h)


_DONE = {
    "crown": "crown on", "party_hat": "party hat on", "sunglasses": "sunglasses on",
    "mustache": "mustache on", "halo": "halo on", "horns": "horns on", "warmer": "warmed up",
    "cooler": "cooled down", "brighter": "brightened", "darker": "darkened", "contrast": "contrast boosted",
    "bw": "black and white", "sepia": "sepia-toned",
}
_FLAVOUR = {
    "crown": "looking regal.", "party_hat": "party time!", "sunglasses": "too cool.",
    "mustache": "très distingué.", "halo": "positively angelic.", "horns": "a little devilish.",
    "warmer": "nice and cosy.", "cooler": "cool as ice.", "brighter": "lights up.",
    "darker": "moody.", "contrast": "punchy.", "bw": "timeless.", "sepia": "very vintage.",
    "write": "says it all.",
}


def edit_commentary(ops: list[EditOp]) -> str:
    parts = [f"captioned “{op.text}”" if op.kind == "text" else _DONE[op.name] for op in ops]
    first = next((op for op in ops if op.kind == "accessory"), ops[0])
    text = ", ".join(parts)
    return f"{text[0].upper()}{text[1:]} — {_FLAVOUR[first.name]}"


def apply_edits(rgb: Array, ops: list[EditOp], identity: Array | None = None) -> Array:
    """Apply parsed edits to an RGB uint8 image: accessories, then adjustments, then captions."""
    accessories = [op.name for op in ops if op.kind == "accessory"]
    out = rgb
    if accessories:
        face = _face_for_edit(rgb, identity)
        pil = Image.fromarray(rgb).convert("RGBA")
        for name in _ACCESSORY_ORDER:
            if name in accessories:
                _ACCESSORIES[name](pil, face)
        out = np.asarray(pil.convert("RGB"))
    for op in ops:
        if op.kind == "adjust":
            out = _adjust(out, op.name)
    texts = [op.text for op in ops if op.kind == "text"]
    if texts:
        pil = Image.fromarray(out).convert("RGBA")
        _caption(pil, " ".join(texts))
        out = np.asarray(pil.convert("RGB"))
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------
# Fusion: a group poster
# --------------------------------------------------------------------------------------------

_POSTER_THEMES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    # background top, background bottom, title colour
    "zombie": ((20, 28, 22), (5, 8, 6), (150, 200, 120)),
    "comic": ((255, 214, 40), (255, 150, 30), (20, 20, 30)),
    "manga": ((250, 250, 250), (225, 225, 225), (15, 15, 15)),
    "anime": ((150, 195, 255), (255, 205, 225), (255, 255, 255)),
    "popart": ((15, 15, 20), (15, 15, 20), (255, 230, 0)),
    "pixel": ((25, 20, 60), (10, 10, 30), (120, 255, 160)),
    "sketch": ((246, 243, 236), (232, 228, 218), (55, 55, 60)),
    "cyberpunk": ((25, 5, 45), (5, 10, 30), (0, 240, 255)),
    "watercolor": ((252, 249, 242), (240, 235, 225), (70, 90, 130)),
    "noir": ((30, 30, 30), (0, 0, 0), (235, 235, 235)),
}


def _grid_rows(n: int) -> list[int]:
    return {1: [1], 2: [2], 3: [3], 4: [2, 2], 5: [3, 2], 6: [3, 3], 7: [4, 3], 8: [4, 4]}[n]


def _head_crop(rgb: Array) -> tuple[Array, Face | None]:
    """A head-and-shoulders square around the main face (or the upper centre) and the face in it."""
    h, w = rgb.shape[:2]
    faces = detect_faces(rgb)
    face = faces[0] if faces else None
    if face is not None:
        side = min(2.5 * face.w, w, h)
        cx, cy = face.cx, face.cy + 0.5 * face.h
    else:
        side = min(w, h)
        cx, cy = w / 2, min(h / 2, side / 2 + h * 0.05)
    x0 = round(float(np.clip(cx - side / 2, 0, w - side)))
    y0 = round(float(np.clip(cy - side / 2, 0, h - side)))
    s = int(side)
    crop = rgb[y0:y0 + s, x0:x0 + s]
    return crop, (face.scaled(1, 1, -x0, -y0) if face is not None else None)


def fuse_array(crops: list[tuple[str, Array]], style_id: str, theme: str, rng: np.random.Generator) -> Array:
    """The group poster for (name, RGB image) pairs."""
    n = len(crops)
    rows = _grid_rows(n)
    cols = max(rows)
    margin, gap, label_h = 48, 28, 78
    tile = int(min(512, (_POSTER_MAX - 2 * margin - (cols - 1) * gap) / cols))
    title_h = 150
    width = 2 * margin + cols * tile + (cols - 1) * gap
    height = title_h + len(rows) * (tile + label_h) + (len(rows) - 1) * gap + margin
    top, bottom, ink = _POSTER_THEMES.get(style_id, _POSTER_THEMES["comic"])
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    bg = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    poster = Image.fromarray(np.broadcast_to(bg, (height, width, 3)).astype(np.uint8)).convert("RGBA")
    draw = ImageDraw.Draw(poster)
    title = (theme.strip() or "Avatar party")[:60]
    lines, font, stroke = _wrap(draw, title, width - 2 * margin, 96)
    tw = _text_width(draw, lines[0], font, stroke)
    outline = (0, 0, 0) if sum(ink) > 300 else (255, 255, 255)
    draw.text(((width - tw) / 2, 28), lines[0], font=font, fill=ink, stroke_width=stroke, stroke_fill=outline)
    index = 0
    y = title_h
    for count in rows:
        x = (width - (count * tile + (count - 1) * gap)) // 2
        for _n in range(count):
            name, crop = crops[index]
            face_img, face = _head_crop(crop)
            small = _resize(face_img, tile, tile, cv2.INTER_AREA)
            sface = face.scaled(tile / face_img.shape[1], tile / face_img.shape[0]) if face else None
            ctx = _make_ctx(small, rng, sface or default_face(tile, tile))
            if style_id == "popart":
                styled = _pop_panel(small, ctx.person(), ctx.face, index)
            else:
                styled = _PIPELINES[style_id](ctx)
            border = 6
            draw.rectangle((x - border, y - border, x + tile + border - 1, y + tile + border - 1), fill=ink)
            poster.paste(Image.fromarray(styled), (x, y))
            label = name.strip()[:24] or f"Player {index + 1}"
            lf = _font(44)
            lw = _text_width(draw, label, lf, 2)
            if lw > tile:
                lf = _font(max(14, int(44 * tile / lw)))
                lw = _text_width(draw, label, lf, 2)
            draw.text((x + (tile - lw) / 2, y + tile + 14), label, font=lf, fill=ink, stroke_width=2,
                      stroke_fill=outline)
            index += 1
            x += tile + gap
        y += tile + label_h + gap
    return np.asarray(poster.convert("RGB"))


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[Array, bool]:
    """(RGB uint8 image, was it a PNG) or BadRequest."""
    buf = np.frombuffer(data, np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if len(buf) else None
    if bgr is None:
        raise BadRequest(N_("I couldn't read that picture — try sending it again as a photo."),
                         detail=f"undecodable image of {len(data)} bytes")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb, _ = _fit(rgb, _MAX_SIDE)
    return np.ascontiguousarray(rgb), data[:8] == b"\x89PNG\r\n\x1a\n"


def _encode(rgb: Array, png: bool) -> tuple[bytes, str]:
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if png:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        mime = "image/jpeg"
    if not ok:
        raise EngineError(N_("The offline engine couldn't save that picture."), detail="imencode failed")
    return buf.tobytes(), mime


def crop_to_ratio(rgb: Array, ratio: str | None) -> Array:
    """Crop to `ratio` ("16:9"), keeping the main face (or the middle) in frame; None: as is."""
    if not ratio:
        return rgb
    try:
        w_part, h_part = (float(v) for v in ratio.split(":"))
        target = w_part / h_part
    except ValueError:
        return rgb
    height, width = rgb.shape[:2]
    if not height or not width or abs(width / height - target) < 0.01:
        return rgb
    face = main_face(rgb)
    cx, cy = (width / 2, height / 2)
    if face is not None:
        cx, cy = face.x + face.w / 2, face.y + face.h / 2
    if width / height > target:  # too wide: keep the full height
        new_w = max(1, round(height * target))
        left = int(min(max(cx - new_w / 2, 0), width - new_w))
        return rgb[:, left:left + new_w].copy()
    new_h = max(1, round(width / target))
    top = int(min(max(cy - new_h / 2, 0), height - new_h))
    return rgb[top:top + new_h, :].copy()


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class OfflineEngine:
    """Hand-built OpenCV/Pillow pipelines: free, private, and no network."""

    name = "offline"
    model = "offline"

    def __init__(self, *, executor: concurrent.futures.Executor | None = None,
                 rng_seed: int | None = None) -> None:
        self._own_executor = executor is None
        self._executor: concurrent.futures.Executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="pixme-offline")
        self._seed = rng_seed

    def _rng(self, *data: bytes) -> np.random.Generator:
        if self._seed is not None:
            return np.random.default_rng(self._seed)
        crc = 0
        for d in data:
            crc = zlib.crc32(d, crc)
        return np.random.default_rng(crc)

    async def _run(self, fn: Callable[[], EngineResult]) -> EngineResult:
        loop = asyncio.get_running_loop()
        try:
            # In the caller's context, so the commentary is in the language of the person it is for.
            return await loop.run_in_executor(self._executor, contextvars.copy_context().run, fn)
        except EngineError:
            raise
        except Exception as exc:  # nothing but EngineError may escape an engine
            raise EngineError(N_("The offline engine couldn't draw that one — try another photo."),
                              detail=f"{type(exc).__name__}: {exc}") from exc

    # Options: no model choice or size here (one pipeline, output the size of the input), and no
    # persona (no language understanding); an aspect ratio is honoured by cropping around the face.

    async def stylize(self, selfie: bytes, style: Style, *, options: RenderOptions | None = None) -> EngineResult:
        if style.id not in _PIPELINES:
            raise Unsupported(_("The offline engine has no {style} style yet.").format(style=style.name))
        rng = self._rng(selfie, style.id.encode())

        def work() -> EngineResult:
            rgb, _alpha = _decode(selfie)
            out = crop_to_ratio(stylize_array(rgb, style.id, rng), options.aspect_ratio if options else None)
            data, mime = _encode(out, style.id in _PNG_STYLES)
            quip = _(style.quips[int(rng.integers(len(style.quips)))]) if style.quips else _("Here you are!")
            return EngineResult(data, mime, quip, self.model)

        return await self._run(work)

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None,
                   options: RenderOptions | None = None) -> EngineResult:
        ops = parse_edit(instruction)

        def work() -> EngineResult:
            rgb, was_png = _decode(image)
            ident = None
            if identity:
                try:
                    ident = _decode(identity)[0]
                except BadRequest:
                    ident = None
            out = crop_to_ratio(apply_edits(rgb, ops, ident), options.aspect_ratio if options else None)
            data, mime = _encode(out, was_png)
            return EngineResult(data, mime, edit_commentary(ops), self.model)

        return await self._run(work)

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        if not portraits:
            raise BadRequest(N_("A group picture needs at least one portrait."))
        if len(portraits) > MAX_FUSE_PEOPLE:
            raise Unsupported(_("The offline engine fits at most {limit} people in one poster.").format(
                limit=MAX_FUSE_PEOPLE))
        if style.id not in _PIPELINES:
            raise Unsupported(_("The offline engine has no {style} style yet.").format(style=style.name))
        rng = self._rng(style.id.encode(), theme.encode(), *(p.image for p in portraits))

        def work() -> EngineResult:
            crops = [(p.name, _decode(p.image)[0]) for p in portraits]
            out = crop_to_ratio(fuse_array(crops, style.id, theme, rng), options.aspect_ratio if options else None)
            data, mime = _encode(out, style.id in _PNG_STYLES)
            names = [p.name for p in portraits if p.name.strip()]
            who = _("{names} and {last}").format(names=", ".join(names[:-1]), last=names[-1]) if len(names) > 1 \
                else (names or [_("you")])[0]
            quip = _(style.quips[int(rng.integers(len(style.quips)))]) if style.quips else ""
            line = _("{style} poster for {who}.").format(style=style.name, who=who)
            return EngineResult(data, mime, f"{line} {quip}".strip(), self.model)

        return await self._run(work)

    async def check(self) -> str | None:
        if _get_cascades() is None:
            return ("OpenCV's Haar face cascades are missing (opencv-python-headless 5.x?): the offline "
                    "engine will place accessories and crops at a default position.")
        return None

    async def aclose(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
