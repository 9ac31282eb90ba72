"""The offline engine: every style is visibly its style, edits land where they should, and the
engine never blocks the event loop.

Measurements stand in for a person looking: colour spread for "black and white", dark/light pixel
shares for "high contrast", hue per quadrant for the pop-art grid, and so on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import itertools
import math
import time
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from core.engines.base import BadRequest, EngineError, EngineResult, ImageEngine, Portrait, Unsupported
from core.engines.offline import (
    OFFLINE_EDIT_HELP,
    EditOp,
    OfflineEngine,
    detect_faces,
    main_face,
    parse_edit,
    stylize_array,
)
from core.styles import STYLES, Style, get_style
from tests.conftest import FIXTURES, jpeg_bytes

Array = np.ndarray[Any, Any]
STYLE_IDS = [s.id for s in STYLES]
# Where the astronaut's face is in the 512 px fixture (measured once by eye and by the detector).
FACE_512 = (177, 67, 93, 93)  # x, y, w, h
EYE_Y_512 = 102
# The speaker with a raised hand (tests/fixtures/raised_hand.jpg, 410 x 512): face and hand boxes.
HAND_FACE = (91, 117, 225, 225)  # x, y, w, h
HAND_BOX = (322, 283, 88, 158)


def style(style_id: str) -> Style:
    found = get_style(style_id)
    assert found is not None
    return found


def decode(data: bytes) -> Array:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def engine() -> OfflineEngine:
    return OfflineEngine(rng_seed=11)


@pytest.fixture(scope="module")
def selfie_1024(face_image: Image.Image) -> bytes:
    return jpeg_bytes(face_image.resize((1024, 1024), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def selfie_rgb(selfie: bytes) -> Array:
    return decode(selfie)


@pytest.fixture(scope="module")
def styled(selfie_rgb: Array) -> dict[str, Array]:
    """Every style of the 512 px selfie, round-tripped through the engine's own encoding."""
    from core.engines.offline import encode_image

    out = {}
    for sid in STYLE_IDS:
        data, _ = encode_image(stylize_array(selfie_rgb, sid, np.random.default_rng(5)), sid == "pixel")
        out[sid] = decode(data)
    return out


def colour_spread(img: Array) -> float:
    """Mean channel disagreement: 0 for a perfectly grey image."""
    i = img.astype(np.int16)
    return float((np.abs(i[..., 0] - i[..., 1]) + np.abs(i[..., 1] - i[..., 2])).mean())


def mean_hue(img: Array) -> float:
    """Saturation-weighted circular mean hue in degrees."""
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV).astype(np.float64)
    angle = np.radians(hsv[..., 0] * 2)
    weight = hsv[..., 1] / 255
    return math.degrees(math.atan2((np.sin(angle) * weight).sum(), (np.cos(angle) * weight).sum())) % 360


def hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def changed(before: Array, after: Array, threshold: int = 40) -> Array:
    return np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2) > threshold


# ------------------------------------------------------------------ face detection


def test_face_is_detected_on_the_fixture(selfie_rgb: Array, face_image: Image.Image) -> None:
    x, y, w, h = FACE_512
    faces = detect_faces(selfie_rgb)
    assert len(faces) == 1
    f = faces[0]
    assert abs(f.cx - (x + w / 2)) < 10 and abs(f.cy - (y + h / 2)) < 10
    assert 0.8 < f.w / w < 1.25
    assert abs(f.eye_y - EYE_Y_512) < 10
    big = detect_faces(np.asarray(face_image.resize((1024, 1024))))
    assert len(big) == 1 and abs(big[0].cx - 2 * (x + w / 2)) < 20


