"""Telegram's send limits kept by every process together (core/send_slots.py, bots/telegram/limits.py).

A group allows so many messages in any window, the bot so many a second; the stand-in refuses a message over
either with 429, as Telegram does, and counts those refusals. One process on SQLite keeps the limits in memory;
several worker processes on PostgreSQL keep them through the database, so a burst of results into one group
arrives within the group's limit, and nobody meets a 429.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from bots.telegram.limits import SharedRateLimiter
from core.config import TelegramSettings
from core.send_slots import LocalSlots, SendRule
from storage.postgres import PostgresStore
from tests.backends import Backend
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, FloodLimits, User
from tests.test_many_workers import _env, _start, _stop, _until
from tests.test_telegram_harness import is_photo, running_bot, small_selfie

# Three messages in any 6 s: small, so a burst meets it within seconds; long enough that the bot's margin (5 %, and
# 100 ms) covers an upload that, on a loaded machine, reaches the stand-in a few hundred ms after its slot.
GROUP_LIMIT = (3, 6.0)
ONE_PROCESS_LIMIT = (2, 3.0)  # one process, the stand-in in it: two in any 3 s keeps the test short
TEAM = Chat(id=-100555, type="supergroup", title="Team")


def _group_settings(limit: tuple[int, float] = GROUP_LIMIT) -> dict[str, object]:
    return {"group_messages": limit[0], "group_window_s": limit[1]}


async def test_slots_on_postgres_are_shared_by_two_processes_and_a_429_holds_both_back(postgres: Backend) -> None:
    """Two stores with their own connection pools, as two processes have: the fourth message in a window of three
    waits for the window, whichever process asks; a 429's wait pushed by one holds the other back too."""
    first, second = await PostgresStore.open(postgres.url), await PostgresStore.open(postgres.url)
    group = SendRule("chat:-1", 3, 2.0)
    try:
        waits = [await store.reserve_send([group]) for store in (first, second, first)]
        assert max(waits) < 0.5  # three fit in the window at once
        fourth = await second.reserve_send([group])
        assert 2.0 <= fourth <= 2.5  # the window, kept a little wider than Telegram's

        other = SendRule("chat:-2", 3, 2.0)
        assert await first.reserve_send([other]) < 0.5
        await first.push_sends(["chat:-2"], 5.0)
        assert 4.5 <= await second.reserve_send([other]) <= 5.1
    finally:
        await first.close()
        await second.close()


async def test_many_processes_reserving_at_once_in_new_chats_never_deadlock(postgres: Backend) -> None:
    """Four pools, 200 sends at once into 50 chats nobody sent to before (their rows made as they go): every one is
    planned (a deadlock between one making a row and another holding the bot's would fail some)."""
    stores = [await PostgresStore.open(postgres.url) for _ in range(4)]
    try:
        waits = await asyncio.gather(*(
            stores[i % 4].reserve_send([SendRule("bot", 1000, 1.0), SendRule(f"chat:{i % 50}", 1000, 1.0)])
            for i in range(200)))
        assert len(waits) == 200 and max(waits) < 0.5
        assert await stores[0]._pool.fetchval("SELECT count(*) FROM send_slots") == 51
    finally:
        for store in stores:
            await store.close()


async def test_local_slots_keep_a_window_and_a_pushed_wait() -> None:
    now = [100.0]
    slots = LocalSlots(clock=lambda: now[0])
    bot, chat = SendRule("bot", 30, 1.0), SendRule("chat:7", 1, 1.0)
    assert await slots.reserve_send([bot, chat]) == 0
    assert await slots.reserve_send([bot, chat]) == pytest.approx(1.15)  # one a second in a private chat
    assert await slots.reserve_send([bot, SendRule("chat:8", 1, 1.0)]) == 0  # another chat is not held back
    await slots.push_sends(["bot"], 3.0)
    assert await slots.reserve_send([bot]) == pytest.approx(3.0)


