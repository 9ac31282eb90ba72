"""Sharing, end to end: inline results (`@bot`, `@bot zombie`) and choosing one, `/me` with the person's profile
picture (Telegram and Discord), and "Set as group photo" under a party picture, shown only where the bot may
change the group's photo. The real PTB Application and discord.py client against the loopback stand-ins;
every assertion is about what people see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core import texts
from core.actions import ChatPhotoPress, encode
from core.i18n import speaking
from tests.standins.telegram_api import FakeTelegram, SentMessage, User
from tests.test_telegram_harness import ALICE, BOB, GROUP, Running, private, running_bot, small_selfie

ALICE_CHAT = private(ALICE)
BOB_CHAT = private(BOB)
GROUP_PHOTO = encode(ChatPhotoPress(0)).split(":")[0] + ":"  # the start of the button's action


@pytest.fixture(scope="module")
def selfie() -> bytes:
    return small_selfie(256)


def largest_file_id(run: Running, picture: SentMessage) -> str:
    """The file_id Telegram gave the photo the bot sent (its largest size: the photo itself)."""
    return str(run.tg.message(picture.chat_id, picture.message_id)["photo"][-1]["file_id"])


async def avatar(run: Running, chat: Any, user: User, style: str, selfie: bytes) -> SentMessage:
    run.tg.send_photo(chat, user, selfie, caption=f"/{style}")
    return await run.photo_reply(chat)


async def ask_inline(run: Running, user: User, query: str = "") -> dict[str, Any]:
    run.tg.inline_mode = True  # BotFather's /setinline
    return await run.tg.wait_for_inline_answer(run.tg.send_inline_query(user, query))


def photo_ids(answer: dict[str, Any]) -> list[str]:
    return [r["photo_file_id"] for r in answer["results"]]


# -- inline sharing ------------------------------------------------------------------------------------


async def test_inline_lists_recent_pictures_filters_by_style_and_posts_the_chosen_one(
        tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(tg, tmp_path) as run:
        assert "inline_query" in (tg.calls_of("getUpdates")[-1].get("allowed_updates") or [])
        zombie = await avatar(run, ALICE_CHAT, ALICE, "zombie", selfie)
        comic = await avatar(run, ALICE_CHAT, ALICE, "comic", selfie)
        noir = await avatar(run, GROUP, ALICE, "noir", selfie)  # made in a group: hers to share too
        await avatar(run, BOB_CHAT, BOB, "zombie", selfie)  # Bob's: never in Alice's list
        await run.finished()

        # `@bot` in any chat: her pictures from every chat, newest first, as the photos she was sent.
        everything = await ask_inline(run, ALICE)
        assert photo_ids(everything) == [largest_file_id(run, m) for m in (noir, comic, zombie)]
        assert all(r["type"] == "photo" for r in everything["results"])
        assert everything["is_personal"] is True and 0 < everything["cache_time"] <= 30
        assert [r["title"] for r in everything["results"]] == ["🕵️ Film Noir", "💥 Comic", "🧟 Zombie"]

        # `@bot zombie`, by id or by its title in another language, or just its start.
        for query in ("zombie", "Зомби", "zom", "ZOMBI"):
            answer = await ask_inline(run, ALICE, query)
            assert photo_ids(answer) == [largest_file_id(run, zombie)], query

        # A style she has no picture in: nothing, and a button that opens the bot to make one.
        none = await ask_inline(run, ALICE, "pixel")
        assert none["results"] == []
        assert none["button"]["start_parameter"] == "share"
        assert none["button"]["text"] == texts.inline_none_for("Pixel Art")
        stranger = await ask_inline(run, User(id=1999, first_name="Zed", language_code="es"))
        assert stranger["results"] == []
        with speaking("es"):
            assert stranger["button"]["text"] == texts.INLINE_NONE, "in the asker's language"

        # Choosing one posts it where she typed, via the bot: the very picture she was sent.
        posted = tg.choose_inline_result(GROUP, ALICE, everything["inline_query_id"], everything["results"][1]["id"])
        shown = tg.message(GROUP.id, posted)
        assert shown["via_bot"]["username"] == tg.bot_username and shown["from"]["id"] == ALICE.id
        assert tg.photo_bytes(shown["photo"][-1]["file_id"]) == comic.photo
        # The bot sees the shared picture (bots get messages sent via them) and leaves it alone.
        await tg.expect_no_message(after=run.finished())


async def test_forgotten_pictures_are_not_offered_inline(tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(tg, tmp_path) as run:
        await avatar(run, ALICE_CHAT, ALICE, "zombie", selfie)
        await run.finished()
        assert len((await ask_inline(run, ALICE))["results"]) == 1
        tg.send_text(ALICE_CHAT, ALICE, "/forget")
        ask = await run.tg.wait_for_message(lambda m: bool(m.buttons), chat_id=ALICE.id)
        yes = next(b["callback_data"] for b in ask.buttons if "forget:yes" in b["callback_data"])
        tg.press_button(ALICE_CHAT, ALICE, ask.message_id, yes)
        await run.text_reply(ALICE_CHAT)
        await run.finished()
        after = await ask_inline(run, ALICE)
        assert after["results"] == [] and after["button"]["text"] == texts.INLINE_NONE
