"""Small image helpers the offline engine's pipelines share: conversions, blurs, noise, masks,
clustering, edges and print screens (RGB, float32 in 0..1 unless the name says u8)."""

from __future__ import annotations

import math
from typing import Any, cast

import cv2
import numpy as np

Array = np.ndarray[Any, Any]


def to_float(rgb: Array) -> Array:
    return rgb.astype(np.float32) * np.float32(1 / 255)


def to_u8(img: Array) -> Array:
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def luminance(img: Array) -> Array:
    return (img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114).astype(np.float32)


def resize(img: Array, width: int, height: int, interp: int = cv2.INTER_LINEAR) -> Array:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (max(1, width), max(1, height)), interpolation=interp)


def fit(img: Array, long_side: int) -> tuple[Array, float]:
    """`img` scaled down so its long side is at most `long_side`, and the scale used."""
    h, w = img.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale >= 1.0:
        return img, 1.0
    return resize(img, round(w * scale), round(h * scale), cv2.INTER_AREA), scale


def smooth_colours(rgb: Array, work: int = 512, passes: int = 2, d: int = 9, sigma_color: float = 40,
            sigma_space: float = 7) -> Array:
    """Edge-preserving colour smoothing, done at a working size and scaled back (uint8)."""
    h, w = rgb.shape[:2]
    small, _ = fit(rgb, work)
    for _n in range(passes):
        small = cv2.bilateralFilter(small, d, sigma_color, sigma_space)
    return resize(small, w, h, cv2.INTER_LINEAR)


def blur(img: Array, sigma: float) -> Array:
    if sigma <= 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma)


def fast_blur(img: Array, sigma: float) -> Array:
    """A wide Gaussian blur, done at a quarter size when the blur is big enough not to show it."""
    h, w = img.shape[:2]
    if sigma < 8:
        return blur(img, sigma)
    small = resize(img, max(1, w // 4), max(1, h // 4), cv2.INTER_AREA)
    return resize(blur(small, sigma / 4), w, h, cv2.INTER_LINEAR)


def value_noise(h: int, w: int, rng: np.random.Generator, cell: float) -> Array:
    """Smooth value noise in roughly -1..1 with features about `cell` pixels across."""
    gh, gw = max(2, int(h / max(cell, 1)) + 2), max(2, int(w / max(cell, 1)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) * np.float32(0.7)


def grain(h: int, w: int, rng: np.random.Generator, amount: float, coarse: bool = True) -> Array:
    """Film grain: slightly soft Gaussian noise."""
    g: Array
    if coarse:
        g = rng.standard_normal((h // 2 + 1, w // 2 + 1)).astype(np.float32)
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        g = rng.standard_normal((h, w)).astype(np.float32)
    return g * np.float32(amount)


def radial(h: int, w: int, cx: float | None = None, cy: float | None = None) -> Array:
    """Normalised distance from a centre: 0 there, about 1 at the corners of a centred frame."""
    cx = w / 2 if cx is None else cx
    cy = h / 2 if cy is None else cy
    ys = (np.arange(h, dtype=np.float32) - cy) / (h / 2)
    xs = (np.arange(w, dtype=np.float32) - cx) / (w / 2)
    return np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2) / np.float32(math.sqrt(2))


def vignette(h: int, w: int, strength: float, start: float = 0.35, cx: float | None = None,
              cy: float | None = None) -> Array:
    r = radial(h, w, cx, cy)
    t = np.clip((r - start) / (1.0 - start), 0, 1)
    return (1 - strength * t * t * (3 - 2 * t)).astype(np.float32)


def ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float, soft: float = 0.0) -> Array:
    """1 inside the ellipse, 0 outside, with a soft edge `soft` (fraction of the radius)."""
    ys = (np.arange(h, dtype=np.float32) - cy) / max(ry, 1)
    xs = (np.arange(w, dtype=np.float32) - cx) / max(rx, 1)
    d = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    if soft <= 0:
        return (d <= 1).astype(np.float32)
    return np.clip((1 + soft - d) / (2 * soft), 0, 1).astype(np.float32)


def gaussian_blob(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> Array:
    """A Gaussian blob with standard deviations rx, ry."""
    ys = (np.arange(h, dtype=np.float32) - cy) / max(ry, 1)
    xs = (np.arange(w, dtype=np.float32) - cx) / max(rx, 1)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


def screen(a: Array, b: Array) -> Array:
    return cast(Array, 1 - (1 - a) * (1 - b))


def saturate(img: Array, amount: float) -> Array:
    lum = luminance(img)[..., None]
    return np.clip(lum + (img - lum) * np.float32(amount), 0, 1)


def smoothstep(e0: float, e1: float, x: Array) -> Array:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def kmeans(pixels: Array, k: int, rng: np.random.Generator, iters: int = 10, sample: int = 6000) -> Array:
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
    return cast(Array, np.argmin(d, axis=1).astype(np.int32))


def quantize(img: Array, centres: Array) -> tuple[Array, Array]:
    """Each pixel replaced by its nearest centre; returns (image, labels HxW)."""
    h, w = img.shape[:2]
    labels = _nearest(img.reshape(-1, img.shape[-1]), centres).reshape(h, w)
    return centres[labels], labels


def canny(gray_u8: Array, lo: int, hi: int) -> Array:
    return (cv2.Canny(gray_u8, lo, hi) > 0).astype(np.float32)


def ink_lines(gray_u8: Array, block: int, c: int, median: int = 7, min_area: int = 0) -> Array:
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
    return cast(Array, ink.astype(np.float32))


def dot_screen(h: int, w: int, period: float, angle_deg: float = 45.0) -> Array:
    """A halftone screen in 0..1 (0 at dot centres); threshold it against a tone to get dots."""
    a = math.radians(angle_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs * math.cos(a) + ys * math.sin(a)) * np.float32(2 * math.pi / period)
    v = (-xs * math.sin(a) + ys * math.cos(a)) * np.float32(2 * math.pi / period)
    return cast(Array, (0.5 - 0.25 * (np.cos(u) + np.cos(v))).astype(np.float32))


def line_screen(h: int, w: int, period: float, angle_deg: float) -> Array:
    """Parallel lines in 0..1 (0 on the line centres)."""
    a = math.radians(angle_deg)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs * math.cos(a) + ys * math.sin(a)) * np.float32(2 * math.pi / period)
    return cast(Array, (0.5 - 0.5 * np.cos(u)).astype(np.float32))
