"""Bytes from a chat -> a safe, upright, model-sized RGB JPEG, or a reason a person can read.

Everything here is checked before any model call. Decoding is kept cheap: the pixel count is
checked from the header before decoding (decompression bombs), JPEGs are decoded at reduced
scale with draft mode (DCT scaling), and the image is rotated upright only after it is small.
Whole colour JPEGs (nearly every photo) go through OpenCV, which uses the same libjpeg-turbo but
needs no copies between Pillow and NumPy; everything else, and anything OpenCV refuses, through Pillow.

The long side of the result is at most `max_px`. When a JPEG's DCT scaling (1/2, 1/4, 1/8) lands
within 5% under `max_px` (a 4032 px phone photo at 1/4 is 1008 px for 1024), that is the result:
no resampling at all, instead of decoding twice as many pixels to shrink them again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import logging
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from core.errors import PixmeError
from core.i18n import _

pillow_heif.register_heif_opener()

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024  # Telegram bots cannot download more than 20 MB
MAX_PIXELS = 64_000_000  # a 48 MP phone photo is fine; beyond this it is a bomb or a scan
MIN_SIDE = 64  # below this there is no face to work with
MAX_ASPECT = 6.0  # panoramas and banners are not selfies
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "HEIF", "HEIC", "TIFF", "MPO", "BMP"}
OUTPUT_QUALITY = 90
# A JPEG decoded at reduced scale to a long side in [SIZE_TOLERANCE * max_px, max_px] is used as it is.
SIZE_TOLERANCE = 0.95
# Steps down by at most this factor are resampled with OpenCV's bicubic (SIMD, ~4x faster than Pillow's
# here); larger steps keep Pillow's antialiased BICUBIC, whose kernel widens with the step.
FAST_RESIZE_MAX_STEP = 1.5

# Pillow's own bomb check fires at twice its MAX_IMAGE_PIXELS; ours is stricter and runs first.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# We check the pixel count ourselves with a clearer message, so Pillow's warning is only noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_CV_SCALE = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}


def _cv_transverse(pixels: np.ndarray) -> np.ndarray:
    return cv2.flip(cv2.transpose(pixels), -1)


# EXIF orientation -> what turns the stored pixels upright (the same as _TRANSPOSE below).
_CV_ORIENT: dict[int, tuple[Callable[[np.ndarray], np.ndarray], ...]] = {
    2: (functools.partial(cv2.flip, flipCode=1),),
    3: (functools.partial(cv2.rotate, rotateCode=cv2.ROTATE_180),),
    4: (functools.partial(cv2.flip, flipCode=0),),
    5: (cv2.transpose,),
    6: (functools.partial(cv2.rotate, rotateCode=cv2.ROTATE_90_CLOCKWISE),),
    7: (_cv_transverse,),
    8: (functools.partial(cv2.rotate, rotateCode=cv2.ROTATE_90_COUNTERCLOCKWISE),),
}

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class IntakeError(PixmeError):
    """The file cannot be used; `message` is one line for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PreparedImage:
    data: bytes  # RGB JPEG
    width: int
    height: int
    source_format: str


def too_big_message(size: int) -> str:
    return _("That file is {size} MB; I can take photos up to 20 MB. "
             "Please send it as a photo rather than a file.").format(size=f"{size / 1_048_576:.0f}")


def check_declared_size(size: int | None) -> None:
    """Refuse before downloading when the platform already told us the file is too large."""
    if size is not None and size > MAX_FILE_BYTES:
        raise IntakeError(too_big_message(size))


_pool: ThreadPoolExecutor | None = None


