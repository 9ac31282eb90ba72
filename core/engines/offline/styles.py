"""The ten offline style pipelines, and the per-image context (face, person and skin masks) they share."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw

from core.engines.base import Unsupported
from core.engines.offline.faces import Face, default_face, detect_faces
from core.engines.offline.filters import (
    Array,
    blur,
    canny,
    dot_screen,
    ellipse,
    fast_blur,
    fit,
    gaussian_blob,
    grain,
    ink_lines,
    kmeans,
    line_screen,
    luminance,
    quantize,
    radial,
    resize,
    saturate,
    screen,
    smooth_colours,
    smoothstep,
    to_float,
    to_u8,
    value_noise,
    vignette,
)
from core.i18n import _

# --------------------------------------------------------------------------------------------
# Per-image context: the face and (lazily) masks that several pipelines share
# --------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    """One picture as the pipelines see it: pixels, the RNG, the face, and a person mask made once, on first use."""

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


def make_ctx(rgb: Array, rng: np.random.Generator, face: Face | None = None) -> Ctx:
    if face is None:
        faces = detect_faces(rgb)
        face = faces[0] if faces else default_face(rgb.shape[1], rgb.shape[0])
    return Ctx(rgb, rng, face)


def _person_mask(rgb: Array, face: Face) -> Array:
    """A soft foreground (person) mask in 0..1 from GrabCut seeded around the face."""
    h, w = rgb.shape[:2]
    small, s = fit(rgb, 176)
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
    fallback = ellipse(sh, sw, f.cx, f.cy + 0.6 * f.h, 1.3 * f.w, 1.8 * f.h, soft=0.15)
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
    soft = blur(soft, 1.2)
    return np.clip(resize(soft, w, h, cv2.INTER_LINEAR), 0, 1)


def _skin_mask(ctx: Ctx) -> Array:
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
    prior = np.maximum(ellipse(h, w, f.cx, f.cy - 0.05 * f.h, 0.72 * f.w, 0.8 * f.h, soft=0.2),
                       ellipse(h, w, f.cx, f.y + 1.35 * f.h, 0.55 * f.w, 0.6 * f.h, soft=0.3))
    m = colour * prior
    if f.detected:
        m = np.maximum(m, 0.85 * ellipse(h, w, f.cx, f.cy + 0.05 * f.h, 0.36 * f.w, 0.45 * f.h, soft=0.3))
    return blur(m.astype(np.float32), max(1.0, f.w * 0.025))


# --------------------------------------------------------------------------------------------
# The ten style pipelines: each takes a context and returns an RGB uint8 image
# --------------------------------------------------------------------------------------------


def _zombie(ctx: Ctx) -> Array:
    h, w, f, rng = ctx.h, ctx.w, ctx.face, ctx.rng
    img = to_float(ctx.rgb)
    lum = luminance(img)
    skin = _skin_mask(ctx)
    sk = skin[..., None]
    # Undead skin: pale grey-green with the skin's own texture exaggerated, mottled and veined.
    detail = lum - blur(lum, max(2.0, f.w * 0.03))
    ll = np.clip(lum * 0.85 + 0.08 + detail * 1.8, 0, 1)[..., None]
    mottle = value_noise(h, w, rng, f.w * 0.09)[..., None]
    blotch = smoothstep(0.2, 0.9, value_noise(h, w, rng, f.w * 0.2))[..., None]
    vein_noise = value_noise(h, w, rng, f.w * 0.12)
    veins = np.clip(1 - np.abs(vein_noise) * 14, 0, 1) * smoothstep(0.1, 0.6, value_noise(h, w, rng, f.w * 0.3))
    dead = ll * np.array([0.79, 0.86, 0.74], np.float32) + np.array([0.0, 0.025, 0.015], np.float32)
    dead = dead * (1 + 0.12 * mottle)
    dead = dead * (1 - 0.35 * blotch * np.array([0.7, 0.85, 0.6], np.float32))  # bruised blotches
    dead = dead * (1 - 0.35 * veins[..., None] * np.array([0.55, 0.75, 0.45], np.float32))
    out = img * (1 - 0.95 * sk) + dead * 0.95 * sk
    # Sunken sockets: dark bruised hollows around the eyes, with pale milky irises.
    sockets = np.zeros((h, w), np.float32)
    milky = np.zeros((h, w), np.float32)
    for ex, ey in (f.left_eye, f.right_eye):
        sockets = np.maximum(sockets, gaussian_blob(h, w, ex, ey + 0.015 * f.h, 0.105 * f.w, 0.075 * f.h))
        milky = np.maximum(milky, gaussian_blob(h, w, ex, ey, 0.028 * f.w, 0.024 * f.h))
    sockets = np.clip(sockets * 1.25, 0, 1)[..., None]
    out = out * (1 - 0.8 * sockets) + sockets * 0.8 * np.array([0.09, 0.04, 0.07], np.float32)
    out = out + (np.array([0.86, 0.88, 0.74], np.float32) - out) * (0.8 * np.clip(milky * 1.6, 0, 1)[..., None])
    # Rot: a few dark, raw lesions on the cheeks and brow, rimmed darker.
    lesion = smoothstep(0.55, 0.8, value_noise(h, w, rng, f.w * 0.07)) * smoothstep(0.6, 0.9, skin)
    lesion = lesion * (1 - ellipse(h, w, f.cx, f.eye_y, 0.45 * f.w, 0.14 * f.h, soft=0.5))  # not the eyes
    rim = np.clip(blur(lesion, f.w * 0.012) - lesion, 0, 1)[..., None] * 2.5
    out = out * (1 - 0.5 * rim)
    out = out + (np.array([0.30, 0.08, 0.07], np.float32) - out) * (0.75 * lesion[..., None])
    # Lips: the reddish pixels around the mouth go dark grey-purple; grey the teeth.
    mouth = ellipse(h, w, f.cx, f.y + 0.82 * f.h, 0.24 * f.w, 0.1 * f.h, soft=0.4)
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
    blood = (blur(blood, max(0.8, f.w * 0.004)) * smoothstep(0.3, 0.7, skin + lips[..., 0]))[..., None]
    out = out + (np.array([0.36, 0.02, 0.03], np.float32) - out) * (0.85 * blood)
    # Cold, desaturated horror grade with crushed blacks; the rest of the scene sinks into gloom.
    out = saturate(out, 0.45) * (1 - 0.55 * blood) + out * 0.55 * blood  # the blood stays red
    out = out * (1 - 0.25 * (1 - sk))
    out = out * np.array([0.9, 1.0, 0.95], np.float32) + np.array([0.0, 0.015, 0.01], np.float32)
    out = np.clip((out - 0.06) * 1.2, 0, 1) ** np.float32(1.15)
    out = out + grain(h, w, rng, 0.05)[..., None]
    out = out * vignette(h, w, 0.9, start=0.2, cx=f.cx, cy=f.cy + 0.4 * f.h)[..., None]
    return to_u8(out)


def _comic(ctx: Ctx) -> Array:
    h, w, rng, s = ctx.h, ctx.w, ctx.rng, ctx.scale
    smooth = smooth_colours(ctx.rgb, work=512, passes=3, d=9, sigma_color=45, sigma_space=9)
    img = saturate(to_float(smooth), 1.45)
    img = np.clip((img - 0.5) * 1.15 + 0.52, 0, 1)
    small, _ = fit(img, 256)
    centres = kmeans(small.reshape(-1, 3), 9, rng)
    centres = saturate(centres[:, None, :], 1.25)[:, 0, :]
    flat, _labels = quantize(img, centres)
    # Ben-Day dots in the shadows: darker dots of the same flat colour.
    lum = luminance(to_float(smooth))
    shade = np.clip((0.55 - lum) / 0.4, 0, 1)
    dots = (dot_screen(h, w, max(5.0, 9 * s), 45) < shade * 0.85)[..., None]
    out = np.where(dots, flat * 0.45, flat)
    # Highlights get small white dots too (a printed look on big flat areas).
    hi = np.clip((lum - 0.8) / 0.2, 0, 1)
    hdots = (dot_screen(h, w, max(5.0, 9 * s), 15) < hi * 0.35)[..., None]
    out = np.where(hdots, 1.0, out)
    # Bold black ink.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    ink = ink_lines(gray, int(9 * s) | 1, 5, median=5, min_area=int(30 * s * s))
    edges = canny(cv2.GaussianBlur(gray, (0, 0), 1.5 * s), 40, 110)
    edges = cv2.dilate(edges, np.ones((max(2, round(2.5 * s)),) * 2, np.uint8))
    ink = np.maximum(ink, edges)
    out = np.where(ink[..., None] > 0.5, np.array([0.06, 0.04, 0.08], np.float32), out)
    # A panel border.
    b = max(3, round(8 * s))
    out[:b], out[-b:], out[:, :b], out[:, -b:] = 0.05, 0.05, 0.05, 0.05
    return to_u8(out)


def _manga(ctx: Ctx) -> Array:
    h, w, f, s = ctx.h, ctx.w, ctx.face, ctx.scale
    smooth = smooth_colours(ctx.rgb, work=512, passes=2, d=9, sigma_color=35, sigma_space=7)
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(6, 6))
    g = to_float(clahe.apply(gray))
    g = blur(g, 1.5 * s)
    lo, hi = np.percentile(g, [3, 97])
    g = np.clip((g - lo) / max(hi - lo, 1e-3), 0, 1)
    out = np.ones((h, w), np.float32)
    dots_fine = dot_screen(h, w, max(4.0, 7 * s), 45)
    lines = line_screen(h, w, max(3.0, 6 * s), 45)
    cross = np.minimum(lines, line_screen(h, w, max(3.0, 6 * s), -45))
    tone1 = (g < 0.72) & (g >= 0.5)
    tone2 = (g < 0.5) & (g >= 0.3)
    tone3 = (g < 0.3) & (g >= 0.14)
    out[tone1] = np.where(dots_fine[tone1] < 0.22, 0.0, 1.0)
    out[tone2] = np.where(lines[tone2] < 0.28, 0.0, 1.0)
    out[tone3] = np.where(cross[tone3] < 0.3, 0.0, 1.0)
    out[g < 0.14] = 0.0
    # Crisp ink lines.
    ink = ink_lines(gray, int(11 * s) | 1, 4, median=5, min_area=int(24 * s * s))
    edges = canny(cv2.GaussianBlur(gray, (0, 0), 1.4 * s), 50, 130)
    edges = cv2.dilate(edges, np.ones((max(1, round(1.6 * s)),) * 2, np.uint8))
    out = np.where(np.maximum(ink, edges) > 0.5, 0.0, out)
    # Focus lines radiating from the face, only over blank paper.
    out = _focus_lines(out, f, ctx.rng, s)
    out = 0.06 + out * 0.92  # ink black and paper white
    return cv2.cvtColor(to_u8(out), cv2.COLOR_GRAY2RGB)


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
    blank = blur(paper.astype(np.float32), 3 * s) > 0.98
    return np.where(blank & (lines > 0.5), 0.0, page).astype(np.float32)


def _anime(ctx: Ctx) -> Array:
    h, w, rng, s = ctx.h, ctx.w, ctx.rng, ctx.scale
    smooth = smooth_colours(ctx.rgb, work=512, passes=3, d=9, sigma_color=50, sigma_space=9)
    lab = cv2.cvtColor(to_float(smooth), cv2.COLOR_RGB2Lab)
    # Cel shading in Lab: lightness posterised in steps centred on the face's own tone (so every
    # skin keeps its colour), chroma taken from a blurred copy so noise never turns into blotches.
    skin = _skin_mask(ctx)
    light = blur(lab[..., 0], 2.5 * s) * (1 - skin) + blur(lab[..., 0], 7 * s) * skin  # smooth skin
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
    cel_l = blur(cel_l.astype(np.float32), 0.8 * s)
    cel_l = np.clip(cel_l * 0.9 + 12, 0, 100)  # anime is bright: lift, but keep the order of tones
    chroma = blur(lab[..., 1:], 3.0 * s) * np.float32(1.15)
    if core.sum() > 50:  # one skin colour, not a patchwork of reds and browns
        tone = np.median(chroma[core], axis=0).astype(np.float32)
        chroma = (chroma + (tone - chroma) * (0.7 * skin)[..., None]).astype(np.float32)
    cel = cv2.cvtColor(np.dstack([cel_l, chroma]).astype(np.float32), cv2.COLOR_Lab2RGB)
    cel = np.clip(cel, 0, 1)
    # Clean thin lines in a dark shade of the local colour, and an outline around the person.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    lines = canny(cv2.GaussianBlur(gray, (0, 0), 1.2 * s), 35, 95)
    # Eyes, brows, nose and mouth inked boldly (a flat cel face needs them to read, thumbnails too).
    work, _ = fit(gray, 512)
    wf = to_float(work)
    dog = blur(wf, 1.2) - 0.98 * blur(wf, 1.9)
    feature = resize((dog < -0.018).astype(np.float32), w, h) * smoothstep(0.5, 0.8, skin)
    lines = np.maximum(lines, (feature > 0.5).astype(np.float32))
    person = ctx.person()
    outline = cv2.morphologyEx((person > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT,
                               np.ones((max(2, round(3 * s)),) * 2, np.uint8)).astype(np.float32)
    lines = np.maximum(lines, outline)
    if s > 0.75:
        lines = cv2.dilate(lines, np.ones((2, 2), np.uint8))
    lines = blur(lines, 0.6)[..., None]
    cel = cel * (1 - 0.85 * lines) + cel * 0.15 * 0.85 * lines
    # Pastel sky behind the person.
    pm = blur(person, 1.0)[..., None]
    sky = _anime_sky(h, w, rng)
    out = cel * pm + sky * (1 - pm)
    # Bloom: the bright parts glow, softly.
    bright = np.clip((out - 0.7) / 0.3, 0, 1)
    glow = fast_blur(bright, 14 * s)
    out = screen(out, glow * 0.35)
    out = screen(out, fast_blur(out, 10 * s) * 0.08)
    return to_u8(out)


def _anime_sky(h: int, w: int, rng: np.random.Generator) -> Array:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top = np.array([0.55, 0.75, 1.0], np.float32)
    mid = np.array([0.80, 0.85, 1.0], np.float32)
    bottom = np.array([1.0, 0.82, 0.90], np.float32)
    sky = np.where(t < 0.55, top + (mid - top) * (t / 0.55), mid + (bottom - mid) * ((t - 0.55) / 0.45))
    sky = np.broadcast_to(sky, (h, w, 3)).astype(np.float32)
    clouds = value_noise(h, w, rng, max(h, w) / 6) + 0.5 * value_noise(h, w, rng, max(h, w) / 14)
    clouds = smoothstep(0.35, 0.9, clouds) * (1 - np.linspace(0, 0.6, h, dtype=np.float32)[:, None])
    sky = sky + (1 - sky) * (0.85 * clouds[..., None])
    # A few sparkles.
    sparkle = np.zeros((h, w), np.float32)
    for _n in range(14):
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h * 0.7))
        r = max(2, int(rng.uniform(0.004, 0.01) * max(h, w)))
        cv2.line(sparkle, (x - 3 * r, y), (x + 3 * r, y), 1.0, 1, cv2.LINE_AA)
        cv2.line(sparkle, (x, y - 3 * r), (x, y + 3 * r), 1.0, 1, cv2.LINE_AA)
        cv2.circle(sparkle, (x, y), max(1, r // 2), 1.0, -1, cv2.LINE_AA)
    sparkle = np.maximum(sparkle, blur(sparkle, 3) * 2)
    return screen(sky, np.clip(sparkle, 0, 1)[..., None] * 0.9)


# Pop-art colourways: background, highlight, midtone, ink.
_POP_COLOURWAYS: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((255, 35, 150), (255, 222, 80), (205, 20, 125), (45, 0, 60)),     # hot pink
    ((255, 222, 0), (255, 250, 210), (245, 125, 0), (60, 25, 0)),      # electric yellow
    ((0, 205, 235), (215, 255, 250), (0, 105, 210), (0, 25, 70)),      # cyan
    ((255, 115, 0), (255, 210, 150), (220, 30, 50), (70, 5, 0)),       # orange
)


def pop_panel(rgb: Array, person: Array, face: Face, colourway: int) -> Array:
    """One silkscreen panel: background flat colour, the person in three flat tones plus ink."""
    h, w = rgb.shape[:2]
    s = max(h, w) / 512
    smooth = smooth_colours(rgb, work=384, passes=2, d=7, sigma_color=40, sigma_space=6)
    g = to_float(cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY))
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
    lines = ink_lines(gray, int(9 * s) | 1, 5, median=5, min_area=int(20 * s * s)) * m[..., 0]
    dark = (g < t1 * 0.75).astype(np.float32) * m[..., 0]
    black = np.maximum(lines, dark)
    shift = max(1, round(3 * s))
    moved = np.zeros_like(black)
    moved[shift:, shift:] = black[:-shift, :-shift]
    black = moved
    out = np.where(black[..., None] > 0.5, np.array([0.05, 0.03, 0.06], np.float32), out)
    return to_u8(out)


def _popart(ctx: Ctx) -> Array:
    h, w = ctx.h, ctx.w
    pw, ph = w // 2, h // 2
    panel_rgb = resize(ctx.rgb, pw, ph, cv2.INTER_AREA)
    person = resize(ctx.person(), pw, ph, cv2.INTER_AREA)
    face = ctx.face.scaled(pw / w, ph / h)
    panels = [pop_panel(panel_rgb, person, face, i) for i in range(4)]
    grid = np.vstack([np.hstack(panels[:2]), np.hstack(panels[2:])])
    gutter = max(2, round(4 * ctx.scale))
    grid[ph - gutter // 2:ph + (gutter + 1) // 2] = 10
    grid[:, pw - gutter // 2:pw + (gutter + 1) // 2] = 10
    return resize(grid, w, h, cv2.INTER_NEAREST)


def _pixel(ctx: Ctx) -> Array:
    h, w, f, rng = ctx.h, ctx.w, ctx.face, ctx.rng
    block = max(2, round(max(h, w) / 72))
    sw, sh = math.ceil(w / block), math.ceil(h / block)
    smooth = smooth_colours(ctx.rgb, work=384, passes=2, d=7, sigma_color=40, sigma_space=5)
    small_u8 = resize(smooth, sw, sh, cv2.INTER_AREA)
    # Sprites are flat: the background flattened harder than the person.
    person = resize(ctx.person(), sw, sh, cv2.INTER_AREA) > 0.5
    flat_bg = cv2.medianBlur(small_u8, 5) if min(sw, sh) >= 5 else small_u8
    sharp = to_float(small_u8)
    sharp = np.clip(sharp + 0.6 * (sharp - blur(sharp, 1.2)), 0, 1)  # crisp eyes and mouth at sprite scale
    small = np.where(person[..., None], sharp, to_float(flat_bg))
    small = np.clip((saturate(small, 1.15) - 0.5) * 1.05 + 0.5, 0, 1)
    # A small palette (12 colours) chosen in Lab, leaning on the face so skin, eyes and mouth get
    # their shades; no dithering: flat areas of colour read as a sprite, dots as a photo mosaic.
    lab = cv2.cvtColor(small.astype(np.float32), cv2.COLOR_RGB2Lab)
    fs = f.scaled(sw / w, sh / h)
    fy0, fy1 = int(max(0, fs.y)), int(min(sh, fs.y + fs.h))
    fx0, fx1 = int(max(0, fs.x)), int(min(sw, fs.x + fs.w))
    face_px = lab[fy0:fy1, fx0:fx1].reshape(-1, 3)
    sample = np.concatenate([lab.reshape(-1, 3)] + [face_px] * 3)
    centres = kmeans(sample, 12, rng, iters=12, sample=12000)
    _, labels = quantize(lab, centres)
    palette = np.clip(cv2.cvtColor(centres[None, :, :].astype(np.float32), cv2.COLOR_Lab2RGB)[0], 0, 1)
    quant = palette[labels]
    # One-pixel dark outlines: around the person and along the picture's strong edges.
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    edges = canny(cv2.GaussianBlur(gray, (0, 0), 2.0 * block / 8), 70, 160)
    edges = cv2.dilate(edges, np.ones((max(1, block // 3),) * 2, np.uint8))
    ink = resize(edges, sw, sh, cv2.INTER_AREA) > 0.35
    silhouette = cv2.morphologyEx(person.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8)) > 0
    ink = (ink | (silhouette & person)) & ~_sprite_eyes(fs, sw, sh)
    outline = palette[int(np.argmin(centres[:, 0]))] * 0.45
    quant = np.where(ink[..., None], outline, quant)
    big = np.repeat(np.repeat(to_u8(quant), block, axis=0), block, axis=1)
    return np.ascontiguousarray(big[:h, :w])


def _sprite_eyes(f: Face, sw: int, sh: int) -> Array:
    """Cells around the eyes, kept free of outline so the eyes read as eyes, not a black bar."""
    keep = np.zeros((sh, sw), bool)
    for ex, ey in (f.left_eye, f.right_eye):
        x0, x1 = int(max(0, ex - 0.08 * f.w)), int(min(sw, ex + 0.08 * f.w + 1))
        y0, y1 = int(max(0, ey - 0.05 * f.h)), int(min(sh, ey + 0.05 * f.h + 1))
        keep[y0:y1, x0:x1] = True
    return keep


def _sketch(ctx: Ctx) -> Array:
    h, w, rng, s = ctx.h, ctx.w, ctx.rng, ctx.scale
    gray = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.bilateralFilter(fit(gray, 512)[0], 7, 30, 5)
    # Local contrast first: a dark face gets the same range of pencil tones as a light one.
    small = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(6, 6)).apply(small)
    # Contours: an extended difference of Gaussians (XDoG) drawn where the picture has edges.
    sf = to_float(small)
    dog = blur(sf, 1.3) - 0.98 * blur(sf, 2.1)
    contour = np.where(dog >= -0.01, 1.0, 1 + np.tanh(40 * (dog + 0.01))).astype(np.float32)
    contour = resize(np.clip(contour, 0, 1), w, h)
    g = resize(small, w, h).astype(np.float32)
    # Colour dodge of the inverted blur: soft pencil shading along the forms.
    inverted_blur = blur(255 - g, 10 * s)
    dodge = np.clip(g * 255 / np.maximum(255 - inverted_blur, 1), 0, 255) / 255
    lines = np.clip(dodge, 0, 1) ** np.float32(2.2) * (0.25 + 0.75 * contour)
    # Hatching in the darker tones, following the tone of a soft copy of the picture.
    tone = fast_blur(g / 255, 4 * s)
    dark = np.clip((0.72 - tone) / 0.6, 0, 1)
    hatch1 = _hatching(h, w, rng, 35, s)
    hatch2 = _hatching(h, w, rng, -50, s)
    shade = 1 - 0.5 * dark * hatch1 - 0.4 * np.clip(dark * 1.6 - 0.6, 0, 1) * hatch2
    shade = shade - 0.1 * dark  # a smudge of soft graphite under the strokes
    # Soft graphite tone under the lines, so forms (and a whole face) read at a glance, thumbnails too.
    value = np.clip(lines * shade * (0.62 + 0.38 * smoothstep(0.1, 0.75, tone)), 0, 1)
    # The drawing fades out towards the edges of the page, as sketches do.
    f = ctx.face
    r = radial(h, w, f.cx, f.cy + 1.2 * f.h)
    fade = smoothstep(0.55, 0.85, r + value_noise(h, w, rng, 50 * s) * 0.08)
    fade = np.maximum(fade, 0.5 * (1 - blur(ctx.person(), 6 * s)))  # the background only suggested
    fade = fade * (1 - ellipse(h, w, f.cx, f.cy, 0.95 * f.w, 1.15 * f.h, soft=0.35))  # a close-up keeps its face
    value = value + (1 - value) * fade * 0.85
    # Off-white paper with tooth.
    tooth = grain(h, w, rng, 0.025, coarse=False) + 0.02 * value_noise(h, w, rng, 40 * s)
    paper = np.array([0.965, 0.955, 0.94], np.float32)
    graphite = np.array([0.22, 0.22, 0.24], np.float32)
    out = graphite + (paper - graphite) * value[..., None]
    out = out + (tooth * (0.4 + 0.6 * value))[..., None]
    return to_u8(out)


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
    return resize(strokes, w, h)


def _cyberpunk(ctx: Ctx) -> Array:
    h, w, f, rng, s = ctx.h, ctx.w, ctx.face, ctx.rng, ctx.scale
    img = to_float(ctx.rgb)
    person = ctx.person()[..., None]
    lum = luminance(img)
    # Split-tone: shadows deep indigo, highlights cyan/magenta lit from either side.
    base = saturate(img, 0.35)
    base = np.clip((base - 0.5) * 1.5 + 0.42, 0, 1)
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    magenta = np.array([1.0, 0.12, 0.72], np.float32)
    cyan = np.array([0.0, 0.88, 1.0], np.float32)
    side = smoothstep(f.cx - 0.45 * f.w, f.cx + 0.45 * f.w, xs)  # split-lit face
    light = magenta * (1 - side) + cyan * side
    shadow = np.array([0.10, 0.02, 0.22], np.float32)
    ll = lum[..., None]
    ll = smoothstep(0.05, 0.95, ll)
    graded = shadow * (1 - ll) + light * ll
    out = base * 0.35 + graded * 0.9 * (0.3 + 0.7 * ll)
    # The background goes to a dark night city with neon bokeh.
    night = _neon_bokeh(h, w, rng, s)
    out = out * (person * 1.0 + (1 - person) * 0.12) + night * (1 - person)
    # Rim glow: coloured edges of the person, blurred into a halo.
    edge = np.clip(cv2.morphologyEx(ctx.person(), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)), 0, 1)
    gray = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2GRAY)
    lines = canny(cv2.GaussianBlur(gray, (0, 0), 2 * s), 40, 110) * ctx.person()
    rim = (edge + 0.5 * lines)[..., None] * light
    out = screen(np.clip(out, 0, 1), np.clip(blur(rim, 6 * s) * 2.6 + rim * 0.7, 0, 1))
    # Chromatic aberration and scanlines.
    shift = max(1, round(3 * s))
    out[..., 0] = np.roll(out[..., 0], -shift, axis=1)
    out[..., 2] = np.roll(out[..., 2], shift, axis=1)
    period = max(3, round(4 * s))
    scan = np.ones((h, 1, 1), np.float32)
    scan[::period] = 0.78
    out = out * scan
    out = out * vignette(h, w, 0.55, start=0.4, cx=f.cx, cy=f.cy)[..., None]
    out = out + grain(h, w, rng, 0.02)[..., None]
    return to_u8(out)


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
        layer += (blur(bar, 3) * 1.5 + bar)[..., None] * c
    night = screen(night, np.clip(blur(layer, 2.5), 0, 1))
    rain = line_screen(hs, ws, 7, 100) < 0.02
    night = night + rain[..., None] * 0.04
    return resize(np.clip(night, 0, 1), w, h)


def _watercolor(ctx: Ctx) -> Array:
    h, w, f, rng, s = ctx.h, ctx.w, ctx.face, ctx.rng, ctx.scale
    small, _ = fit(ctx.rgb, 320)
    for _n in range(3):
        small = cv2.bilateralFilter(small, 9, 60, 9)
    # Washes: lightness in a few flat steps, each pixel keeping its own (softened) hue, so skin is
    # painted in skin tones: a palette shared with the background put lilac and green on faces.
    lab = cv2.cvtColor(to_float(small), cv2.COLOR_RGB2Lab)
    # Skin is painted in one soft wash (no hard-edged pools on foreheads and noses).
    skin = resize(_skin_mask(ctx), small.shape[1], small.shape[0], cv2.INTER_AREA)
    lightness = lab[..., 0] * (1 - skin) + blur(lab[..., 0], 2.0) * skin
    steps = np.round(lightness / 17.0)
    flat_l = blur((steps * 17.0).astype(np.float32), 0.8)
    flat_l = flat_l * (1 - skin) + blur(lightness, 1.5) * skin
    chroma = blur(lab[..., 1:], 1.5)
    quant = np.clip(cv2.cvtColor(np.dstack([flat_l, chroma]).astype(np.float32), cv2.COLOR_Lab2RGB), 0, 1)
    wash = resize(quant, w, h, cv2.INTER_CUBIC)
    # Bleeding: blend the flat washes with a blurred copy so colours run into each other.
    bleed = fast_blur(wash, 6 * s)
    paint = wash * 0.55 + bleed * 0.45
    # Wet edges: pigment gathers where washes meet.
    edges = cv2.morphologyEx(steps.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edges = resize(blur(edges.astype(np.float32), 0.8) * (1 - skin), w, h)
    paint = paint * (1 - 0.3 * edges[..., None])
    # Transparent pigment: lighter, softly saturated, pooling in the paper's tooth.
    paint = saturate(paint, 1.15)
    # Lift the darks into transparent indigo (watercolour has no solid black); pigment density
    # varies in soft blooms, the same for every channel, so no hue appears that was not there.
    dark = (1 - luminance(paint))[..., None]
    paint = paint * 0.74 + 0.24 + dark * 0.05 * np.array([-0.5, -0.25, 0.5], np.float32)
    bloom = value_noise(h, w, rng, 90 * s)[..., None]
    paint = np.clip(paint * (1 + 0.04 * bloom), 0, 1)
    paper_tex = value_noise(h, w, rng, 3 * s) * 0.5 + value_noise(h, w, rng, 18 * s) * 0.5
    density = (1 - paint) * 0.85 * (1 + 0.14 * paper_tex[..., None])
    paper = np.array([0.985, 0.975, 0.95], np.float32)
    out = paper * (1 - density)
    # Faint pencil underdrawing.
    gray = cv2.cvtColor(ctx.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    inverted_blur = blur(255 - gray, 6 * s)
    dodge = np.clip(gray * 255 / np.maximum(255 - inverted_blur, 1), 0, 255) / 255
    pencil = 1 - (1 - dodge ** np.float32(3)) * 0.45
    out = out * pencil[..., None]
    # Irregular vignette to bare white paper.
    r = radial(h, w, f.cx, f.cy + 1.1 * f.h)
    edge_noise = value_noise(h, w, rng, 70 * s) * 0.12 + value_noise(h, w, rng, 25 * s) * 0.05
    fade = smoothstep(0.55, 0.78, r + edge_noise)
    fade = fade * (1 - ellipse(h, w, f.cx, f.cy - 0.1 * f.h, 1.0 * f.w, 1.05 * f.h, soft=0.3))
    # The person stays painted longest, but the paper still shows all round the edge of the sheet.
    margin = 0.07 * min(h, w)
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    inner = np.minimum(np.minimum(ys, h - 1 - ys)[:, None], np.minimum(xs, w - 1 - xs)[None, :])
    inner = smoothstep(0.5 * margin, 1.5 * margin, inner)
    fade = np.maximum(fade * (1 - 0.45 * blur(ctx.person(), 8 * s) * inner), 1 - inner)
    fade = fade[..., None]
    out = out * (1 - fade) + paper * fade
    out = out + grain(h, w, rng, 0.012, coarse=False)[..., None]
    return to_u8(out)


def _noir(ctx: Ctx) -> Array:
    h, w, f, rng, s = ctx.h, ctx.w, ctx.face, ctx.rng, ctx.scale
    img = to_float(ctx.rgb)
    g = img[..., 0] * 0.55 + img[..., 1] * 0.35 + img[..., 2] * 0.10  # red filter: luminous skin
    clahe = cv2.createCLAHE(clipLimit=2.5, tileGridSize=(4, 4))
    g = to_float(clahe.apply(to_u8(g)))
    person = ctx.person()
    # Hard key light on the face from the upper left; the rest of the person falls into shadow.
    key = gaussian_blob(h, w, f.cx - 0.25 * f.w, f.cy - 0.1 * f.h, 1.6 * f.w, 2.2 * f.h)
    lit = g * (0.55 + 0.65 * key)
    # Venetian-blind light on the wall behind, fainter across the person, faintest on the face.
    period = max(h, w) / 9
    blinds = blur(smoothstep(0.3, 0.5, line_screen(h, w, period, 70)), 3.0 * s)
    # The blinds fall on the wall and the shoulders; the face stays in the clean key light (stripes
    # across a face read as a barcode, not as a film still).
    face_zone = ellipse(h, w, f.cx, f.cy + 0.05 * f.h, 0.85 * f.w, 1.0 * f.h, soft=0.5)
    # ... and only where the window's light falls: a soft patch on the roomier side of the face.
    wx = f.cx + (w - f.cx) * 0.55 if f.cx < w / 2 else f.cx * 0.45
    window = smoothstep(0.0, 0.6, gaussian_blob(h, w, wx, f.cy - 0.15 * h, 0.3 * w, 0.45 * h))
    blinds = blinds * (0.25 + 0.75 * window)
    depth = 0.85 * (1 - person) + 0.35 * person * (1 - face_zone)
    wall = 0.18 + 0.75 * g * 0.6 + 0.3 * blinds  # window light on the wall
    lit = lit * person + wall * (1 - person)
    lit = lit * (1 - depth * (1 - blinds))
    # Steep S-curve for hard light, a little halation, heavy vignette and grain.
    g = smoothstep(0.12, 0.78, lit)
    g = screen(g, fast_blur(np.clip(g - 0.75, 0, 1), 10 * s) * 0.6)
    g = g * vignette(h, w, 0.85, start=0.3, cx=f.cx, cy=f.cy)
    g = g + grain(h, w, rng, 0.05)
    return cv2.cvtColor(to_u8(np.clip(g, 0, 1)), cv2.COLOR_GRAY2RGB)


PIPELINES: dict[str, Callable[[Ctx], Array]] = {
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

PNG_STYLES = frozenset({"pixel"})


def stylize_array(rgb: Array, style_id: str, rng: np.random.Generator, face: Face | None = None) -> Array:
    """Run one style pipeline on an RGB uint8 image (for scripts and tests)."""
    pipeline = PIPELINES.get(style_id)
    if pipeline is None:
        raise Unsupported(_("The offline engine has no “{style}” style.").format(style=style_id))
    return pipeline(make_ctx(rgb, rng, face))
