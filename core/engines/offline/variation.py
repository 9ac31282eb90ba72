"""Another take on the same photo, for variants and Again: the offline pipelines are deterministic, so a new
seed alone would redraw only their noise. The photo is reframed (a little closer, a little off centre), maybe
mirrored, and lit a little differently before the style draws it: a person sees a different picture, and the
style is untouched because it is still the style that draws it."""

from __future__ import annotations

import cv2
import numpy as np

from core.engines.offline.faces import main_face
from core.engines.offline.filters import Array


def vary(rgb: Array, rng: np.random.Generator) -> Array:
    """`rgb` (uint8 HxWx3) reframed, perhaps mirrored, with its light and colour nudged; the same size."""
    h, w = rgb.shape[:2]
    zoom = rng.uniform(1.08, 1.3)
    cw, ch = max(8, round(w / zoom)), max(8, round(h / zoom))
    face = main_face(rgb)
    cx, cy = (face.x + face.w / 2, face.y + face.h / 2) if face is not None else (w / 2, h / 2.4)
    # Around the face (it stays in), pushed a little one way or the other.
    cx += rng.uniform(-0.35, 0.35) * (w - cw)
    cy += rng.uniform(-0.25, 0.2) * (h - ch)
    left = int(min(max(cx - cw / 2, 0), w - cw))
    top = int(min(max(cy - ch / 2, 0), h - ch))
    out = cv2.resize(rgb[top:top + ch, left:left + cw], (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180  # OpenCV's hue runs 0..180
    hsv[..., 1] *= rng.uniform(0.9, 1.2)
    hsv[..., 2] = 255 * (hsv[..., 2] / 255) ** rng.uniform(0.8, 1.2)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
