"""Bytes from a chat -> a safe, upright, model-sized RGB JPEG, or a reason a person can read.

Everything here is checked before any model call. Decoding is kept cheap: the pixel count is
checked from the header before decoding (decompression bombs), JPEGs are decoded at reduced
scale with draft mode (DCT scaling), and the image is rotated upright only after it is small.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pillow_heif
from PIL import Image, UnidentifiedImageError

pillow_heif.register_heif_opener()

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024  # Telegram bots cannot download more than 20 MB
MAX_PIXELS = 64_000_000  # a 48 MP phone photo is fine; beyond this it is a bomb or a scan
MIN_SIDE = 64  # below this there is no face to work with
MAX_ASPECT = 6.0  # panoramas and banners are not selfies
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "HEIF", "HEIC", "TIFF", "MPO", "BMP"}
OUTPUT_QUALITY = 90

# Pillow's own bomb check fires at twice its MAX_IMAGE_PIXELS; ours is stricter and runs first.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# We check the pixel count ourselves with a clearer message, so Pillow's warning is only noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class IntakeError(Exception):
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
    return (f"That file is {size / 1_048_576:.0f} MB; I can take photos up to 20 MB. "
            "Please send it as a photo rather than a file.")


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
    return await loop.run_in_executor(_intake_pool(), functools.partial(prepare, data, max_px=max_px))


def prepare(data: bytes, *, max_px: int = 1024) -> PreparedImage:
    """Validate, orient and downscale `data`. Blocking: call it from a worker thread."""
    if not data:
        raise IntakeError("That file is empty — please send the photo again.")
    if len(data) > MAX_FILE_BYTES:
        raise IntakeError(too_big_message(len(data)))
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise IntakeError("That image has far too many pixels to process safely; please send a normal photo.") \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise IntakeError(
            "That doesn't look like a photo I can read — please send a JPEG, PNG, WebP, GIF, HEIC or TIFF image."
        ) from None
    fmt = (image.format or "").upper()
    if fmt not in ACCEPTED_FORMATS:
        raise IntakeError(f"I can't use {fmt or 'that'} files — please send a JPEG, PNG, WebP, GIF, HEIC or TIFF.")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise IntakeError(
            f"That image is {width}×{height} pixels, too large to process safely; please send a smaller photo."
        )
    if min(width, height) < MIN_SIDE:
        raise IntakeError(f"That image is only {width}×{height} pixels — please send a proper photo of a face.")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise IntakeError("That image is a very long strip — please send a normal photo with a face in it.")
    try:
        return _decode(image, fmt, max_px)
    except IntakeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as exc:
        log.info("intake: undecodable %s: %s", fmt, exc)
        raise IntakeError("That photo seems damaged or incomplete — please send it again.") from None


def _decode(image: Image.Image, fmt: str, max_px: int) -> PreparedImage:
    orientation = 1
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block should not cost the photo
        orientation = 1
    if fmt in {"JPEG", "MPO"}:
        # DCT scaling: decode at 1/2, 1/4 or 1/8 size directly, never below what we need.
        image.draft("RGB", (max_px, max_px))
    image.load()
    image = _to_rgb(image)
    if max(image.size) > max_px:
        # reducing_gap does a fast integer reduce first, then a short high-quality resample.
        # BICUBIC, not LANCZOS: on these <=2x steps the two differ by less than the JPEG noise
        # (PSNR ~53 dB), and it cuts the resize, the largest cost after decoding, by ~30%.
        image.thumbnail((max_px, max_px), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=OUTPUT_QUALITY, optimize=False)
    return PreparedImage(out.getvalue(), image.width, image.height, fmt)


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
