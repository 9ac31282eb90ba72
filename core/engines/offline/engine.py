"""The offline engine itself: decoding and encoding, the aspect-ratio crop, and `OfflineEngine`, which
runs the pixel work in an executor, never on the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import zlib
from collections.abc import Callable

import cv2
import numpy as np

from core.engines.base import BadRequest, EngineError, EngineResult, Portrait, RenderOptions, Unsupported
from core.engines.offline.edits import apply_edits, edit_commentary, parse_edit
from core.engines.offline.faces import MAX_FUSE_PEOPLE, dlib_available, get_cascades, main_face
from core.engines.offline.filters import Array, fit
from core.engines.offline.fusion import fuse_array
from core.engines.offline.styles import PIPELINES, PNG_STYLES, stylize_array
from core.engines.offline.variation import vary
from core.i18n import N_, _
from core.styles import Style

_MAX_SIDE = 2048  # larger inputs are scaled down before any work
_JPEG_QUALITY = 90


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------


def decode_image(data: bytes) -> tuple[Array, bool]:
    """(RGB uint8 image, was it a PNG) or BadRequest."""
    buf = np.frombuffer(data, np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if len(buf) else None
    if bgr is None:
        raise BadRequest(N_("I couldn't read that picture — try sending it again as a photo."),
                         detail=f"undecodable image of {len(data)} bytes")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb, _ = fit(rgb, _MAX_SIDE)
    return np.ascontiguousarray(rgb), data[:8] == b"\x89PNG\r\n\x1a\n"


def encode_image(rgb: Array, png: bool) -> tuple[bytes, str]:
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

    def _rng(self, *data: bytes, seed: int | None = None) -> np.random.Generator:
        """The same picture for the same input; a request's `seed` (a variant, an Again) draws another."""
        if self._seed is not None:
            return np.random.default_rng(self._seed if seed is None else [self._seed, seed])
        crc = 0
        for d in data:
            crc = zlib.crc32(d, crc)
        return np.random.default_rng(crc if seed is None else [crc, seed])

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
        if style.id not in PIPELINES:
            raise Unsupported(_("The offline engine has no {style} style yet.").format(style=style.name))
        seed = options.seed if options else None
        rng = self._rng(selfie, style.id.encode(), seed=seed)

        def work() -> EngineResult:
            rgb, _alpha = decode_image(selfie)
            if seed is not None:  # another take: a new seed alone would only redraw the noise
                rgb = vary(rgb, rng)
            out = crop_to_ratio(stylize_array(rgb, style.id, rng), options.aspect_ratio if options else None)
            data, mime = encode_image(out, style.id in PNG_STYLES)
            quip = _(style.quips[int(rng.integers(len(style.quips)))]) if style.quips else _("Here you are!")
            return EngineResult(data, mime, quip, self.model)

        return await self._run(work)

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None,
                   options: RenderOptions | None = None) -> EngineResult:
        ops = parse_edit(instruction)
        seed = options.seed if options else None

        def work() -> EngineResult:
            rgb, was_png = decode_image(image)
            if seed is not None:  # Again on an edit: the same change, on another take of the picture
                rgb = vary(rgb, self._rng(image, instruction.encode(), seed=seed))
            ident = None
            if identity:
                try:
                    ident = decode_image(identity)[0]
                except BadRequest:
                    ident = None
            out = crop_to_ratio(apply_edits(rgb, ops, ident), options.aspect_ratio if options else None)
            data, mime = encode_image(out, was_png)
            return EngineResult(data, mime, edit_commentary(ops), self.model)

        return await self._run(work)

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        if not portraits:
            raise BadRequest(N_("A group picture needs at least one portrait."))
        if len(portraits) > MAX_FUSE_PEOPLE:
            raise Unsupported(_("The offline engine fits at most {limit} people in one poster.").format(
                limit=MAX_FUSE_PEOPLE))
        if style.id not in PIPELINES:
            raise Unsupported(_("The offline engine has no {style} style yet.").format(style=style.name))
        rng = self._rng(style.id.encode(), theme.encode(), *(p.image for p in portraits))

        def work() -> EngineResult:
            crops = [(p.name, decode_image(p.image)[0]) for p in portraits]
            out = crop_to_ratio(fuse_array(crops, style.id, theme, rng), options.aspect_ratio if options else None)
            data, mime = encode_image(out, style.id in PNG_STYLES)
            names = [p.name for p in portraits if p.name.strip()]
            who = _("{names} and {last}").format(names=", ".join(names[:-1]), last=names[-1]) if len(names) > 1 \
                else (names or [_("you")])[0]
            quip = _(style.quips[int(rng.integers(len(style.quips)))]) if style.quips else ""
            line = _("{style} poster for {who}.").format(style=style.name, who=who)
            return EngineResult(data, mime, f"{line} {quip}".strip(), self.model)

        return await self._run(work)

    async def check(self) -> str | None:
        # Loading dlib's models takes ~0.3 s: off the event loop (and ready before the first picture).
        if await asyncio.get_running_loop().run_in_executor(self._executor, dlib_available):
            return None
        if get_cascades() is not None:
            return ("dlib's face model did not load (dlib-bin / face-recognition-models missing?): the offline "
                    "engine falls back to OpenCV's Haar cascades, which can take a raised hand for a face.")
        if get_cascades() is None:
            return ("OpenCV's Haar face cascades are missing (opencv-python-headless 5.x?): the offline "
                    "engine will place accessories and crops at a default position.")
        return None

    async def aclose(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
