"""Avatar parties and album fusion through the studio, real SQLite and the real job runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import texts
from core.clock import SYSTEM_CLOCK, Clock
from core.config import LimitsSettings, PartySettings
from core.engines.base import EngineResult, Portrait, RenderOptions
from core.ports import Store
from core.requests import Button, Chat, Context, Person, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import Style
from tests.backends import open_stores, sql, stored_images
from tests.clock import ManualClock
from tests.fakes import FakeEngine, FakeMessenger, Sent

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

GROUP = Chat("test", "-100", is_private=False)
ADA, BEN, CY, DEE = Person("1", "Ada"), Person("2", "Ben"), Person("3", "Cy"), Person("4", "Dee")


def photo(data: bytes, message_id: str) -> PhotoRef:
    async def fetch() -> bytes:
        return data

    return PhotoRef(fetch=fetch, message_id=message_id, size=len(data))


@dataclass
class World:
    studio: Studio
    store: Store
    engine: FakeEngine
    messenger: FakeMessenger
    ids: int = 0

    def ctx(self, person: Person, chat: Chat = GROUP, admin: bool = False) -> Context:
        self.ids += 1

        async def is_admin() -> bool:
            return admin

        return Context(chat, person, f"m{self.ids}", chat_admin=is_admin)

    def lobby(self) -> Sent:
        return next(s for s in self.messenger.sent if s.kind == "buttons" and s.text.startswith("🎉 Avatar party"))

    def action(self, verb: str, sent: Sent | None = None) -> str:
        sent = sent or self.lobby()
        return next(b.action for b in sent.buttons if b.action.startswith(f"party:{verb}:"))

    async def settle(self) -> None:
        await self.studio.jobs.wait_idle(timeout=10)


async def deadlines_pass(w: World, clock: ManualClock, minutes: float) -> None:
    """Move the clock on by `minutes` and wait until every lobby deadline it reached has been handled."""
    timers = w.studio.parties.deadlines()
    await clock.wait_for_sleepers(len(timers))  # every deadline is armed on the clock
    await clock.advance(minutes * 60)
    _, pending = await asyncio.wait(timers, timeout=10)
    assert not pending, "every deadline was handled"
    await w.settle()


async def make_world(data_dir: Path, party: PartySettings | None = None, clock: Clock = SYSTEM_CLOCK,
                     engine: FakeEngine | None = None, limits: LimitsSettings | None = None) -> World:
    store, images = await open_stores(data_dir / "db.sqlite3")
    engine = engine or FakeEngine()
    studio = Studio(store=store, images=images, engine=engine,
                    party=party or PartySettings(), clock=clock, limits=limits)
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    return World(studio, store, engine, messenger)


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    world = await make_world(tmp_path)
    yield world
    await world.studio.aclose()
    await world.store.close()


async def join_with_selfie(w: World, person: Person, selfie: bytes) -> None:
    lobby = w.lobby()
    joined = await w.studio.press(w.ctx(person), w.action("join"))
    assert joined.text == "You're in! Now reply to the party message with a selfie." and joined.kind == "ok"
    ctx = w.ctx(person)
    assert await w.studio.parties.join_with_photo(ctx, lobby.message_id, photo(selfie, ctx.message_id))


async def test_a_three_person_party_from_lobby_to_group_picture(w: World, selfie: bytes) -> None:
    await w.studio.parties.open(w.ctx(ADA), "noir Heist crew")
    lobby = w.lobby()
    assert "Film Noir" in lobby.text and "Heist crew" in lobby.text and "Ada (host)" in lobby.text
    assert [b.action.split(":")[1] for b in lobby.buttons] == ["join", "leave", "start", "cancel"]

    ada_ctx = w.ctx(ADA)
    assert await w.studio.parties.join_with_photo(ada_ctx, lobby.message_id, photo(selfie, ada_ctx.message_id))
    await join_with_selfie(w, BEN, selfie)
    await join_with_selfie(w, CY, selfie)
    assert "Who's in (3/8)" in w.lobby().text and w.lobby().text.count("📸 selfie in") == 3

    assert (await w.studio.press(w.ctx(ADA), w.action("start"))).text == "Starting the party!"
    await w.settle()
    [picture] = [s for s in w.messenger.sent if s.kind == "image"]
    assert picture.target.reply_to == lobby.message_id  # posted as a reply to the lobby
    assert picture.text.endswith("🎉 Ada, Ben and Cy")  # members named in the caption
    [portraits] = w.engine.fused
    assert [p.name for p in portraits] == ["Ada", "Ben", "Cy"]
    assert w.engine.calls[-1][2] == "noir|Heist crew"
    assert "has started with Ada, Ben and Cy" in lobby.text and lobby.buttons == []  # lobby closed

    # The result is an ordinary result: replying to it edits it, with the group picture as identity.
    await w.studio.edit(w.ctx(BEN), "make it a beach party", picture.message_id)
    await w.settle()
    kind, edited, instruction, identity = w.engine.calls[-1]
    assert (kind, instruction) == ("edit", "make it a beach party")
    assert edited == picture.image and identity == picture.image


async def test_only_the_host_or_a_chat_admin_can_start_or_cancel(w: World, selfie: bytes) -> None:
    await w.studio.parties.open(w.ctx(ADA), "")
    await join_with_selfie(w, BEN, selfie)
    await join_with_selfie(w, CY, selfie)
    assert (await w.studio.press(w.ctx(BEN), w.action("start"))).text == "Only the host or a chat admin can do that."
    assert (await w.studio.press(w.ctx(CY), w.action("cancel"))).text == "Only the host or a chat admin can do that."
    assert w.engine.fused == []
    assert (await w.studio.press(w.ctx(DEE, admin=True), w.action("start"))).text == "Starting the party!"
    await w.settle()
    assert [p.name for p in w.engine.fused[0]] == ["Ben", "Cy"]  # the host never brought a selfie


async def test_nobody_can_add_someone_elses_photo(w: World, selfie: bytes) -> None:
    # Ben used the bot in this chat before, so Join offers him his last selfie…
    ben_ctx = w.ctx(BEN)
    await w.studio.style(ben_ctx, "comic", photo(selfie, ben_ctx.message_id))
    await w.settle()
    await w.studio.parties.open(w.ctx(ADA), "")
    await w.studio.press(w.ctx(BEN), w.action("join"))
    offer = w.messenger.sent[-1]
    assert offer.kind == "buttons" and offer.text.startswith("Ben, reply to the party message")
    reuse = offer.buttons[0].action
    # …which Cy cannot press to put Ben's face in the party.
    assert (await w.studio.press(w.ctx(CY), reuse)).text == "That button belongs to someone else."
    assert "Ben — ⏳ waiting for a selfie" in w.lobby().text
    assert (await w.studio.press(w.ctx(BEN), reuse)).text == "Your last selfie is in the party."
    assert "Ben — 📸 selfie in" in w.lobby().text
    # And Ada cannot join with a selfie on Ben's behalf: a photo joins the person who sent it.
    ada_ctx = w.ctx(ADA)
    await w.studio.parties.join_with_photo(ada_ctx, w.lobby().message_id, photo(selfie, ada_ctx.message_id))
    assert "Ada (host) — 📸 selfie in" in w.lobby().text and w.lobby().text.count("📸") == 2


async def test_leaving_removes_the_selfie_and_cancel_closes_the_lobby(w: World, selfie: bytes) -> None:
    await w.studio.parties.open(w.ctx(ADA), "")
    await join_with_selfie(w, BEN, selfie)
    left = await w.studio.press(w.ctx(BEN), w.action("leave"))
    assert left.text == "You left the party — your selfie won't be used."
    assert "Ben" not in w.lobby().text
    assert (await w.studio.press(w.ctx(CY), w.action("leave"))).text == "You're not in this party."
    lobby = w.lobby()
    join = w.action("join")
    assert (await w.studio.press(w.ctx(ADA), w.action("cancel"))).text == "Party cancelled."
    assert "cancelled by Ada" in lobby.text and lobby.buttons == []
    assert (await w.studio.press(w.ctx(CY), join)).text == "That party isn't open any more."
    await w.settle()
    assert w.engine.fused == []


async def test_one_open_party_per_chat_and_groups_only(w: World) -> None:
    await w.studio.parties.open(w.ctx(ADA), "")
    await w.studio.parties.open(w.ctx(BEN), "comic")
    assert w.messenger.sent[-1].text.startswith("There's already a party open here")
    assert w.messenger.sent[-1].target.reply_to == w.lobby().message_id  # it points at the open one
    await w.studio.parties.open(w.ctx(ADA, Chat("test", "9", is_private=True)), "")
    assert w.messenger.sent[-1].text.startswith("Parties are for group chats")


async def test_of_a_start_and_a_cancel_at_the_same_moment_only_one_happens(w: World) -> None:
    """The database decides (tests/test_parties_across_processes.py races them from two processes)."""
    await w.studio.parties.open(w.ctx(ADA), "")
    party = await w.store.open_party("test", GROUP.id)
    assert party is not None
    moved = await asyncio.gather(w.store.move_party(party.id, "starting"), w.store.move_party(party.id, "cancelled"))
    [winner] = [m for m in moved if m is not None]
    assert winner.status in ("starting", "cancelled") and winner.members == party.members
    assert (await w.store.get_party(party.id)) == winner
    assert await w.store.move_party(party.id, "closed") is None  # it is no longer open


async def test_starting_with_too_few_selfies_is_refused(w: World, selfie: bytes) -> None:
    await w.studio.parties.open(w.ctx(ADA), "")
    await join_with_selfie(w, BEN, selfie)
    assert (await w.studio.press(w.ctx(ADA), w.action("start"))).text == \
        "A party needs at least 2 selfies to start — 1 so far."


async def test_the_deadline_starts_a_full_enough_party_and_closes_an_empty_one(tmp_path: Path,
                                                                                selfie: bytes) -> None:
    clock = ManualClock()
    w = await make_world(tmp_path, PartySettings(deadline_minutes=10), clock)
    try:
        await w.studio.parties.open(w.ctx(ADA), "")
        await join_with_selfie(w, BEN, selfie)
        await join_with_selfie(w, CY, selfie)
        await clock.wait_for_sleepers(1)
        await clock.advance(9 * 60)
        assert w.engine.fused == [] and w.studio.parties.deadlines(), "before its deadline the lobby waits"
        await deadlines_pass(w, clock, 1)
        assert [p.name for p in w.engine.fused[0]] == ["Ben", "Cy"]
        assert any(s.kind == "image" for s in w.messenger.sent)

        lonely = Chat("test", "-200", is_private=False)
        await w.studio.parties.open(w.ctx(DEE, lonely), "")
        await deadlines_pass(w, clock, 10)
        lobby = next(s for s in w.messenger.sent if s.kind == "buttons" and s.target.chat_id == "-200")
        assert lobby.text.startswith("⌛ Time's up") and lobby.buttons == []
        assert len(w.engine.fused) == 1
    finally:
        await w.studio.aclose()
        await w.store.close()


async def test_an_open_lobby_survives_a_restart(tmp_path: Path, selfie: bytes) -> None:
    clock = ManualClock()
    w = await make_world(tmp_path, PartySettings(deadline_minutes=10), clock)
    await w.studio.parties.open(w.ctx(ADA), "pixel Retro night")
    await join_with_selfie(w, BEN, selfie)
    lobby, join = w.lobby(), w.action("join")
    await w.studio.aclose()
    await w.store.close()

    await clock.advance(4 * 60)  # the bot is down for four minutes
    again = await make_world(tmp_path, PartySettings(deadline_minutes=10), clock)
    again.messenger.sent.append(lobby)  # the lobby message still sits in the chat
    try:
        await again.studio.resume()
        # Its buttons still work, and a selfie replying to it still joins.
        joined = await again.studio.press(again.ctx(CY), join)
        assert joined.text == "You're in! Now reply to the party message with a selfie."
        cy = again.ctx(CY)
        assert await again.studio.parties.join_with_photo(cy, lobby.message_id, photo(selfie, cy.message_id))
        assert "Cy — 📸 selfie in" in lobby.text
        await deadlines_pass(again, clock, 6)  # the deadline re-armed at start-up starts it, on time
        assert [p.name for p in again.engine.fused[0]] == ["Ben", "Cy"]
        assert again.engine.calls[-1][2] == "pixel|Retro night"
    finally:
        await again.studio.aclose()
        await again.store.close()


async def test_forget_takes_a_member_out_of_an_open_party(w: World, selfie: bytes) -> None:
    await w.studio.parties.open(w.ctx(ADA), "")
    await join_with_selfie(w, BEN, selfie)
    await w.studio.forget(w.ctx(BEN))
    yes = next(b.action for b in w.messenger.buttons if b.action.startswith("forget:yes"))
    await w.studio.press(w.ctx(BEN), yes)
    party = await w.store.open_party("test", GROUP.id)
    assert party is not None and party.member(BEN.id) is None


async def test_an_album_fuses_into_one_picture(w: World, selfie: bytes) -> None:
    me = Chat("test", "77", is_private=True)
    ctx = w.ctx(ADA, me)
    await w.studio.fuse(ctx, [photo(selfie, f"a{i}") for i in range(3)], "anime best friends at the fair")
    await w.settle()
    [picture] = [s for s in w.messenger.sent if s.kind == "image"]
    assert picture.target.reply_to == ctx.message_id and "🎉" not in picture.text
    assert len(w.engine.fused[0]) == 3 and w.engine.calls[-1][2] == "anime|best friends at the fair"
    await w.studio.fuse(w.ctx(ADA, me), [photo(selfie, "solo")], "")
    assert w.messenger.sent[-1].text == "Send 2 to 8 photos as one album with the caption /fuse to blend them " \
                                        "— I got 1."


async def test_someone_the_operator_denied_cannot_join_by_button(tmp_path: Path, selfie: bytes) -> None:
    from core.config import AccessSettings

    store, images = await open_stores(tmp_path / "db.sqlite3")
    studio = Studio(store=store, images=images, engine=FakeEngine(),
                    access=AccessSettings(deny=[DEE.id]))
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    w = World(studio, store, FakeEngine(), messenger)
    try:
        await studio.parties.open(w.ctx(ADA), "")
        assert (await studio.press(w.ctx(DEE), w.action("join"))).text == "Sorry, this bot is private — its operator " \
                                                                   "hasn't given you access."
        assert "Dee" not in w.lobby().text
    finally:
        await studio.aclose()
        await store.close()


class GatedEngine(FakeEngine):
    """Starts drawing a group picture, then waits for the test to let it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.drawing = asyncio.Event()
        self.finish = asyncio.Event()

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        self.drawing.set()
        await self.finish.wait()
        return await super().fuse(portraits, style, theme, options=options)


