"""Telegram under load, across restarts and through Bot API faults: real PTB, real SQLite, loopback API."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import texts
from core.engines.base import EngineResult
from core.logsafe import RedactingFilter, configure_logging
from tests.backends import Backend
from tests.fakes import FakeEngine
from tests.standins.telegram_api import FakeTelegram, SentMessage, User
from tests.test_telegram_harness import (
    ALICE,
    BOB,
    CAROL,
    Running,
    is_photo,
    is_text,
    make_settings,
    private,
    running_bot,
    small_selfie,
)

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

ALICE_CHAT, BOB_CHAT, CAROL_CHAT = private(ALICE), private(BOB), private(CAROL)


@pytest.fixture(scope="module")
def selfie() -> bytes:
    return small_selfie(256)


def photos_to(tg: FakeTelegram, chat_id: int) -> list[int]:
    return [m.message_id for m in tg.bot_messages if is_photo(m) and m.chat_id == chat_id]


# -- load --------------------------------------------------------------------------------------------


async def test_twenty_people_at_once_are_each_answered_exactly_once(tg: FakeTelegram, tmp_path: Path,
                                                                    selfie: bytes) -> None:
    engine = FakeEngine(delay=0.05)
    people = [User(id=5000 + i, first_name=f"Guest {i}") for i in range(20)]
    async with running_bot(tg, tmp_path, engine=engine) as run:
        sent = {person.id: tg.send_photo(private(person), person, selfie, caption="/zombie") for person in people}
        results = await tg.wait_for_messages(20, is_photo, timeout=30)
        await run.finished()
    assert sorted(m.chat_id for m in results) == sorted(sent)
    for person in people:
        [photo] = [m for m in tg.bot_messages if is_photo(m) and m.chat_id == person.id]
        assert photo.reply_to_message_id == sent[person.id]
    assert len(engine.calls) == 20
    # Whoever had to wait saw their place in line, and that note is gone once the picture came.
    waiting = [m for m in tg.bot_messages if is_text(m) and m.text and "in line" in m.text]
    assert all(m.deleted for m in waiting)


# -- restarts ----------------------------------------------------------------------------------------


async def test_a_result_from_before_a_restart_can_still_be_edited(tg: FakeTelegram, tmp_path: Path,
                                                                  selfie: bytes) -> None:
    async with running_bot(tg, tmp_path) as run:
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/anime")
        before = await run.photo_reply(ALICE_CHAT)
        await run.settle()
    async with running_bot(tg, tmp_path) as run:
        ask = tg.send_text(ALICE_CHAT, ALICE, "add a halo", reply_to=before.message_id)
        after = await run.photo_reply(ALICE_CHAT)
        assert after.reply_to_message_id == ask
        assert after.caption is not None and "halo" in after.caption.lower()


async def test_a_job_accepted_before_a_stop_is_delivered_once_after_restart(tg: FakeTelegram, tmp_path: Path,
                                                                           selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine(delay=30)):
        photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
        await tg.wait_until(lambda: (ALICE.id, "upload_photo") in tg.chat_actions, 10, "the job to start")
    assert photos_to(tg, ALICE.id) == []
    engine = FakeEngine()
    async with running_bot(tg, tmp_path, engine=engine) as run:
        result = await run.photo_reply(ALICE_CHAT)
        assert result.reply_to_message_id == photo_id
        assert result.caption == "style: comic"
        await run.finished()
    async with running_bot(tg, tmp_path, engine=engine) as run:  # and a third start sends nothing more
        await run.finished()  # whatever it resumed is done
    assert len(photos_to(tg, ALICE.id)) == 1
    assert len(engine.calls) == 1


# -- Bot API faults ------------------------------------------------------------------------------------


async def test_flood_limit_on_send_photo_is_waited_out_and_delivered_once(tg: FakeTelegram, tmp_path: Path,
                                                                          selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine()) as run:
        tg.fail_next("sendPhoto", 429, retry_after=1)
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/pixel")
        result = await run.photo_reply(ALICE_CHAT, timeout=15)
        await run.settle()
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
    assert ("sendPhoto", 429) in [(m, s) for m, s, _ in tg.errors]
    assert len(tg.calls_of("sendPhoto")) == 2
    assert photos_to(tg, ALICE.id) == [result.message_id]


async def test_server_error_on_send_photo_is_retried_and_delivered_once(tg: FakeTelegram, tmp_path: Path,
                                                                        selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine()) as run:
        tg.fail_next("sendPhoto", 502)
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/pixel")
        result = await run.photo_reply(ALICE_CHAT, timeout=15)
        await run.settle()
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
    assert len(tg.calls_of("sendPhoto")) == 2
    assert photos_to(tg, ALICE.id) == [result.message_id]


async def test_blocked_bot_marks_the_chat_and_does_not_retry(tg: FakeTelegram, tmp_path: Path,
                                                             selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine()) as run:
        tg.fail_next("sendPhoto", 403, description="Forbidden: bot was blocked by the user")
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/pixel")
        await tg.wait_until(lambda: tg.calls_of("sendPhoto"), 10, "the delivery attempt")
        await run.finished()  # the job is over: a retry would have been made within it
        assert len(tg.calls_of("sendPhoto")) == 1
        assert photos_to(tg, ALICE.id) == []
        assert await run.studio.store.is_chat_blocked("telegram", str(ALICE.id))


# -- the queue ---------------------------------------------------------------------------------------


async def three_in_line(tg: FakeTelegram, run: Running, selfie: bytes) -> tuple[SentMessage, SentMessage]:
    """Alice's picture under way, then Bob and Carol asking: their notes say #1 and #2."""
    tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
    await tg.wait_until(lambda: (ALICE.id, "upload_photo") in tg.chat_actions, 10, "Alice's job")
    tg.send_photo(BOB_CHAT, BOB, selfie, caption="/zombie")
    bob_line = await run.text_reply(BOB_CHAT)
    assert bob_line.text == texts.in_line(1)
    tg.send_photo(CAROL_CHAT, CAROL, selfie, caption="/zombie")
    carol_line = await run.text_reply(CAROL_CHAT)
    assert carol_line.text == texts.in_line(2)
    return bob_line, carol_line


