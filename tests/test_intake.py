"""Image intake: every odd file a chat can deliver is either made model-ready or refused in one line."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageOps

from core.intake import (
    MAX_FILE_BYTES,
    SIZE_TOLERANCE,
    IntakeError,
    check_declared_size,
    draft_scale,
    prepare,
)
from tests.conftest import jpeg_bytes


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def png_bytes(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **{"compress_level": 1, **save})  # how hard the file is squeezed is not under test
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
    # Portrait now; decoded at 1/4 scale, 1008 px is within SIZE_TOLERANCE of 1024 and used as it is.
    assert image.size == (756, 1008) == (result.width, result.height)
    r, g, b = image.getpixel((image.width - 20, 20))  # the marker is now top-right
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    ("stored", "orientation", "expected"),
    [
        ((4032, 3024), 6, (756, 1008)),  # 12 MP held upright: 1/4 scale, no resampling
        ((3024, 4032), 1, (756, 1008)),
        ((4000, 3000), 8, (750, 1000)),  # 1/4 scale is 1000 px: still within 5% of 1024
        ((3840, 2160), 1, (1024, 576)),  # 1/4 would be 960 px: decoded at 1/2 and resized to exactly 1024
        ((2048, 1536), 3, (1024, 768)),  # 1/2 scale is exactly 1024
    ],
)
def test_phone_photos_land_within_the_size_tolerance_and_upright(
    face_image: Image.Image, stored: tuple[int, int], orientation: int, expected: tuple[int, int]
) -> None:
    big = face_image.resize(stored)
    big.paste((255, 0, 0), (0, 0, 300, 300))  # a red marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = prepare(jpeg_bytes(big, exif=exif), max_px=1024)
    image = decoded(result.data)
    assert image.size == expected == (result.width, result.height)
    assert SIZE_TOLERANCE * 1024 <= max(image.size) <= 1024
    # Where the stored top-left corner is shown, for each orientation used above.
    corner = {1: (20, 20), 6: (image.width - 20, 20), 8: (20, image.height - 20),
              3: (image.width - 20, image.height - 20)}[orientation]
    r, g, b = image.getpixel(corner)
    assert r > 200 and g < 60 and b < 60


def test_draft_scale_never_decodes_below_the_tolerance() -> None:
    assert draft_scale((4032, 3024), 1024) == 4
    assert draft_scale((3840, 2160), 1024) == 2
    assert draft_scale((8064, 6048), 1024) == 8
    assert draft_scale((1280, 960), 1024) == 1
    assert draft_scale((300, 200), 1024) == 1


def test_telegram_photo_is_resized_to_exactly_max_px_and_close_to_lanczos(face_image: Image.Image) -> None:
    """Telegram's 960x1280 photos take the quick resampling path; it must look like a careful one."""
    photo = face_image.resize((960, 1280), Image.Resampling.BICUBIC)
    result = prepare(jpeg_bytes(photo, quality=95), max_px=1024)
    image = decoded(result.data)
    assert image.size == (768, 1024)
    careful = photo.resize((768, 1024), Image.Resampling.LANCZOS)
    ours = np.asarray(image.convert("L"), dtype=float)
    mse = np.mean((ours - np.asarray(careful.convert("L"), dtype=float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 38  # dB: only JPEG noise apart


def test_large_png_is_resized_to_exactly_max_px(face_image: Image.Image) -> None:
    result = prepare(png_bytes(face_image.resize((3000, 2000))), max_px=1024)
    assert decoded(result.data).size == (1024, 683) == (result.width, result.height)


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


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_quick_jpeg_path_matches_the_pillow_path(face_image: Image.Image, orientation: int) -> None:
    """Whole colour JPEGs go through OpenCV; every EXIF orientation must come out as Pillow turns it."""
    stored = face_image.resize((1280, 960), Image.Resampling.BICUBIC)
    stored.paste((255, 0, 0), (0, 0, 120, 120))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg_bytes(stored, quality=95, exif=exif)
    careful = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    careful.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
    result = prepare(data, max_px=1024)
    image = decoded(result.data)
    assert image.size == careful.size == (result.width, result.height)
    ours = np.asarray(image, dtype=float)
    mse = np.mean((ours - np.asarray(careful, dtype=float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35  # dB: the same picture, the same way up, the same colours


def test_a_truncated_jpeg_with_an_exif_thumbnail_is_still_refused(face_image: Image.Image) -> None:
    """The EXIF thumbnail carries its own scan and end marker: they must not make a cut-off file look whole."""
    thumb = io.BytesIO()
    face_image.resize((160, 160)).save(thumb, "JPEG")
    data = jpeg_bytes(face_image.resize((1280, 960)))
    # Splice an APP1 segment holding a complete JPEG (with FF DA ... FF D9) right after SOI.
    payload = b"Exif\0\0" + thumb.getvalue()
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    spliced = data[:2] + app1 + data[2:]
    assert prepare(spliced).width == 1024  # whole: fine
    with pytest.raises(IntakeError, match="damaged or incomplete"):
        prepare(spliced[: len(spliced) * 2 // 3])
