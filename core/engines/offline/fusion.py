"""Fusion for the offline engine: a group poster, each person's head styled in a tile under a title."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw

from core.engines.offline.drawing import label_font, text_width, wrap_text
from core.engines.offline.faces import Face, default_face, detect_faces
from core.engines.offline.filters import Array, resize
from core.engines.offline.styles import PIPELINES, make_ctx, pop_panel

_POSTER_MAX = 1536

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
    lines, font, stroke = wrap_text(draw, title, width - 2 * margin, 96)
    tw = text_width(draw, lines[0], font, stroke)
    outline = (0, 0, 0) if sum(ink) > 300 else (255, 255, 255)
    draw.text(((width - tw) / 2, 28), lines[0], font=font, fill=ink, stroke_width=stroke, stroke_fill=outline)
    index = 0
    y = title_h
    for count in rows:
        x = (width - (count * tile + (count - 1) * gap)) // 2
        for _n in range(count):
            name, crop = crops[index]
            face_img, face = _head_crop(crop)
            small = resize(face_img, tile, tile, cv2.INTER_AREA)
            sface = face.scaled(tile / face_img.shape[1], tile / face_img.shape[0]) if face else None
            ctx = make_ctx(small, rng, sface or default_face(tile, tile))
            if style_id == "popart":
                styled = pop_panel(small, ctx.person(), ctx.face, index)
            else:
                styled = PIPELINES[style_id](ctx)
            border = 6
            draw.rectangle((x - border, y - border, x + tile + border - 1, y + tile + border - 1), fill=ink)
            poster.paste(Image.fromarray(styled), (x, y))
            label = name.strip()[:24] or f"Player {index + 1}"
            lf = label_font(44)
            lw = text_width(draw, label, lf, 2)
            if lw > tile:
                lf = label_font(max(14, int(44 * tile / lw)))
                lw = text_width(draw, label, lf, 2)
            draw.text((x + (tile - lw) / 2, y + tile + 14), label, font=lf, fill=ink, stroke_width=2,
                      stroke_fill=outline)
            index += 1
            x += tile + gap
        y += tile + label_h + gap
    return np.asarray(poster.convert("RGB"))
