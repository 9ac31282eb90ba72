"""Sharing, end to end: inline results (`@bot`, `@bot zombie`) and choosing one, `/me` with the person's profile
picture (Telegram and Discord), and "Set as group photo" under a party picture, shown only where the bot may
change the group's photo. The real PTB Application and discord.py client against the loopback stand-ins;
every assertion is about what people see.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core import texts
from core.actions import ChatPhotoPress, encode
from core.i18n import speaking
from tests.fakes import FakeEngine
from tests.standins.discord_api import FakeDiscord
from tests.standins.discord_api import user as discord_user
from tests.standins.telegram_api import FakeTelegram, SentMessage, User
from tests.test_discord_e2e import running_bot as discord_bot
from tests.test_telegram_harness import ALICE, BOB, GROUP, Running, private, running_bot, small_selfie
from tests.test_telegram_party import alert, button, join, open_party, press, settings_for

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


# -- /me: the profile picture as the selfie ---------------------------------------------------------------


async def test_me_on_telegram_uses_the_current_profile_picture(tg: FakeTelegram, tmp_path: Path,
                                                               selfie: bytes) -> None:
    async with running_bot(tg, tmp_path) as run:
        tg.set_profile_photos(ALICE, [selfie, small_selfie(128)])  # newest first: the first is hers now
        asked = tg.send_text(ALICE_CHAT, ALICE, "/me zombie")
        result = await run.photo_reply(ALICE_CHAT)
        assert result.reply_to_message_id == asked and result.photo is not None
        [profile] = tg.calls_of("getUserProfilePhotos")
        assert int(profile["user_id"]) == ALICE.id and int(profile["limit"]) == 1
        newest = tg.profile_photos(ALICE)[0]  # her current photo: its largest size is what was downloaded
        assert tg.download_count(max(newest, key=lambda s: s["width"])["file_id"]) == 1
        # The result is an ordinary result: a reply edits it.
        node = await run.studio.store.node_for_message("telegram", str(ALICE.id), str(result.message_id))
        assert node is not None and node.style == "zombie"

        # In a group, with no style: the default one; someone with no visible profile picture hears why.
        tg.send_text(GROUP, ALICE, "/me")
        assert (await run.photo_reply(GROUP)).photo is not None
        tg.set_profile_photos(BOB, [])  # none, or hidden from bots by his privacy settings
        asked = tg.send_text(GROUP, BOB, "/me noir")
        answer = await run.text_reply(GROUP)
        assert answer.text == texts.ME_NO_PROFILE_PHOTO and answer.reply_to_message_id == asked
        await tg.expect_no_message(after=run.finished())


# -- the group photo ------------------------------------------------------------------------------------


async def party_picture(run: Running, selfie: bytes) -> SentMessage:
    """Alice and Bob's party in the group, started by Alice: the group picture."""
    lobby = await open_party(run, ALICE)
    await join(run, lobby, ALICE, selfie)
    await join(run, lobby, BOB, selfie)
    assert (await press(run, ALICE, lobby, button(lobby, "start")))["text"] == texts.PARTY_STARTING
    return await run.photo_reply(GROUP)


def group_photo_button(picture: SentMessage) -> str | None:
    return next((b["callback_data"] for b in picture.buttons if GROUP_PHOTO in b["callback_data"]), None)


async def test_set_as_group_photo_is_offered_only_with_the_right_and_only_admins_may(
        tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, engine=FakeEngine(), settings=settings_for(tg, tmp_path)) as run:
        # The bot is a plain member: the picture comes with its exports only.
        plain = await party_picture(run, selfie)
        assert group_photo_button(plain) is None and len(plain.buttons) == 3

        # An admin gives the bot "Change group info": the next group picture offers it.
        tg.set_bot_rights(GROUP, can_change_info=True)
        await run.finished()
        picture = await party_picture(run, selfie)
        data = group_photo_button(picture)
        assert data is not None
        assert next(b["text"] for b in picture.buttons if b["callback_data"] == data) == texts.GROUP_PHOTO_BUTTON

        # Bob is a member, not an admin: refused, and the group photo stays as it was.
        refused = await press(run, BOB, picture, data)
        assert refused["text"] == texts.GROUP_PHOTO_ADMINS_ONLY and alert(refused)
        assert GROUP.id not in tg.chat_photos

        # Alice is an admin: the picture, as a square, is the group's photo now.
        tg.set_member_status(GROUP, ALICE, "administrator")
        done = await press(run, ALICE, picture, data)
        assert done["text"] == texts.GROUP_PHOTO_SET and not alert(done)
        with Image.open(io.BytesIO(tg.chat_photos[GROUP.id])) as photo:
            assert photo.format == "JPEG" and photo.width == photo.height

        # The right taken away again: the button still there says so, and no button on the next picture.
        tg.set_bot_rights(GROUP, "member", can_change_info=False)
        await run.finished()
        lost = await press(run, ALICE, picture, data)
        assert lost["text"] == texts.GROUP_PHOTO_NO_RIGHT and alert(lost)
        assert group_photo_button(await party_picture(run, selfie)) is None
        assert not [c for c in tg.calls_of("getChatMember") if int(c["user_id"]) == tg.bot_id][1:], \
            "the bot's rights are asked once, then kept up to date by my_chat_member updates"


async def test_me_on_discord_uses_the_members_avatar(tmp_path: Path, selfie: bytes) -> None:
    alice = discord_user(5101, "alice")
    async with FakeDiscord() as dc, discord_bot(dc, tmp_path, FakeEngine()) as run:
        engine = run.studio.engine
        assert isinstance(engine, FakeEngine)
        me = next(c for c in dc.commands[None] if c["name"] == "me")
        assert [o["name"] for o in me["options"]] == ["style"] and not me["options"][0].get("required")

        # No avatar of her own (Discord's default one is nobody's face): one clear line.
        asking = await dc.slash(alice, "me", {"style": "zombie"})
        none = await dc.wait_for_bot_message(lambda m: m["content"] == texts.ME_NO_PROFILE_PHOTO)
        assert int(none["id"]) == asking.original_id and not engine.calls

        # With one: it is downloaded from the CDN and turned into the avatar she asked for.
        dc.set_avatar(alice, selfie)
        before = dc.last_id()
        asking = await dc.slash(alice, "me", {"style": "zombie"})
        result = await dc.wait_for_bot_message(lambda m: m["attachments"], after=before)
        assert int(result["id"]) == asking.original_id and result["content"] == "style: zombie"
        assert [path.split("/")[:2] for path in dc.downloads] == [["avatars", alice["id"]]]
        [(kind, image, style, _identity)] = engine.calls
        assert (kind, style) == ("style", "zombie")
        with Image.open(io.BytesIO(image)) as drawn, Image.open(io.BytesIO(selfie)) as original:
            assert drawn.size[0] / drawn.size[1] == pytest.approx(original.size[0] / original.size[1], rel=0.02)
