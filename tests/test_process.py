"""`pixme run` as a real process against the loopback Telegram and Gemini stand-ins.

These prove what an operator relies on: a `kill -9` in the middle of a model call loses nothing
(the person still gets their picture after the restart, exactly once), SIGTERM stops the bot
cleanly with exit 0, and the logs never contain the bot token or the API key.
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

from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, User

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]


def _env(tg: FakeTelegram, gem: FakeGemini, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXME_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
                                                       "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update({
        "PIXME_TELEGRAM__TOKEN": tg.token, "PIXME_TELEGRAM__API_URL": tg.api_url,
        "PIXME_TELEGRAM__FILE_URL": tg.file_url, "PIXME_GEMINI__API_KEY": gem.api_key,
        "PIXME_GEMINI__BASE_URL": gem.base_url, "PIXME_STORAGE__DIR": str(data_dir),
        "PIXME_GEMINI__RETRY_BUDGET_S": "5", "PIXME_OPS__PORT": "0",
    })
    return env


async def _start(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT)


async def _until(condition: object, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.05)


def _jobs_over(data_dir: Path) -> bool:
    """Every job in the bot's table has reached a final state (read beside the running bot; WAL allows it)."""
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'pixme.sqlite3'}?mode=ro", uri=True)) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM jobs")]
    return bool(statuses) and all(status in ("delivered", "failed", "cancelled") for status in statuses)


def _jpeg(face_image: Image.Image) -> bytes:
    out = io.BytesIO()
    face_image.resize((320, 320)).save(out, "JPEG", quality=88)
    return out.getvalue()


async def test_kill_9_mid_model_call_then_restart_delivers_exactly_once(
        tmp_path: Path, face_image: Image.Image) -> None:
    log = tmp_path / "bot.log"
    async with FakeTelegram() as tg, FakeGemini() as gem:
        ada = User(501, "Ada")
        chat = Chat(501)
        tg.add_chat(chat, ada)
        gem.script(gem.hang(120))  # the first model call never answers: the bot dies during it
        env = _env(tg, gem, tmp_path / "data")
        first = await _start(env, tmp_path, log)
        try:
            await _until(lambda: tg.calls_of("getUpdates"), 60)
            asked = tg.send_photo(chat, ada, _jpeg(face_image), caption="/zombie")
            await _until(lambda: len(gem.generate_requests) >= 1, 30)
        finally:
            first.kill()  # SIGKILL: no clean-up of any kind
            await first.wait()
        assert not any(m.photo for m in tg.bot_messages), "nothing was finished before the kill"

        second = await _start(env, tmp_path, log)
        try:
            result = await tg.wait_for_message(lambda m: m.photo is not None, chat_id=chat.id, timeout=60)
            assert result.reply_to_message_id == asked
            assert Image.open(io.BytesIO(result.photo or b"")).size[0] > 0
            # Never sent twice: once the job table says every job is over, nothing is left that could send.
            await tg.expect_no_message(chat_id=chat.id, after=_until(lambda: _jobs_over(tmp_path / "data"), 30))
            photos = [m for m in tg.bot_messages if m.chat_id == chat.id and m.photo is not None]
            assert len(photos) == 1

            # A second bot on the same data would resume the same jobs: it is refused, in one line.
            third = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bots.cli", "run", env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(third.communicate(), 60)
            assert third.returncode == 1
            assert f"already in use by another pixme (process {second.pid})" in err.decode(), err.decode()
            assert second.returncode is None, "the running bot carries on"
        finally:
            second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), 30)
        assert code == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert tg.token not in text and tg.token.split(":")[1] not in text
    assert gem.api_key not in text


async def test_verbose_logs_hold_no_sql_parameters_and_no_raw_updates(tmp_path: Path) -> None:
    """`-v` is for finding out what the bot did; what people wrote (a persona, a party's theme) stays out,
    though the database driver and the Telegram library log exactly that at DEBUG."""
    log = tmp_path / "bot.log"
    persona, theme = "a zanzibar quokka whisperer", "Quokkas on Zanzibar"
    async with FakeTelegram() as tg, FakeGemini() as gem:
        ada = User(601, "Ada")
        chat, group = Chat(601), Chat(-100601, type="supergroup", title="Friends")
        tg.add_chat(chat, ada)
        tg.add_chat(group, ada)
        env = _env(tg, gem, tmp_path / "data")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.cli", "-v", "run", env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT)
        try:
            await _until(lambda: tg.calls_of("getUpdates"), 60)
            tg.send_text(chat, ada, f"/persona {persona}")
            await tg.wait_for_message(lambda m: persona in (m.text or ""), chat_id=chat.id, timeout=30)
            tg.send_text(group, ada, f"/party comic {theme}")
            await tg.wait_for_message(lambda m: theme in (m.text or ""), chat_id=group.id, timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert " DEBUG " in text  # -v really was on
    assert "quokka" not in text.lower() and "zanzibar" not in text.lower(), text[-3000:]
    assert "update_id" not in text and "INSERT INTO" not in text
