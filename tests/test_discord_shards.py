"""Discord gateway shards: `[discord] shard_count` and `shard_ids`, against the stand-in, which routes each
guild's events only to the shard owning it (`(guild_id >> 22) % shard_count`) and DMs to shard 0, as Discord
does. Two bots in one test play two processes, each running one of two shards."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr, ValidationError

from bots.cli import main
from bots.discord import DiscordBot
from core.config import DiscordSettings, LimitsSettings
from core.studio import Studio
from storage.images import FileImageStore
from storage.sqlite import SqliteStore
from tests.fakes import FakeEngine
from tests.standins.discord_api import FakeDiscord, Payload, user

ALICE = user(5001, "alice")


@dataclass
class Process:
    """One `pixme run` as far as Discord is concerned: a bot, its studio and its engine."""

    bot: DiscordBot
    studio: Studio
    engine: FakeEngine


@contextlib.asynccontextmanager
async def process(fake: FakeDiscord, data_dir: Path, *, shard_count: int = 0,
                  shard_ids: list[int] | None = None) -> AsyncIterator[Process]:
    store = await SqliteStore.open(data_dir / "pixme.sqlite3")
    engine = FakeEngine()
    studio = Studio(store=store, images=FileImageStore(data_dir, store), engine=engine,
                    limits=LimitsSettings(concurrency=2, queue_per_user=5), delivery_retry_delays=(0.05,))
    settings = DiscordSettings(token=SecretStr(fake.token), api_url=fake.api_url, cdn_url=fake.cdn_url,
                               shard_count=shard_count, shard_ids=shard_ids or [])
    bot = DiscordBot(settings, studio, engine_name=engine.name, guild_ready_timeout=0.05)
    try:
        await bot.start()
        await bot.wait_ready(10)
        await studio.resume()
        yield Process(bot, studio, engine)
    finally:
        await bot.stop()
        await studio.aclose()
        await store.close()


@pytest.fixture
def selfie_jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(Path(__file__).parent / "fixtures" / "astronaut.png").convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


async def _avatar_in(fake: FakeDiscord, channel: int, style: str, photo: bytes) -> Payload:
    """/avatar in `channel`, and the picture that answers it."""
    before = fake.last_id()
    await fake.slash(ALICE, "avatar", {"style": style},
                     attachments={"photo": fake.upload(photo, channel_id=channel)}, channel_id=channel)
    result: Payload = await fake.wait_for_bot_message(lambda m: m["attachments"] and int(m["channel_id"]) == channel,
                                                      after=before)
    return result


async def test_two_processes_each_run_one_shard_and_answer_only_their_guilds(
        tmp_path: Path, selfie_jpeg: bytes) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with FakeDiscord(shards=1) as fake:  # the recommendation is ignored: shard_count says 2
        _, channel_0 = fake.add_guild(shard=0, shard_count=2)
        guild_1, channel_1 = fake.add_guild(shard=1, shard_count=2)
        async with process(fake, tmp_path / "a", shard_count=2, shard_ids=[0]) as a, \
                process(fake, tmp_path / "b", shard_count=2, shard_ids=[1]) as b:
            assert a.bot.shards == ([0], 2) and b.bot.shards == ([1], 2)
            assert fake.connected_shards() == [(0, 2), (1, 2)]
            assert a.bot.connected and b.bot.connected
            assert a.bot.client.get_guild(guild_1) is None and b.bot.client.get_guild(guild_1) is not None

            result = await _avatar_in(fake, channel_1, "zombie", selfie_jpeg)
            assert result["content"] == "style: zombie"
            await a.studio.jobs.wait_idle(5)
            await b.studio.jobs.wait_idle(5)
            assert [c[2] for c in b.engine.calls] == ["zombie"]
            assert a.engine.calls == []  # shard 0's process never saw the command

            result = await _avatar_in(fake, channel_0, "comic", selfie_jpeg)
            assert result["content"] == "style: comic"
            await a.studio.jobs.wait_idle(5)
            assert [c[2] for c in a.engine.calls] == ["comic"]
            assert len(b.engine.calls) == 1

            # A DM belongs to shard 0: the photo's style menu, and the pick, are process a's.
            dm = fake.dm_channel(ALICE)
            await fake.post(ALICE, "", files=[fake.upload(selfie_jpeg, channel_id=dm)], channel_id=dm)
            menu = await fake.wait_for_bot_message(lambda m: m["components"] and int(m["channel_id"]) == dm)
            pick = menu["components"][0]["components"][0]["custom_id"]
            await fake.choose(ALICE, menu, pick, ["anime"])
            await fake.wait_for_bot_message(lambda m: m["attachments"] and int(m["channel_id"]) == dm)
            await a.studio.jobs.wait_idle(5)
            assert [c[2] for c in a.engine.calls] == ["comic", "anime"]
            assert len(b.engine.calls) == 1


async def test_shard_count_zero_runs_every_shard_discord_recommends(tmp_path: Path, selfie_jpeg: bytes) -> None:
    # Discord lets a bot this size start max_concurrency sessions per 5 s; the shards connect at once.
    async with FakeDiscord(shards=3, max_concurrency=4) as fake:
        _, channel_2 = fake.add_guild(shard=2, shard_count=3)
        async with process(fake, tmp_path) as one:
            assert one.bot.shards == ([0, 1, 2], 3)
            assert fake.connected_shards() == [(0, 3), (1, 3), (2, 3)]
            result = await _avatar_in(fake, channel_2, "sketch", selfie_jpeg)
            assert result["content"] == "style: sketch"


def test_shard_ids_outside_shard_count_are_refused_in_one_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError, match="not below shard_count"):
        DiscordSettings(shard_count=2, shard_ids=[0, 2])
    with pytest.raises(ValidationError, match="needs shard_count"):
        DiscordSettings(shard_ids=[1])
    config = tmp_path / "config.toml"
    config.write_text('[discord]\ntoken = "x"\nshard_count = 2\nshard_ids = [2]\n')
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "discord" in err and "shard_ids [2] are not below shard_count = 2" in err