async def test_place_in_line_is_shown_and_updated_as_the_queue_moves(tg: FakeTelegram, tmp_path: Path,
                                                                     selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine(delay=0.6), concurrency=1, queue_note_after_s=0) as run:
        bob_line, carol_line = await three_in_line(tg, run, selfie)

        await run.photo_reply(ALICE_CHAT)
        moved = await tg.wait_for_edit(carol_line.message_id, chat_id=CAROL.id)
        assert moved["text"] == texts.in_line(1)
        working = await tg.wait_for_edit(bob_line.message_id, chat_id=BOB.id)
        assert working["text"] == texts.WORKING
        await run.photo_reply(BOB_CHAT)
        await run.photo_reply(CAROL_CHAT)
        await run.finished()
        assert bob_line.deleted and carol_line.deleted, "the place-in-line notes go once the pictures arrive"


@dataclasses.dataclass
class OneAtATime(FakeEngine):
    """Draws one picture per `turns.release()`: the test, not the machine's speed, decides when the line moves."""

    turns: asyncio.Semaphore = dataclasses.field(default_factory=lambda: asyncio.Semaphore(0))

    async def _answer(self, kind: str, image: bytes, what: str, identity: bytes | None = None) -> EngineResult:
        await self.turns.acquire()
        return await super()._answer(kind, image, what, identity)


async def test_place_in_line_is_a_real_place_on_both_databases(backend: Backend, tg: FakeTelegram, tmp_path: Path,
                                                                selfie: bytes) -> None:
    """On PostgreSQL the place is read from the jobs table, in the order claims take them, so any process can say
    it: the notes say #1 and #2, move when the line does, and are gone once the pictures arrive."""
    engine = OneAtATime()
    settings = make_settings(tg, tmp_path, concurrency=1, queue_note_after_s=0)
    settings = settings.model_copy(update={"storage": settings.storage.model_copy(
        update={"poll_s": 0.2, "heartbeat_s": 0.5})})
    async with running_bot(tg, tmp_path, engine=engine, settings=settings, shared_jobs=True) as run:
        bob_line, carol_line = await three_in_line(tg, run, selfie)

        engine.turns.release()  # Alice's picture; Bob's turn
        await run.photo_reply(ALICE_CHAT)
        moved = await tg.wait_for_edit(carol_line.message_id, chat_id=CAROL.id)
        assert moved["text"] == texts.in_line(1)
        working = await tg.wait_for_edit(bob_line.message_id, chat_id=BOB.id)
        assert working["text"] == texts.WORKING
        engine.turns.release()
        await run.photo_reply(BOB_CHAT)
        engine.turns.release()
        await run.photo_reply(CAROL_CHAT)
        await run.finished()
        assert bob_line.deleted and carol_line.deleted, "the place-in-line notes go once the pictures arrive"


async def test_cancel_a_queued_request(tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    engine = FakeEngine(delay=0.8)
    async with running_bot(tg, tmp_path, engine=engine, concurrency=1, queue_note_after_s=0) as run:
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
        await tg.wait_until(lambda: (ALICE.id, "upload_photo") in tg.chat_actions, 10, "Alice's job")
        tg.send_photo(BOB_CHAT, BOB, selfie, caption="/noir")
        line = await run.text_reply(BOB_CHAT)
        assert line.text == texts.in_line(1)
        tg.send_text(BOB_CHAT, BOB, "/cancel")
        answer = await run.text_reply(BOB_CHAT)
        assert answer.text == texts.cancelled(1)
        await run.photo_reply(ALICE_CHAT)
        await run.finished()
        assert line.deleted
        assert photos_to(tg, BOB.id) == []
        assert [call[2] for call in engine.calls] == ["zombie"]
        tg.send_text(BOB_CHAT, BOB, "/cancel")
        assert (await run.text_reply(BOB_CHAT)).text == texts.cancelled(0)


# -- secrets -----------------------------------------------------------------------------------------


@pytest.fixture
def production_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """`pixme run`'s logging set-up, writing into capsys; undone before capsys closes its stream."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "telegram.ext.Updater")}
    yield capsys
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


async def test_the_token_never_reaches_the_logs(tmp_path: Path, selfie: bytes,
                                                production_logging: pytest.CaptureFixture[str]) -> None:
    token = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    async with FakeTelegram(token=token) as tg:
        redactor = configure_logging([token], level=logging.DEBUG)
        assert isinstance(redactor, RedactingFilter)
        # Make the HTTP client log every URL it calls (file URLs carry the token) to prove they are masked.
        logging.getLogger("bots.telegram.http").setLevel(logging.DEBUG)
        async with running_bot(tg, tmp_path, engine=FakeEngine()) as run:
            tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
            await run.photo_reply(ALICE_CHAT)
            tg.fail_next("sendMessage", 500)
            tg.send_text(ALICE_CHAT, ALICE, "/help")
            tg.send_document(ALICE_CHAT, ALICE, b"not an image", "x.jpg", "image/jpeg", caption="/zombie")
            await run.text_reply(ALICE_CHAT)
            await run.settle()
    logged = production_logging.readouterr().err
    assert "HTTP Request" in logged and "[redacted]" in logged, "the URLs were logged, masked"
    assert "/file/bot[redacted]/" in logged, "the photo download was logged, masked"
    assert token not in logged
    assert token.split(":")[1] not in logged
