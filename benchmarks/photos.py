"""Test photos made at run time from the astronaut portrait in tests/fixtures.

Upscaled portraits are too smooth to compress like a camera's output, so sensor-like noise is added
(luma grain plus a little chroma noise): the 12 MP photo comes out at about 3 MB, like a phone's JPEG.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from benchmarks.common import FIXTURE

PHONE_SIZE = (3024, 4032)  # a 12 MP phone portrait as displayed (width, height)
TELEGRAM_SIDE = 1280  # Telegram re-encodes photos sent as photos to at most this long side
ORIENTATION = 0x0112


def _textured(size: tuple[int, int], seed: int, grain: float) -> np.ndarray:
    portrait = Image.open(FIXTURE).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(portrait, dtype=np.float32)
    height, width = pixels.shape[:2]
    luma = rng.normal(0.0, grain, size=(height, width, 1)).astype(np.float32)
    chroma = rng.normal(0.0, grain / 2.5, size=(height, width, 3)).astype(np.float32)
    pixels += luma
    pixels += chroma
    return np.clip(pixels, 0, 255).astype(np.uint8)


def phone_photo(seed: int = 12) -> bytes:
    """4032×3024 as stored by the sensor, EXIF orientation 6 ("rotate 90° clockwise to show")."""
    upright = Image.fromarray(_textured(PHONE_SIZE, seed, grain=4.0))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone held upright writes
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "Benchmark"  # Make
    exif[0x0110] = "Phone 12MP"  # Model
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def telegram_photos(count: int, seed: int = 7) -> Iterator[bytes]:
    """`count` different selfies as Telegram delivers them: 960×1280 JPEGs of ~220 KB."""
    base = _textured((TELEGRAM_SIDE * 3 // 4, TELEGRAM_SIDE), seed, grain=3.0)
    for index in range(count):
        pixels = base.copy()
        # A distinct patch per person, so every photo (and every stored image) is its own file.
        pixels[8:40, 8:40] = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=87)
        yield out.getvalue()


def small_result() -> bytes:
    """What the instant engine answers: a 256×256 JPEG."""
    image = Image.open(FIXTURE).convert("RGB").resize((256, 256))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