async def test_a_group_picture_drawn_while_a_member_is_forgotten_is_dropped(tmp_path: Path, selfie: bytes) -> None:
    engine = GatedEngine()
    w = await make_world(tmp_path, engine=engine)
    try:
        await w.studio.parties.open(w.ctx(ADA), "")
        await join_with_selfie(w, BEN, selfie)
        await join_with_selfie(w, CY, selfie)
        assert (await w.studio.press(w.ctx(ADA), w.action("start"))).text == "Starting the party!"
        await asyncio.wait_for(engine.drawing.wait(), 10)

        await w.studio.forget(w.ctx(BEN))
        yes = next(b.action for b in w.messenger.buttons if b.action.startswith("forget:yes"))
        await w.studio.press(w.ctx(BEN), yes)
        engine.finish.set()
        await w.settle()

        assert not [s for s in w.messenger.sent if s.kind == "image"], "a picture of Ben is not sent"
        assert w.messenger.texts()[-1] == texts.SOURCE_GONE
        rows = await sql(w.store, "SELECT kind, user_id, owner_id FROM nodes")
        assert rows == [("photo", CY.id, CY.id)], "only Cy's selfie is left"
        assert len(await stored_images(w.store, tmp_path)) == 1, "the dropped picture's file is gone too"
    finally:
        await w.studio.aclose()
        await w.store.close()


