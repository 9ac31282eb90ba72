"""Settings, persona, history, exports and delivery through the studio: real SQLite, fake engine and messenger."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from core import texts
from core.exports import has_provenance
from core.ports import Preferences
from core.requests import Chat, Context, Person
from tests.fakes import Sent
from tests.test_studio import ADA, Harness, ctx, make_harness, photo

GROUP = Chat("test", "-500", is_private=False)
BEN = Person("8", "Ben")


def in_group(message_id: str, person: Person = ADA, *, admin: bool = False) -> Context:
    async def is_admin() -> bool:
        return admin

    return Context(GROUP, person, message_id, chat_admin=is_admin)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness, store = await make_harness(tmp_path)
    yield harness
    await harness.studio.aclose()
    await store.close()


def last(h: Harness, kind: str) -> Sent:
    return [s for s in h.messenger.sent if s.kind == kind][-1]


async def open_settings(h: Harness, context: Context) -> Sent:
    await h.studio.people.show_settings(context)
    return last(h, "buttons")


async def press(h: Harness, context: Context, menu: Sent, action: str) -> str:
    """Press a button of `menu` (which must show it), as the bot sees it: the context is the menu message."""
    assert action in [b.action for b in menu.buttons], f"{action} not offered: {[b.action for b in menu.buttons]}"
    return (await h.studio.press(dataclasses.replace(context, message_id=menu.message_id), action)).text


async def test_a_ratio_chosen_on_the_keyboard_is_saved_shown_and_used_for_the_next_picture(
        h: Harness, selfie: bytes, tmp_path: Path) -> None:
    menu = await open_settings(h, ctx("1"))
    assert "Aspect ratio: auto" in menu.text
    await press(h, ctx("1"), menu, "set:menu:ratio")
    assert "set:ratio:16:9" in [b.action for b in menu.buttons], "the same message now offers ratios"
    assert await press(h, ctx("1"), menu, "set:ratio:16:9") == texts.SETTINGS_SAVED
    assert "Aspect ratio: 16:9" in menu.text and len([s for s in h.messenger.sent if s.kind == "buttons"]) == 1

    await h.studio.style(ctx("2"), "zombie", photo(selfie, "2"))
    await h.settle()
    assert h.engine.options[-1] is not None and h.engine.options[-1].aspect_ratio == "16:9"

    # Kept in SQLite, not only in memory: the database file itself has it (what a restart reads).
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        saved = db.execute("SELECT aspect_ratio FROM preferences WHERE scope = 'person' AND platform = 'test' "
                           "AND owner_id = ?", (ADA.id,)).fetchall()
    assert saved == [("16:9",)]


async def test_a_size_the_model_cannot_make_is_said_in_settings_and_on_the_result(h: Harness, selfie: bytes) -> None:
    menu = await open_settings(h, ctx("1"))
    await press(h, ctx("1"), menu, "set:menu:size")
    assert any("4K" in b.label and "⚠️" in b.label for b in menu.buttons), "the size menu warns up front"
    await press(h, ctx("1"), menu, "set:size:4K")
    assert "can't do size 4K" in menu.text

    await h.studio.style(ctx("2"), "comic", photo(selfie, "2"))
    await h.settle()
    result = last(h, "image")
    assert result.text.startswith("style: comic") and "can't do size 4K" in result.text


async def test_the_model_menu_shows_each_choice_with_its_price_difference_and_offline_always(h: Harness) -> None:
    await h.studio.people.set_model(h_ctx := ctx("1"), "")
    menu = last(h, "buttons")
    labels = {b.action: b.label for b in menu.buttons}
    assert "set:model:offline" in labels and "−$" in labels["set:model:offline"]
    assert labels["set:model:fake-model"].startswith("✓"), "the current model is marked"
    await h.studio.people.set_model(h_ctx, "no-such-model")
    assert "isn't one of the choices" in h.messenger.texts()[-1]


async def test_choosing_offline_draws_with_the_offline_engine(h: Harness, selfie: bytes) -> None:
    await h.studio.people.set_model(ctx("1"), "offline")
    await h.studio.style(ctx("2"), "comic", photo(selfie, "2"))
    await h.settle()
    assert not h.engine.calls, "the configured engine was not asked"
    result = last(h, "image")
    assert result.image is not None and has_provenance(result.image)
    node = await h.studio.store.get_node(result.node_id or 0)
    assert node is not None and node.model == "offline" and node.engine == "offline"


async def test_group_defaults_are_for_admins_and_win_in_the_group_but_not_in_private(
        h: Harness, selfie: bytes) -> None:
    member_menu = await open_settings(h, in_group("10", BEN))
    assert texts.SETTINGS_TITLE_CHAT in member_menu.text
    await press(h, in_group("10", BEN), member_menu, "set:menu:ratio")
    assert await press(h, in_group("10", BEN), member_menu, "set:ratio:9:16") == texts.SETTINGS_ADMINS_ONLY
    assert (await h.studio.store.get_preferences("chat", "test", GROUP.id)).aspect_ratio is None

    admin_menu = await open_settings(h, in_group("11", ADA, admin=True))
    await press(h, in_group("11", ADA, admin=True), admin_menu, "set:menu:ratio")
    assert await press(h, in_group("11", ADA, admin=True), admin_menu, "set:ratio:4:3") == texts.SETTINGS_SAVED

    own = await open_settings(h, ctx("1"))  # Ada's own, in private
    await press(h, ctx("1"), own, "set:menu:ratio")
    await press(h, ctx("1"), own, "set:ratio:1:1")

    await h.studio.style(in_group("12", ADA), "zombie", photo(selfie, "12"))
    await h.settle()
    assert h.engine.options[-1] is not None and h.engine.options[-1].aspect_ratio == "4:3"
    await h.studio.style(ctx("3"), "zombie", photo(selfie, "3"))
    await h.settle()
    assert h.engine.options[-1] is not None and h.engine.options[-1].aspect_ratio == "1:1"


async def test_persona_is_saved_shown_used_and_cleared(h: Harness, selfie: bytes) -> None:
    await h.studio.people.persona(ctx("1"), "")
    assert h.messenger.texts()[-1] == texts.PERSONA_NONE
    await h.studio.people.persona(ctx("2"), "a marathon runner who loves cats")
    await h.studio.people.persona(ctx("3"), "")
    assert "a marathon runner who loves cats" in h.messenger.texts()[-1]
    await h.studio.people.persona(ctx("4"), "x" * 2001)
    assert "at most 2000" in h.messenger.texts()[-1]

    await h.studio.style(ctx("5"), "comic", photo(selfie, "5"))
    await h.settle()
    assert h.engine.options[-1] is not None and h.engine.options[-1].persona == "a marathon runner who loves cats"

    await h.studio.people.persona(ctx("6"), "clear")
    assert h.messenger.texts()[-1] == texts.PERSONA_CLEARED
    assert (await h.studio.store.get_preferences("person", "test", ADA.id)).persona == ""


async def test_history_resends_the_last_results_oldest_first_and_replies_continue_from_them(
        h: Harness, selfie: bytes) -> None:
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    first = last(h, "image")
    await h.studio.edit(ctx("2"), "add a crown", first.message_id)
    await h.settle()
    await h.studio.style(ctx("3", BEN), "comic", photo(selfie, "3"))  # someone else's: not in Ada's history
    await h.settle()

    before = len(h.messenger.sent)
    await h.studio.people.history(ctx("4"))
    shown = h.messenger.sent[before:]
    assert [s.kind for s in shown] == ["text", "image", "image"]
    assert "Step 1" in shown[1].text and "Zombie" in shown[1].text
    assert "Step 2" in shown[2].text and "add a crown" in shown[2].text

    # Replying to the first history picture branches from the zombie, not from the crown.
    await h.studio.edit(ctx("5"), "make it night", shown[1].message_id)
    await h.settle()
    kind, image, instruction, _ = h.engine.calls[-1]
    assert (kind, instruction) == ("edit", "make it night")
    assert image == shown[1].image


async def test_delivery_as_file_and_as_both(h: Harness, selfie: bytes) -> None:
    menu = await open_settings(h, ctx("1"))
    await press(h, ctx("1"), menu, "set:menu:delivery")
    await press(h, ctx("1"), menu, "set:delivery:file")
    await h.studio.style(ctx("2"), "zombie", photo(selfie, "2"))
    await h.settle()
    assert h.messenger.sent[-1].kind == "file" and not [s for s in h.messenger.sent if s.kind == "image"]

    await press(h, ctx("1"), menu, "set:menu:delivery")
    await press(h, ctx("1"), menu, "set:delivery:both")
    await h.studio.style(ctx("3"), "comic", photo(selfie, "3"))
    await h.settle()
    picture, file = h.messenger.sent[-2:]
    assert (picture.kind, file.kind) == ("image", "file") and picture.image == file.image
    # Either message can be replied to.
    node = await h.studio.store.node_for_message("test", "42", file.message_id)
    assert node is not None and node.id == picture.node_id


async def test_exports_by_reply_and_by_button(h: Harness, selfie: bytes) -> None:
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    result = last(h, "image")

    await h.studio.people.export(ctx("2"), "sticker", result.message_id)
    sticker = last(h, "sticker")
    assert sticker.image is not None
    with Image.open(io.BytesIO(sticker.image)) as im:
        assert (im.format, im.size) == ("WEBP", (512, 512))

    # the result's own button
    toast = (await h.studio.press(ctx(result.message_id), f"export:profile:{result.node_id}")).text
    assert toast == texts.EXPORT_SENT
    profile = last(h, "file")
    assert profile.image is not None
    with Image.open(io.BytesIO(profile.image)) as im:
        assert (im.format, im.size) == ("JPEG", (1024, 1024))

    await h.studio.people.export(ctx("4"), "original", result.message_id)
    assert last(h, "file").image == result.image

    await h.studio.people.export(ctx("5"), "sticker", None)  # not a reply to a result
    assert h.messenger.texts()[-1] == texts.EXPORT_HOW


async def test_forget_deletes_settings_and_persona(h: Harness) -> None:
    await h.studio.people.persona(ctx("1"), "a pirate at heart")
    await h.studio.people.set_model(ctx("2"), "offline")
    assert await h.studio.store.get_preferences("person", "test", ADA.id) != Preferences()
    await h.studio.forget(ctx("3"))
    yes = next(b for b in h.messenger.buttons if b.action.startswith("forget:yes"))
    await h.studio.press(ctx("4"), yes.action)
    assert await h.studio.store.get_preferences("person", "test", ADA.id) == Preferences()


async def test_an_export_button_exports_only_its_own_picture_and_a_photo_only_to_its_sender(
        h: Harness, selfie: bytes) -> None:
    await h.studio.style(in_group("1"), "zombie", photo(selfie, "1"))  # Ada's selfie is message 1 of the group
    await h.settle()
    result = last(h, "image")
    node = await h.studio.store.get_node(result.node_id or 0)
    assert node is not None and node.root_id is not None
    before = len(h.messenger.sent)

    # Ben names Ada's selfie on her result's button, or on the message showing the selfie itself.
    assert (await h.studio.press(in_group(result.message_id, BEN), f"export:original:{node.root_id}")).text \
        == texts.UNKNOWN_BUTTON
    assert (await h.studio.press(in_group("1", BEN), f"export:original:{node.root_id}")).text == texts.UNKNOWN_BUTTON
    assert (await h.studio.press(in_group("1", BEN), f"export:sticker:{node.root_id}")).text == texts.UNKNOWN_BUTTON
    assert len(h.messenger.sent) == before, "nothing was sent"

    # Ada may have her own photo back; anyone may export the result their button is under.
    assert (await h.studio.press(in_group("1"), f"export:original:{node.root_id}")).text == texts.EXPORT_SENT
    assert last(h, "file").node_id == node.root_id
    exported = await h.studio.press(in_group(result.message_id, BEN), f"export:original:{node.id}")
    assert exported.text == texts.EXPORT_SENT
    assert last(h, "file").image == result.image


async def test_forged_step_and_restyle_buttons_never_show_or_restyle_someone_elses_photo(
        h: Harness, selfie: bytes) -> None:
    await h.studio.style(in_group("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    node = await h.studio.store.get_node(last(h, "image").node_id or 0)
    assert node is not None and node.root_id is not None
    images, calls = len([s for s in h.messenger.sent if s.kind == "image"]), len(h.engine.calls)

    await h.studio.people.show_step(in_group("20", BEN), node.root_id)
    await h.studio.restyle(in_group("21", BEN), node.root_id, "comic")
    await h.settle()
    assert h.messenger.texts()[-2:] == [texts.UNKNOWN_BUTTON, texts.UNKNOWN_BUTTON]
    assert len([s for s in h.messenger.sent if s.kind == "image"]) == images and len(h.engine.calls) == calls

    await h.studio.restyle(in_group("22", BEN), node.id, "comic")  # her result, shown in the chat: fine
    await h.settle()
    assert len(h.engine.calls) == calls + 1
