"""Telegram journeys end to end: the real PTB Application, the real studio on SQLite, the offline engine,
against the loopback Bot API stand-in. Every assertion is about what a person would see in the chat.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from core import texts
from core.engines.base import EngineResult
from core.styles import STYLES, get_style
from tests.backends import stored_images
from tests.fakes import FakeEngine, invert
from tests.standins.telegram_api import FakeTelegram
from tests.test_telegram_harness import (
    ALICE,
    BOB,
    GROUP,
    Running,
    as_messenger,
    difference,
    is_photo,
    png_bytes,
    private,
    running_bot,
    small_selfie,
)

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

ALICE_CHAT = private(ALICE)


@pytest.fixture(scope="module")
def selfie() -> bytes:
    return small_selfie()


@pytest.fixture
async def run(tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Running]:
    async with running_bot(tg, tmp_path) as running:
        yield running


# -- styling ---------------------------------------------------------------------------------------


async def test_style_a_selfie_in_a_private_chat(run: Running, selfie: bytes) -> None:
    tg = run.tg
    photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
    result = await run.photo_reply(ALICE_CHAT)
    assert result.reply_to_message_id == photo_id, "the avatar answers the photo it was made from"
    zombie = get_style("zombie")
    assert zombie is not None and result.caption in zombie.quips, "the caption is the engine's commentary"
    assert (ALICE.id, "upload_photo") in tg.chat_actions, "the chat showed 'sending photo…'"
    assert result.photo is not None
    made = Image.open(io.BytesIO(result.photo))
    assert made.size[0] >= 64 and made.size[1] >= 64
    assert difference(result.photo, selfie) > 10, "the avatar is not the selfie sent back"
    await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


async def test_commands_menu_lists_every_style_and_the_basics(run: Running) -> None:
    names = {c["command"] for c in run.tg.commands}
    assert {s.id for s in STYLES} <= names
    assert {"start", "help", "styles", "undo", "cancel", "forget"} <= names


async def test_long_commentary_continues_under_the_picture(tg: FakeTelegram, tmp_path: Path,
                                                           selfie: bytes) -> None:
    class Chatty(FakeEngine):
        async def stylize(self, selfie: bytes, style: object, *, options: object = None) -> EngineResult:
            return EngineResult(invert(selfie), "image/png", "Wow. " * 400, "chatty")

    async with running_bot(tg, tmp_path, engine=Chatty()) as run:
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
        picture = await run.photo_reply(ALICE_CHAT)
        rest = await run.text_reply(ALICE_CHAT)
        assert picture.caption is None
        assert rest.reply_to_message_id == picture.message_id
        assert rest.text is not None and rest.text.startswith("Wow. Wow.") and len(rest.text) >= 1900
        # Replying to the picture still edits it: the picture is what the studio remembers.
        tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=picture.message_id)
        edited = await run.photo_reply(ALICE_CHAT)
        assert edited.caption == "edit: add a crown"


async def test_reply_edits_the_result_and_branches_from_older_ones(run: Running, selfie: bytes) -> None:
    tg = run.tg
    tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
    first = await run.photo_reply(ALICE_CHAT)

    ask = tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=first.message_id)
    crowned = await run.photo_reply(ALICE_CHAT)
    assert crowned.reply_to_message_id == ask
    assert crowned.caption is not None and "crown" in crowned.caption.lower()
    assert first.photo is not None and crowned.photo is not None
    assert 0.5 < difference(first.photo, crowned.photo) < 60, "the same picture, with something added"

    # Replying to the older picture starts a branch from it, not from the crowned one.
    tg.send_text(ALICE_CHAT, ALICE, "add sunglasses", reply_to=first.message_id)
    shades = await run.photo_reply(ALICE_CHAT)
    assert shades.caption is not None and "sunglasses" in shades.caption.lower()
    await run.settle()
    store = run.studio.store
    first_node = await store.node_for_message("telegram", str(ALICE.id), str(first.message_id))
    shades_node = await store.node_for_message("telegram", str(ALICE.id), str(shades.message_id))
    assert first_node is not None and shades_node is not None
    assert shades_node.parent_id == first_node.id

    # An instruction the offline engine does not know gets its one-line explanation.
    tg.send_text(ALICE_CHAT, ALICE, "make me a dragon rider", reply_to=crowned.message_id)
    answer = await run.text_reply(ALICE_CHAT)
    assert answer.text is not None and "crown" in answer.text and "Gemini" in answer.text


async def test_undo_resends_the_previous_step_which_can_be_edited_again(run: Running, selfie: bytes) -> None:
    tg = run.tg
    tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/sketch")
    first = await run.photo_reply(ALICE_CHAT)
    tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=first.message_id)
    crowned = await run.photo_reply(ALICE_CHAT)

    undo_id = tg.send_text(ALICE_CHAT, ALICE, "/undo", reply_to=crowned.message_id)
    back = await run.photo_reply(ALICE_CHAT)
    assert back.reply_to_message_id == undo_id
    assert back.photo == first.photo, "the step before, re-sent"
    assert back.caption is not None and back.caption.startswith("↩️")

    tg.send_text(ALICE_CHAT, ALICE, "add horns", reply_to=back.message_id)
    horned = await run.photo_reply(ALICE_CHAT)
    assert horned.caption is not None and "horns" in horned.caption.lower()

    # /undo on the first result: nothing before it; /undo not as a reply: how to use it.
    tg.send_text(ALICE_CHAT, ALICE, "/undo", reply_to=first.message_id)
    assert (await run.text_reply(ALICE_CHAT)).text == texts.UNDO_FIRST_STEP
    tg.send_text(ALICE_CHAT, ALICE, "/undo")
    assert (await run.text_reply(ALICE_CHAT)).text == texts.UNDO_HOW


async def test_restyle_by_replying_with_a_style_command(run: Running, selfie: bytes) -> None:
    tg = run.tg
    photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/noir")
    noir = await run.photo_reply(ALICE_CHAT)
    tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=noir.message_id)
    crowned = await run.photo_reply(ALICE_CHAT)

    # /comic as a reply to a result restyles the original selfie (no crown, no noir).
    tg.send_text(ALICE_CHAT, ALICE, "/comic", reply_to=crowned.message_id)
    comic = await run.photo_reply(ALICE_CHAT)
    await run.settle()  # the studio records which message shows which picture after sending
    node = await run.studio.store.node_for_message("telegram", str(ALICE.id), str(comic.message_id))
    root = await run.studio.store.node_for_message("telegram", str(ALICE.id), str(photo_id))
    assert node is not None and root is not None and node.parent_id == root.id and node.style == "comic"

    # A style command as a reply to the person's own photo works too, with no second download.
    downloads = len(tg.file_downloads)
    tg.send_text(ALICE_CHAT, ALICE, "/pixel", reply_to=photo_id)
    pixel = await run.photo_reply(ALICE_CHAT)
    assert pixel.photo is not None and len(tg.file_downloads) == downloads


async def test_bare_photo_offers_styles_and_a_press_makes_one(run: Running, selfie: bytes) -> None:
    tg = run.tg
    photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie)
    menu = await run.text_reply(ALICE_CHAT)
    assert menu.text == texts.PICK_STYLE and menu.reply_to_message_id == photo_id
    datas = [b["callback_data"] for b in menu.buttons]
    assert len(datas) == len(STYLES) and all(len(d.encode()) <= 64 for d in datas)
    assert not tg.file_downloads, "nothing is downloaded until a style is picked"

    query = tg.press_button(ALICE_CHAT, ALICE, menu.message_id, "style:anime")
    result = await run.photo_reply(ALICE_CHAT)
    assert result.reply_to_message_id == photo_id
    anime = get_style("anime")
    assert anime is not None and result.caption in anime.quips
    assert "Anime" in str((await tg.wait_for_callback_answer(query)).get("text"))


async def test_start_help_styles_and_a_lone_style_command(run: Running) -> None:
    tg = run.tg
    for command in ("/start", "/help"):
        tg.send_text(ALICE_CHAT, ALICE, command)
        answer = await run.text_reply(ALICE_CHAT)
        assert answer.text is not None and "Pix Me" in answer.text and "/zombie" in answer.text
        assert "/undo" in answer.text and "offline engine" in answer.text
    tg.send_text(ALICE_CHAT, ALICE, "/styles")
    listing = await run.text_reply(ALICE_CHAT)
    assert listing.text is not None and all(f"/{s.id}" in listing.text for s in STYLES)

    zombie = get_style("zombie")
    assert zombie is not None
    tg.send_text(ALICE_CHAT, ALICE, "/zombie")
    hint = await run.text_reply(ALICE_CHAT)
    assert hint.text == texts.style_hint(zombie) and "\n" not in hint.text

    tg.send_text(ALICE_CHAT, ALICE, "/dragon")
    assert (await run.text_reply(ALICE_CHAT)).text == texts.unknown_style("dragon")
    tg.send_text(ALICE_CHAT, ALICE, "hello?")
    assert (await run.text_reply(ALICE_CHAT)).text == texts.SEND_A_PHOTO


# -- groups ----------------------------------------------------------------------------------------


async def test_group_only_answers_when_addressed(tmp_path: Path, selfie: bytes) -> None:
    # Privacy mode off: the bot sees every message, so staying quiet is its own decision.
    async with FakeTelegram(privacy_mode=False) as tg, running_bot(tg, tmp_path) as run:
        tg.send_photo(GROUP, ALICE, selfie)
        chatter = tg.send_text(GROUP, BOB, "nice pic!")
        tg.send_text(GROUP, ALICE, "thanks", reply_to=chatter)
        tg.send_photo(GROUP, BOB, selfie, caption="/zombie@otherbot")
        tg.send_text(GROUP, BOB, "/help@otherbot")
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())
        assert not tg.file_downloads

        photo_id = tg.send_photo(GROUP, ALICE, selfie, caption="/zombie@pixme_test_bot")
        result = await run.photo_reply(GROUP)
        assert result.reply_to_message_id == photo_id

        # Chatter in reply to the result that names another bot's command is still not ours.
        tg.send_text(GROUP, BOB, "/comic@otherbot", reply_to=result.message_id)
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())

        ask = tg.send_text(GROUP, BOB, "add a party hat", reply_to=result.message_id)
        edited = await run.photo_reply(GROUP)
        assert edited.reply_to_message_id == ask
        assert edited.caption is not None and "party hat" in edited.caption.lower()

        # A style command sent as a reply to someone's photo styles that photo.
        other = tg.send_photo(GROUP, BOB, selfie)
        tg.send_text(GROUP, ALICE, "/popart", reply_to=other)
        popart = await run.photo_reply(GROUP)
        assert popart.photo is not None
        await tg.expect_no_message(chat_id=GROUP.id, after=run.finished())


# -- inputs ----------------------------------------------------------------------------------------


async def test_image_sent_as_a_file_is_accepted(run: Running, selfie: bytes) -> None:
    tg = run.tg
    png = io.BytesIO()
    Image.open(io.BytesIO(selfie)).save(png, "PNG")
    doc_id = tg.send_document(ALICE_CHAT, ALICE, png.getvalue(), "me.png", "image/png", caption="/cyberpunk")
    result = await run.photo_reply(ALICE_CHAT)
    assert result.reply_to_message_id == doc_id and result.photo is not None

    # Sent alone, an image file gets the style keyboard like a photo does.
    tg.send_document(ALICE_CHAT, ALICE, selfie, "IMG_0001.JPG", "image/jpeg")
    menu = await run.text_reply(ALICE_CHAT)
    assert menu.text == texts.PICK_STYLE and menu.buttons


async def test_bad_inputs_get_one_line_reasons_and_no_engine_call(tg: FakeTelegram, tmp_path: Path,
                                                                  selfie: bytes) -> None:
    engine = FakeEngine()
    strip = io.BytesIO()
    Image.new("RGB", (20000, 10), "white").save(strip, "PNG")
    async with running_bot(tg, tmp_path, engine=engine) as run:
        cases = [
            lambda: tg.send_document(ALICE_CHAT, ALICE, b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n" * 20,
                                     "selfie.jpg", "image/jpeg", caption="/zombie"),
            lambda: tg.send_document(ALICE_CHAT, ALICE, selfie[: len(selfie) // 3], "cut.jpg", "image/jpeg",
                                     caption="/zombie"),
            lambda: tg.send_photo(ALICE_CHAT, ALICE, png_bytes((1, 1)), caption="/zombie"),
            lambda: tg.send_document(ALICE_CHAT, ALICE, strip.getvalue(), "strip.png", "image/png",
                                     caption="/zombie"),
            lambda: tg.send_document(ALICE_CHAT, ALICE, selfie, "huge.jpg", "image/jpeg", caption="/zombie",
                                     declared_size=25 * 1024 * 1024),
        ]
        reasons = []
        for send in cases:
            message_id = send()
            reason = await run.text_reply(ALICE_CHAT)
            assert reason.reply_to_message_id == message_id
            assert reason.text is not None and "\n" not in reason.text and len(reason.text) < 200
            reasons.append(reason.text)
        assert len(set(reasons)) >= 4, reasons
        assert "damaged" in reasons[1] and "20 MB" in reasons[4]
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert engine.calls == []
        assert not any(is_photo(m) for m in tg.bot_messages)
        assert len(tg.file_downloads) == 4, "the oversize file was refused before downloading"


# -- buttons, cancel, forget, stats ------------------------------------------------------------------


async def test_forget_with_confirmation_deletes_the_persons_images(tg: FakeTelegram, tmp_path: Path,
                                                                   selfie: bytes) -> None:
    async with running_bot(tg, tmp_path) as run:
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/watercolor")
        result = await run.photo_reply(ALICE_CHAT)
        assert len(await stored_images(run.studio.store, tmp_path)) == 2  # the selfie and the avatar

        tg.send_text(ALICE_CHAT, ALICE, "/forget")
        confirm = await run.text_reply(ALICE_CHAT)
        assert confirm.text == texts.FORGET_CONFIRM
        yes = next(b["callback_data"] for b in confirm.buttons if b["text"] == texts.FORGET_YES)
        assert len(yes.encode()) <= 64

        # Someone else pressing it (were it forwarded) deletes nothing.
        bob_query = tg.press_button(ALICE_CHAT, BOB, confirm.message_id, yes)
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert (await tg.wait_for_callback_answer(bob_query)).get("text") == texts.NOT_YOUR_BUTTON

        query = tg.press_button(ALICE_CHAT, ALICE, confirm.message_id, yes)
        done = await run.text_reply(ALICE_CHAT)
        assert done.text == texts.forgotten(2)
        assert not await stored_images(run.studio.store, tmp_path)
        assert (await tg.wait_for_callback_answer(query)).get("text") == texts.forgotten(2)
        await tg.wait_for_edit(confirm.message_id, chat_id=ALICE.id)
        assert confirm.reply_markup is None, "the question's buttons are taken away once answered"

        tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=result.message_id)
        assert (await run.text_reply(ALICE_CHAT)).text == texts.REPLY_TO_RESULT


async def test_long_button_actions_survive_the_64_byte_limit(run: Running) -> None:
    from core.requests import Button, ReplyTarget

    action = "forget:yes:" + "9" * 80  # someone else's id, far too long for callback_data
    target = ReplyTarget("telegram", str(ALICE.id))
    run.tg.add_chat(ALICE_CHAT, ALICE)
    await run.bot.messenger.send_buttons(target, "Press it", [Button("Go", action)])
    message = await run.text_reply(ALICE_CHAT)
    [data] = [b["callback_data"] for b in message.buttons]
    assert len(data.encode()) <= 64
    query = run.tg.press_button(ALICE_CHAT, ALICE, message.message_id, data)
    answer = await run.tg.wait_for_callback_answer(query)
    assert answer.get("text") == texts.NOT_YOUR_BUTTON, "the full action reached the studio"


async def test_edited_messages_gain_and_lose_buttons(run: Running) -> None:
    from core.requests import Button, ReplyTarget

    run.tg.add_chat(ALICE_CHAT, ALICE)
    target = ReplyTarget("telegram", str(ALICE.id))
    messenger = as_messenger(run.bot.messenger)
    message_id = await messenger.send_text(target, "Waiting for friends…")
    note = await run.text_reply(ALICE_CHAT)
    await messenger.edit_text(target, message_id, "2 friends in", [Button("Start", "party:start:1")])
    assert note.text == "2 friends in" and [b["text"] for b in note.buttons] == ["Start"]
    await messenger.edit_text(target, message_id, "Started!")
    assert note.text == "Started!" and note.buttons == []
    await messenger.edit_text(target, message_id, "Started!")  # unchanged: not an error
    await messenger.delete(target, message_id)
    assert note.deleted
    await messenger.delete(target, message_id)  # already gone: not an error


async def test_stats_are_for_admins_only(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running_bot(tg, tmp_path, admins=[str(BOB.id)]) as run:
        tg.send_text(ALICE_CHAT, ALICE, "/stats")
        assert (await run.text_reply(ALICE_CHAT)).text == texts.ADMINS_ONLY
        bob = private(BOB)
        tg.send_text(bob, BOB, "/stats")
        answer = await run.text_reply(bob)
        assert answer.text is not None and answer.text.startswith("📊 Today")


async def test_a_failing_reply_never_escapes_into_the_library(run: Running,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    tg = run.tg
    tg.fail_next("sendMessage", 500)
    tg.send_text(ALICE_CHAT, ALICE, "/help")
    await tg.wait_until(lambda: ("sendMessage", 500) in [(m, s) for m, s, _ in tg.errors], 10, "the fault")
    tg.send_text(ALICE_CHAT, ALICE, "/styles")
    listing = await run.text_reply(ALICE_CHAT)
    assert listing.text is not None and listing.text.startswith("Styles:")
    assert not [r for r in caplog.records if "unhandled" in r.getMessage()], "PTB's error handler was reached"
    assert any(r.name == "bots.telegram.bot" and "failed" in r.getMessage() for r in caplog.records)