async def test_one_process_sends_a_burst_into_a_group_within_its_limit(tmp_path: Path) -> None:
    """Four people ask for a picture in one group at once: four results, at most two in any 3 s, no 429."""
    people = [User(2000 + i, f"P{i}") for i in range(4)]
    async with FakeTelegram(limits=FloodLimits(group=ONE_PROCESS_LIMIT)) as tg:
        tg.add_chat(TEAM)
        for person in people:
            tg.set_member_status(TEAM, person, "member")
        async with running_bot(tg, tmp_path, concurrency=4, telegram=_group_settings(ONE_PROCESS_LIMIT)) as running:
            selfie = small_selfie()
            for person in people:
                tg.send_photo(TEAM, person, selfie, caption="/zombie")
            results = await tg.wait_for_messages(len(people), is_photo, chat_id=TEAM.id, timeout=60)
            await running.finished(60)
    assert sorted(m.reply_to_message_id for m in results) == sorted(set(m.reply_to_message_id for m in results))
    assert tg.flood_refusals == []
    assert tg.most_in_window(TEAM.id, ONE_PROCESS_LIMIT[1]) <= ONE_PROCESS_LIMIT[0]


@pytest.mark.slow
async def test_worker_processes_send_a_burst_into_one_group_within_its_limit(
        postgres: Backend, tmp_path: Path, face_image: Image.Image) -> None:
    """A gateway and three worker processes: six people in one group ask at once; the three workers finish
    together but send within the group's limit together, through the database, and nobody meets a 429 (each alone
    keeping the limit would send three times as fast)."""
    people = [User(3000 + i, f"Q{i}") for i in range(6)]
    names = ("gateway", "w1", "w2", "w3")
    logs = {name: tmp_path / f"{name}.log" for name in names}
    async with FakeTelegram(limits=FloodLimits(group=GROUP_LIMIT)) as tg, FakeGemini() as gem:
        tg.add_chat(TEAM)
        for person in people:
            tg.set_member_status(TEAM, person, "member")
        env = _env(tg, gem, tmp_path / "data", postgres.url)
        env.update({"PIXME_TELEGRAM__GROUP_MESSAGES": str(GROUP_LIMIT[0]),
                    "PIXME_TELEGRAM__GROUP_WINDOW_S": str(GROUP_LIMIT[1]), "PIXME_LIKENESS__SHOW": "false"})
        procs: dict[str, asyncio.subprocess.Process] = {}
        try:
            for name in names:
                procs[name] = await _start("gateway" if name == "gateway" else "worker", env, tmp_path, logs[name])
            await _until(lambda: tg.calls_of("getUpdates"), 60)
            for name in names[1:]:
                await _until(lambda name=name: "sending as @" in logs[name].read_text(), 60)
            out = io.BytesIO()
            face_image.resize((320, 320)).save(out, "JPEG", quality=88)
            asked = {tg.send_photo(TEAM, person, out.getvalue(), caption="/zombie") for person in people}
            results = await tg.wait_for_messages(len(people), is_photo, chat_id=TEAM.id, timeout=90)
        finally:
            codes = {name: await _stop(proc) for name, proc in procs.items()}
    assert {m.reply_to_message_id for m in results} == asked  # every request answered once
    assert tg.flood_refusals == [], tg.flood_refusals
    assert tg.most_in_window(TEAM.id, GROUP_LIMIT[1]) <= GROUP_LIMIT[0]
    assert set(codes.values()) == {0}, [logs[n].read_text()[-2000:] for n, c in codes.items() if c]
    waited = {name: logs[name].read_text().count("telegram: 429 on") for name in names}
    assert sum(waited.values()) == 0, waited


async def test_messages_still_go_out_while_the_database_is_away(postgres: Backend,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The send slots cannot be reached: the process keeps the limits on its own and sends, saying so once a call."""
    store = await PostgresStore.open(postgres.url)
    limiter = SharedRateLimiter(TelegramSettings(), store)
    sent: list[str] = []

    async def send_message(text: str) -> bool:
        sent.append(text)
        return True

    try:
        store._pool.terminate()  # every connection gone, as when the server restarts
        assert await limiter.process_request(send_message, ("hello",), {}, "sendMessage", {"chat_id": -5}, None)
    finally:
        await store.close()
    assert sent == ["hello"]
    assert "send slots unavailable" in caplog.text
