"""A delivery cut off between the platform taking the picture and the bot's record of it (core/worker.py).

The worker records its intent before it sends and the delivery with the job's end, in one transaction; a job
resumed with the intent but no delivery is in doubt. The process is killed with -9 at exactly that point: the
stand-in stores the message, then, before it answers, the test kills whoever sent it. Discord is asked with the
same nonce again and answers with the message it made the first time, so the person sees the picture once, and a
reply to it works. Telegram has no such key and no way to ask what was sent: the picture comes again, and its
caption says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from PIL import Image

from core import texts
from storage.postgres import PostgresStore
from tests.backends import Backend
from tests.standins.discord_api import FakeDiscord, Payload, user
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, SentMessage, User
from tests.test_many_workers import _env, _jobs_over, _start, _stop, _until, _until_async

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]


def _jpeg(face_image: Image.Image) -> bytes:
    out = io.BytesIO()
    face_image.resize((320, 320)).save(out, "JPEG", quality=88)
    return out.getvalue()


async def test_telegram_a_worker_killed_between_the_send_and_its_record_sends_again_and_says_so(
        postgres: Backend, tmp_path: Path, face_image: Image.Image) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "first", "second")}
    store = await PostgresStore.open(postgres.url)
    async with FakeTelegram() as tg, FakeGemini() as gem:
        ada, chat = User(801, "Ada"), Chat(801)
        tg.add_chat(chat, ada)
        env = _env(tg, gem, tmp_path / "data", postgres.url)
        env["PIXME_LIKENESS__SHOW"] = "false"
        procs: dict[str, asyncio.subprocess.Process] = {}
        killed = asyncio.Event()
        try:
            procs["gateway"] = await _start("gateway", env, tmp_path, logs["gateway"])
            procs["first"] = await _start("worker", env, tmp_path, logs["first"])
            await _until(lambda: tg.calls_of("getUpdates"), 60)
            await _until(lambda: "sending as @" in logs["first"].read_text(), 60)

            def first_photo_kills_its_sender(message: SentMessage) -> None:
                if message.photo is not None and not killed.is_set():
                    procs["first"].kill()  # Telegram has the picture; the worker never hears back
                    killed.set()

            tg.on_sent = first_photo_kills_its_sender
            asked = tg.send_photo(chat, ada, _jpeg(face_image), caption="/zombie")
            await asyncio.wait_for(killed.wait(), 60)
            await procs["first"].wait()
            tg.on_sent = None
            first = await tg.wait_for_message(lambda m: m.photo is not None, chat_id=chat.id)
            assert texts.SENT_AGAIN not in (first.caption or "")

            procs["second"] = await _start("worker", env, tmp_path, logs["second"])  # resumes it when the lease ends
            again = await tg.wait_for_message(lambda m: m.photo is not None, chat_id=chat.id, timeout=60)
            assert again.reply_to_message_id == first.reply_to_message_id == asked
            assert (again.caption or "").endswith(texts.SENT_AGAIN)
            jobs_over = asyncio.ensure_future(_until_async(lambda: _jobs_over(store), 30))
            await tg.expect_no_message(chat_id=chat.id, after=jobs_over)  # twice, never three times
            row = await store._pool.fetchrow("SELECT status, delivered_message, delivering_at FROM jobs")
            assert row["status"] == "delivered" and row["delivered_message"] == str(again.message_id)

            # The picture sent again is the one the bot knows: a reply to it is an edit of that picture.
            tg.send_text(chat, ada, "add a crown", reply_to=again.message_id)
            edited = await tg.wait_for_message(lambda m: m.photo is not None, chat_id=chat.id, timeout=60)
            assert texts.SENT_AGAIN not in (edited.caption or "")
        finally:
            codes = {name: await _stop(proc) for name, proc in procs.items() if name != "first"}
            await store.close()
    assert codes == {"gateway": 0, "second": 0}, logs["second"].read_text()[-3000:]
    for log in logs.values():
        assert tg.token not in log.read_text()


def _discord_env(dc: FakeDiscord, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXME_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
                                                       "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update({"PIXME_DISCORD__TOKEN": dc.token, "PIXME_DISCORD__API_URL": dc.api_url,
                "PIXME_ENGINE__DEFAULT": "offline", "PIXME_STORAGE__DIR": str(data_dir), "PIXME_OPS__PORT": "0",
                "PIXME_LIKENESS__SHOW": "false"})
    return env


def _sqlite_jobs_over(data_dir: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'pixme.sqlite3'}?mode=ro", uri=True)) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM jobs")]
    return bool(statuses) and all(status in ("delivered", "failed", "cancelled") for status in statuses)


async def _run_pixme(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT)


async def test_discord_a_bot_killed_between_the_send_and_its_record_is_answered_with_the_first_message(
        tmp_path: Path, face_image: Image.Image) -> None:
    log, data = tmp_path / "bot.log", tmp_path / "data"
    alice = user(9001, "alice")
    async with FakeDiscord() as dc:
        env = _discord_env(dc, data)
        bot = await _run_pixme(env, tmp_path, log)
        restarted: asyncio.subprocess.Process | None = None
        try:
            await _until(lambda: dc.identified and dc.commands, 60)
            await dc.slash(alice, "avatar", {"style": "zombie"}, attachments={"photo": dc.upload(_jpeg(face_image))})
            result = await dc.wait_for_bot_message(lambda m: m["attachments"], timeout=60)

            killed = asyncio.Event()

            def picture_kills_its_sender(message: Payload) -> None:
                if message["attachments"] and not killed.is_set():
                    bot.kill()  # Discord has the picture; the bot never hears back
                    killed.set()

            dc.on_create = picture_kills_its_sender
            asked = await dc.post(alice, "add a crown", reply_to=int(result["id"]))
            await asyncio.wait_for(killed.wait(), 60)
            await bot.wait()
            dc.on_create = None

            restarted = await _run_pixme(env, tmp_path, log)  # resumes the job, in doubt
            await _until(lambda: dc.nonce_repeats == 1, 60)
            await _until(lambda: _sqlite_jobs_over(data), 30)
            answers = [m for m in dc.bot_messages() if m["attachments"] and dc.reply_to(m) == int(asked["id"])]
            assert len(answers) == 1, answers  # Discord gave back the first message instead of a second
            assert texts.SENT_AGAIN not in answers[0]["content"]

            # The bot recorded the message Discord gave back: a reply to it is an edit of that picture.
            warmer = await dc.post(alice, "make it warmer", reply_to=int(answers[0]["id"]))
            await dc.wait_for_bot_message(lambda m: m["attachments"] and dc.reply_to(m) == int(warmer["id"]),
                                          timeout=60)
        finally:
            for proc in (bot, restarted):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(restarted.wait(), 30) if restarted is not None else None
            if bot.returncode is None:
                await asyncio.wait_for(bot.wait(), 30)
    assert code == 0, log.read_text()[-3000:]
    assert dc.token not in log.read_text()