def test_no_face_in_a_gradient() -> None:
    gradient = np.zeros((300, 400, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 400, dtype=np.uint8)[None, :]
    gradient[..., 2] = np.linspace(255, 0, 300, dtype=np.uint8)[:, None]
    assert detect_faces(gradient) == []


# ------------------------------------------------------------------ stylize: the contract


def test_engine_satisfies_the_protocol(engine: OfflineEngine) -> None:
    assert isinstance(engine, ImageEngine)
    assert engine.name == "offline" and engine.model == "offline"


@pytest.mark.parametrize("style_id", STYLE_IDS)
async def test_every_style_returns_a_same_size_image_with_a_quip(
        engine: OfflineEngine, selfie: bytes, style_id: str) -> None:
    result = await engine.stylize(selfie, style(style_id))
    assert isinstance(result, EngineResult)
    img = Image.open(io.BytesIO(result.image))
    assert img.size == (512, 512)
    expected = ("PNG", "image/png") if style_id == "pixel" else ("JPEG", "image/jpeg")
    assert (img.format, result.mime) == expected
    assert result.commentary in style(style_id).quips
    assert result.model == "offline"


# One style at full size in the quick run (`manage.py test --fast`); every style in the full one.
@pytest.mark.parametrize("style_id", [STYLE_IDS[0], *(pytest.param(s, marks=pytest.mark.slow) for s in STYLE_IDS[1:])])
async def test_every_style_at_1024_px(engine: OfflineEngine, selfie_1024: bytes, style_id: str) -> None:
    result = await engine.stylize(selfie_1024, style(style_id))
    assert Image.open(io.BytesIO(result.image)).size == (1024, 1024)


async def test_odd_sizes_and_portrait_orientation(engine: OfflineEngine, face_image: Image.Image) -> None:
    tall = jpeg_bytes(face_image.crop((60, 0, 451, 512)).resize((391, 601)))
    for sid in ("popart", "pixel", "anime", "watercolor"):
        result = await engine.stylize(tall, style(sid))
        assert Image.open(io.BytesIO(result.image)).size == (391, 601), sid


def test_every_pair_of_styles_looks_clearly_different(styled: dict[str, Array]) -> None:
    for a, b in itertools.combinations(STYLE_IDS, 2):
        diff = np.abs(styled[a].astype(np.int16) - styled[b].astype(np.int16)).mean()
        assert diff > 20, f"{a} and {b} look alike (mean difference {diff:.1f})"


def test_every_style_changes_the_photo_a_lot(styled: dict[str, Array], selfie_rgb: Array) -> None:
    for sid, img in styled.items():
        assert np.abs(img.astype(np.int16) - selfie_rgb.astype(np.int16)).mean() > 15, sid


def test_same_seed_same_picture(selfie_rgb: Array) -> None:
    a = stylize_array(selfie_rgb, "zombie", np.random.default_rng(1))
    b = stylize_array(selfie_rgb, "zombie", np.random.default_rng(1))
    assert np.array_equal(a, b)


# ------------------------------------------------------------------ stylize: each style is its style


def test_manga_sketch_and_noir_are_greyscale_and_the_colour_styles_are_not(styled: dict[str, Array]) -> None:
    for sid in ("manga", "sketch", "noir"):
        assert colour_spread(styled[sid]) < 8, sid
    for sid in ("comic", "anime", "popart", "pixel", "cyberpunk", "zombie", "watercolor"):
        assert colour_spread(styled[sid]) > 15, sid


def test_noir_is_high_contrast(styled: dict[str, Array], selfie_rgb: Array) -> None:
    def shares(img: Array) -> tuple[float, float]:
        g = img.mean(axis=2)
        return float((g < 40).mean()), float((g > 215).mean())

    dark, light = shares(styled["noir"])
    assert dark > 0.3 and light > 0.05
    orig_dark, orig_light = shares(selfie_rgb)
    assert dark + light > orig_dark + orig_light + 0.2


def test_noir_has_venetian_blind_stripes(styled: dict[str, Array]) -> None:
    # Along a vertical line through the bright wall, light and dark alternate several times.
    column = styled["noir"][:250, 440].mean(axis=1)
    bands = np.abs(np.diff((column > column.mean()).astype(np.int8))).sum()
    assert bands >= 4


def test_pixel_art_is_chunky_blocks_of_few_colours(styled: dict[str, Array]) -> None:
    img = styled["pixel"]
    assert len(np.unique(img.reshape(-1, 3), axis=0)) <= 32
    # Colour changes only happen on a regular grid of at least 4 px.
    cols = np.nonzero(np.any(img[:, 1:] != img[:, :-1], axis=(0, 2)))[0] + 1
    rows = np.nonzero(np.any(img[1:] != img[:-1], axis=(1, 2)))[0] + 1
    block = math.gcd(*cols.tolist(), *rows.tolist())
    assert block >= 4
    assert 64 <= 512 / block <= 128


def test_popart_is_four_panels_in_different_colourways(styled: dict[str, Array]) -> None:
    img = styled["popart"]
    h, w = img.shape[:2]
    quads = [img[:h // 2, :w // 2], img[:h // 2, w // 2:], img[h // 2:, :w // 2], img[h // 2:, w // 2:]]
    hues = [mean_hue(q) for q in quads]
    for a, b in itertools.combinations(range(4), 2):
        assert hue_distance(hues[a], hues[b]) > 15, hues
    # Each panel is the same portrait: its structure (edges) lines up with the others.
    edges = [cv2.Canny(cv2.cvtColor(np.ascontiguousarray(q), cv2.COLOR_RGB2GRAY), 50, 150) > 0 for q in quads]
    overlap = (cv2.dilate(edges[0].astype(np.uint8), np.ones((5, 5))) > 0)[edges[3]].mean()
    assert overlap > 0.4


def test_zombie_turns_the_face_greener_and_less_saturated(styled: dict[str, Array],
                                                          selfie_rgb: Array) -> None:
    x, y, w, h = FACE_512
    box = (slice(y + h // 4, y + h), slice(x + w // 5, x + w - w // 5))

    def measure(img: Array) -> tuple[float, float]:
        face = img[box].astype(np.float64)
        green_share = face[..., 1].sum() / face.sum()
        sat = cv2.cvtColor(np.ascontiguousarray(img[box]), cv2.COLOR_RGB2HSV)[..., 1].mean()
        return green_share, float(sat)

    g0, s0 = measure(selfie_rgb)
    g1, s1 = measure(styled["zombie"])
    assert g1 > g0 + 0.04
    assert s1 < s0
    # ... and the eye sockets are darker than the cheeks below them.
    eyes = styled["zombie"][EYE_Y_512 - 5:EYE_Y_512 + 5, x + 15:x + w - 15].mean()
    cheeks = styled["zombie"][y + int(0.62 * h):y + int(0.72 * h), x + 15:x + w - 15].mean()
    assert eyes < cheeks - 15


def test_comic_is_flat_colour_with_ink(styled: dict[str, Array], selfie_rgb: Array) -> None:
    def coverage(img: Array) -> float:
        """Share of non-ink pixels in the 12 most common coarse colours."""
        px = img.reshape(-1, 3).astype(np.int32)
        px = px[px.mean(axis=1) > 60]
        key = (px[:, 0] // 32) * 64 + (px[:, 1] // 32) * 8 + px[:, 2] // 32
        counts = np.sort(np.bincount(key, minlength=512))[::-1]
        return float(counts[:12].sum() / len(px))

    assert coverage(styled["comic"]) > 0.85
    assert coverage(selfie_rgb) < 0.75
    assert (styled["comic"].max(axis=2) < 40).mean() > 0.1  # plenty of black ink


def test_sketch_is_light_pencil_on_paper(styled: dict[str, Array]) -> None:
    g = styled["sketch"].mean(axis=2)
    assert g.mean() > 170  # mostly paper
    assert (g < 40).mean() < 0.01  # graphite, not ink


def test_anime_has_a_pastel_sky_behind_the_person(styled: dict[str, Array], selfie_rgb: Array) -> None:
    corner = styled["anime"][10:80, 300:500].reshape(-1, 3).mean(axis=0)  # wall behind, top right
    r, _, b = corner
    assert b > r and b > 200  # bright sky blue
    assert np.abs(styled["anime"][10:80, 300:500].astype(int) - selfie_rgb[10:80, 300:500]).mean() > 25


def test_cyberpunk_is_magenta_and_cyan(styled: dict[str, Array]) -> None:
    hsv = cv2.cvtColor(styled["cyberpunk"], cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0].astype(int) * 2
    vivid = hsv[..., 1] > 80
    magenta = ((hue > 280) & (hue < 340) & vivid).mean()
    cyan = ((hue > 170) & (hue < 210) & vivid).mean()
    assert magenta > 0.05 and cyan > 0.03


def test_watercolour_leaves_white_paper_at_the_edges(styled: dict[str, Array]) -> None:
    img = styled["watercolor"].astype(np.float64)
    border = np.concatenate([img[:12].reshape(-1, 3), img[-12:].reshape(-1, 3),
                             img[:, :12].reshape(-1, 3), img[:, -12:].reshape(-1, 3)])
    assert border.mean() > 225
    face = img[FACE_512[1] + 20:FACE_512[1] + 80, FACE_512[0] + 20:FACE_512[0] + 70]
    assert face.mean() < 225  # the painted face is not blank paper


PORTRAITS = ("astronaut.png", "portrait_dark_skin.jpg", "portrait_white_hair.jpg", "raised_hand.jpg")


def sweep(values: tuple[str, ...] | list[str], keep: int = 1) -> list[Any]:
    """The first `keep` values in every run; the rest of the sweep in the full run only (`slow`)."""
    return [*values[:keep], *(pytest.param(v, marks=pytest.mark.slow) for v in values[keep:])]


@pytest.fixture(scope="module")
def portraits() -> dict[str, Array]:
    """The four fixture portraits (light and dark skin, white hair, a raised hand), long side 512."""
    out = {}
    for name in PORTRAITS:
        image = Image.open(FIXTURES / name).convert("RGB")
        image.thumbnail((512, 512), Image.Resampling.LANCZOS)
        out[name] = np.asarray(image)
    return out


def face_box(img: Array, rgb: Array) -> Array:
    """Cheeks to chin of the main face of `rgb`, cut from `img`."""
    f = main_face(rgb)
    assert f is not None
    rows = slice(int(f.y + 0.25 * f.h), int(f.y + 0.9 * f.h))
    return np.ascontiguousarray(img[rows, int(f.x + 0.2 * f.w):int(f.x + 0.8 * f.w)])


@pytest.mark.parametrize("name", sweep(PORTRAITS))
def test_sketch_draws_every_face_light_or_dark(portraits: dict[str, Array], name: str) -> None:
    rgb = portraits[name]
    face = face_box(stylize_array(rgb, "sketch", np.random.default_rng(5)), rgb).mean(axis=2)
    assert (face < 120).mean() > 0.12, "the face is barely drawn"  # pencil on the features, not blank paper
    assert face.std() > 45


@pytest.mark.parametrize("name", sweep(PORTRAITS))
def test_anime_and_watercolour_keep_skin_in_skin_tones(portraits: dict[str, Array], name: str) -> None:
    rgb = portraits[name]
    for sid in ("anime", "watercolor"):
        hsv = cv2.cvtColor(face_box(stylize_array(rgb, sid, np.random.default_rng(5)), rgb), cv2.COLOR_RGB2HSV)
        hue, sat = hsv[..., 0].astype(int) * 2, hsv[..., 1] / 255
        odd = ((hue > 70) & (hue < 330) & (sat > 0.15)).mean()  # green, blue or lilac patches
        assert odd < 0.02, (sid, odd)


@pytest.mark.parametrize("name", sweep(PORTRAITS))
def test_pixel_art_is_a_small_palette_with_dark_outlines(portraits: dict[str, Array], name: str) -> None:
    img = stylize_array(portraits[name], "pixel", np.random.default_rng(5))
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) <= 16
    darkest = int(np.argmin(colours.astype(int).sum(axis=1)))
    assert colours[darkest].max() < 50 and counts[darkest] / counts.sum() > 0.03


@pytest.mark.parametrize("name", sweep(PORTRAITS))
def test_zombie_has_dead_eyes_and_blood(portraits: dict[str, Array], name: str) -> None:
    rgb = portraits[name]
    f = main_face(rgb)
    assert f is not None
    img = stylize_array(rgb, "zombie", np.random.default_rng(5)).astype(int)
    for ex, ey in (f.left_eye, f.right_eye):
        x, y, r = int(ex), int(ey), max(2, int(0.02 * f.w))
        eye = img[y - r:y + r + 1, x - r:x + r + 1].mean()
        socket = img[int(ey + 0.09 * f.h):int(ey + 0.12 * f.h), x - 3 * r:x + 3 * r].mean()
        assert eye > socket + 25, "milky eyes glow out of dark sockets"
    chin = img[int(f.y + 0.8 * f.h):int(f.y + 1.15 * f.h), int(f.x + 0.2 * f.w):int(f.x + 0.8 * f.w)]
    blood = chin[..., 0] > np.maximum(chin[..., 1], chin[..., 2]) + 30  # red in a desaturated, green-grey face
    assert blood.sum() > 0.004 * f.w * f.h


@pytest.mark.parametrize("style_id", STYLE_IDS)
def test_a_picture_without_a_face_still_stylises(style_id: str) -> None:
    gradient = np.zeros((240, 320, 3), np.uint8)
    gradient[..., 1] = np.linspace(30, 220, 320, dtype=np.uint8)[None, :]
    gradient[..., 0] = np.linspace(200, 20, 240, dtype=np.uint8)[:, None]
    out = stylize_array(gradient, style_id, np.random.default_rng(0))
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8


async def test_a_tiny_picture_still_stylises(engine: OfflineEngine) -> None:
    tiny = jpeg_bytes(Image.new("RGB", (24, 17), (200, 120, 90)))
    for sid in STYLE_IDS:
        result = await engine.stylize(tiny, style(sid))
        assert Image.open(io.BytesIO(result.image)).size == (24, 17)


async def test_garbage_bytes_are_a_bad_request(engine: OfflineEngine) -> None:
    with pytest.raises(BadRequest):
        await engine.stylize(b"definitely not a jpeg", style("comic"))


# ------------------------------------------------------------------ edits: the parser


def test_parse_edit_handles_combinations() -> None:
    assert parse_edit("add a crown and make it warmer") == [EditOp("accessory", "crown"),
                                                             EditOp("adjust", "warmer")]
    assert parse_edit("Sunglasses, MUSTACHE & b&w please") == [
        EditOp("accessory", "sunglasses"), EditOp("accessory", "mustache"), EditOp("adjust", "bw")]
    assert parse_edit("make it black and white with more contrast") == [EditOp("adjust", "bw"),
                                                                         EditOp("adjust", "contrast")]
    assert parse_edit("devil horns, a halo and a party hat") == [
        EditOp("accessory", "horns"), EditOp("accessory", "halo"), EditOp("accessory", "party_hat")]
    assert parse_edit("grayscale") == [EditOp("adjust", "bw")]
    assert parse_edit("a bit cooler and darker, then sepia") == [
        EditOp("adjust", "cooler"), EditOp("adjust", "darker"), EditOp("adjust", "sepia")]
    assert parse_edit("brighter") == [EditOp("adjust", "brighter")]
    assert parse_edit("add dark sunglasses") == [EditOp("accessory", "sunglasses")]  # not "darker"
    assert parse_edit("Put on some shades and a golden crown!") == [EditOp("accessory", "sunglasses"),
                                                                   EditOp("accessory", "crown")]


def test_parse_edit_reads_captions_in_any_quotes() -> None:
    assert parse_edit('write "HELLO"') == [EditOp("text", "write", "HELLO")]
    assert parse_edit("Write “Best crew ever!” and add a crown") == [
        EditOp("text", "write", "Best crew ever!"), EditOp("accessory", "crown")]
    assert parse_edit('add caption "to the moon"') == [EditOp("text", "write", "to the moon")]
    assert parse_edit("add text 'dragon'") == [EditOp("text", "write", "dragon")]  # words in quotes are text


@pytest.mark.parametrize("instruction", [
    "turn me into a dragon", "add a crown and a dragon", "less contrast", "make it look like Van Gogh",
    "", "   ", "write", "remove the background", "sunglasses on the cat",
])
def test_anything_else_is_unsupported_with_the_vocabulary(instruction: str) -> None:
    with pytest.raises(Unsupported) as caught:
        parse_edit(instruction)
    message = caught.value.message
    assert OFFLINE_EDIT_HELP in message
    assert "\n" not in message
    for word in ("crown", "party hat", "sunglasses", "mustache", "halo", "horns", "warmer", "cooler",
                 "brighter", "darker", "more contrast", "black and white", "sepia", "write", "Gemini"):
        assert word in message


def test_a_half_understood_instruction_names_the_part_it_could_not_do() -> None:
    with pytest.raises(Unsupported) as caught:
        parse_edit("add a crown and a dragon")
    assert "dragon" in caught.value.message


async def test_engine_edit_raises_unsupported(engine: OfflineEngine, selfie: bytes) -> None:
    with pytest.raises(Unsupported):
        await engine.edit(selfie, "turn me into a dragon")


# ------------------------------------------------------------------ edits: accessories land on the face


@pytest.mark.parametrize(("instruction", "where", "said"), [
    ("add a crown", "above", "Crown on"), ("party hat", "above", "Party hat on"),
    ("a halo", "above", "Halo on"), ("devil horns", "above", "Horns on"),
    ("sunglasses", "eyes", "Sunglasses on"), ("a mustache", "below-nose", "Mustache on"),
])
async def test_accessories_are_drawn_on_the_face(engine: OfflineEngine, selfie: bytes, selfie_rgb: Array,
                                                 instruction: str, where: str, said: str) -> None:
    result = await engine.edit(selfie, instruction)
    out = decode(result.image)
    mask = changed(selfie_rgb, out)
    x, y, w, h = FACE_512
    assert mask.sum() > 0.04 * w * h  # something visible was drawn
    ys, xs = np.nonzero(mask)
    near = (xs > x - 0.6 * w) & (xs < x + 1.6 * w) & (ys > y - 1.1 * h) & (ys < y + 1.2 * h)
    assert near.mean() > 0.97  # and only around the face
    assert abs(xs.mean() - (x + w / 2)) < 0.2 * w
    cy = ys.mean()
    if where == "above":
        assert cy < EYE_Y_512 - 0.2 * h
    elif where == "eyes":
        assert abs(cy - EYE_Y_512) < 0.15 * h
    else:
        assert y + 0.6 * h < cy < y + h
    assert result.commentary.startswith(said)


@pytest.fixture(scope="module")
def raised_hand() -> bytes:
    return (FIXTURES / "raised_hand.jpg").read_bytes()


def test_the_face_outranks_everything_else_the_cascade_finds(raised_hand: bytes, selfie_rgb: Array) -> None:
    rgb = decode(raised_hand)
    face = main_face(rgb)
    assert face is not None and face.eyes_detected
    x, y, w, h = HAND_FACE
    assert abs(face.cx - (x + w / 2)) < 15 and abs(face.cy - (y + h / 2)) < 15
    hx, hy, hw, hh = HAND_BOX
    assert not any(hx - 20 < f.cx < hx + hw + 20 and hy - 20 < f.cy < hy + hh + 20 for f in detect_faces(rgb))
    # On a pop-art grid the cascade finds four faces; they come most confident first, as one face.
    faces = detect_faces(stylize_array(selfie_rgb, "popart", np.random.default_rng(5)))
    assert len(faces) >= 3 and all(a.confidence >= b.confidence for a, b in itertools.pairwise(faces))


@pytest.mark.parametrize("base_style", sweep(["photo", "comic", "popart", "anime"], keep=2))
@pytest.mark.parametrize("instruction", ["add a crown", "sunglasses"])
async def test_one_crown_on_the_face_in_the_raised_hand_photo(engine: OfflineEngine, raised_hand: bytes,
                                                              base_style: str, instruction: str) -> None:
    image = raised_hand if base_style == "photo" else (await engine.stylize(raised_hand, style(base_style))).image
    before = decode(image)
    after = decode((await engine.edit(image, instruction, identity=raised_hand)).image)
    mask = changed(before, after)
    h, w = mask.shape
    assert mask.sum() > 300
    # Re-encoding a JPEG moves a few edge pixels too: an overlay is a cluster a tenth of the largest or more.
    _n, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(mask.astype(np.uint8), np.ones((9, 9))))
    areas = stats[1:, cv2.CC_STAT_AREA]
    overlays = np.nonzero(areas >= 0.1 * areas.max())[0] + 1
    assert len(overlays) == 1, f"{len(overlays)} separate overlays"  # one crown, not one per "face"
    ys, xs = np.nonzero(mask & (labels == overlays[0]))
    if base_style == "popart":  # four portraits in a grid: the overlay stays in one panel
        assert xs.max() - xs.min() < w / 2 and ys.max() - ys.min() < h / 2
        return
    hx, hy, hw, hh = HAND_BOX
    assert not mask[hy:hy + hh, hx + 10:hx + hw].any(), "drawn on the raised hand"
    x, _y, fw, _h = HAND_FACE
    assert abs(xs.mean() - (x + fw / 2)) < 0.2 * fw


async def test_accessory_uses_the_identity_face_when_the_image_has_none(
        engine: OfflineEngine, face_image: Image.Image) -> None:
    # The person sits on the left of a wide frame; the edited image is so blocky no face is found.
    wide = Image.new("RGB", (1024, 512), (120, 130, 140))
    wide.paste(face_image, (0, 0))
    blocky = wide.resize((64, 32), Image.Resampling.BILINEAR).resize((1024, 512), Image.Resampling.NEAREST)
    blocky_rgb = np.asarray(blocky)
    assert detect_faces(blocky_rgb) == []

    with_identity = decode((await engine.edit(jpeg_bytes(blocky), "sunglasses",
                                              identity=jpeg_bytes(wide))).image)
    xs_id = np.nonzero(changed(np.asarray(decode(jpeg_bytes(blocky))), with_identity))[1]
    assert abs(xs_id.mean() - (FACE_512[0] + FACE_512[2] / 2)) < 30  # on the real face

    without = decode((await engine.edit(jpeg_bytes(blocky), "sunglasses")).image)
    xs_default = np.nonzero(changed(np.asarray(decode(jpeg_bytes(blocky))), without))[1]
    assert abs(xs_default.mean() - 512) < 30  # upper centre


async def test_accessories_also_fit_a_stylised_image(engine: OfflineEngine, selfie: bytes) -> None:
    anime = (await engine.stylize(selfie, style("anime"))).image
    before = decode(anime)
    after = decode((await engine.edit(anime, "add a crown", identity=selfie)).image)
    ys, _ = np.nonzero(changed(before, after))
    assert len(ys) > 200 and ys.mean() < EYE_Y_512


# ------------------------------------------------------------------ edits: adjustments and captions


async def _edit(engine: OfflineEngine, image: bytes, instruction: str) -> Array:
    return decode((await engine.edit(image, instruction)).image).astype(np.float64)


async def test_adjustments_move_colour_the_right_way(engine: OfflineEngine, selfie: bytes,
                                                      selfie_rgb: Array) -> None:
    orig = selfie_rgb.astype(np.float64)
    r0, b0 = orig[..., 0].mean(), orig[..., 2].mean()
    warm = await _edit(engine, selfie, "make it warmer")
    assert warm[..., 0].mean() - warm[..., 2].mean() > (r0 - b0) + 15
    cool = await _edit(engine, selfie, "cooler")
    assert cool[..., 0].mean() - cool[..., 2].mean() < (r0 - b0) - 15
    assert (await _edit(engine, selfie, "brighter")).mean() > orig.mean() + 15
    assert (await _edit(engine, selfie, "darker")).mean() < orig.mean() - 15
    assert (await _edit(engine, selfie, "more contrast")).std() > orig.std() * 1.15
    for phrase in ("black and white", "b&w", "grayscale"):
        assert colour_spread((await _edit(engine, selfie, phrase)).astype(np.uint8)) < 3
    sepia = await _edit(engine, selfie, "sepia")
    r, g, b = (sepia[..., i].mean() for i in range(3))
    assert r > g > b and r - b > 25
    hsv = cv2.cvtColor(sepia.astype(np.uint8), cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0][hsv[..., 1] > 40].astype(int) * 2
    assert ((hue >= 15) & (hue <= 50)).mean() > 0.97  # one brown tone: no orange suit, no blue patch


async def test_write_puts_a_caption_in_the_bottom_band(engine: OfflineEngine, selfie: bytes,
                                                        selfie_rgb: Array) -> None:
    result = await engine.edit(selfie, 'write "HELLO"')
    out = decode(result.image)
    mask = changed(selfie_rgb, out)
    assert mask[int(512 * 0.8):].mean() > 0.1
    assert mask[:int(512 * 0.6)].mean() < 0.001
    bottom = out[int(512 * 0.8):]
    assert (bottom.min(axis=2) > 235).mean() > 0.02  # white letters
    assert "HELLO" in result.commentary


async def test_a_long_caption_still_fits(engine: OfflineEngine, selfie: bytes, selfie_rgb: Array) -> None:
    text = "This is a rather long caption that has to wrap onto two lines to fit"
    out = decode((await engine.edit(selfie, f'add caption "{text}"')).image)
    mask = changed(selfie_rgb, out)
    assert mask[:int(512 * 0.5)].mean() < 0.001 and mask[int(512 * 0.75):].mean() > 0.05


async def test_combined_edit_and_commentary(engine: OfflineEngine, selfie: bytes, selfie_rgb: Array) -> None:
    result = await engine.edit(selfie, "Add a crown and sunglasses, and make it warmer")
    assert result.commentary.startswith("Crown on, sunglasses on, warmed up")
    out = decode(result.image).astype(np.float64)
    before = selfie_rgb[..., 0].mean() - selfie_rgb[..., 2].mean()
    assert out[..., 0].mean() - out[..., 2].mean() > before + 10


async def test_edits_keep_png_for_pixel_art(engine: OfflineEngine, selfie: bytes) -> None:
    pixel = (await engine.stylize(selfie, style("pixel"))).image
    result = await engine.edit(pixel, "sepia")
    assert result.mime == "image/png" and Image.open(io.BytesIO(result.image)).format == "PNG"


# ------------------------------------------------------------------ fuse


@pytest.fixture(scope="module")
def three(face_image: Image.Image) -> list[Portrait]:
    return [
        Portrait("Ann", jpeg_bytes(face_image)),
        Portrait("Bob", jpeg_bytes(ImageOps.mirror(face_image))),
        Portrait("Cy", jpeg_bytes(ImageEnhance.Color(face_image).enhance(0.3).crop((60, 0, 512, 452)))),
    ]


@pytest.mark.parametrize("style_id", sweep(["comic", "anime", "zombie"]))
async def test_fuse_makes_one_poster_with_every_face(engine: OfflineEngine, three: list[Portrait],
                                                     style_id: str) -> None:
    result = await engine.fuse(three, style(style_id), theme="Mission crew")
    poster = decode(result.image)
    h, w = poster.shape[:2]
    assert max(h, w) <= 1536 and w > 2 * h  # three tiles in a row
    faces = detect_faces(poster)
    assert len(faces) >= 3
    centres = sorted(f.cx for f in faces[:3])
    assert centres[0] < w / 3 < centres[1] < 2 * w / 3 < centres[2]  # one face per tile
    for name in ("Ann", "Bob", "Cy"):
        assert name in result.commentary


async def test_fuse_tiles_are_distinct_and_named(engine: OfflineEngine, three: list[Portrait]) -> None:
    a = decode((await engine.fuse(three, style("noir"), theme="Crew")).image).astype(np.int16)
    renamed = [Portrait(n, p.image) for n, p in zip(("Xavier", "Yolanda", "Zed"), three, strict=True)]
    b = decode((await engine.fuse(renamed, style("noir"), theme="Crew")).image).astype(np.int16)
    assert a.shape == b.shape
    rows = np.nonzero(np.abs(a - b).max(axis=(1, 2)) > 60)[0]
    assert len(rows) > 0 and rows.min() > a.shape[0] * 0.6  # only the name labels under the tiles differ


# An even and an odd group in the quick run; every size in the full one.
@pytest.mark.parametrize("count", [2, 5, *(pytest.param(n, marks=pytest.mark.slow) for n in (1, 4, 8))])
async def test_fuse_grids_for_any_group_size(engine: OfflineEngine, face_image: Image.Image,
                                             count: int) -> None:
    people = [Portrait(f"P{i}", jpeg_bytes(face_image.rotate(i * 3))) for i in range(count)]
    result = await engine.fuse(people, style("pixel"))
    img = Image.open(io.BytesIO(result.image))
    assert max(img.size) <= 1536 and result.mime == "image/png"


async def test_fuse_limits(engine: OfflineEngine, three: list[Portrait]) -> None:
    with pytest.raises(Unsupported):
        await engine.fuse(three * 3, style("comic"))
    with pytest.raises(BadRequest):
        await engine.fuse([], style("comic"))


# ------------------------------------------------------------------ the event loop and the executor


async def test_stylize_does_not_block_the_event_loop(selfie_1024: bytes) -> None:
    submitted: list[object] = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    pool = Recording(max_workers=1)
    engine = OfflineEngine(executor=pool, rng_seed=1)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    await engine.stylize(selfie_1024, style("anime"))
    elapsed = time.perf_counter() - start
    done = True
    await task
    assert submitted, "the work did not go through the given executor"
    assert ticks >= max(3, int(elapsed / 0.005 * 0.3))
    await engine.aclose()
    pool.submit(lambda: None).result()  # a caller's executor is left running
    pool.shutdown()


async def test_check_and_aclose(selfie_1024: bytes) -> None:
    engine = OfflineEngine()
    assert await engine.check() is None
    await engine.aclose()
    with pytest.raises(EngineError) as refused:
        await engine.stylize(selfie_1024, style("anime"))
    assert isinstance(refused.value.__cause__, RuntimeError), "its own pool is shut down: it takes no more work"
