"""Settings, persona, history, exports, delivery and provenance on Telegram, end to end.

The real PTB bot and the real google-genai client run against the loopback Telegram and Gemini stand-ins.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from core import i18n, texts
from core.config import Settings, load_settings
from core.exports import has_provenance
from core.i18n import _
from core.ports import Preferences
from tests.backends import storage_settings
from tests.standins.telegram_api import Chat, FakeTelegram, SentMessage, User
from tests.test_telegram_harness import ALICE, BOB, GROUP, Running, private, running_bot, small_selfie

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

gemini_api = pytest.importorskip("tests.standins.gemini_api")

ALICE_CHAT = private(ALICE)
MODELS = ["gemini-nano-banana-2.1", "gemini-3-pro-image", "gemini-3.1-flash-lite-image"]


def gemini_settings(tg: FakeTelegram, gem: Any, data_dir: Path) -> Settings:
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url},
        storage=storage_settings(data_dir, retention_days=0),
        engine={"default": "gemini", "input_max_px": 256},
        gemini={"api_key": gem.api_key, "base_url": gem.base_url, "retry_budget_s": 2, "request_timeout_s": 10,
                "models": MODELS},
        # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
        likeness={"enabled": False},
    )


def offline_settings(tg: FakeTelegram, data_dir: Path) -> Settings:
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url},
        storage=storage_settings(data_dir, retention_days=0),
        engine={"default": "offline", "input_max_px": 256},
        gemini={"api_key": ""},
        # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
        likeness={"enabled": False},
    )


async def settings_menu(run: Running, chat: Chat, user: User, command: str = "/settings") -> SentMessage:
    run.tg.send_text(chat, user, command)
    return await run.tg.wait_for_message(lambda m: m.method == "sendMessage" and bool(m.buttons),
                                         chat_id=chat.id)


async def choose(run: Running, chat: Chat, user: User, menu: SentMessage, data: str) -> None:
    """Press a button of the settings message and wait until the same message has been redrawn."""
    edits = len(menu.edits)
    run.tg.press_button(chat, user, menu.message_id, data)
    await run.tg.wait_until(lambda: len(menu.edits) > edits, what=f"the settings message redrawn after {data}")


def image_config(call: Any) -> dict[str, Any]:
    return dict(call.body["generationConfig"].get("imageConfig") or {})


async def test_settings_chosen_on_the_keyboard_reach_gemini_and_unsupported_ones_are_said(tmp_path: Path) -> None:
    selfie = small_selfie(256)
    async with FakeTelegram() as tg, gemini_api.FakeGemini() as gem:
        async with running_bot(tg, tmp_path, settings=gemini_settings(tg, gem, tmp_path)) as run:
            menu = await settings_menu(run, ALICE_CHAT, ALICE)
            assert "Model: gemini-nano-banana-2.1" in (menu.text or "")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:model")
            pro = next(b for b in menu.buttons if b["callback_data"] == "do:set:model:gemini-3-pro-image")
            assert "+$0.100" in pro["text"], "the price difference is on the button"
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:model:gemini-3-pro-image")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:ratio")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:ratio:16:9")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:size")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:size:2K")
            assert "Model: gemini-3-pro-image" in (menu.text or "") and "Aspect ratio: 16:9" in (menu.text or "")
            assert "Size: 2K" in (menu.text or "")

            tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
            result = await run.photo_reply(ALICE_CHAT)
            call = gem.generate_requests[-1]
            assert call.model == "gemini-3-pro-image"
            assert image_config(call) == {"aspectRatio": "16:9", "imageSize": "2K"}
            assert result.photo is not None and has_provenance(result.photo), "the photo says it is AI-made"
            assert "can't" not in (result.caption or "")

            # Nano Banana 2 Lite has one size: the 2K choice cannot be honoured, and the person is told.
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:model")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:model:gemini-3.1-flash-lite-image")
            assert "can't do size 2K" in (menu.text or "")
            tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=result.message_id)
            edited = await run.photo_reply(ALICE_CHAT)
            call = gem.generate_requests[-1]
            assert call.model == "gemini-3.1-flash-lite-image"
            assert image_config(call) == {"aspectRatio": "16:9"}, "no size sent to a model that has none"
            assert "can't do size 2K" in (edited.caption or "")

            # /model shortcut sets directly.
            tg.send_text(ALICE_CHAT, ALICE, "/model gemini-nano-banana-2.1")
            said = await run.text_reply(ALICE_CHAT)
            assert "Model: gemini-nano-banana-2.1" in (said.text or "")


async def test_persona_and_quoted_text_reach_the_prompt(tmp_path: Path) -> None:
    selfie = small_selfie(256)
    async with FakeTelegram() as tg, gemini_api.FakeGemini() as gem:
        async with running_bot(tg, tmp_path, settings=gemini_settings(tg, gem, tmp_path)) as run:
            tg.send_text(ALICE_CHAT, ALICE, "/persona a marathon runner who loves cats")
            saved = await run.text_reply(ALICE_CHAT)
            assert "a marathon runner who loves cats" in (saved.text or "")

            tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
            result = await run.photo_reply(ALICE_CHAT)
            prompt = gem.generate_requests[-1].text
            assert "About the person: a marathon runner who loves cats" in prompt
            assert "without changing their face" in prompt

            tg.send_text(ALICE_CHAT, ALICE, 'add a banner saying "Ada rocks"', reply_to=result.message_id)
            await run.photo_reply(ALICE_CHAT)
            prompt = gem.generate_requests[-1].text
            assert '"Ada rocks"' in prompt and "exactly as quoted" in prompt

            tg.send_text(ALICE_CHAT, ALICE, "/persona clear")
            await run.text_reply(ALICE_CHAT)
            tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/anime")
            await run.photo_reply(ALICE_CHAT)
            assert "About the person" not in gem.generate_requests[-1].text


async def test_history_exports_delivery_and_forget_on_telegram(tmp_path: Path) -> None:
    selfie = small_selfie(320)
    async with FakeTelegram() as tg:
        async with running_bot(tg, tmp_path, settings=offline_settings(tg, tmp_path)) as run:
            tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
            first = await run.photo_reply(ALICE_CHAT)
            tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=first.message_id)
            second = await run.photo_reply(ALICE_CHAT)
            assert second.photo is not None and has_provenance(second.photo)

            # /history: both results, oldest first, labelled with their step; replying continues from one.
            tg.send_text(ALICE_CHAT, ALICE, "/history")
            intro = await run.text_reply(ALICE_CHAT)
            assert "last 2 pictures" in (intro.text or "")
            # One album: each photo its own message (replyable), captioned with its step.
            old, new = await tg.wait_for_messages(2, lambda m: m.method == "sendMediaGroup", chat_id=ALICE.id)
            assert "Step 1" in (old.caption or "") and "Comic" in (old.caption or "")
            assert "Step 2" in (new.caption or "") and "add a crown" in (new.caption or "")
            assert old.photo is not None and first.photo is not None
            with Image.open(io.BytesIO(old.photo)) as shown, Image.open(io.BytesIO(first.photo)) as made:
                assert shown.size == made.size
                difference = ImageStat.Stat(ImageChops.difference(shown.convert("RGB"), made.convert("RGB")))
                assert max(difference.mean) < 4, "the same picture as step 1 (bar Telegram's recompression)"
            tg.send_text(ALICE_CHAT, ALICE, "add sunglasses", reply_to=old.message_id)
            branched = await run.photo_reply(ALICE_CHAT)
            assert branched.reply_to_message_id is not None
            await run.settle()
            node = await run.studio.store.node_for_message("telegram", str(ALICE.id), str(branched.message_id))
            parent = await run.studio.store.node_for_message("telegram", str(ALICE.id), str(first.message_id))
            assert node is not None and parent is not None and node.parent_id == parent.id

            # Exports, as replies to a result.
            tg.send_text(ALICE_CHAT, ALICE, "/export sticker", reply_to=second.message_id)
            sticker = await tg.wait_for_message(lambda m: m.method == "sendSticker", chat_id=ALICE.id)
            assert sticker.sticker is not None
            with Image.open(io.BytesIO(sticker.sticker)) as im:
                assert (im.format, im.size) == ("WEBP", (512, 512))
            assert has_provenance(sticker.sticker)
            tg.send_text(ALICE_CHAT, ALICE, "/export profile", reply_to=second.message_id)
            profile = await tg.wait_for_message(lambda m: m.method == "sendDocument", chat_id=ALICE.id)
            assert profile.document is not None
            with Image.open(io.BytesIO(profile.document)) as im:
                assert (im.format, im.size) == ("JPEG", (1024, 1024))
            assert has_provenance(profile.document)
            tg.send_text(ALICE_CHAT, ALICE, "/export original", reply_to=second.message_id)
            original = await tg.wait_for_message(lambda m: m.method == "sendDocument", chat_id=ALICE.id)
            assert original.document == second.photo, "the original is the very file the bot made"

            # …or with the buttons under the result, which stay for the next press.
            labels = [b["text"] for b in second.buttons]
            assert labels == ["🏷 Sticker", "🖼 Profile pic", "📄 Original"]
            query = tg.press_button(ALICE_CHAT, ALICE, second.message_id, second.buttons[0]["callback_data"])
            pressed = await tg.wait_for_message(lambda m: m.method == "sendSticker", chat_id=ALICE.id)
            assert pressed.reply_to_message_id == second.message_id and pressed.sticker == sticker.sticker
            await tg.wait_for_callback_answer(query)
            assert len(second.buttons) == 3

            # Delivery as a file: the next result comes as a document that carries the provenance XMP.
            menu = await settings_menu(run, ALICE_CHAT, ALICE)
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:delivery")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:delivery:file")
            tg.send_text(ALICE_CHAT, ALICE, "/persona likes hats")
            await run.text_reply(ALICE_CHAT)
            tg.send_text(ALICE_CHAT, ALICE, "make it warmer", reply_to=second.message_id)
            as_file = await tg.wait_for_message(lambda m: m.method == "sendDocument", chat_id=ALICE.id)
            assert as_file.document is not None and has_provenance(as_file.document)
            await run.settle()
            assert not [m for m in tg.unconsumed(ALICE.id) if m.method == "sendPhoto"]

            # /forget takes the settings and the persona with everything else.
            tg.send_text(ALICE_CHAT, ALICE, "/forget")
            confirm = await tg.wait_for_message(lambda m: bool(m.buttons), chat_id=ALICE.id)
            yes = next(b["callback_data"] for b in confirm.buttons if "forget:yes" in b["callback_data"])
            tg.press_button(ALICE_CHAT, ALICE, confirm.message_id, yes)
            await run.text_reply(ALICE_CHAT)
            prefs = await run.studio.store.get_preferences("person", "telegram", str(ALICE.id))
            assert prefs == Preferences()


async def test_group_defaults_need_a_chat_admin(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        async with running_bot(tg, tmp_path, settings=offline_settings(tg, tmp_path)) as run:
            tg.set_member_status(GROUP, ALICE, "administrator")
            tg.set_member_status(GROUP, BOB, "member")
            menu = await settings_menu(run, GROUP, BOB)
            assert "group's defaults" in (menu.text or "")
            await choose(run, GROUP, BOB, menu, "do:set:menu:ratio")
            query = tg.press_button(GROUP, BOB, menu.message_id, "do:set:ratio:9:16")
            answer = await tg.wait_for_callback_answer(query)
            assert "Only this group's admins" in answer.get("text", "") and answer.get("show_alert")
            await choose(run, GROUP, ALICE, menu, "do:set:menu:ratio")
            await choose(run, GROUP, ALICE, menu, "do:set:ratio:4:3")
            assert "Aspect ratio: 4:3" in (menu.text or "")
            prefs = await run.studio.store.get_preferences("chat", "telegram", str(GROUP.id))
            assert prefs.aspect_ratio == "4:3"


async def test_a_spanish_speaker_is_answered_in_spanish_and_language_overrides(tmp_path: Path) -> None:
    """Telegram's language_code picks the catalog; /language overrides it; prompts stay English."""
    rosa = User(id=1500, first_name="Rosa", language_code="es-419")
    rosa_chat = private(rosa)
    selfie = small_selfie(256)
    async with FakeTelegram() as tg, gemini_api.FakeGemini() as gem:
        async with running_bot(tg, tmp_path, settings=gemini_settings(tg, gem, tmp_path)) as run:
            # The command menu exists in every language; Spanish clients get Spanish descriptions.
            spanish_menu = tg.commands_by_scope[(json.dumps({"type": "default"}), "es")]
            with i18n.speaking("es"):
                assert {"command": "settings", "description": _("Model, aspect ratio, size and delivery "
                                                               "(groups: admins set defaults)")} in spanish_menu
            assert spanish_menu != tg.commands

            tg.send_text(rosa_chat, rosa, "/styles")
            answer = (await run.text_reply(rosa_chat)).text
            with i18n.speaking("es"):
                assert answer == texts.styles_list()
            assert answer != texts.styles_list(), "not English"

            tg.send_photo(rosa_chat, rosa, selfie, caption="/zombie")
            result = await run.photo_reply(rosa_chat)
            prompt = gem.generate_requests[-1].text
            assert "Transform the person in this photo into a zombie avatar" in prompt, "the prompt stays English"
            assert "Write the short sentence to the person in Spanish." in prompt
            with i18n.speaking("es"):
                assert [b["text"] for b in result.buttons] == [label for label, _kind in texts.export_buttons()]

            # A file that is no photo: the refusal (worded in an intake worker process) is Spanish too.
            tg.send_document(rosa_chat, rosa, b"%PDF-1.4 not a photo", "selfie.jpg", "image/jpeg", caption="/zombie")
            with i18n.speaking("es"):
                expected = _("That doesn't look like a photo I can read — please send a JPEG, PNG, WebP, GIF, "
                             "HEIC or TIFF image.")
            assert (await run.text_reply(rosa_chat)).text == expected and not expected.startswith("That")

            tg.send_text(rosa_chat, rosa, "/language ru")
            switched = (await run.text_reply(rosa_chat)).text or ""
            assert "Русский" in switched
            tg.send_text(rosa_chat, rosa, "/cancel")
            with i18n.speaking("ru"):
                assert (await run.text_reply(rosa_chat)).text == texts.cancelled(0)

            tg.send_text(rosa_chat, rosa, "/language klingon")
            refusal = (await run.text_reply(rosa_chat)).text or ""
            assert "klingon" in refusal and "Español" in refusal and "\n" not in refusal

            tg.send_text(rosa_chat, rosa, "/language auto")  # back to the app's language
            await run.text_reply(rosa_chat)
            tg.send_text(rosa_chat, rosa, "/cancel")
            with i18n.speaking("es"):
                assert (await run.text_reply(rosa_chat)).text == texts.cancelled(0)

            # /language alone: one button per language, and the message answers in the one pressed.
            menu = await settings_menu(run, rosa_chat, rosa, "/language")
            assert [b["callback_data"] for b in menu.buttons] == ["do:lang:en", "do:lang:es", "do:lang:ru",
                                                                  "do:lang:auto"]
            edits = len(menu.edits)
            tg.press_button(rosa_chat, rosa, menu.message_id, "do:lang:ru")
            await tg.wait_until(lambda: len(menu.edits) > edits, what="the language message redrawn")
            with i18n.speaking("ru"):
                assert menu.text == texts.language_set("Русский")
