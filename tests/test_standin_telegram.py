"""The Telegram Bot API stand-in, exercised through the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.standins.telegram_api import Chat, FakeTelegram, FloodLimits, User

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut.png"
ALICE = User(id=1001, first_name="Alice", username="alice")
BOB = User(id=1002, first_name="Bob", language_code="de")
PRIVATE = Chat(id=ALICE.id)
GROUP = Chat(id=-100500, type="supergroup", title="Avatars")


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(FIXTURE).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as tg:
        yield tg


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.api_url, base_file_url=fake.file_url) as real_bot:
        yield real_bot


def png(size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


async def test_get_me_describes_the_bot(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (fake.bot_id, "pixme_test_bot", True)
    assert me.can_join_groups is True and me.can_read_all_group_messages is False
    assert me.supports_inline_queries is False
    assert bot.username == "pixme_test_bot"  # Bot.initialize() called getMe
    assert fake.calls[0][0] == "getMe"


async def test_wrong_token_and_unknown_method(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base}/bot999:WRONG/getMe") as resp:
            assert resp.status == 401
            assert await resp.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with http.post(f"{fake.base}/botnot-a-token/getMe") as resp:
            assert resp.status == 404
        async with http.get(f"{fake.api_url}{fake.token}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.get(f"{fake.api_url}{fake.token}/GETME") as resp:  # method names ignore case
            assert (await resp.json())["result"]["username"] == "pixme_test_bot"
    wrong = Bot("999:WRONG", base_url=fake.api_url, base_file_url=fake.file_url)
    with pytest.raises(InvalidToken):
        await wrong.initialize()
    async with Bot(fake.token, base_url=fake.api_url) as real_bot:
        with pytest.raises(EndPointNotFound):
            await real_bot.do_api_request("noSuchMethod")


async def test_json_and_query_string_requests(fake: FakeTelegram) -> None:
    fake.add_chat(PRIVATE, ALICE)
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": ALICE.id, "text": "42", "reply_markup": {"inline_keyboard": [
            [{"text": "go", "callback_data": "x"}]]}}
        async with http.post(f"{fake.api_url}{fake.token}/sendmessage", json=body) as resp:
            answer = await resp.json()
        assert answer["ok"] and answer["result"]["text"] == "42"
        async with http.get(f"{fake.api_url}{fake.token}/sendMessage",
                            params={"chat_id": str(ALICE.id), "text": "true"}) as resp:
            # text stays text even when it looks like JSON
            assert (await resp.json())["result"]["text"] == "true"
    first, second = await fake.wait_for_messages(2, chat_id=ALICE.id)
    assert first.reply_markup == {"inline_keyboard": [[{"text": "go", "callback_data": "x"}]]}
    assert (first.text, second.text) == ("42", "true")


async def test_persons_photo_arrives_with_sizes_and_downloads(fake: FakeTelegram, bot: Bot,
                                                              astronaut_jpeg: bytes) -> None:
    message_id = fake.send_photo(PRIVATE, ALICE, astronaut_jpeg, caption="make me a zombie")
    updates = await bot.get_updates(timeout=0)
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.message_id == message_id
    assert message.from_user is not None and message.from_user.id == ALICE.id
    assert message.chat.id == ALICE.id and message.chat.type == "private"
    assert message.caption == "make me a zombie"
    widths = [p.width for p in message.photo]
    assert widths == sorted(widths) and len(widths) == 3  # 90, 320, then the 512 px original
    largest = message.photo[-1]
    assert (largest.width, largest.height, largest.file_size) == (512, 512, len(astronaut_jpeg))
    assert len({p.file_id for p in message.photo}) == 3
    assert fake.file_downloads == []  # nothing fetched until asked

    file = await bot.get_file(largest.file_id)
    assert file.file_path is not None and file.file_path.startswith(fake.file_url)
    assert bytes(await file.download_as_bytearray()) == astronaut_jpeg
    thumb = await (await bot.get_file(message.photo[0].file_id)).download_as_bytearray()
    assert max(Image.open(io.BytesIO(bytes(thumb))).size) == 90
    assert fake.download_count(largest.file_id) == 1

    # the update is confirmed by the next offset
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()


async def test_send_photo_with_reply_and_keyboard_is_recorded(fake: FakeTelegram, bot: Bot,
                                                              astronaut_jpeg: bytes) -> None:
    selfie_id = fake.send_photo(PRIVATE, ALICE, astronaut_jpeg)
    result = png((300, 200))
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="style:zombie"),
                                    InlineKeyboardButton("Site", url="https://example.org")]])
    sent = await bot.send_photo(ALICE.id, InputFile(result, filename="pixme.png"), caption="🧟 done",
                                reply_parameters=ReplyParameters(message_id=selfie_id), reply_markup=markup)
    assert sent.reply_to_message is not None and sent.reply_to_message.message_id == selfie_id
    assert sent.reply_to_message.photo[-1].file_size == len(astronaut_jpeg)
    assert sent.photo[-1].width == 300 and sent.from_user is not None and sent.from_user.is_bot

    record = await fake.wait_for_message(chat_id=ALICE.id)
    assert record.method == "sendPhoto" and record.photo == result
    assert record.caption == "🧟 done" and record.reply_to_message_id == selfie_id
    assert record.reply_markup == markup.to_dict()
    assert record.buttons[0]["callback_data"] == "style:zombie"
    assert record.params["photo"].filename == "pixme.png"

    # Telegram keeps bot photos as JPEG: downloading the bot's own picture gives a JPEG of the same size
    again = await (await bot.get_file(sent.photo[-1].file_id)).download_as_bytearray()
    assert Image.open(io.BytesIO(bytes(again))).format == "JPEG"
    # and a file_id can be re-sent without uploading
    await bot.send_photo(ALICE.id, sent.photo[-1].file_id)
    assert (await fake.wait_for_message()).photo == bytes(again)


async def test_reply_to_missing_message(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_chat(PRIVATE, ALICE)
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(ALICE.id, "hi", reply_parameters=ReplyParameters(message_id=999))
    ok = await bot.send_message(ALICE.id, "hi", reply_parameters=ReplyParameters(
        message_id=999, allow_sending_without_reply=True))
    assert ok.reply_to_message is None
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(424242, "hello?")


async def test_limits_like_telegram(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_chat(PRIVATE, ALICE)
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(ALICE.id, png(), caption="x" * 1025)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE.id, "x" * 4097)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(ALICE.id, "   ")
    with pytest.raises(BadRequest, match="Button_data_invalid"):  # PTB capitalises the description
        await bot.send_message(ALICE.id, "pick", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("long", callback_data="x" * 65)]]))
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(ALICE.id, InputFile(b"not an image", filename="x.jpg"))
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Zombie-Face", "nope")])
    assert await bot.send_message(ALICE.id, "x" * 4096)
    assert fake.bot_messages[-1].text == "x" * 4096
    assert [e[2] for e in fake.errors][:2] == ["Bad Request: message caption is too long",
                                               "Bad Request: message is too long"]


async def test_edits_and_not_modified(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_chat(PRIVATE, ALICE)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]])
    menu = await bot.send_message(ALICE.id, "pick one", reply_markup=keyboard)
    record = await fake.wait_for_message()
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("pick one", ALICE.id, menu.message_id, reply_markup=keyboard)
    edited = await bot.edit_message_text("working…", ALICE.id, menu.message_id)
    assert edited.text == "working…" and edited.reply_markup is None  # no markup given: keyboard goes
    edit = await fake.wait_for_edit(menu.message_id)
    assert edit["method"] == "editMessageText" and edit["text"] == "working…"
    assert record.text == "working…" and record.reply_markup is None
    with pytest.raises(BadRequest, match="There is no caption in the message to edit"):
        await bot.edit_message_caption(ALICE.id, menu.message_id, caption="x")
    photo = await bot.send_photo(ALICE.id, png(), caption="before")
    await bot.edit_message_caption(ALICE.id, photo.message_id, caption="after")
    assert (await fake.wait_for_edit(photo.message_id))["caption"] == "after"
    assert await bot.delete_message(ALICE.id, photo.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_caption(ALICE.id, photo.message_id, caption="again")
    person = fake.send_text(PRIVATE, ALICE, "hello")
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("hacked", ALICE.id, person)


async def test_injected_retry_after_and_forbidden(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_chat(PRIVATE, ALICE)
    fake.fail_next("sendMessage", 429, retry_after=1)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE.id, "hi")
    assert "retry" in str(caught.value).lower()
    assert fake.errors[-1] == ("sendMessage", 429, "Too Many Requests: retry after 1")
    assert fake.bot_messages == []  # a refused call has no effect
    await bot.send_message(ALICE.id, "hi")  # the fault was for one call only

    fake.fail_next("sendPhoto", 403)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_photo(ALICE.id, png())
    fake.block_bot(ALICE.id)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ALICE.id, "still there?")
    fake.fail_next("getMe", 502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_me()
    assert [name for name, _ in fake.calls].count("sendMessage") == 3


async def test_file_too_big(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_document(PRIVATE, ALICE, b"\xff\xd8 stub", "huge.jpg", "image/jpeg", declared_size=25_000_000)
    message = (await bot.get_updates(timeout=0))[0].message
    assert message is not None and message.document is not None
    assert (message.document.file_size, message.document.file_name) == (25_000_000, "huge.jpg")
    assert message.document.mime_type == "image/jpeg"
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(message.document.file_id)
    assert fake.file_downloads == []


async def test_long_poll_returns_when_an_update_arrives(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 < time.monotonic() - started < 3

    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=20))
    await asyncio.sleep(0.2)
    fake.send_text(PRIVATE, ALICE, "hello")
    updates = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 2
    assert updates[0].message is not None and updates[0].message.text == "hello"


async def test_offset_limit_and_allowed_updates(fake: FakeTelegram, bot: Bot) -> None:
    ids = [fake.send_text(PRIVATE, ALICE, f"m{i}") for i in range(3)]
    first = await bot.get_updates(limit=2, timeout=0)
    assert [u.message.message_id for u in first if u.message] == ids[:2]
    assert first[1].update_id == first[0].update_id + 1
    rest = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)
    assert [u.message.text for u in rest if u.message] == ["m2"]
    menu = await bot.send_message(ALICE.id, "pick", reply_markup=InlineKeyboardMarkup(
        [[InlineKeyboardButton("A", callback_data="a")]]))
    fake.press_button(PRIVATE, ALICE, menu.message_id, "a")
    fake.send_text(PRIVATE, ALICE, "text")
    only_buttons = await bot.get_updates(offset=rest[-1].update_id + 1, timeout=0,
                                         allowed_updates=["callback_query"])
    assert len(only_buttons) == 1 and only_buttons[0].callback_query is not None


async def test_group_privacy_mode_and_replies(fake: FakeTelegram, bot: Bot, astronaut_jpeg: bytes) -> None:
    photo_id = fake.send_photo(GROUP, ALICE, astronaut_jpeg)  # not for the bot: not delivered
    fake.send_text(GROUP, BOB, "/zombie@some_other_bot")  # addressed elsewhere
    command_id = fake.send_text(GROUP, BOB, "/zombie@pixme_test_bot please", reply_to=photo_id)
    updates = await bot.get_updates(timeout=0)
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.message_id == command_id
    assert message.chat.type == "supergroup" and message.chat.title == "Avatars"
    entity = message.entities[0]
    assert entity.type == "bot_command" and entity.length == len("/zombie@pixme_test_bot")
    replied = message.reply_to_message
    assert replied is not None and replied.message_id == photo_id and replied.photo[-1].width == 512
    assert replied.from_user is not None and replied.from_user.id == ALICE.id
    data = await (await bot.get_file(replied.photo[-1].file_id)).download_as_bytearray()
    assert bytes(data) == astronaut_jpeg


async def test_media_group_upload(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_chat(PRIVATE, ALICE)
    one, two = png(color="red"), png(color="blue")
    sent = await bot.send_media_group(ALICE.id, [InputMediaPhoto(one, caption="first"), InputMediaPhoto(two)])
    assert len(sent) == 2 and sent[0].media_group_id == sent[1].media_group_id is not None
    records = await fake.wait_for_messages(2)
    assert [r.method for r in records] == ["sendMediaGroup", "sendMediaGroup"]
    assert [r.photo for r in records] == [one, two] and records[0].caption == "first"


async def test_wait_for_message_consumes_in_order(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_chat(PRIVATE, ALICE)
    for text in ("one", "two", "three"):
        await bot.send_message(ALICE.id, text)
    assert (await fake.wait_for_message()).text == "one"
    assert (await fake.wait_for_message(lambda m: m.text == "three")).text == "three"
    assert (await fake.wait_for_message()).text == "two"
    later = asyncio.create_task(fake.wait_for_message(chat_id=ALICE.id))
    await asyncio.sleep(0)  # it starts waiting before the message exists
    assert not later.done()
    await bot.send_message(ALICE.id, "four")
    assert (await asyncio.wait_for(later, 2)).text == "four"
    with pytest.raises(TimeoutError, match="timed out"):
        await fake.wait_for_message(timeout=0.1)
    await fake.expect_no_message(after=bot.get_me())  # answered after everything sent before it


async def test_commands_are_recorded(fake: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("start", "What this bot does"), BotCommand("zombie", "🧟")])
    assert [c["command"] for c in fake.commands] == ["start", "zombie"]
    assert [c.command for c in await bot.get_my_commands()] == ["start", "zombie"]
    await bot.delete_my_commands()
    assert fake.commands == []


async def test_token_is_never_logged(fake: FakeTelegram, bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_chat(PRIVATE, ALICE)
    await bot.send_message(ALICE.id, "hi")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.api_url}{fake.token}/sendMessage", data=b"\x00",
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "telegram"))]
    assert all(fake.token not in r.getMessage() for r in ours)
    assert fake.token not in repr(fake)


async def test_application_polls_commands_and_buttons(fake: FakeTelegram, astronaut_jpeg: bytes) -> None:
    seen: list[tuple[str, str]] = []

    async def on_zombie(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        seen.append(("command", update.message.text or ""))
        await update.message.reply_text("Which style?", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("Zombie", callback_data="style:zombie")]]))

    async def on_captioned_photo(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        seen.append(("caption", update.message.caption or ""))

    async def on_button(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        seen.append(("button", query.data or ""))
        await query.answer("🧟 coming up…")
        await query.edit_message_text("Zombie it is")

    app = (Application.builder().token(fake.token).base_url(fake.api_url).base_file_url(fake.file_url)
           .build())
    app.add_handler(CommandHandler("zombie", on_zombie))
    # PTB's CommandHandler only reads message.text: a command in a photo caption needs its own handler.
    app.add_handler(MessageHandler(filters.PHOTO & filters.CaptionRegex(r"^/zombie(@pixme_test_bot)?\b"),
                                   on_captioned_photo))
    app.add_handler(CallbackQueryHandler(on_button))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=1, allowed_updates=["message", "callback_query"])
        await app.start()
        try:
            photo_id = fake.send_photo(PRIVATE, ALICE, astronaut_jpeg, caption="/zombie")
            fake.send_photo(PRIVATE, ALICE, astronaut_jpeg, caption="/zombie@pixme_test_bot")
            fake.send_text(PRIVATE, ALICE, "/zombie", reply_to=photo_id)
            fake.send_text(PRIVATE, ALICE, "/zombie@pixme_test_bot with a crown")
            first, second = await fake.wait_for_messages(2, lambda m: m.text == "Which style?")
            assert first.reply_to_message_id is None  # reply_text does not quote in private chats
            fake.press_button(PRIVATE, ALICE, first.message_id, "style:zombie")
            edit = await fake.wait_for_edit(first.message_id)
            assert edit["text"] == "Zombie it is"
            for _ in range(50):
                if fake.callback_answers:
                    break
                await asyncio.sleep(0.02)
        finally:
            await app.updater.stop()
            await app.stop()
    assert sorted(seen) == sorted([
        ("caption", "/zombie"), ("caption", "/zombie@pixme_test_bot"), ("command", "/zombie"),
        ("command", "/zombie@pixme_test_bot with a crown"), ("button", "style:zombie")])
    assert fake.callback_answers[0]["text"] == "🧟 coming up…"
    with pytest.raises(ValueError, match="no button"):
        fake.press_button(PRIVATE, ALICE, first.message_id, "style:zombie")  # the keyboard is gone
    assert second.text == "Which style?"


async def test_button_press_carries_the_replied_photo(fake: FakeTelegram, bot: Bot,
                                                      astronaut_jpeg: bytes) -> None:
    photo_id = fake.send_photo(PRIVATE, ALICE, astronaut_jpeg)
    menu = await bot.send_message(ALICE.id, "Pick a style", reply_parameters=ReplyParameters(photo_id),
                                  reply_markup=InlineKeyboardMarkup(
                                      [[InlineKeyboardButton("Zombie", callback_data="style:zombie")]]))
    query_id = fake.press_button(PRIVATE, ALICE, menu.message_id, "style:zombie")
    updates = await bot.get_updates(timeout=0)
    query = updates[-1].callback_query
    assert query is not None and query.id == query_id and query.data == "style:zombie"
    assert query.chat_instance and query.from_user.id == ALICE.id
    message = query.message
    assert message is not None and message.message_id == menu.message_id
    assert message.reply_to_message is not None and message.reply_to_message.message_id == photo_id
    assert message.reply_to_message.photo[-1].file_size == len(astronaut_jpeg)
    assert await query.answer("ok")
    with pytest.raises(BadRequest, match="Query is too old"):
        await query.answer("twice")
    assert fake.callback_answers == [{"callback_query_id": query_id, "text": "ok"}]


async def test_documents_stickers_actions_and_media_edits(fake: FakeTelegram, bot: Bot) -> None:
    webp = io.BytesIO()
    Image.new("RGB", (512, 256), "green").save(webp, "WEBP")
    fake.send_sticker(PRIVATE, ALICE, webp.getvalue(), emoji="🧟")
    fake.send_document(PRIVATE, ALICE, png(), "me.png", "image/png", caption="/zombie")
    sticker_msg, doc_msg = [u.message for u in await bot.get_updates(timeout=0)]
    assert sticker_msg is not None and sticker_msg.sticker is not None
    sticker = sticker_msg.sticker
    assert (sticker.width, sticker.emoji, sticker.is_animated) == (512, "🧟", False)
    assert doc_msg is not None and doc_msg.document is not None
    assert doc_msg.caption_entities[0].type == "bot_command"
    assert bytes(await (await bot.get_file(doc_msg.document.file_id)).download_as_bytearray()) == png()

    await bot.send_chat_action(ALICE.id, "upload_photo")
    assert fake.chat_actions == [(ALICE.id, "upload_photo")]
    with pytest.raises(BadRequest, match="Wrong parameter action"):
        await bot.send_chat_action(ALICE.id, "dancing")

    sent = await bot.send_document(ALICE.id, InputFile(b"hello", filename="notes.txt"), caption="notes")
    record = await fake.wait_for_message()
    assert (record.method, record.document, record.file_name) == ("sendDocument", b"hello", "notes.txt")
    assert sent.document is not None and sent.document.mime_type == "text/plain"
    await bot.send_sticker(ALICE.id, sticker_msg.sticker.file_id)
    assert (await fake.wait_for_message()).sticker == webp.getvalue()

    placeholder = await bot.send_photo(ALICE.id, png(color="gray"), caption="working…")
    await fake.wait_for_message()
    final = png((80, 80), "purple")
    edited = await bot.edit_message_media(InputMediaPhoto(final, caption="done"), ALICE.id,
                                          placeholder.message_id)
    assert edited.caption == "done" and edited.photo[-1].width == 80
    edit = await fake.wait_for_edit(placeholder.message_id)
    assert edit["method"] == "editMessageMedia"
    assert fake.bot_messages[-1].photo == final and fake.bot_messages[-1].caption == "done"


async def test_flood_limits_refuse_a_message_over_a_groups_window_with_retry_after() -> None:
    """Asked to keep Telegram's limits, the stand-in refuses the third message in two seconds to one group with
    429 and `parameters.retry_after` (whole seconds until the window has room), counts it, and leaves other chats
    and calls that send nothing alone."""
    async with FakeTelegram(limits=FloodLimits(group=(2, 2.0))) as limited:
        group = Chat(-100999, "supergroup", "Busy")
        limited.add_chat(group)
        limited.add_chat(PRIVATE, ALICE)
        async with Bot(limited.token, base_url=limited.api_url, base_file_url=limited.file_url) as tg_bot:
            await tg_bot.send_message(group.id, "one")
            await tg_bot.send_message(group.id, "two")
            await tg_bot.send_chat_action(group.id, "typing")  # not a message: not counted
            with pytest.raises(RetryAfter) as caught:
                await tg_bot.send_message(group.id, "three")
            await tg_bot.send_message(ALICE.id, "a private chat has its own limit")
    seconds = caught.value.retry_after
    assert (seconds if isinstance(seconds, int) else seconds.total_seconds()) in (1, 2)
    assert limited.flood_refusals == [("sendMessage", str(group.id))]
    assert [m.text for m in limited.bot_messages if m.chat_id == group.id] == ["one", "two"]
    assert limited.most_in_window(group.id, 2.0) == 2
