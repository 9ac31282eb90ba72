"""The Discord bot end to end: the real discord.py client against the loopback Discord stand-in.

Each test acts as people in a server (slash commands, message menus, buttons, modals, replies) and
asserts what they would see in the channel, plus what ends up in the shared SQLite history.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord
import pytest
from PIL import Image
from pydantic import SecretStr

from bots.cli import run_bots
from bots.discord import DiscordBot
from bots.discord.components import PickStyle
from core import texts
from core.config import (
    AccessSettings,
    CreditsSettings,
    DiscordSettings,
    LimitsSettings,
    OpsSettings,
    Settings,
    StorageSettings,
)
from core.engines.base import ImageEngine
from core.ports import Node, Store
from core.studio import Studio
from tests.backends import open_stores, storage_settings
from tests.fakes import FakeEngine
from tests.standins.discord_api import EPHEMERAL, MESSAGE_CONTENT_INTENT, FakeDiscord, Interaction, Payload, user

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

ALICE = user(5001, "alice")
BOB = user(5002, "bob")


@dataclass
class Running:
    bot: DiscordBot
    studio: Studio
    store: Store
    handled: set[int] = field(default_factory=set)  # ids of messages the bot's on_message has finished with
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def watch_messages(self) -> None:
        """Record each message once the bot's on_message returns: the proof a test waits for before it
        checks that a message got no answer."""
        client = self.bot.client
        handle = client.on_message

        async def on_message(message: discord.Message) -> None:
            try:
                await handle(message)
            finally:
                self.handled.add(message.id)
                self._changed.set()

        client.on_message = on_message  # type: ignore[method-assign]

    async def finished_with(self, *messages: Payload, timeout: float = 10.0) -> None:
        """Every one of `messages` handled, and every job it may have started done."""
        wanted = {int(m["id"]) for m in messages}
        async with asyncio.timeout(timeout):
            while not wanted <= self.handled:
                self._changed.clear()
                await self._changed.wait()
            await self.studio.jobs.wait_idle()


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, data_dir: Path, engine: ImageEngine, *,
                      guild_ids: list[int] | None = None, concurrency: int = 4, api_url: str | None = None,
                      gateway_url: str = "", access: AccessSettings | None = None,
                      credits: CreditsSettings | None = None, **options: Any) -> AsyncIterator[Running]:
    store, images = await open_stores(data_dir / "pixme.sqlite3")
    studio = Studio(store=store, images=images, engine=engine,
                    limits=LimitsSettings(concurrency=concurrency, queue_per_user=5),
                    delivery_retry_delays=(0.05,), access=access, credits=credits)
    settings = DiscordSettings(token=SecretStr(fake.token), api_url=api_url or fake.api_url,
                               gateway_url=gateway_url, cdn_url=fake.cdn_url, guild_ids=guild_ids or [])
    bot = DiscordBot(settings, studio, engine_name=engine.name, guild_ready_timeout=0.05, **options)
    try:
        await bot.start()
        await bot.wait_ready(10)
        await studio.resume()
        running = Running(bot, studio, store)
        running.watch_messages()
        yield running
    finally:
        await bot.stop()
        await studio.aclose()
        await store.close()


@pytest.fixture
def selfie_jpeg() -> bytes:
    image = Image.open(Path(__file__).parent / "fixtures" / "astronaut.png").convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as dc:
        yield dc


async def _node(run: Running, fake: FakeDiscord, message: Payload) -> Node | None:
    """The history node a message shows (once the job that posted it has recorded it)."""
    await run.studio.jobs.wait_idle(10)
    return await run.store.node_for_message("discord", str(fake.channel_id), message["id"])


def _image_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _custom_ids(message: Payload) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"] if "custom_id" in c]


def _button(message: Payload, verb: str) -> str:
    return next(cid for cid in _custom_ids(message) if cid.startswith(f"pixme:{verb}:"))


async def _avatar(fake: FakeDiscord, person: Payload, style: str, data: bytes) -> tuple[Interaction, Payload]:
    """Run /avatar and wait for the picture that answers it."""
    before = fake.last_id()
    interaction = await fake.slash(person, "avatar", {"style": style}, attachments={"photo": fake.upload(data)})
    result = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before - 1 if before else 0)
    return interaction, result


# -- journey 1: /avatar ----------------------------------------------------------------------------

async def test_avatar_command_defers_then_posts_the_avatar_with_buttons(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    engine = FakeEngine(delay=0.2)
    async with running_bot(fake, tmp_path, engine, guild_ids=[fake.guild_id]) as run:
        # One command with the styles as choices, synced globally and to the configured guild.
        avatar = next(c for c in fake.commands[None] if c["name"] == "avatar")
        style_option = next(o for o in avatar["options"] if o["name"] == "style")
        assert {c["value"] for c in style_option["choices"]} >= {"zombie", "comic", "anime"}
        assert any("Undead" in c["name"] for c in style_option["choices"])
        assert {c["name"] for c in fake.commands[fake.guild_id]} == {c["name"] for c in fake.commands[None]}

        interaction, result = await _avatar(fake, ALICE, "zombie", selfie_jpeg)

        assert interaction.responses == [5]  # deferred at once: people see "PixMe is thinking…"
        assert int(result["id"]) == interaction.original_id  # the follow-up replaced the thinking message
        assert result["content"] == "style: zombie"  # the engine's commentary
        assert not result["flags"] & EPHEMERAL
        picture = _image_of(fake.file_of(result))
        assert picture.size == (512, 512)
        assert [cid.split(":")[1] for cid in _custom_ids(result)] == ["edit", "undo", "again", "styles"] + [
            "export"] * 3
        assert [cid.split(":")[2] for cid in _custom_ids(result)][4:] == ["sticker", "profile", "original"]
        assert engine.calls[0][0:3:2] == ("style", "zombie")

        node = await _node(run, fake, result)
        assert node is not None and node.kind == "style" and node.style == "zombie"
        assert _button(result, "again") == f"pixme:again:{node.id}"


async def test_avatar_outliving_the_interaction_token_is_posted_as_a_channel_reply(
        tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with FakeDiscord(token_ttl_s=0.3) as fake, running_bot(fake, tmp_path, FakeEngine(delay=0.6)):
        interaction, result = await _avatar(fake, ALICE, "comic", selfie_jpeg)
        assert result.get("interaction_metadata") is None  # a plain channel message, not a follow-up
        assert fake.reply_to(result) == interaction.original_id  # replying to the request
        assert result["content"] == "style: comic"


async def test_bad_attachments_get_a_private_one_line_answer_and_no_engine_call(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    engine = FakeEngine()
    async with running_bot(fake, tmp_path, engine) as run:
        pdf = fake.upload(b"%PDF-1.4 not a picture", "cv.pdf", "application/pdf")
        broken = fake.upload(selfie_jpeg[:600], "broken.jpg", "image/jpeg")
        huge = fake.upload(b"x" * 100, "huge.jpg", "image/jpeg")
        huge["size"] = 30 * 1024 * 1024
        tiny = io.BytesIO()
        Image.new("RGB", (4, 4)).save(tiny, "PNG")
        dot = fake.upload(tiny.getvalue(), "dot.png", "image/png")
        answers = []
        for attachment in (pdf, broken, huge, dot):
            before = fake.last_id()
            interaction = await fake.slash(ALICE, "avatar", {"style": "zombie"}, attachments={"photo": attachment})
            answer = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
            assert "\n" not in answer["content"].strip()
            answers.append(answer["content"])
            assert interaction.acknowledged
        assert answers[0] == texts.NOT_AN_IMAGE
        assert "MB" in answers[2]
        assert all(answers) and len(set(answers)) >= 3
        await run.studio.jobs.wait_idle(10)  # each was refused before any job; none is left to call the engine
        assert engine.calls == []
        assert not [m for m in fake.bot_messages() if m["attachments"]]


async def test_results_are_shrunk_to_the_upload_limit(tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with FakeDiscord(upload_limit=60_000) as fake, running_bot(fake, tmp_path, FakeEngine()):
        _, result = await _avatar(fake, ALICE, "pixel", selfie_jpeg)
        data = fake.file_of(result)
        assert len(data) <= 60_000
        assert min(_image_of(data).size) >= 64


# -- journey 3: buttons ----------------------------------------------------------------------------

async def test_again_undo_edit_and_restyle_buttons(fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    engine = FakeEngine()
    async with running_bot(fake, tmp_path, engine) as run:
        _, first = await _avatar(fake, ALICE, "zombie", selfie_jpeg)

        # Edit: a modal asks what to change; the edited picture replies to the pressed result.
        before = fake.last_id()
        opened = await fake.click(ALICE, first, _button(first, "edit"))
        await fake.wait_for(lambda: opened.modal)
        assert opened.responses == [9]
        await fake.submit_modal(ALICE, opened, {"instruction": "add a crown"})
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert edited["content"] == "edit: add a crown"
        assert fake.reply_to(edited) == int(first["id"])
        edit_node = await _node(run, fake, edited)
        assert edit_node is not None and edit_node.instruction == "add a crown" and edit_node.depth == 2

        # Undo on the edit re-posts the first result.
        before = fake.last_id()
        pressed = await fake.click(BOB, edited, _button(edited, "undo"))
        undone = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert pressed.responses == [6]
        assert undone["content"].startswith("↩️ Back to step 1")
        assert fake.file_of(undone) == fake.file_of(first)

        # Again on the edit runs the same instruction on the same parent.
        before = fake.last_id()
        await fake.click(ALICE, edited, _button(edited, "again"))
        again = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert again["content"] == "edit: add a crown"
        assert engine.calls[-1][1] == engine.calls[1][1]  # the same source image as the first edit

        # Style ▾ offers styles privately; the pick restyles the original selfie.
        before = fake.last_id()
        menu_for = await fake.click(ALICE, edited, _button(edited, "styles"))
        menu = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
        assert menu_for.original_id == int(menu["id"])
        restyle = next(cid for cid in _custom_ids(menu) if cid.startswith("pixme:restyle:"))
        await fake.choose(ALICE, menu, restyle, ["anime"])
        anime = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert anime["content"] == "style: anime"
        assert engine.calls[-1][1] == engine.calls[0][1]  # the original selfie, not the edit
        assert fake.messages[int(menu["id"])]["components"] == []  # the menu became "coming up…"


async def test_buttons_still_work_after_a_restart(fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()) as run:
        _, first = await _avatar(fake, ALICE, "sketch", selfie_jpeg)
        await run.studio.jobs.wait_idle(5)  # delivered and recorded, then the bot stops
    assert fake.identified == 1

    # A new client and the same data directory; this time configured with a bare server address and
    # an explicit gateway (the first run found the gateway through GET /gateway/bot).
    engine = FakeEngine()
    async with running_bot(fake, tmp_path, engine, api_url=fake.base, gateway_url=fake.gateway_url) as run:
        assert fake.identified == 2
        before = fake.last_id()
        await fake.click(ALICE, first, _button(first, "again"))
        again = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert again["content"] == "style: sketch"
        assert fake.reply_to(again) == int(first["id"])

        before = fake.last_id()
        opened = await fake.click(ALICE, again, _button(again, "edit"))
        await fake.wait_for(lambda: opened.modal)
        await fake.submit_modal(ALICE, opened, {"instruction": "make it warmer"})
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert edited["content"] == "edit: make it warmer"
        node = await _node(run, fake, edited)
        assert node is not None and node.kind == "edit"


# -- journey 4: replying to a result ---------------------------------------------------------------

async def test_replying_to_a_result_edits_it_and_chatter_is_ignored(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    engine = FakeEngine()
    async with running_bot(fake, tmp_path, engine) as run:
        _, first = await _avatar(fake, ALICE, "noir", selfie_jpeg)
        await run.studio.jobs.wait_idle(10)  # the picture is on screen; its message is recorded a moment later
        before = fake.last_id()
        ask = await fake.post(ALICE, "add a crown", reply_to=int(first["id"]), ping_reply=False)
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert edited["content"] == "edit: add a crown"
        assert fake.reply_to(edited) == int(ask["id"])
        node = await _node(run, fake, edited)
        assert node is not None and node.instruction == "add a crown"

        # Messages not addressed to the bot get nothing, not even a photo or a reply to someone else.
        calls, before = len(engine.calls), fake.last_id()
        other = await fake.post(BOB, "nice pic", files=[fake.upload(selfie_jpeg)])
        thanks = await fake.post(ALICE, "thanks", reply_to=int(other["id"]))
        await run.finished_with(other, thanks)
        assert [m for m in fake.bot_messages() if int(m["id"]) > before] == []
        assert len(engine.calls) == calls


async def test_without_the_message_content_intent_replies_that_ping_the_bot_still_edit(
        tmp_path: Path, selfie_jpeg: bytes) -> None:
    # The intent is off in the Developer Portal: the bot asks for it, is refused (4014), and goes on without.
    async with FakeDiscord(message_content_enabled=False) as fake, running_bot(fake, tmp_path, FakeEngine()) as run:
        assert fake.intents is not None and not fake.intents & MESSAGE_CONTENT_INTENT
        _, first = await _avatar(fake, ALICE, "noir", selfie_jpeg)
        before = fake.last_id()
        hidden = await fake.post(ALICE, "add a crown", reply_to=int(first["id"]), ping_reply=False)  # content hidden
        await run.finished_with(hidden)
        assert [m for m in fake.bot_messages() if int(m["id"]) > before] == []
        await fake.post(ALICE, "add a crown", reply_to=int(first["id"]), ping_reply=True)
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert edited["content"] == "edit: add a crown"


# -- journey 2: the message menu -------------------------------------------------------------------

async def test_pix_me_message_menu_offers_styles_privately_and_replies_to_the_photo(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()) as run:
        photo = await fake.post(BOB, "", files=[fake.upload(selfie_jpeg)])
        assert not fake.bot_messages()  # an unaddressed photo in a server is ignored

        before = fake.last_id()
        await fake.context_menu(ALICE, "Pix Me", photo)
        menu = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
        assert menu["content"] == texts.PICK_STYLE
        pick = _custom_ids(menu)[0]
        assert pick == PickStyle(int(photo["id"])).custom_id
        chosen = await fake.choose(ALICE, menu, pick, ["popart"])
        result = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert chosen.responses == [7]
        assert "Pop Art coming up" in fake.messages[int(menu["id"])]["content"]
        assert fake.reply_to(result) == int(photo["id"])
        assert result["content"] == "style: popart"
        assert not result["flags"] & EPHEMERAL
        photo_node = await _node(run, fake, photo)
        assert photo_node is not None and photo_node.kind == "photo"
        assert photo_node.owner_id == str(BOB["id"]), "the photo is Bob's, though Alice asked"
        assert await _node(run, fake, result) is not None

        # Bob's /forget takes Alice's restyle of his photo with it.
        before = fake.last_id()
        await fake.slash(BOB, "forget")
        confirm = await fake.wait_for_bot_message(lambda m: m["components"], after=before)
        yes = next(cid for cid in _custom_ids(confirm) if cid.startswith("pixme:press:forget:yes"))
        before = fake.last_id()
        await fake.click(BOB, confirm, yes)
        done = await fake.wait_for_bot_message(lambda m: m["content"].startswith("Done"), after=before)
        assert done["content"] == texts.forgotten(2)
        assert await _node(run, fake, result) is None and await _node(run, fake, photo) is None

        text_only = await fake.post(BOB, "just words")
        before = fake.last_id()
        await fake.context_menu(ALICE, "Pix Me", text_only)
        refusal = await fake.wait_for_bot_message(lambda m: m["flags"] & EPHEMERAL, after=before)
        assert refusal["content"] == texts.NO_PICTURE_IN_MESSAGE


# -- journey 5: /styles, /help ----------------------------------------------------------------------

async def test_styles_and_help_are_private(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()):
        styles = await fake.slash(ALICE, "styles")
        listing = fake.messages[await fake.wait_for(lambda: styles.original_id)]
        assert listing["flags"] & EPHEMERAL and "zombie" in listing["content"] and "cyberpunk" in listing["content"]
        helped = await fake.slash(ALICE, "help")
        shown = fake.messages[await fake.wait_for(lambda: helped.original_id)]
        assert shown["flags"] & EPHEMERAL
        assert "/avatar" in shown["content"]


# -- load -------------------------------------------------------------------------------------------

async def test_a_burst_of_twenty_people_is_all_answered(fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    engine = FakeEngine(delay=0.05)
    people = [user(6000 + i, f"guest{i}") for i in range(20)]
    async with running_bot(fake, tmp_path, engine, concurrency=4) as run:
        attachment = fake.upload(selfie_jpeg)
        interactions = await asyncio.gather(*(
            fake.slash(p, "avatar", {"style": "anime"}, attachments={"photo": attachment}) for p in people))

        def answered() -> bool:
            return all(any(m["attachments"] for m in fake.answers(i)) for i in interactions)

        await fake.wait_for(answered, timeout=30)
        await run.studio.jobs.wait_idle(10)
        assert len(engine.calls) == 20
        # Everyone sees exactly their picture: queue notes ("#N in line") are cleaned up afterwards.
        for interaction in interactions:
            (result,) = fake.answers(interaction)
            assert result["attachments"] and result["content"] == "style: anime"
            node = await _node(run, fake, result)
            assert node is not None and node.user_id == interaction.user["id"]


async def test_the_gateway_needs_the_right_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        store, images = await open_stores(tmp_path / "db.sqlite3")
        studio = Studio(store=store, images=images, engine=FakeEngine())
        settings = DiscordSettings(token=SecretStr("wrong-token"), api_url=fake.api_url)
        bot = DiscordBot(settings, studio, engine_name="fake")
        try:
            with pytest.raises(discord.LoginFailure):
                await bot.start()
        finally:
            await bot.stop()
            await studio.aclose()
            await store.close()


async def test_a_bare_photo_in_a_dm_gets_a_style_menu(fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    dm = fake.dm_channel(ALICE)
    async with running_bot(fake, tmp_path, FakeEngine()):
        photo = await fake.post(ALICE, "", files=[fake.upload(selfie_jpeg, channel_id=dm)], channel_id=dm)
        menu = await fake.wait_for_bot_message(lambda m: m["components"])
        assert int(menu["channel_id"]) == dm and fake.reply_to(menu) == int(photo["id"])
        await fake.choose(ALICE, menu, _custom_ids(menu)[0], ["cyberpunk"])
        result = await fake.wait_for_bot_message(lambda m: m["attachments"])
        assert result["content"] == "style: cyberpunk"
        assert int(result["channel_id"]) == dm and fake.reply_to(result) == int(photo["id"])


async def test_tokens_never_reach_the_logs(fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeDiscord(token_ttl_s=0.2) as short, running_bot(short, tmp_path, FakeEngine(delay=0.4)):
        interaction, _ = await _avatar(short, ALICE, "zombie", selfie_jpeg)  # the expired token is logged about
    assert "/webhooks/" in caplog.text  # discord.py did log the webhook URLs…
    assert interaction.token not in caplog.text  # …without the interaction token
    assert short.token not in caplog.text


async def test_forget_asks_privately_and_deletes_the_history(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()) as run:
        _, first = await _avatar(fake, ALICE, "zombie", selfie_jpeg)
        assert await _node(run, fake, first) is not None

        before = fake.last_id()
        await fake.slash(ALICE, "forget")
        confirm = await fake.wait_for_bot_message(lambda m: m["components"], after=before)
        assert confirm["flags"] & EPHEMERAL and confirm["content"] == texts.FORGET_CONFIRM
        yes = next(cid for cid in _custom_ids(confirm) if cid.startswith("pixme:press:forget:yes"))
        before = fake.last_id()
        await fake.click(ALICE, confirm, yes)
        done = await fake.wait_for_bot_message(lambda m: m["content"].startswith("Done"), after=before)
        assert done["flags"] & EPHEMERAL
        assert [m for m in fake.bot_messages() if int(m["id"]) > before] == [done]  # one answer, no extra toast
        assert await _node(run, fake, first) is None

        # Buttons on a forgotten picture say so instead of failing silently.
        before = fake.last_id()
        await fake.click(ALICE, first, _button(first, "again"))
        expired = await fake.wait_for_bot_message(lambda m: True, after=before)
        assert expired["content"] == texts.UNKNOWN_BUTTON


async def test_pixme_run_starts_the_discord_bot_with_the_offline_engine(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    """`pixme run` with only `[discord] token` set: the real offline engine, one event loop, clean stop."""
    settings = Settings(discord=DiscordSettings(token=SecretStr(fake.token), api_url=fake.api_url),
                        storage=StorageSettings(**storage_settings(tmp_path)), ops=OpsSettings(port=0))
    assert settings.engine_name == "offline"
    stop = asyncio.Event()
    running = asyncio.create_task(run_bots(settings, stop))
    try:
        await fake.wait_for(lambda: fake.identified and fake.commands.get(None), timeout=15)
        _, result = await _avatar(fake, ALICE, "popart", selfie_jpeg)
        assert result["content"]  # the offline engine's own commentary
        art = _image_of(fake.file_of(result)).convert("RGB")
        assert len(art.resize((32, 32)).getcolors(1024) or []) > 8  # a real picture, not a blank
        before = fake.last_id()
        await fake.post(ALICE, "add a crown", reply_to=int(result["id"]))
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before, timeout=30)
        assert fake.file_of(edited) != fake.file_of(result)
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 15) == 0


async def test_a_dropped_gateway_connection_is_resumed(fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()):
        await fake.drop_connections()
        await fake.wait_for(lambda: fake.resumed, timeout=15)
        assert fake.identified == 1  # resumed, not a fresh session
        _, result = await _avatar(fake, ALICE, "manga", selfie_jpeg)
        assert result["content"] == "style: manga"


async def test_a_photo_that_mentions_the_bot_in_a_server_gets_a_style_menu(
        fake: FakeDiscord, tmp_path: Path, selfie_jpeg: bytes) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()):
        photo = await fake.post(ALICE, f"<@{fake.app_id}>", files=[fake.upload(selfie_jpeg)], mentions=[fake.bot])
        menu = await fake.wait_for_bot_message(lambda m: m["components"])
        assert fake.reply_to(menu) == int(photo["id"]) and menu["content"] == texts.PICK_STYLE
        await fake.choose(BOB, menu, _custom_ids(menu)[0], ["watercolor"])
        result = await fake.wait_for_bot_message(lambda m: m["attachments"])
        assert result["content"] == "style: watercolor" and fake.reply_to(result) == int(photo["id"])
