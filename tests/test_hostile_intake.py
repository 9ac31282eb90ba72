"""Hostile files: a scan bomb or a PNG bomb costs its sender a one-line refusal and nobody else anything.

The bombs are built here, at run time: a progressive JPEG whose last scan is repeated thousands of
times (each repeat is another pass over every block, so a 60 KB file decodes for tens of seconds), and
PNGs whose few hundred kilobytes decode to hundreds of megabytes.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from core import texts
from core.config import AccessSettings, IntakeSettings
from core.intake import IntakeError, check_jpeg_structure, peek, prepare
from core.intake_pool import Intake, _ByteBudget, busy_message, too_costly_message
from tests.conftest import jpeg_bytes
from tests.standins.discord_api import EPHEMERAL, FakeDiscord
from tests.standins.telegram_api import FakeTelegram
from tests.test_discord_e2e import ALICE as DC_ALICE
from tests.test_discord_e2e import BOB as DC_BOB
from tests.test_discord_e2e import running_bot as running_discord
from tests.test_telegram_harness import ALICE, BOB, make_settings, private, running_bot

STRUCTURE = "built in a way no camera makes"
TOO_LARGE = "too large to process safely"


# -- the bombs ----------------------------------------------------------------------------------------


def scan_bomb(side: int = 2048, repeats: int = 2000) -> bytes:
    """A flat progressive JPEG with its last scan (a refinement of every block, a few bytes long)
    repeated `repeats` times: libjpeg makes a full pass over the image for each."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (120, 130, 140)).save(out, "JPEG", quality=90, progressive=True)
    data = out.getvalue()
    last_scan, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * repeats + data[end:]


