"""Privacy and fairness on Telegram, end to end: /forget takes every picture made from a person, parties obey
the daily limits, forged export buttons read nothing, and a full disk never loses a paid picture.

The real PTB Application and studio on SQLite against the loopback Bot API stand-in; assertions are about
what people in the chat see and what is left on disk afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from core import texts
from core.engines.base import EngineResult
from core.ports import UNFINISHED
from core.styles import Style
from tests.fakes import FakeEngine
from tests.standins.telegram_api import FakeTelegram, SentMessage
from tests.test_telegram_harness import (
    ALICE,
    BOB,
    CAROL,
    GROUP,
    Running,
    is_photo,
    private,
    running_bot,
    small_selfie,
)
from tests.test_telegram_party import alert, button, join, open_party, press, settings_for

ALICE_CHAT = private(ALICE)


def selfie_of(side: int, *, mirrored: bool = False) -> bytes:
    """Distinct selfies per person: images are stored by content, so shared bytes would be a shared file."""
    image = Image.open(io.BytesIO(small_selfie(side)))
    if mirrored:
        image = ImageOps.mirror(image)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def files_in(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "images").rglob("*") if p.is_file() and not p.name.startswith(".")}


def database_rows(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, read from the database file itself."""
    with contextlib.closing(sqlite3.connect(data_dir / "pixme.sqlite3")) as db:
        db.row_factory = sqlite3.Row
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [dict(r) for r in db.execute(f"SELECT * FROM {t}")] for t in tables}


def yes_button(confirm: SentMessage) -> str:
    return next(b["callback_data"] for b in confirm.buttons if b["text"] == texts.FORGET_YES)


# -- /forget -----------------------------------------------------------------------------------------


async def test_forget_in_a_group_takes_every_picture_made_from_the_person_and_their_name(
        tg: FakeTelegram, tmp_path: Path) -> None:
    alice_selfie, bob_selfie, bob_other = selfie_of(256), selfie_of(256, mirrored=True), selfie_of(200)
    async with running_bot(tg, tmp_path, engine=FakeEngine(), settings=settings_for(tg, tmp_path)) as run:
        assert run.settings.storage.dir == tmp_path
        # Bob restyles Alice's photo by replying to it; Carol edits Bob's restyle.
        alice_photo = tg.send_photo(GROUP, ALICE, alice_selfie)
        tg.send_text(GROUP, BOB, "/popart", reply_to=alice_photo)
        restyle = await run.photo_reply(GROUP)
        tg.send_text(GROUP, CAROL, "add a hat", reply_to=restyle.message_id)
        carols_edit = await run.photo_reply(GROUP)
        # Bob's own picture of his own photo: nothing to do with Alice.
        tg.send_photo(GROUP, BOB, bob_other, caption="/comic")
        bobs_own = await run.photo_reply(GROUP)
        # A party Bob hosts, with Alice in it; Carol edits the group picture.
        lobby = await open_party(run, BOB, "noir")
        await join(run, lobby, BOB, bob_selfie)
        offer = await tg.wait_for_message(lambda m: bool(m.buttons), chat_id=GROUP.id)
        assert offer.text == texts.party_reuse_offer("Bob"), "Bob's own photo, not Alice's he restyled"
        await join(run, lobby, ALICE, alice_selfie)
        offer = await tg.wait_for_message(lambda m: bool(m.buttons), chat_id=GROUP.id)
        assert offer.text == texts.party_reuse_offer("Alice"), "the photo Bob restyled is hers"
        assert (await press(run, BOB, lobby, button(lobby, "start")))["text"] == texts.PARTY_STARTING
        group_picture = await run.photo_reply(GROUP)
        assert group_picture.caption is not None and "Alice" in group_picture.caption
        tg.send_text(GROUP, CAROL, "make it a beach", reply_to=group_picture.message_id)
        group_edit = await run.photo_reply(GROUP)
        await run.settle()

        store = run.studio.store
        derived = [await store.node_for_message("telegram", str(GROUP.id), str(m.message_id))
                   for m in (restyle, carols_edit, group_picture, group_edit)]
        assert all(n is not None for n in derived)
        doomed_files = {n.image_sha for n in derived if n is not None}
        assert doomed_files <= files_in(tmp_path)
        assert "Alice" in json.dumps(database_rows(tmp_path)), "her name is stored before /forget"

        ask = tg.send_text(GROUP, ALICE, "/forget")
        confirm = await run.text_reply(GROUP)
        assert confirm.text == texts.FORGET_CONFIRM and confirm.reply_to_message_id == ask
        query = tg.press_button(GROUP, ALICE, confirm.message_id, yes_button(confirm))
        done = await run.text_reply(GROUP)
        # Her photo (one file, sent twice), Bob's restyle, Carol's edit, the group picture and its edit.
        assert done.text == texts.forgotten(5)
        assert (await tg.wait_for_callback_answer(query))["text"] == texts.forgotten(5)

        # Nothing derived from her answers any more, whoever made it (two replies: the group is rate-limited) …
        for gone in (restyle, carols_edit, group_picture, group_edit):
            assert await store.node_for_message("telegram", str(GROUP.id), str(gone.message_id)) is None
        for gone in (carols_edit, group_edit):
            asked = tg.send_text(GROUP, CAROL, "add a crown", reply_to=gone.message_id)
            answer = await run.text_reply(GROUP)
            assert answer.text == texts.REPLY_TO_RESULT and answer.reply_to_message_id == asked
        # … while Bob's own picture still does.
        tg.send_text(GROUP, BOB, "add a crown", reply_to=bobs_own.message_id)
        assert is_photo(await run.photo_reply(GROUP))
        await run.settle()

    # No file of hers or made from her is left, and every file left belongs to a picture still kept.
    rows = database_rows(tmp_path)
    left = files_in(tmp_path)
    assert not doomed_files & left
    assert left == {n["image_sha"] for n in rows["nodes"]}
    assert rows["nodes"] and all(n["owner_id"] in (None, str(BOB.id)) for n in rows["nodes"])
    assert not [r for r in rows["pictured"] if r["user_id"] == str(ALICE.id)]
    # Her name and id are nowhere: not in party rows, not in Bob's party job, not in Carol's edits.
    for table, table_rows in rows.items():
        for row in table_rows:
            for column, value in row.items():
                assert "Alice" not in str(value), f"{table}.{column} still names her: {value!r}"
                if column in ("user_id", "owner_id", "host_id"):
                    assert value != str(ALICE.id), f"{table}.{column} still holds her id"
    [party_job] = [j for j in rows["jobs"] if j["kind"] == "fuse"]
    assert [name for name, _ in json.loads(party_job["payload"])["portraits"]] == ["Bob"]
    assert [m["name"] for m in rows["party_members"]] == ["Bob"]


