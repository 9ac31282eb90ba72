"""Image intake: every odd file a chat can deliver is either made model-ready or refused in one line."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from core.intake import MAX_FILE_BYTES, IntakeError, check_declared_size, prepare
from tests.conftest import jpeg_bytes


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def png_bytes(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims `width`×`height` pixels: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_phone_photo_is_downscaled_and_turned_upright(face_image: Image.Image) -> None:
    big = face_image.resize((4032, 3024))
    # A red marker in the stored top-left corner; EXIF 6 says "rotate 90° clockwise to display".
    big.paste((255, 0, 0), (0, 0, 400, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    result = prepare(jpeg_bytes(big, exif=exif), max_px=1024)
    image = decoded(result.data)
    assert image.size == (768, 1024) == (result.width, result.height)  # portrait now, long side 1024
    r, g, b = image.getpixel((image.width - 20, 20))  # the marker is now top-right
    assert r > 200 and g < 60 and b < 60


def test_small_photo_keeps_its_size(selfie: bytes) -> None:
    assert decoded(prepare(selfie).data).size == (512, 512)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "CMYK", "L"])
def test_colour_modes_become_rgb(face_image: Image.Image, mode: str) -> None:
    image = face_image.convert(mode)
    data = jpeg_bytes(image) if mode == "CMYK" else png_bytes(image)
    if mode == "CMYK":  # jpeg_bytes converts to RGB; write a real CMYK JPEG instead
        out = io.BytesIO()
        image.save(out, "JPEG")
        data = out.getvalue()
    result = decoded(prepare(data).data)
    assert result.mode == "RGB"
    # Colours survive: the result still looks like the photo (not inverted, not black).
    original = np.asarray(face_image.convert("L"), dtype=float)
    got = np.asarray(result.convert("L"), dtype=float)
    assert abs(original.mean() - got.mean()) < 25


def test_transparent_png_gets_a_white_background() -> None:
    image = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    result = decoded(prepare(png_bytes(image)).data)
    assert min(result.getpixel((100, 100))) > 240


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 256 * 256).reshape(256, 256)).astype(np.uint16)
    data = png_bytes(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    grey = np.asarray(decoded(prepare(data).data).convert("L"), dtype=float)
    assert grey[:10].mean() < 40 and grey[-10:].mean() > 215  # dark top, light bottom


def test_animated_gif_uses_the_first_of_thousands_of_frames() -> None:
    frames = [Image.new("P", (96, 96), i % 200 + 1) for i in range(1500)]
    frames[0] = Image.new("RGB", (96, 96), (0, 0, 255)).convert("P")
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=10)
    r, _g, b = decoded(prepare(out.getvalue()).data).getpixel((48, 48))
    assert b > 200 and r < 60


def test_heic_and_webp_and_tiff_are_read(face_image: Image.Image) -> None:
    for fmt in ("HEIF", "WEBP", "TIFF"):
        out = io.BytesIO()
        if fmt == "HEIF":
            pillow_heif.from_pillow(face_image).save(out, quality=80)
        else:
            face_image.save(out, fmt)
        assert decoded(prepare(out.getvalue()).data).size == (512, 512), fmt


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty", b"", "empty"),
        ("pdf named .jpg", b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF", "doesn't look like a photo"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "doesn't look like a photo"),
        ("text", "hello 👋".encode(), "doesn't look like a photo"),
        ("png bomb", png_header_only(100_000, 100_000), "too many pixels"),
        ("png bomb under Pillow's limit", png_header_only(9_000, 9_000), "too large to process"),
    ],
)
def test_bad_files_are_refused_with_a_reason(name: str, data: bytes, expected: str) -> None:
    with pytest.raises(IntakeError) as refusal:
        prepare(data)
    assert expected in refusal.value.message
    assert "\n" not in refusal.value.message  # one line


def test_truncated_jpeg_is_refused(selfie: bytes) -> None:
    with pytest.raises(IntakeError, match="damaged or incomplete"):
        prepare(selfie[: len(selfie) // 3])


def test_tiny_and_strip_images_are_refused() -> None:
    with pytest.raises(IntakeError, match="only 1×1 pixels"):
        prepare(png_bytes(Image.new("RGB", (1, 1))))
    with pytest.raises(IntakeError, match="only 20000×10 pixels"):
        prepare(png_bytes(Image.new("RGB", (20000, 10))))
    with pytest.raises(IntakeError, match="long strip"):
        prepare(png_bytes(Image.new("RGB", (20000, 200))))


def test_files_over_twenty_megabytes_are_refused_before_and_after_download() -> None:
    with pytest.raises(IntakeError, match="up to 20 MB"):
        check_declared_size(25_000_000)
    check_declared_size(5_000_000)
    check_declared_size(None)
    with pytest.raises(IntakeError, match="up to 20 MB"):
        prepare(b"\xff\xd8" + bytes(MAX_FILE_BYTES))
