"""Avatar parties and /fuse on Discord, end to end: the real discord.py client against the loopback Discord
stand-in, the real studio on SQLite in a temporary directory, and a fake engine. Every assertion is about
what people in the channel would see (or, for the shared history, what the next reply would build on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from bots.discord import DiscordBot
from core import texts
from core.clock import SYSTEM_CLOCK, Clock
from core.config import DiscordSettings, LimitsSettings, PartySettings
from core.ports import Node, Store
from core.studio import Studio
from tests.backends import open_stores
from tests.clock import ManualClock, until
from tests.fakes import FakeEngine
from tests.standins.discord_api import (
    EPHEMERAL,
    MANAGE_GUILD,
    MEMBER_PERMISSIONS,
    FakeDiscord,
    Interaction,
    Payload,
    user,
)

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

ALICE = user(5001, "alice")
BOB = user(5002, "bob")
CAROL = user(5003, "carol")
DAVE = user(5004, "dave")  # manages the server
LOBBY_HEAD = "🎉 Avatar party"


@dataclass
class Running:
    bot: DiscordBot
    studio: Studio
    store: Store
    engine: FakeEngine


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, data_dir: Path, engine: FakeEngine | None = None, *,
                      deadline_minutes: float = 10.0, clock: Clock = SYSTEM_CLOCK) -> AsyncIterator[Running]:
    engine = engine or FakeEngine()
    store, images = await open_stores(data_dir / "pixme.sqlite3")
    studio = Studio(store=store, images=images, engine=engine,
                    limits=LimitsSettings(concurrency=4, queue_per_user=5),
                    party=PartySettings(deadline_minutes=deadline_minutes), delivery_retry_delays=(0.05,),
                    clock=clock)
    settings = DiscordSettings(token=SecretStr(fake.token), api_url=fake.api_url)
    bot = DiscordBot(settings, studio, engine_name=engine.name, guild_ready_timeout=0.05)
    try:
        await bot.start()
        await bot.wait_ready(10)
        await studio.resume()
        yield Running(bot, studio, store, engine)
    finally:
        await bot.stop()
        await studio.aclose()
        await store.close()


@pytest.fixture(scope="module")
def selfie() -> bytes:
    image = Image.open(Path(__file__).parent / "fixtures" / "astronaut.png").convert("RGB").resize((256, 256))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as dc:
        for person in (ALICE, BOB, CAROL):  # ordinary members; only Dave may manage the server
            dc.set_permissions(person, MEMBER_PERMISSIONS)
        dc.set_permissions(DAVE, MEMBER_PERMISSIONS | MANAGE_GUILD)
        yield dc


# -- acting in the channel -------------------------------------------------------------------------

def custom_ids(message: Payload) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"] if "custom_id" in c]


def party_button(message: Payload, verb: str) -> str:
    return next(cid for cid in custom_ids(message) if cid.startswith(f"pixme:press:party:{verb}:"))


def roster(lobby: Payload) -> dict[str, str]:
    """The lobby's list of who's in, as the message shows it now: name (with " (host)") -> state."""
    found: dict[str, str] = {}
    for line in lobby["content"].splitlines():
        number, dot, rest = line.partition(". ")
        if dot and number.isdigit() and " — " in rest:
            name, _, state = rest.partition(" — ")
            found[name.removesuffix(" (host)")] = state
    return found


async def until_in_lobby(fake: FakeDiscord, lobby: Payload, name: str, state: str = "📸 selfie in") -> None:
    await fake.wait_for(lambda: roster(lobby).get(name) == state)


async def open_party(fake: FakeDiscord, host: Payload, options: dict[str, Any] | None = None) -> Payload:
    before = fake.last_id()
    asked = await fake.slash(host, "party open", options)
    lobby = await fake.wait_for_bot_message(lambda m: m["content"].startswith(LOBBY_HEAD), after=before)
    assert int(lobby["id"]) == asked.original_id, "the lobby is the command's answer"
    assert not lobby["flags"] & EPHEMERAL
    return lobby


async def answer_to(fake: FakeDiscord, interaction: Interaction) -> Payload:
    """The (first) visible message that answers an interaction."""
    found: Payload = await fake.wait_for(lambda: next((m for m in fake.answers(interaction) if m["content"]), None))
    return found


async def press(fake: FakeDiscord, person: Payload, message: Payload, custom_id: str) -> str:
    """Press a button; returns the private note the presser sees."""
    toast = await answer_to(fake, await fake.click(person, message, custom_id))
    assert toast["flags"] & EPHEMERAL, "button answers are for the presser only"
    return str(toast["content"])


async def join_by_command(fake: FakeDiscord, person: Payload, selfie: bytes) -> Payload:
    asked = await fake.slash(person, "party join", attachments={"photo": fake.upload(selfie)})
    answer = await answer_to(fake, asked)
    assert answer["flags"] & EPHEMERAL
    return answer


async def node_of(run: Running, fake: FakeDiscord, message: Payload) -> Node | None:
    await run.studio.jobs.wait_idle(10)
    return await run.store.node_for_message("discord", str(fake.channel_id), message["id"])


# -- parties -----------------------------------------------------------------------------------------

async def test_three_friends_from_lobby_to_group_picture_then_edit_it(fake: FakeDiscord, tmp_path: Path,
                                                                      selfie: bytes) -> None:
    async with running_bot(fake, tmp_path) as run:
        party = next(c for c in fake.commands[None] if c["name"] == "party")
        assert {o["name"] for o in party["options"]} == {"open", "join"}
        opening = next(o for o in party["options"] if o["name"] == "open")
        style, theme = opening["options"]
        assert {c["value"] for c in style["choices"]} >= {"noir", "comic"} and theme["max_length"] == 120
        helped = await answer_to(fake, await fake.slash(ALICE, "help"))
        assert "/party open" in helped["content"] and "/fuse" in helped["content"]

        lobby = await open_party(fake, ALICE, {"style": "noir", "theme": "Heist crew"})
        assert "Film Noir" in lobby["content"] and "Heist crew" in lobby["content"]
        assert roster(lobby) == {"Alice": "⏳ waiting for a selfie"} and "Alice (host)" in lobby["content"]
        assert [cid.split(":")[3] for cid in custom_ids(lobby)] == ["join", "leave", "start", "cancel"]

        # Three ways in: Join then /party join; a photo replying to the lobby; /party join straight away.
        assert await press(fake, ALICE, lobby, party_button(lobby, "join")) == texts.DISCORD_PARTY_SEND_SELFIE
        assert (await join_by_command(fake, ALICE, selfie))["content"] == texts.DISCORD_PARTY_JOINED
        await until_in_lobby(fake, lobby, "Alice")
        await fake.post(BOB, "", files=[fake.upload(selfie)], reply_to=int(lobby["id"]))
        await until_in_lobby(fake, lobby, "Bob")
        await join_by_command(fake, CAROL, selfie)
        await until_in_lobby(fake, lobby, "Carol")
        assert "Who's in (3/8)" in lobby["content"]
        public = [m for m in fake.bot_messages() if not m["flags"] & EPHEMERAL]
        assert public == [lobby], "joining shows in the lobby only"

        before = fake.last_id()
        assert await press(fake, ALICE, lobby, party_button(lobby, "start")) == texts.PARTY_STARTING
        picture = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert fake.reply_to(picture) == int(lobby["id"]), "the group picture answers the lobby"
        assert not picture["flags"] & EPHEMERAL
        assert picture["content"].endswith("🎉 Alice, Bob and Carol")
        assert "has started with Alice, Bob and Carol" in lobby["content"] and lobby["components"] == []
        [portraits] = run.engine.fused
        assert [p.name for p in portraits] == ["Alice", "Bob", "Carol"]
        assert run.engine.calls[-1][2] == "noir|Heist crew"
        group = await node_of(run, fake, picture)
        assert group is not None and group.kind == "fuse" and group.user_id == ALICE["id"]

        # The group picture is an ordinary result: a reply with a change edits it…
        before = fake.last_id()
        ask = await fake.post(BOB, "make it a beach party", reply_to=int(picture["id"]))
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert fake.reply_to(edited) == int(ask["id"]) and edited["content"] == "edit: make it a beach party"
        assert run.engine.calls[-1][1] == fake.file_of(picture), "the group picture itself was edited"
        edit = await node_of(run, fake, edited)
        assert edit is not None and edit.kind == "edit" and edit.parent_id == group.id

        # …and so is its Edit button.
        before = fake.last_id()
        opened = await fake.click(CAROL, picture, f"pixme:edit:{group.id}")
        await fake.wait_for(lambda: opened.modal)
        await fake.submit_modal(CAROL, opened, {"instruction": "add party hats"})
        hats = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert hats["content"] == "edit: add party hats" and fake.reply_to(hats) == int(picture["id"])


async def test_join_leave_cancel_and_one_party_at_a_time(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(fake, tmp_path) as run:
        lobby = await open_party(fake, ALICE)
        assert "Comic Book" in lobby["content"] or "comic" in lobby["content"].lower()

        # A second /party open points privately to the open lobby instead of opening another.
        before = fake.last_id()
        pointer = await answer_to(fake, await fake.slash(BOB, "party open", {"style": "pixel"}))
        assert pointer["flags"] & EPHEMERAL and pointer["content"].endswith(
            f"/channels/{fake.guild_id}/{fake.channel_id}/{lobby['id']}")
        assert [m for m in fake.bot_messages() if int(m["id"]) > before and not m["flags"] & EPHEMERAL] == []

        await join_by_command(fake, BOB, selfie)
        await until_in_lobby(fake, lobby, "Bob")
        assert await press(fake, BOB, lobby, party_button(lobby, "leave")) == texts.PARTY_LEFT
        await fake.wait_for(lambda: "Bob" not in roster(lobby))
        assert await press(fake, CAROL, lobby, party_button(lobby, "leave")) == texts.PARTY_NOT_IN

        assert await press(fake, BOB, lobby, party_button(lobby, "cancel")) == texts.PARTY_HOST_ONLY
        assert lobby["components"], "a refused cancel leaves the lobby open"
        assert await press(fake, ALICE, lobby, party_button(lobby, "cancel")) == texts.PARTY_CANCELLED_TOAST
        assert "cancelled by Alice" in lobby["content"] and lobby["components"] == []

        # Late selfies are told there is no party, by command or by reply.
        assert (await join_by_command(fake, CAROL, selfie))["content"] == texts.DISCORD_PARTY_NONE
        asked = await fake.post(CAROL, "", files=[fake.upload(selfie)], reply_to=int(lobby["id"]))
        closed = await fake.wait_for_bot_message(lambda m: m["content"] == texts.PARTY_NOT_OPEN)
        assert fake.reply_to(closed) == int(asked["id"])
        await run.studio.jobs.wait_idle(5)
        assert run.engine.fused == []


async def test_nobody_can_add_someone_elses_photo(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(fake, tmp_path) as run:
        before = fake.last_id()
        await fake.slash(BOB, "avatar", {"style": "comic"}, attachments={"photo": fake.upload(selfie)})
        await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)  # Bob used the bot here before
        await run.studio.jobs.wait_idle(5)

        lobby = await open_party(fake, ALICE)
        before = fake.last_id()
        assert await press(fake, BOB, lobby, party_button(lobby, "join")) == texts.DISCORD_PARTY_SEND_SELFIE
        offer = await fake.wait_for_bot_message(lambda m: m["content"] == texts.party_reuse_offer("Bob"),
                                                after=before)
        assert fake.reply_to(offer) == int(lobby["id"])
        [reuse] = custom_ids(offer)
        assert reuse == f"pixme:press:party:reuse:{lobby_party_id(lobby)}:{BOB['id']}"

        # Carol can neither press Bob's button nor put a photo in under his name.
        assert await press(fake, CAROL, offer, reuse) == texts.NOT_YOUR_BUTTON
        assert offer["components"], "the offer stays for Bob"
        await fake.post(CAROL, "", files=[fake.upload(selfie)], reply_to=int(lobby["id"]))
        await until_in_lobby(fake, lobby, "Carol")
        assert roster(lobby)["Bob"] == "⏳ waiting for a selfie"

        assert await press(fake, BOB, offer, reuse) == texts.PARTY_REUSED
        await until_in_lobby(fake, lobby, "Bob")
        await fake.wait_for(lambda: offer["components"] == [])
        assert lobby["components"], "the lobby keeps its buttons"


def lobby_party_id(lobby: Payload) -> int:
    return int(party_button(lobby, "join").rsplit(":", 1)[1])


async def test_only_the_host_or_a_server_manager_can_start(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(fake, tmp_path) as run:
        lobby = await open_party(fake, ALICE, {"style": "zombie"})
        await join_by_command(fake, BOB, selfie)
        await join_by_command(fake, CAROL, selfie)
        await until_in_lobby(fake, lobby, "Carol")
        await until_in_lobby(fake, lobby, "Bob")

        before = fake.last_id()
        assert await press(fake, BOB, lobby, party_button(lobby, "start")) == texts.PARTY_HOST_ONLY
        await run.studio.jobs.wait_idle(5)
        assert run.engine.fused == [] and lobby["components"]
        assert [m for m in fake.bot_messages() if int(m["id"]) > before and not m["flags"] & EPHEMERAL] == []

        assert await press(fake, DAVE, lobby, party_button(lobby, "start")) == texts.PARTY_STARTING
        picture = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert fake.reply_to(picture) == int(lobby["id"]) and picture["content"].endswith("🎉 Bob and Carol")


async def test_the_deadline_starts_a_ready_party_and_closes_an_empty_one(fake: FakeDiscord, tmp_path: Path,
                                                                         selfie: bytes) -> None:
    clock = ManualClock()
    async with running_bot(fake, tmp_path, clock=clock) as run:  # deadlines ten minutes on
        lobby = await open_party(fake, ALICE, {"style": "pixel"})
        # One after the other: two selfies at once join in whichever order they are stored (on PostgreSQL,
        # on two connections, that need not be the order they were sent).
        await fake.post(BOB, "", files=[fake.upload(selfie)], reply_to=int(lobby["id"]))
        await until_in_lobby(fake, lobby, "Bob")
        await fake.post(CAROL, "", files=[fake.upload(selfie)], reply_to=int(lobby["id"]))
        await until_in_lobby(fake, lobby, "Carol")
        await until(lambda: len(run.studio.parties.deadlines()) == 1)  # its deadline is armed
        await clock.advance(9 * 60)
        assert lobby["components"] and run.engine.fused == [], "a minute before the deadline the lobby waits"
        await clock.advance(60)

        picture = await fake.wait_for_bot_message(lambda m: m["attachments"])  # nobody pressed Start
        assert fake.reply_to(picture) == int(lobby["id"]) and picture["content"].endswith("🎉 Bob and Carol")
        assert "has started with Bob and Carol" in lobby["content"] and lobby["components"] == []

        lonely = await open_party(fake, DAVE)
        await until(lambda: len(run.studio.parties.deadlines()) == 1)
        await clock.advance(10 * 60)
        await fake.wait_for(lambda: lonely["content"].startswith("⌛ Time's up"))
        assert lonely["components"] == [] and len(run.engine.fused) == 1


async def test_an_open_lobby_keeps_working_after_a_restart(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(fake, tmp_path):
        lobby = await open_party(fake, ALICE, {"style": "sketch", "theme": "Book club"})
        await join_by_command(fake, BOB, selfie)
        await until_in_lobby(fake, lobby, "Bob")

    async with running_bot(fake, tmp_path) as run:  # a new client, the same data directory
        assert fake.identified == 2
        assert await press(fake, CAROL, lobby, party_button(lobby, "join")) == texts.DISCORD_PARTY_SEND_SELFIE
        await until_in_lobby(fake, lobby, "Carol", "⏳ waiting for a selfie")
        await fake.post(CAROL, "", files=[fake.upload(selfie)], reply_to=int(lobby["id"]))
        await until_in_lobby(fake, lobby, "Carol")
        assert roster(lobby)["Bob"] == "📸 selfie in"

        before = fake.last_id()
        assert await press(fake, ALICE, lobby, party_button(lobby, "start")) == texts.PARTY_STARTING
        picture = await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert fake.reply_to(picture) == int(lobby["id"]) and picture["content"].endswith("🎉 Bob and Carol")
        assert run.engine.calls[-1][2] == "sketch|Book club"


# -- /fuse ---------------------------------------------------------------------------------------------

async def test_fuse_blends_three_attachments_into_one_picture(fake: FakeDiscord, tmp_path: Path,
                                                              selfie: bytes) -> None:
    async with running_bot(fake, tmp_path) as run:
        fuse = next(c for c in fake.commands[None] if c["name"] == "fuse")
        required = [o["name"] for o in fuse["options"] if o.get("required")]
        assert required == ["photo1", "photo2"]
        assert [o["name"] for o in fuse["options"] if o["name"].startswith("photo")] == [
            f"photo{i}" for i in range(1, 9)]

        photos = {f"photo{i}": fake.upload(selfie, f"friend{i}.jpg") for i in (1, 2, 3)}
        asked = await fake.slash(ALICE, "fuse", {"style": "anime", "instruction": "best friends at the fair"},
                                 attachments=photos)
        picture = await fake.wait_for_bot_message(lambda m: m["attachments"])
        assert int(picture["id"]) == asked.original_id, "the picture answers the command"
        assert not picture["flags"] & EPHEMERAL and "🎉" not in picture["content"]
        assert picture["content"] == "fuse: anime|best friends at the fair"
        [portraits] = run.engine.fused
        assert len(portraits) == 3
        node = await node_of(run, fake, picture)
        assert node is not None and node.kind == "fuse" and node.style == "anime"

        # A file that isn't a picture is refused privately before anything is made.
        pdf = fake.upload(b"%PDF-1.4 not a picture", "cv.pdf", "application/pdf")
        refused = await answer_to(fake, await fake.slash(
            ALICE, "fuse", attachments={"photo1": fake.upload(selfie), "photo2": pdf}))
        assert refused["flags"] & EPHEMERAL and refused["content"] == texts.NOT_AN_IMAGE
        await run.studio.jobs.wait_idle(5)
        assert len(run.engine.fused) == 1


async def test_discord_and_telegram_fusions_share_one_history_shape(fake: FakeDiscord, tmp_path: Path,
                                                                    selfie: bytes) -> None:
    """A group picture made on Discord is stored exactly like one made on Telegram, in the same SQLite."""
    from tests.standins.telegram_api import FakeTelegram
    from tests.test_telegram_harness import ALICE as TG_ALICE
    from tests.test_telegram_harness import private
    from tests.test_telegram_harness import running_bot as running_telegram
    from tests.test_telegram_party import settings_for

    engine = FakeEngine()
    async with running_bot(fake, tmp_path, engine) as run:
        photos = {f"photo{i}": fake.upload(selfie) for i in (1, 2)}
        await fake.slash(ALICE, "fuse", {"style": "anime", "instruction": "at the fair"}, attachments=photos)
        picture = await fake.wait_for_bot_message(lambda m: m["attachments"])
        on_discord = await node_of(run, fake, picture)

    async with FakeTelegram() as tg, running_telegram(tg, tmp_path, engine=engine,
                                                      settings=settings_for(tg, tmp_path, album_wait_s=0.2)) as tg_run:
        chat = private(TG_ALICE)
        tg.send_album(chat, TG_ALICE, [selfie] * 2, "/fuse anime at the fair")
        sent = await tg_run.photo_reply(chat)
        await tg_run.settle()
        on_telegram = await tg_run.studio.store.node_for_message("telegram", str(chat.id), str(sent.message_id))
        same_discord = await tg_run.studio.store.get_node(on_discord.id if on_discord else 0)

    assert on_discord is not None and on_telegram is not None
    assert same_discord == on_discord, "the Discord picture is still there, unchanged"
    own = {"id", "platform", "chat_id", "user_id", "image_sha", "created_at"}

    def shape(node: Node) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(node).items() if k not in own}

    assert shape(on_discord) == shape(on_telegram)
    assert on_discord.kind == "fuse" and on_discord.parent_id is None and on_discord.style == "anime"
    assert (on_discord.platform, on_telegram.platform) == ("discord", "telegram")