# -- parties and the daily limits ------------------------------------------------------------------


def _before_resets(refusal: str) -> str:
    """A limit's sentence up to its reset time (which moves by the minute)."""
    return refusal.split("§")[0]


LIMITS = {
    "daily_images": lambda: _before_resets(texts.bot_daily_limit("§")),
    "user_daily": lambda: _before_resets(texts.user_daily_limit(1, "§")),
    "chat_daily": lambda: _before_resets(texts.chat_daily_limit(1, "§")),
}


@pytest.mark.parametrize("limit", list(LIMITS))
async def test_a_party_is_refused_over_each_daily_limit_at_start_and_at_party(
        tg: FakeTelegram, tmp_path: Path, limit: str) -> None:
    engine = FakeEngine()
    settings = settings_for(tg, tmp_path)
    settings = settings.model_copy(update={"limits": settings.limits.model_copy(update={limit: 1})})
    refusal = LIMITS[limit]()
    selfie = selfie_of(200)
    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        lobby = await open_party(run, ALICE, "comic")  # nothing made today yet: the lobby opens
        await join(run, lobby, ALICE, selfie)
        await join(run, lobby, BOB, selfie_of(200, mirrored=True))

        # Meanwhile the day's one picture is made: by the host, in this group, so every limit is reached.
        tg.send_photo(GROUP, ALICE, selfie, caption="/zombie")
        await run.photo_reply(GROUP)
        await run.settle()

        refused = await press(run, ALICE, lobby, button(lobby, "start"))
        assert refused["text"].startswith(refusal) and "\n" not in refused["text"] and alert(refused)
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())
        assert engine.fused == [] and lobby.buttons, "no group picture; the lobby stays open"

        assert (await press(run, ALICE, lobby, button(lobby, "cancel")))["text"] == texts.PARTY_CANCELLED_TOAST
        asked = tg.send_text(GROUP, ALICE, "/party pixel")
        answer = await run.text_reply(GROUP)
        assert answer.text is not None and answer.text.startswith(refusal) and "\n" not in answer.text
        assert answer.reply_to_message_id == asked
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())
        assert await run.studio.store.open_party("telegram", str(GROUP.id)) is None, "no lobby was opened"
        assert engine.fused == []


# -- forged export buttons ---------------------------------------------------------------------------