def _intake_pool() -> ThreadPoolExecutor:
    """Decoding is CPU-bound: at most cores - 1 at once, so the event loop keeps a core, and in a pool
    of its own, so quick file I/O in the default pool never queues behind a burst of decodes."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="intake")
    return _pool


async def prepare_async(data: bytes, *, max_px: int = 1024) -> PreparedImage:
    """`prepare` in the intake worker pool; the event loop only waits."""
    loop = asyncio.get_running_loop()
    # In the caller's context: a refusal is worded in the language of the person who sent the file.
    work = functools.partial(prepare, data, max_px=max_px)
    return await loop.run_in_executor(_intake_pool(), contextvars.copy_context().run, work)


def prepare(data: bytes, *, max_px: int = 1024) -> PreparedImage:
    """Validate, orient and downscale `data`. Blocking: call it from a worker thread."""
    if not data:
        raise IntakeError(_("That file is empty — please send the photo again."))
    if len(data) > MAX_FILE_BYTES:
        raise IntakeError(too_big_message(len(data)))
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise IntakeError(_("That image has far too many pixels to process safely; please send a normal photo.")) \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise IntakeError(_(
            "That doesn't look like a photo I can read — please send a JPEG, PNG, WebP, GIF, HEIC or TIFF image.")
        ) from None
    fmt = (image.format or "").upper()
    if fmt not in ACCEPTED_FORMATS:
        raise IntakeError(_("I can't use {format} files — please send a JPEG, PNG, WebP, GIF, HEIC or TIFF.").format(
            format=fmt or "such"))
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise IntakeError(_("That image is {width}×{height} pixels, too large to process safely; "
                            "please send a smaller photo.").format(width=width, height=height))
    if min(width, height) < MIN_SIDE:
        raise IntakeError(_("That image is only {width}×{height} pixels — "
                            "please send a proper photo of a face.").format(width=width, height=height))
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise IntakeError(_("That image is a very long strip — please send a normal photo with a face in it."))
    try:
        if fmt in {"JPEG", "MPO"} and image.mode == "RGB":
            quick = _decode_jpeg_quickly(data, image.size, _orientation(image), fmt, max_px)
            if quick is not None:
                return quick
        return _decode(image, fmt, max_px)
    except IntakeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
        log.info("intake: undecodable %s: %s", fmt, exc)
        raise IntakeError(_("That photo seems damaged or incomplete — please send it again.")) from None


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block should not cost the photo
        return 1


def _decode_jpeg_quickly(data: bytes, size: tuple[int, int], orientation: int, fmt: str,
                         max_px: int) -> PreparedImage | None:
    """Colour JPEGs, whole and needing at most a short resampling step, decoded, resized, turned and
    encoded by OpenCV (the same libjpeg-turbo): no copies between Pillow and NumPy (1-2 ms of a Telegram
    photo's ~9 ms). None: use the Pillow path (truncated or odd files, large steps, CMYK, greyscale)."""
    scale = draft_scale(size, max_px)
    if math.ceil(max(size) / scale) > FAST_RESIZE_MAX_STEP * max_px or not _jpeg_is_whole(data):
        return None
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _CV_SCALE[scale] | cv2.IMREAD_IGNORE_ORIENTATION)
        if pixels is None or pixels.ndim != 3 or pixels.shape[2] != 3:
            return None
        height, width = pixels.shape[:2]
        if max(width, height) > max_px:
            # A short step (a 1280 px Telegram photo to 1024): OpenCV's bicubic takes ~1 ms where Pillow's
            # takes ~11 ms; within 1.5x they differ by less than the JPEG noise (PSNR against LANCZOS:
            # 50.6 dB; Pillow BICUBIC 52.8 dB, Pillow BILINEAR 45.6 dB).
            pixels = cv2.resize(pixels, fit_size((width, height), max_px), interpolation=cv2.INTER_CUBIC)
        for step in _CV_ORIENT.get(orientation, ()):
            pixels = step(pixels)
        done, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, OUTPUT_QUALITY])
    except cv2.error as exc:
        log.info("intake: OpenCV could not take a JPEG (%s); trying Pillow", exc)
        return None
    if not done:
        return None
    return PreparedImage(encoded.tobytes(), int(pixels.shape[1]), int(pixels.shape[0]), fmt)


def _jpeg_is_whole(data: bytes) -> bool:
    """The marker segments lead to a scan and an end-of-image marker follows it. (libjpeg only warns about
    a truncated file and fills the rest with grey; OpenCV 4.14 refuses it, but that is its choice, and
    Pillow refuses it too.) The walk skips segments, so the EXIF thumbnail's own scan and end marker
    inside APP1 are not mistaken for ours."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xDA:  # start of scan: entropy-coded data never holds FF D9 (FF is stuffed)
            return data.rfind(b"\xff\xd9", i) != -1  # from the end: found at once in a whole file
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return False


def _decode(image: Image.Image, fmt: str, max_px: int) -> PreparedImage:
    orientation = _orientation(image)
    if fmt in {"JPEG", "MPO"}:
        # DCT scaling: decode at 1/2, 1/4 or 1/8 size directly, never below what we need.
        scale = draft_scale(image.size, max_px)
        if scale > 1:
            image.draft("RGB", (image.width // scale, image.height // scale))
    image.load()
    image = _to_rgb(image)
    if max(image.size) > max_px:
        image = _downscale(image, max_px)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=OUTPUT_QUALITY, optimize=False)
    return PreparedImage(out.getvalue(), image.width, image.height, fmt)


def draft_scale(size: tuple[int, int], max_px: int) -> int:
    """The largest DCT scale (8, 4, 2 or 1) whose decoded long side is still >= SIZE_TOLERANCE * max_px."""
    long_side = max(size)
    for scale in (8, 4, 2):
        if math.ceil(long_side / scale) >= SIZE_TOLERANCE * max_px and min(size) // scale >= 1:
            return scale
    return 1


def fit_size(size: tuple[int, int], max_px: int) -> tuple[int, int]:
    """The size `Image.thumbnail((max_px, max_px))` gives: aspect kept, long side max_px."""
    width, height = size
    aspect = width / height
    if aspect <= 1:
        candidates = (math.floor(max_px * aspect), math.ceil(max_px * aspect))
        return max(min(candidates, key=lambda n: abs(aspect - n / max_px)), 1), max_px
    candidates = (math.floor(max_px / aspect), math.ceil(max_px / aspect))
    return max_px, max(min(candidates, key=lambda n: 0 if n == 0 else abs(aspect - max_px / n)), 1)


def _downscale(image: Image.Image, max_px: int) -> Image.Image:
    size = fit_size(image.size, max_px)
    if max(image.size) <= FAST_RESIZE_MAX_STEP * max_px:
        # A short step (a 1280 px Telegram photo to 1024): OpenCV's bicubic takes ~1 ms where Pillow's
        # takes ~11 ms; within 1.5x the two differ by less than the JPEG noise (PSNR vs LANCZOS: 50.6 dB,
        # Pillow BICUBIC 52.8 dB, Pillow BILINEAR 45.6 dB).
        pixels = cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_CUBIC)
        return Image.fromarray(pixels)
    # reducing_gap does a fast integer reduce first, then a short high-quality resample.
    # BICUBIC, not LANCZOS: on these <=2x steps the two differ by less than the JPEG noise
    # (PSNR ~53 dB), and it cuts the resize by ~30%.
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        # 16-bit greyscale: scale to 8 bits instead of clipping to white.
        image = image.point(lambda v: v / 256).convert("L") if mode != "I" else image.convert("L")
        return image.convert("RGB")
    if mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # CMYK (Pillow undoes Adobe's inversion), palette, L, YCbCr …
