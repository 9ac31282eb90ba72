"""What the offline engine draws over a picture: accessories placed on a face (crown, party hat,
sunglasses, mustache, halo, horns), anti-aliased by supersampling, and fonts and captions."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from core.engines.offline.faces import Face

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


ACCESSORIES: dict[str, Callable[[Image.Image, Face], None]] = {
    "crown": _draw_crown,
    "party_hat": _draw_party_hat,
    "sunglasses": _draw_sunglasses,
    "mustache": _draw_mustache,
    "halo": _draw_halo,
    "horns": _draw_horns,
}
# Drawing order: things on the face first, things on the head last.
ACCESSORY_ORDER = ("mustache", "sunglasses", "horns", "halo", "party_hat", "crown")


# --------------------------------------------------------------------------------------------
# Fonts and captions
# --------------------------------------------------------------------------------------------

_fonts = threading.local()  # FreeType faces are not shared between threads


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
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


def text_width(draw: ImageDraw.ImageDraw, text: str, font: Any, stroke: int = 0) -> float:
    box = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    return float(box[2] - box[0])


def wrap_text(draw: ImageDraw.ImageDraw, text: str, width: float, size: int) -> tuple[list[str], Any, int]:
    """Lines and font for `text`: shrinks the font, then wraps into two lines, to fit `width`."""
    for sz in range(size, max(9, size // 3) - 1, -2):
        font = label_font(sz)
        stroke = max(1, sz // 12)
        if text_width(draw, text, font, stroke) <= width:
            return [text], font, stroke
        words = text.split()
        if len(words) > 1 and sz <= size * 0.8:
            best = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(text) / 2))
            lines = [" ".join(words[:best]), " ".join(words[best:])]
            if all(text_width(draw, ln, font, stroke) <= width for ln in lines):
                return lines, font, stroke
    sz = max(9, size // 3)
    return [text], label_font(sz), max(1, sz // 12)


def caption(image: Image.Image, text: str) -> None:
    w, h = image.size
    draw = ImageDraw.Draw(image)
    lines, font, stroke = wrap_text(draw, text, w * 0.9, max(12, int(min(w, h) * 0.1)))
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
        tw = text_width(draw, ln, font, stroke)
        draw.text(((w - tw) / 2, y), ln, font=font, fill=(255, 255, 255, 255), stroke_width=stroke,
                  stroke_fill=(0, 0, 0, 255))
        y += line_h * 1.1