async def test_forged_export_buttons_read_nothing(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine()) as run:
        # Alice's selfie and her avatar, in the group before Bob ever used the bot.
        tg.send_photo(GROUP, ALICE, selfie_of(256), caption="/comic")
        alices = await run.photo_reply(GROUP)
        tg.send_photo(GROUP, BOB, selfie_of(200), caption="/noir")
        bobs = await run.photo_reply(GROUP)
        await run.settle()
        alices_node = await run.studio.store.node_for_message("telegram", str(GROUP.id), str(alices.message_id))
        assert alices_node is not None and alices_node.root_id is not None
        documents = len(tg.calls_of("sendDocument"))

        # Ids count up: Bob guesses the id of Alice's selfie and of her avatar, on his own result's keyboard.
        for forged in (alices_node.root_id, alices_node.id):
            query = tg.press_button(GROUP, BOB, bobs.message_id, f"do:export:original:{forged}", strict=False)
            assert (await tg.wait_for_callback_answer(query))["text"] == texts.UNKNOWN_BUTTON
        # Or on Alice's avatar, naming her selfie behind it.
        query = tg.press_button(GROUP, BOB, alices.message_id, f"do:export:original:{alices_node.root_id}",
                                strict=False)
        assert (await tg.wait_for_callback_answer(query))["text"] == texts.UNKNOWN_BUTTON
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())
        assert len(tg.calls_of("sendDocument")) == documents, "nothing was sent"

        # The real button under a picture still exports that picture.
        real = next(b["callback_data"] for b in bobs.buttons if b["callback_data"].startswith("do:export:original:"))
        query = tg.press_button(GROUP, BOB, bobs.message_id, real)
        assert (await tg.wait_for_callback_answer(query))["text"] == texts.EXPORT_SENT
        original = await tg.wait_for_message(lambda m: m.method == "sendDocument", chat_id=GROUP.id)
        assert original.reply_to_message_id == bobs.message_id


# -- a full disk while saving a result ---------------------------------------------------------------


class FillsTheDisk(FakeEngine):
    """Draws the picture, and the disk is full by the time it is saved."""

    disk_full = False

    async def stylize(self, selfie: bytes, style: Style, *, options: Any = None) -> EngineResult:
        made = await super().stylize(selfie, style, options=options)
        type(self).disk_full = True
        return made


class FullDisk:
    """Image writes fail with ENOSPC while the engine says the disk is full; counts the failed attempts."""

    def __init__(self, run: Running, monkeypatch: pytest.MonkeyPatch) -> None:
        self.failed = 0
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        images = run.studio.images
        write = images._write  # type: ignore[attr-defined]

        def full_write(data: bytes) -> tuple[str, bool]:  # runs in a worker thread
            if FillsTheDisk.disk_full:
                self._loop.call_soon_threadsafe(self._failed_once)
                raise OSError(errno.ENOSPC, "No space left on device")
            result: tuple[str, bool] = write(data)
            return result

        monkeypatch.setattr(images, "_write", full_write)

    def _failed_once(self) -> None:
        self.failed += 1
        self._changed.set()

    async def tried(self, times: int) -> None:
        """Wait until saving has failed `times` times."""
        async with asyncio.timeout(10):
            while self.failed < times:
                self._changed.clear()
                await self._changed.wait()


async def test_a_full_disk_at_the_result_says_so_keeps_the_job_and_delivers_once_when_space_returns(
        tg: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FillsTheDisk.disk_full = False
    engine = FillsTheDisk()
    async with running_bot(tg, tmp_path, engine=engine, full_disk_retry_s=0.2) as run:
        disk = FullDisk(run, monkeypatch)

        photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie_of(256), caption="/zombie")
        told = await run.text_reply(ALICE_CHAT)
        assert told.text == texts.STORAGE_FULL_KEPT and told.reply_to_message_id == photo_id
        await disk.tried(3)  # saving is tried again
        [job] = await run.studio.store.unfinished_jobs()
        assert job.status in UNFINISHED and job.user_id == str(ALICE.id)
        # Told once, not at every try: two more tries, each after the last one's handling, and no word.
        await tg.expect_no_message(chat_id=ALICE.id, after=disk.tried(5))

        FillsTheDisk.disk_full = False
        picture = await run.photo_reply(ALICE_CHAT)
        assert picture.reply_to_message_id == photo_id and picture.caption == "style: zombie"
        await run.settle()
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert len([m for m in tg.bot_messages if is_photo(m)]) == 1, "delivered exactly once"
        assert len(engine.calls) == 1, "the picture was made (and paid for) once"
        delivered = await run.studio.store.get_job(job.id)
        assert delivered is not None and delivered.status == "delivered"


async def test_a_result_waiting_for_space_survives_a_restart(tg: FakeTelegram, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    FillsTheDisk.disk_full = False
    async with running_bot(tg, tmp_path, engine=FillsTheDisk(), full_disk_retry_s=0.2) as run:
        disk = FullDisk(run, monkeypatch)
        photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie_of(256), caption="/zombie")
        assert (await run.text_reply(ALICE_CHAT)).text == texts.STORAGE_FULL_KEPT
        await disk.tried(2)

    FillsTheDisk.disk_full = False  # space came back while the bot was down
    async with running_bot(tg, tmp_path, engine=FakeEngine()) as run:
        picture = await run.photo_reply(ALICE_CHAT)
        assert picture.reply_to_message_id == photo_id
        await run.settle()
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert len([m for m in tg.bot_messages if is_photo(m)]) == 1
        assert await run.studio.store.unfinished_jobs() == []
