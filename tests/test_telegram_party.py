"""Avatar parties and album fusion on Telegram, end to end: the real PTB Application, the real studio on
SQLite, against the loopback Bot API stand-in (and the Gemini stand-in where the model matters).
Every assertion is about what people in the chat would see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core import texts
from core.config import Settings, load_settings
from tests.backends import storage_settings
from tests.clock import ManualClock, until
from tests.fakes import FakeEngine
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, SentMessage, User
from tests.test_telegram_harness import (
    ALICE,
    BOB,
    CAROL,
    GROUP,
    Running,
    difference,
    is_photo,
    private,
    running_bot,
    small_selfie,
)

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

DAVE = User(id=1004, first_name="Dave")
GUESTS = [ALICE, BOB, CAROL, DAVE] + [User(id=1005 + i, first_name=n)
                                      for i, n in enumerate(["Erin", "Frank", "Grace", "Heidi"])]
ALICE_CHAT = private(ALICE)
LOBBY_HEAD = "🎉 Avatar party"


@pytest.fixture(scope="module")
def selfie() -> bytes:
    return small_selfie(256)


def settings_for(tg: FakeTelegram, data_dir: Path, *, deadline_minutes: float = 10.0, album_wait_s: float = 0.3,
                 gemini: FakeGemini | None = None) -> Settings:
    engine: dict[str, Any] = {"default": "gemini" if gemini else "offline", "input_max_px": 256}
    gemini_settings: dict[str, Any] = {"api_key": ""}
    if gemini is not None:
        gemini_settings = {"api_key": gemini.api_key, "base_url": gemini.base_url,  # the default model
                           "retry_budget_s": 2, "request_timeout_s": 20}
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url, "album_wait_s": album_wait_s},
        storage=storage_settings(data_dir, retention_days=0),
        engine=engine,
        limits={"concurrency": 4},
        access={"admins": []},
        gemini=gemini_settings,
        party={"deadline_minutes": deadline_minutes},
        # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
        likeness={"enabled": False},
    )


# -- acting in the group ---------------------------------------------------------------------------


def is_lobby(m: SentMessage) -> bool:
    return m.method == "sendMessage" and (m.text or "").startswith(LOBBY_HEAD)


async def open_party(run: Running, host: User, args: str = "", chat: Chat = GROUP) -> SentMessage:
    asked = run.tg.send_text(chat, host, f"/party {args}".strip())
    lobby = await run.tg.wait_for_message(is_lobby, chat_id=chat.id)
    assert lobby.reply_to_message_id == asked, "the lobby answers the /party message"
    return lobby


def button(message: SentMessage, verb: str) -> str:
    """The callback_data of a lobby button as the message shows it now."""
    return next(b["callback_data"] for b in message.buttons if f"party:{verb}:" in b["callback_data"])


async def press(run: Running, user: User, message: SentMessage, data: str, *,
                chat: Chat = GROUP, strict: bool = True) -> dict[str, Any]:
    query = run.tg.press_button(chat, user, message.message_id, data, strict=strict)
    return await run.tg.wait_for_callback_answer(query)


def roster(lobby: SentMessage) -> dict[str, str]:
    """The lobby's list of who's in: name (with " (host)") -> their state."""
    found: dict[str, str] = {}
    for line in (lobby.text or "").splitlines():
        number, dot, rest = line.partition(". ")
        if dot and number.isdigit() and " — " in rest:
            name, _, state = rest.partition(" — ")
            found[name] = state
    return found


async def until_in_lobby(run: Running, lobby: SentMessage, name: str, state: str = "📸 selfie in") -> None:
    await run.tg.wait_until(lambda: roster(lobby).get(name) == state or roster(lobby).get(f"{name} (host)") == state,
                            what=f"the lobby to show {name}: {state}")


async def join(run: Running, lobby: SentMessage, user: User, selfie: bytes, *, chat: Chat = GROUP) -> None:
    """Press Join, then reply to the lobby with a selfie."""
    answer = await press(run, user, lobby, button(lobby, "join"), chat=chat)
    assert answer["text"] == texts.PARTY_SEND_SELFIE and not answer.get("show_alert")
    run.tg.send_photo(chat, user, selfie, reply_to=lobby.message_id)
    await until_in_lobby(run, lobby, user.first_name)


def alert(answer: dict[str, Any]) -> bool:
    return answer.get("show_alert") in (True, "true")


# -- parties ---------------------------------------------------------------------------------------


async def test_three_friends_party_from_lobby_to_group_picture_then_edit_it(tg: FakeTelegram, tmp_path: Path,
                                                                            selfie: bytes) -> None:
    async with FakeGemini() as gem, running_bot(tg, tmp_path, settings=settings_for(tg, tmp_path, gemini=gem)) as run:
        lobby = await open_party(run, ALICE, "noir Heist crew")
        assert "Film Noir" in (lobby.text or "") and "Heist crew" in (lobby.text or "")
        assert "Alice (host)" in (lobby.text or "")
        assert [b["callback_data"].split(":")[2] for b in lobby.buttons] == ["join", "leave", "start", "cancel"]

        # Three ways in: Join then a selfie reply; /join with a photo; an image file replying to the lobby.
        await join(run, lobby, ALICE, selfie)
        tg.send_photo(GROUP, BOB, selfie, caption="/join", reply_to=lobby.message_id)
        await until_in_lobby(run, lobby, "Bob")
        tg.send_document(GROUP, CAROL, selfie, "carol.jpg", "image/jpeg", reply_to=lobby.message_id)
        await until_in_lobby(run, lobby, "Carol")
        assert "Who's in (3/8)" in (lobby.text or "")
        assert not [m for m in tg.unconsumed(GROUP.id) if m is not lobby], "joining is shown in the lobby only"

        answer = await press(run, ALICE, lobby, button(lobby, "start"))
        assert answer["text"] == texts.PARTY_STARTING and not alert(answer)
        picture = await run.photo_reply(GROUP)
        assert picture.reply_to_message_id == lobby.message_id, "the group picture answers the lobby"
        assert picture.caption is not None and picture.caption.endswith("🎉 Alice, Bob and Carol")
        assert "has started with Alice, Bob and Carol" in (lobby.text or "") and lobby.buttons == []
        [fuse] = gem.generate_requests
        assert len(fuse.images()) == 3 and "Alice, Bob and Carol" in fuse.text and "heist crew" in fuse.text.lower()

        # The group picture is an ordinary result: replying with a change edits it.
        ask = tg.send_text(GROUP, BOB, "make it a beach party", reply_to=picture.message_id)
        edited = await run.photo_reply(GROUP)
        assert edited.reply_to_message_id == ask
        edit = gem.generate_requests[-1]
        assert len(gem.generate_requests) == 2 and "make it a beach party" in edit.text
        assert picture.photo is not None and picture.photo in edit.images(), "the group picture was edited"
        assert edited.photo is not None and difference(edited.photo, picture.photo) > 10


async def test_eight_people_on_flash_image_go_to_the_model_as_contact_sheets(tg: FakeTelegram, tmp_path: Path,
                                                                             selfie: bytes) -> None:
    async with FakeGemini() as gem, running_bot(tg, tmp_path, settings=settings_for(tg, tmp_path, gemini=gem)) as run:
        lobby = await open_party(run, ALICE, "anime Graduation day")
        for guest in GUESTS:  # one after the other, so the roster (and the caption) has them in this order
            tg.send_photo(GROUP, guest, selfie, reply_to=lobby.message_id)
            await until_in_lobby(run, lobby, guest.first_name)
        assert "Who's in (8/8)" in (lobby.text or "")

        # A ninth person is told the party is full.
        ivan = User(id=1100, first_name="Ivan")
        asked = tg.send_photo(GROUP, ivan, selfie, reply_to=lobby.message_id)
        full = await run.text_reply(GROUP)
        assert full.text == texts.party_full(8) and full.reply_to_message_id == asked

        assert (await press(run, ALICE, lobby, button(lobby, "start")))["text"] == texts.PARTY_STARTING
        picture = await run.photo_reply(GROUP, timeout=30)
        names = [g.first_name for g in GUESTS]
        assert picture.caption is not None and picture.caption.endswith("🎉 " + ", ".join(names[:-1]) + " and Heidi")
        assert gem.generate_requests, "the model was asked"
        for request in gem.generate_requests:
            # gemini-nano-banana-2.1 keeps 4 people consistent: 8 go on a couple of contact sheets.
            assert 1 <= len(request.images()) <= 2, "eight people on at most two sheets of four"
        prompt = gem.generate_requests[-1].text
        assert all(name in prompt for name in names) and "8 people" in prompt
        assert "Contact sheet" in prompt, "the faces went as contact sheets"


async def test_join_leave_cancel_and_one_party_at_a_time(tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    engine = FakeEngine()
    async with running_bot(tg, tmp_path, engine=engine, settings=settings_for(tg, tmp_path)) as run:
        tg.send_text(ALICE_CHAT, ALICE, "/party")
        assert (await run.text_reply(ALICE_CHAT)).text == texts.PARTY_GROUPS_ONLY

        lobby = await open_party(run, ALICE)
        tg.send_text(GROUP, BOB, "/party pixel")
        pointer = await run.text_reply(GROUP)
        assert pointer.text == texts.PARTY_ALREADY_OPEN and pointer.reply_to_message_id == lobby.message_id

        await join(run, lobby, BOB, selfie)
        left = await press(run, BOB, lobby, button(lobby, "leave"))
        assert left["text"] == texts.PARTY_LEFT
        await run.tg.wait_until(lambda: "Bob" not in roster(lobby), what="Bob to leave the lobby")
        not_in = await press(run, CAROL, lobby, button(lobby, "leave"))
        assert not_in["text"] == texts.PARTY_NOT_IN and alert(not_in)

        refused = await press(run, BOB, lobby, button(lobby, "cancel"))
        assert refused["text"] == texts.PARTY_HOST_ONLY and alert(refused)
        assert lobby.buttons, "a refused cancel leaves the lobby open"

        join_data = button(lobby, "join")
        cancelled = await press(run, ALICE, lobby, button(lobby, "cancel"))
        assert cancelled["text"] == texts.PARTY_CANCELLED_TOAST
        assert "cancelled by Alice" in (lobby.text or "") and lobby.buttons == []

        # A stale Join (another phone still shows the old keyboard) and a late selfie are told it closed.
        late = await press(run, CAROL, lobby, join_data, strict=False)
        assert late["text"] == texts.PARTY_NOT_OPEN and alert(late)
        asked = tg.send_photo(GROUP, CAROL, selfie, reply_to=lobby.message_id)
        closed = await run.text_reply(GROUP)
        assert closed.text == texts.PARTY_NOT_OPEN and closed.reply_to_message_id == asked

        # /join without a photo, replying to a new lobby, is the Join button.
        second = await open_party(run, BOB, "comic")
        tg.send_text(GROUP, CAROL, "/join", reply_to=second.message_id)
        assert (await run.text_reply(GROUP)).text == texts.PARTY_SEND_SELFIE
        await until_in_lobby(run, second, "Carol", "⏳ waiting for a selfie")
        await run.settle()
        assert engine.fused == []


async def test_only_the_host_or_a_chat_admin_can_start(tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    engine = FakeEngine()
    async with running_bot(tg, tmp_path, engine=engine, settings=settings_for(tg, tmp_path)) as run:
        tg.set_member_status(GROUP, DAVE, "administrator")
        lobby = await open_party(run, ALICE, "zombie")
        await join(run, lobby, BOB, selfie)
        await join(run, lobby, CAROL, selfie)

        refused = await press(run, BOB, lobby, button(lobby, "start"))
        assert refused["text"] == texts.PARTY_HOST_ONLY and alert(refused)
        assert any(c.get("user_id") in (BOB.id, str(BOB.id)) for c in tg.calls_of("getChatMember"))
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())
        assert engine.fused == [] and lobby.buttons

        started = await press(run, DAVE, lobby, button(lobby, "start"))
        assert started["text"] == texts.PARTY_STARTING
        picture = await run.photo_reply(GROUP)
        assert picture.reply_to_message_id == lobby.message_id
        assert picture.caption is not None and picture.caption.endswith("🎉 Bob and Carol")
        assert [p.name for p in engine.fused[0]] == ["Bob", "Carol"]


async def test_nobody_can_press_someone_elses_last_selfie_button(tg: FakeTelegram, tmp_path: Path,
                                                                 selfie: bytes) -> None:
    engine = FakeEngine()
    async with running_bot(tg, tmp_path, engine=engine, settings=settings_for(tg, tmp_path)) as run:
        tg.send_photo(GROUP, BOB, selfie, caption="/comic")  # Bob used the bot in this group before
        await run.photo_reply(GROUP)
        await run.settle()

        lobby = await open_party(run, ALICE)
        joined = await press(run, BOB, lobby, button(lobby, "join"))
        assert joined["text"] == texts.PARTY_SEND_SELFIE
        offer = await tg.wait_for_message(lambda m: bool(m.buttons), chat_id=GROUP.id)
        assert offer.text == texts.party_reuse_offer("Bob") and offer.reply_to_message_id == lobby.message_id
        [reuse] = offer.buttons
        assert reuse["text"] == texts.PARTY_REUSE

        refused = await press(run, CAROL, offer, reuse["callback_data"])
        assert refused["text"] == texts.NOT_YOUR_BUTTON and alert(refused)
        assert offer.buttons, "the offer stays for Bob"
        await until_in_lobby(run, lobby, "Bob", "⏳ waiting for a selfie")

        used = await press(run, BOB, offer, reuse["callback_data"])
        assert used["text"] == texts.PARTY_REUSED and not alert(used)
        await until_in_lobby(run, lobby, "Bob")
        await tg.wait_until(lambda: not offer.buttons, what="the used offer to lose its button")
        assert lobby.buttons, "the lobby keeps its buttons"


async def test_the_deadline_starts_a_ready_party_and_closes_an_empty_one(tg: FakeTelegram, tmp_path: Path,
                                                                         selfie: bytes) -> None:
    engine = FakeEngine()
    settings = settings_for(tg, tmp_path, deadline_minutes=10)
    clock = ManualClock()
    async with running_bot(tg, tmp_path, engine=engine, settings=settings, clock=clock) as run:  # deadlines on it
        lobby = await open_party(run, ALICE, "pixel")
        lonely_group = Chat(id=-100888, type="supergroup", title="Quiet")
        lonely = await open_party(run, DAVE, "", chat=lonely_group)
        tg.send_photo(GROUP, BOB, selfie, reply_to=lobby.message_id)
        await until_in_lobby(run, lobby, "Bob")  # Bob in first: the roster (and the names below) go by who joined first
        tg.send_photo(GROUP, CAROL, selfie, reply_to=lobby.message_id)
        await until_in_lobby(run, lobby, "Carol")
        await until(lambda: len(run.studio.parties.deadlines()) == 2)  # both deadlines armed
        await clock.advance(9 * 60)
        assert lobby.buttons and engine.fused == [], "a minute before the deadline the lobby still waits"
        await clock.advance(60)

        picture = await run.photo_reply(GROUP, timeout=10)  # nobody pressed Start
        assert picture.reply_to_message_id == lobby.message_id
        assert "has started with Bob and Carol" in (lobby.text or "") and lobby.buttons == []
        await tg.wait_until(lambda: (lonely.text or "").startswith("⌛ Time's up"), what="the empty lobby to close")
        assert lonely.buttons == [] and len(engine.fused) == 1


async def test_an_open_lobby_keeps_working_after_a_restart(tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    engine = FakeEngine()
    settings = settings_for(tg, tmp_path)
    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        lobby = await open_party(run, ALICE, "sketch Book club")
        await join(run, lobby, BOB, selfie)

    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        # The old lobby's buttons and replies to it still work.
        await join(run, lobby, CAROL, selfie)
        assert roster(lobby)["Bob"] == "📸 selfie in"
        assert (await press(run, ALICE, lobby, button(lobby, "start")))["text"] == texts.PARTY_STARTING
        picture = await run.photo_reply(GROUP)
        assert picture.reply_to_message_id == lobby.message_id
        assert picture.caption is not None and picture.caption.endswith("🎉 Bob and Carol")
        assert engine.calls[-1][2] == "sketch|Book club"


# -- albums ----------------------------------------------------------------------------------------


async def test_an_album_with_fuse_becomes_one_picture_without_holding_up_others(tg: FakeTelegram, tmp_path: Path,
                                                                                selfie: bytes) -> None:
    engine = FakeEngine()
    settings = settings_for(tg, tmp_path, album_wait_s=0.4)
    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        ids = tg.send_album(ALICE_CHAT, ALICE, [selfie] * 3, "/fuse anime best friends at the fair", caption_on=1)
        # While the album is gathered, someone else is answered at once.
        bob_chat = private(BOB)
        tg.send_text(bob_chat, BOB, "/styles")
        listing = await run.text_reply(bob_chat, timeout=5)
        picture = await run.photo_reply(ALICE_CHAT)
        assert tg.bot_messages.index(listing) < tg.bot_messages.index(picture), "Bob was not kept waiting"

        assert picture.reply_to_message_id == ids[1], "the picture answers the captioned photo"
        assert picture.caption is not None and "🎉" not in picture.caption
        [portraits] = engine.fused
        assert len(portraits) == 3 and engine.calls[-1][2] == "anime|best friends at the fair"
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())

        # An album without /fuse: one style menu, for its first photo, not one per photo.
        plain = tg.send_album(ALICE_CHAT, ALICE, [selfie] * 4)
        menu = await run.text_reply(ALICE_CHAT)
        assert menu.text == texts.PICK_STYLE and menu.reply_to_message_id == plain[0]
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())

        # A lone photo captioned /fuse is told how an album works.
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/fuse")
        assert (await run.text_reply(ALICE_CHAT)).text == texts.fuse_count(2, 8, 1)
        await run.finished()
        assert len(engine.fused) == 1


async def test_an_album_still_gathering_at_shutdown_is_handled(tg: FakeTelegram, tmp_path: Path,
                                                               selfie: bytes) -> None:
    engine = FakeEngine()
    settings = settings_for(tg, tmp_path, album_wait_s=0.5)
    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        tg.send_album(ALICE_CHAT, ALICE, [selfie] * 2, "/fuse")
        await tg.wait_handled(run.first_update)  # both photos fetched and gathered
        assert run.bot._albums, "still inside the album's wait"
        assert not run.tg.unconsumed(ALICE.id)
    # Stopping waited for the album; its job was accepted, so the picture comes after the next start
    # (the engine may have been asked once already while the bot was going down: at least once, one picture).
    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        picture = await run.photo_reply(ALICE_CHAT)
        assert is_photo(picture) and engine.fused and all(len(p) == 2 for p in engine.fused)
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
