"""Interaction follow-ups from any process: the interaction token of a slash command is kept in the database
until it expires, so a job accepted by one bot and delivered by another (a worker, or the same bot after a
restart) still answers as the command's follow-up, and after expiry replies in the channel instead."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from bots.discord import DiscordBot
from core.config import DiscordSettings, LimitsSettings
from core.engines.base import EngineResult
from core.studio import Studio
from tests.backends import open_stores, sql
from tests.fakes import FakeEngine
from tests.standins.discord_api import FakeDiscord, Interaction, Payload, user

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite, and on PostgreSQL as workers would run

ALICE = user(5001, "alice")


@dataclass
class StuckEngine(FakeEngine):
    """Starts a picture and never finishes it: the process is stopped with the job still running."""

    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def _answer(self, kind: str, image: bytes, what: str, identity: bytes | None = None) -> EngineResult:
        self.calls.append((kind, image, what, identity))
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def bot_on(fake: FakeDiscord, data_dir: Path, engine: FakeEngine, **options: Any) -> AsyncIterator[Studio]:
    """One `pixme run` on the database in `data_dir`; stopped as SIGTERM stops it (running jobs handed back)."""
    store, images = await open_stores(data_dir / "pixme.sqlite3")
    studio = Studio(store=store, images=images, engine=engine,
                    limits=LimitsSettings(concurrency=2, queue_per_user=5), delivery_retry_delays=(0.05,))
    settings = DiscordSettings(token=SecretStr(fake.token), api_url=fake.api_url, cdn_url=fake.cdn_url)
    bot = DiscordBot(settings, studio, engine_name=engine.name, guild_ready_timeout=0.05, **options)
    try:
        await bot.start()
        await bot.wait_ready(10)
        await studio.resume()
        yield studio
    finally:
        await studio.aclose(grace_s=0)
        await bot.stop()
        await store.close()


@pytest.fixture
def selfie_jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(Path(__file__).parent / "fixtures" / "astronaut.png").convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


async def _accept_then_stop(fake: FakeDiscord, data_dir: Path, photo: bytes, **options: Any) -> Interaction:
    """/avatar taken by a bot that stops while the picture is being made."""
    stuck = StuckEngine()
    async with bot_on(fake, data_dir, stuck, **options):
        interaction = await fake.slash(ALICE, "avatar", {"style": "zombie"}, attachments={"photo": fake.upload(photo)})
        await asyncio.wait_for(stuck.started.wait(), 10)
    assert interaction.responses == [5] and not fake.answers(interaction)  # "thinking…", nothing else yet
    return interaction


async def _kept_tokens(data_dir: Path) -> list[tuple[Any, ...]]:
    store, _ = await open_stores(data_dir / "pixme.sqlite3")
    try:
        return await sql(store, "SELECT platform, request_id FROM reply_tokens")
    finally:
        await store.close()


async def test_a_job_delivered_after_a_restart_answers_as_the_commands_follow_up(
        tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with FakeDiscord() as fake:
        interaction = await _accept_then_stop(fake, tmp_path, selfie_jpeg)
        assert interaction.original_id is not None
        assert await _kept_tokens(tmp_path) == [("discord", str(interaction.original_id))]

        # A new process on the same database: it never saw the interaction, yet follows up on it.
        async with bot_on(fake, tmp_path, FakeEngine()) as studio:
            result: Payload = await fake.wait_for_bot_message(lambda m: m["attachments"])
            await studio.jobs.wait_idle(10)
        assert int(result["id"]) == interaction.original_id  # the follow-up replaced the "thinking…" message
        assert result["interaction_metadata"]["id"] == str(interaction.id)
        assert result["content"] == "style: zombie"
        assert fake.answers(interaction) == [result]


async def test_an_expired_kept_token_is_deleted_and_the_answer_replies_in_the_channel(
        tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with FakeDiscord() as fake:
        # The bot counts the token as dead at once (Discord would still take it: only our expiry is tested).
        interaction = await _accept_then_stop(fake, tmp_path, selfie_jpeg, token_lifetime_s=0.0)
        async with bot_on(fake, tmp_path, FakeEngine()) as studio:
            result: Payload = await fake.wait_for_bot_message(lambda m: m["attachments"])
            await studio.jobs.wait_idle(10)
        assert result.get("interaction_metadata") is None  # a channel message…
        assert fake.reply_to(result) == interaction.original_id  # …replying to the request
        assert await _kept_tokens(tmp_path) == []