async def test_a_deadline_that_meets_the_days_limit_closes_the_lobby_with_it(tmp_path: Path, selfie: bytes) -> None:
    clock = ManualClock()
    w = await make_world(tmp_path, PartySettings(deadline_minutes=10), clock, limits=LimitsSettings(daily_images=1))
    try:
        await w.studio.parties.open(w.ctx(ADA), "")
        lobby = w.lobby()
        closed = asyncio.Event()
        edit = w.messenger.edit_text

        async def edit_and_tell(target: ReplyTarget, message_id: str, text: str,
                                buttons: list[Button] | None = None) -> None:
            await edit(target, message_id, text, buttons)
            if message_id == lobby.message_id and not buttons:
                closed.set()

        w.messenger.edit_text = edit_and_tell  # type: ignore[method-assign]
        await join_with_selfie(w, BEN, selfie)
        await join_with_selfie(w, CY, selfie)
        await w.studio.style(w.ctx(DEE, Chat("test", "4", is_private=True)), "zombie", photo(selfie, "d1"))
        await w.settle()  # the day's one picture, made while the lobby was open

        await deadlines_pass(w, clock, 10)
        assert closed.is_set()
        assert lobby.text.startswith(texts.bot_daily_limit("§").split("§")[0]) and "\n" not in lobby.text
        assert w.engine.fused == []
        assert await w.store.open_party("test", GROUP.id) is None, "the lobby is closed"
    finally:
        await w.studio.aclose()
        await w.store.close()