def png_bomb(width: int = 8000, height: int = 8000, *, bit_depth: int = 8, colour_type: int = 6) -> bytes:
    """A real, complete PNG of `width`×`height` blank pixels (RGBA by default): a few hundred KB that
    decode to hundreds of MB."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    row = b"\0" + bytes(width * channels * bit_depth // 8)
    squeeze = zlib.compressobj(9)
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = scan_bomb()
    assert len(data) < 100_000 and data.count(b"\xff\xda") > 2000  # small, and thousands of scans
    return data


@pytest.fixture(scope="module")
def rgba_bomb() -> bytes:
    data = png_bomb()
    assert len(data) < 400_000
    return data


@pytest.fixture(scope="module")
def photo() -> bytes:
    """An ordinary selfie: the picture other people send meanwhile."""
    image = Image.open(Path(__file__).parent / "fixtures" / "astronaut.png").convert("RGB")
    return jpeg_bytes(image.resize((640, 640)))


def intake_workers() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "pixme-intake"]


@pytest.fixture
async def intake() -> AsyncIterator[Intake]:
    pool = Intake(IntakeSettings(workers=2))
    yield pool
    await pool.aclose()


# -- structure and size, before decoding ----------------------------------------------------------------


def test_the_scan_bomb_is_refused_from_its_markers_in_one_line(bomb: bytes) -> None:
    began = time.monotonic()
    with pytest.raises(IntakeError) as refusal:
        prepare(bomb)
    assert STRUCTURE in refusal.value.message and "\n" not in refusal.value.message
    assert time.monotonic() - began < 5, "refused from its markers, not after decoding for tens of seconds"


def test_ordinary_progressive_and_baseline_jpegs_pass_the_marker_walk(face_image: Image.Image) -> None:
    progressive = io.BytesIO()
    face_image.save(progressive, "JPEG", progressive=True)
    for data in (progressive.getvalue(), jpeg_bytes(face_image), scan_bomb(256, repeats=20)):
        header = check_jpeg_structure(data)
        assert header is not None and header.width > 0
    assert prepare(progressive.getvalue()).width == 512


def test_floods_of_fill_bytes_or_segments_are_refused(face_image: Image.Image) -> None:
    data = jpeg_bytes(face_image)
    fill = data[:2] + b"\xff" * 100_000 + data[2:]  # padding before the first marker, 100 KB of it
    comment = b"\xff\xfe\x00\x04hi"
    segments = data[:2] + comment * 5000 + data[2:]
    for flood in (fill, segments):
        with pytest.raises(IntakeError, match=STRUCTURE):
            prepare(flood)
    assert prepare(data[:2] + comment * 10 + data[2:]).width == 512  # a few comments are fine
    # The bot's own process reads only the header, and stops reading a flood as soon as it is one.
    began = time.monotonic()
    with pytest.raises(IntakeError, match=STRUCTURE):
        peek(data[:2] + b"\xff" * 19_000_000 + data[2:])
    assert time.monotonic() - began < 0.5


@pytest.mark.parametrize("build", [
    {},  # 8000×8000 RGBA, 8 bits
    # Building these two takes seconds of zlib: the full run has them.
    pytest.param({"bit_depth": 16, "colour_type": 6}, marks=pytest.mark.slow),  # 8000×8000 RGBA, 16 bits
    pytest.param({"bit_depth": 16, "colour_type": 0}, marks=pytest.mark.slow),  # 8000×8000 grey, 16 bits
], ids=["rgba", "rgba-16-bit", "grey-16-bit"])
async def test_png_bombs_are_refused_from_the_header_without_decoding(
        intake: Intake, rgba_bomb: bytes, build: dict[str, int]) -> None:
    data = png_bomb(**build) if build else rgba_bomb
    assert len(data) < 1_100_000
    # Twelve at once, as when the playground was taken to 5 GB: all refused, and no decoding process
    # was even started (the header said enough).
    results = await asyncio.gather(*(intake.prepare(data) for _ in range(12)), return_exceptions=True)
    assert all(isinstance(r, IntakeError) and TOO_LARGE in r.message for r in results), results
    assert "8000×8000" in str(results[0])
    assert not intake_workers()
    with pytest.raises(IntakeError, match=TOO_LARGE):  # the decoder's own check (also the CLI's)
        prepare(data)


async def test_a_large_but_honest_picture_is_still_accepted(intake: Intake, face_image: Image.Image) -> None:
    out = io.BytesIO()
    face_image.resize((4000, 3000)).save(out, "PNG", compress_level=1)  # 12 MP RGB: 48 MB decoded
    result = await intake.prepare(out.getvalue(), max_px=1024)
    assert (result.width, result.height) == (1024, 768)


# -- the CPU budget -----------------------------------------------------------------------------------


@pytest.mark.slow  # real decoding processes, one killed at its CPU budget
async def test_a_slow_decode_is_stopped_at_its_cpu_budget_while_others_are_served(
        bomb: bytes, photo: bytes) -> None:
    # Structure limits off, so the bomb really decodes (about 20 s of CPU) and only the budget stops it.
    pool = Intake(IntakeSettings(workers=2, cpu_budget_s=1, max_jpeg_scans=10_000))
    try:
        began = time.monotonic()
        bombing = asyncio.ensure_future(pool.prepare(bomb))
        served = []
        for _ in range(3):  # another person's photos, one after another, while the bomb decodes
            served.append(await pool.prepare(photo, max_px=512))
            assert not bombing.done(), "served while the bomb was still being decoded"
        with pytest.raises(IntakeError) as refusal:
            await bombing
        assert refusal.value.message == too_costly_message()
        assert time.monotonic() - began < 15
        assert pool.stopped == ["SIGXCPU"], "stopped by its CPU budget, not the wall-clock backstop"
        assert all(p.width == 512 for p in served)
        # The stopped worker was replaced: the pool still decodes, with both workers.
        results = await asyncio.gather(*(pool.prepare(photo, max_px=512) for _ in range(4)))
        assert all(r.width == 512 for r in results)
    finally:
        await pool.aclose()


# -- one at a time per person, and memory in flight ------------------------------------------------------


async def test_one_decode_in_flight_per_person(intake: Intake) -> None:
    first_in, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def hold(owner: str, name: str) -> None:
        async with intake.turn(owner):
            order.append(name)
            if name == "alice 1":
                first_in.set()
                await release.wait()

    alice_1 = asyncio.ensure_future(hold("alice", "alice 1"))
    await first_in.wait()
    alice_2 = asyncio.ensure_future(hold("alice", "alice 2"))
    await hold("bob", "bob")  # someone else is never held up by Alice
    waiting = [asyncio.ensure_future(hold("alice", f"alice {n}")) for n in (3, 4)]
    await asyncio.sleep(0)  # one loop turn: both have asked for their turn and wait in line
    with pytest.raises(IntakeError) as refusal:  # a fifth at once is refused politely
        await hold("alice", "alice 5")
    assert refusal.value.message == busy_message()
    assert order == ["alice 1", "bob"], "Alice's second photo waits for her first"
    release.set()
    await asyncio.gather(alice_1, alice_2, *waiting)
    assert order == ["alice 1", "bob", "alice 2", "alice 3", "alice 4"]


async def test_decode_memory_in_flight_is_capped() -> None:
    budget = _ByteBudget(100)
    holding, release = asyncio.Event(), asyncio.Event()
    admitted: list[str] = []

    async def decode(name: str, size: int) -> None:
        async with budget.claim(size):
            admitted.append(name)
            if name == "big":
                holding.set()
                await release.wait()

    big = asyncio.ensure_future(decode("big", 70))
    await holding.wait()
    await decode("small", 30)  # fits beside it
    second_big = asyncio.ensure_future(decode("second big", 70))
    await asyncio.sleep(0)  # let it ask (and be told to wait)
    assert admitted == ["big", "small"] and budget.free == 30
    release.set()
    await asyncio.gather(big, second_big)
    assert admitted == ["big", "small", "second big"] and budget.free == 100


# -- end to end: Telegram --------------------------------------------------------------------------------


async def test_telegram_a_bomb_costs_its_sender_a_refusal_and_nobody_else_anything(
        tg: FakeTelegram, tmp_path: Path, bomb: bytes, photo: bytes) -> None:
    # The bomb must really decode here (structure limits off): only the CPU budget stops it.
    settings = make_settings(tg, tmp_path)
    settings = settings.model_copy(update={"intake": IntakeSettings(cpu_budget_s=1, max_jpeg_scans=10_000)})
    alice, bob = private(ALICE), private(BOB)
    async with running_bot(tg, tmp_path, settings=settings) as run:
        began = time.monotonic()
        tg.send_document(alice, ALICE, bomb, "selfie.jpg", "image/jpeg", caption="/zombie")
        await tg.wait_until(lambda: tg.file_downloads, timeout=10)  # the bomb is being decoded
        tg.send_photo(bob, BOB, photo, caption="/comic")
        avatar = await run.photo_reply(bob, timeout=10)
        assert avatar.photo is not None
        bob_waited = time.monotonic() - began
        refusal = await run.text_reply(alice, timeout=20)
        assert refusal.text == too_costly_message()
        assert bob_waited < 5, f"Bob's picture came {bob_waited:.1f} s after the bomb"
        await run.settle()
        assert run.studio.intake.stopped == ["SIGXCPU"]
        # The person who sent the bomb can carry on with an ordinary photo.
        tg.send_photo(alice, ALICE, photo, caption="/sketch")
        assert (await run.photo_reply(alice)).photo is not None


async def test_telegram_bombs_are_refused_in_one_line_with_default_settings(
        tg: FakeTelegram, tmp_path: Path, bomb: bytes, rgba_bomb: bytes) -> None:
    alice = private(ALICE)
    async with running_bot(tg, tmp_path) as run:
        for data, name, expected in ((bomb, "scan.jpg", STRUCTURE), (rgba_bomb, "big.png", TOO_LARGE)):
            tg.send_document(alice, ALICE, data, name, "image/png" if name.endswith("png") else "image/jpeg",
                             caption="/zombie")
            answer = await run.text_reply(alice, timeout=10)
            assert answer.text is not None and expected in answer.text and "\n" not in answer.text
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert run.studio.intake.stopped == []


async def test_telegram_a_denied_persons_photo_is_never_downloaded(
        tg: FakeTelegram, tmp_path: Path, photo: bytes) -> None:
    settings = make_settings(tg, tmp_path)
    settings = settings.model_copy(update={"access": AccessSettings(deny=[str(ALICE.id)])})
    alice, bob = private(ALICE), private(BOB)
    async with running_bot(tg, tmp_path, settings=settings) as run:
        tg.send_document(alice, ALICE, photo, "me.jpg", "image/jpeg", caption="/comic")
        refusal = await run.text_reply(alice)
        assert refusal.text == texts.NOT_ALLOWED
        tg.send_photo(bob, BOB, photo, caption="/zombie")  # an allowed person's photo is fetched as usual
        await run.photo_reply(bob)
        await run.settle()
        assert len(tg.file_downloads) == 1, "only Bob's photo was downloaded"
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


# -- end to end: Discord -----------------------------------------------------------------------------------


async def test_discord_a_denied_persons_attachment_is_never_downloaded(tmp_path: Path, photo: bytes) -> None:
    from tests.fakes import FakeEngine

    denied = AccessSettings(deny=[str(DC_ALICE["id"])])
    async with FakeDiscord() as fake, running_discord(fake, tmp_path, FakeEngine(), access=denied):
        # /avatar with a photo: refused privately before anything is fetched.
        before = fake.last_id()
        await fake.slash(DC_ALICE, "avatar", {"style": "zombie"}, attachments={"photo": fake.upload(photo)})
        refusal = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
        assert refusal["content"] == texts.NOT_ALLOWED
        # The message menu on someone's photo, then a style: refused too, still nothing fetched.
        posted = await fake.post(DC_BOB, "", files=[fake.upload(photo)])
        before = fake.last_id()
        await fake.context_menu(DC_ALICE, "Pix Me", posted)
        menu = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
        pick = next(c["custom_id"] for row in menu["components"] for c in row["components"] if "custom_id" in c)
        before = fake.last_id()
        await fake.choose(DC_ALICE, menu, pick, ["popart"])
        refusal = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
        assert refusal["content"] == texts.NOT_ALLOWED
        assert fake.downloads == []
        # Bob, who is allowed, gets his avatar: his attachment is the first download.
        before = fake.last_id()
        await fake.slash(DC_BOB, "avatar", {"style": "zombie"}, attachments={"photo": fake.upload(photo)})
        await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert len(fake.downloads) == 1


# -- end to end: the playground ----------------------------------------------------------------------------


@pytest.mark.slow  # the same pool as Telegram's bomb test, through the playground's page
async def test_playground_previews_go_through_the_same_bounded_intake(
        tmp_path: Path, bomb: bytes, photo: bytes) -> None:
    from core.engines.offline import OfflineEngine
    from tests.test_playground import open_page, serve

    budget = IntakeSettings(cpu_budget_s=1, max_jpeg_scans=10_000)  # the bomb really decodes here
    async with serve(tmp_path, OfflineEngine(), intake=budget) as client:
        page = await open_page(client)
        try:
            bombing = asyncio.ensure_future(page.upload(bomb, name="Mallory"))
            photo_id = await page.upload(photo, name="Alex")  # uploaded, previewed and answered meanwhile
            menu = await page.message("menu", reply_to=photo_id)
            assert menu["text"] == texts.PICK_STYLE
            assert not bombing.done(), "Alex was answered while Mallory's bomb was still being decoded"
            refusal = await page.message("text", reply_to=await bombing)
            assert refusal["text"] == too_costly_message()
        finally:
            await page.close()


async def test_refusals_from_the_decoding_process_are_in_the_senders_language(intake: Intake, bomb: bytes) -> None:
    from core import i18n

    with i18n.speaking("es"):
        with pytest.raises(IntakeError) as refusal:
            await intake.prepare(bomb)  # refused by the worker's marker walk, in another process
    assert refusal.value.message.startswith("Ese JPEG está hecho de una forma que ninguna cámara usa")
    assert intake_workers(), "the refusal came from a decoding process"


async def test_playground_a_denied_persons_upload_is_not_decoded(tmp_path: Path, bomb: bytes, photo: bytes) -> None:
    from core.engines.offline import OfflineEngine
    from tests.test_playground import open_page, serve

    async with serve(tmp_path, OfflineEngine(), access=AccessSettings(deny=["pg-mallory"])) as client:
        page = await open_page(client)
        try:
            await page.upload(bomb, name="Mallory")  # answered once the upload is handled
            posted = await page.message("photo", text="")
            assert posted["from"]["name"] == "Mallory" and posted["image"] is None, "no preview was made"
            assert not intake_workers(), "her file never reached a decoder"
            photo_id = await page.upload(photo, name="Alex")
            assert (await page.message("menu", reply_to=photo_id))["text"] == texts.PICK_STYLE
            assert intake_workers()
        finally:
            await page.close()
