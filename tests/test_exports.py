"""Exports (sticker, profile picture, original) and the AI-provenance metadata on every output."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.engines.offline import crop_to_ratio, detect_faces
from core.exports import AI_SOURCE_TYPE, export, export_async, has_provenance, stamp


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def xmp_of(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        raw = im.info.get("xmp") or b""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@pytest.fixture(scope="module")
def off_centre_face(face_image: Image.Image) -> bytes:
    """A 2:1 picture with the face near the right edge: a plain centre crop would miss it."""
    canvas = Image.new("RGB", (1024, 512), (30, 90, 60))
    canvas.paste(face_image.resize((512, 512)), (734, 0))  # the face box lands at x 911-1004
    return encoded(canvas, "PNG")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_stamping_marks_the_picture_ai_made_with_the_model_and_keeps_every_pixel(fmt: str) -> None:
    picture = Image.effect_noise((96, 64), 60).convert("RGB")
    original = encoded(picture, fmt)
    stamped = stamp(original, "", "gemini-3-pro-image")
    assert not has_provenance(original) and has_provenance(stamped)
    assert AI_SOURCE_TYPE in xmp_of(stamped) and "gemini-3-pro-image" in xmp_of(stamped)
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(stamped)) as after:
        assert after.format == fmt and before.tobytes() == after.tobytes(), "no re-encoding"
    assert stamp(stamped, "", "gemini-3-pro-image") == stamped, "stamped once"


def test_other_formats_are_stamped_as_png() -> None:
    webp = encoded(Image.new("RGB", (40, 30), "teal"), "WEBP")
    stamped = stamp(webp, "image/webp", "offline")
    with Image.open(io.BytesIO(stamped)) as im:
        assert im.format == "PNG" and im.size == (40, 30)
    assert has_provenance(stamped)


def test_sticker_is_a_512_webp_centred_on_the_face(off_centre_face: bytes) -> None:
    made = export(off_centre_face, "sticker", "gemini-3.1-flash-image")
    assert made.mime == "image/webp" and made.file_name.endswith(".webp")
    with Image.open(io.BytesIO(made.data)) as im:
        assert (im.format, im.size) == ("WEBP", (512, 512))
        faces = detect_faces(np.asarray(im.convert("RGB")))
    assert faces, "the face is in the sticker"
    assert faces[0].cx > 256, "the crop went as far towards the face as the picture allows"
    assert AI_SOURCE_TYPE in xmp_of(made.data) and "gemini-3.1-flash-image" in xmp_of(made.data)

    # Without the face detector's help a centre crop would have missed it entirely.
    with Image.open(io.BytesIO(off_centre_face)) as im:
        centre = im.convert("RGB").crop((256, 0, 768, 512))
    assert not detect_faces(np.asarray(centre))


async def test_profile_picture_is_a_1024_jpeg_and_the_original_is_the_file_itself(off_centre_face: bytes) -> None:
    profile = await export_async(off_centre_face, "profile", "gemini-3-pro-image")
    with Image.open(io.BytesIO(profile.data)) as im:
        assert (im.format, im.size) == ("JPEG", (1024, 1024))
    assert has_provenance(profile.data)

    stamped = stamp(off_centre_face, "image/png", "gemini-3-pro-image")
    original = export(stamped, "original", "gemini-3-pro-image")
    assert original.data == stamped and original.mime == "image/png"


def test_offline_aspect_ratio_crops_around_the_face(off_centre_face: bytes) -> None:
    with Image.open(io.BytesIO(off_centre_face)) as im:
        rgb = np.asarray(im.convert("RGB"))
    square = crop_to_ratio(rgb, "1:1")
    assert square.shape[:2] == (512, 512)
    assert detect_faces(square), "the face survives the crop"
    tall = crop_to_ratio(rgb, "9:16")
    assert abs(tall.shape[1] / tall.shape[0] - 9 / 16) < 0.01
    assert crop_to_ratio(rgb, None) is rgb
