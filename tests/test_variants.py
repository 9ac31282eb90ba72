"""Variants, Again and style packs, end to end: the real Telegram adapter (PTB) against the loopback Bot API,
the real Discord client against its stand-in, the playground over its WebSocket; the offline engine and SQLite.
Every assertion is about what a person would see, plus which picture a reply continues from."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from core import texts
from core.admission import start_of_day
from core.engines.base import RenderOptions
from core.engines.offline import OfflineEngine
from core.ports import Preferences
from core.rendering import PACK_ORDER
from core.requests import Chat, Context, Person
from core.styles import get_style
from tests.standins.telegram_api import FakeTelegram, SentMessage
from tests.test_telegram_harness import ALICE, Running, difference, private, running_bot, small_selfie

ALICE_CHAT = private(ALICE)


@pytest.fixture(scope="module")
def selfie() -> bytes:
    return small_selfie()


@pytest.fixture
async def run(tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Running]:
    async with running_bot(tg, tmp_path) as running:
        yield running


def in_album(m: SentMessage) -> bool:
    return m.method == "sendMediaGroup"


def with_buttons(m: SentMessage) -> bool:
    return m.method == "sendMessage" and bool(m.buttons)


async def node_of(run: Running, message: SentMessage) -> int:
    await run.finished()
    node = await run.studio.store.node_for_message("telegram", str(message.chat_id), str(message.message_id))
    assert node is not None, f"message {message.message_id} is linked to the picture it shows"
    return node.id


async def choose_variants(run: Running, count: int) -> None:
    """Alice chooses, in /settings, how many candidates a request makes."""
    tg = run.tg
    tg.send_text(ALICE_CHAT, ALICE, "/settings")
    menu = await run.text_reply(ALICE_CHAT)
    assert any(b["callback_data"] == "do:set:menu:variants" for b in menu.buttons), "the menu offers variants"
    await tg.wait_for_callback_answer(tg.press_button(ALICE_CHAT, ALICE, menu.message_id, "do:set:menu:variants"))
    await tg.wait_for_edit(menu.message_id)
    answer = await tg.wait_for_callback_answer(
        tg.press_button(ALICE_CHAT, ALICE, menu.message_id, f"do:set:variants:{count}"))
    assert answer.get("text") == texts.SETTINGS_SAVED
    shown = await tg.wait_for_edit(menu.message_id)
    assert texts.variants_setting(count) in str(shown)


# -- variants ----------------------------------------------------------------------------------------


async def test_three_variants_come_as_an_album_and_each_can_be_continued(run: Running, selfie: bytes) -> None:
    tg = run.tg
    await choose_variants(run, 3)
    photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")

    album = await tg.wait_for_messages(3, in_album, chat_id=ALICE.id, timeout=30)
    assert len({m.media_group_id for m in album}) == 1, "one album"
    assert all(m.reply_to_message_id == photo_id for m in album), "it answers the photo"
    assert [(m.caption or "").split(".")[0] for m in album] == ["1", "2", "3"], "numbered, to pick one by"
    pictures = [m.photo for m in album]
    assert all(p is not None for p in pictures)
    assert len({p for p in pictures}) == 3, "three different pictures, not one sent three times"
    assert min(difference(a, b) for a, b in [(pictures[0], pictures[1]), (pictures[0], pictures[2]),
                                             (pictures[1], pictures[2])] if a and b) > 5, "visibly different"
    picker = await tg.wait_for_message(with_buttons, chat_id=ALICE.id)
    assert picker.text == texts.VARIANTS_PICK
    assert [b["text"] for b in picker.buttons] == ["1", "2", "3"]

    # Every album photo is its own picture: three children of the same selfie, each counted and priced.
    nodes = [await node_of(run, m) for m in album]
    store = run.studio.store
    made = [await store.get_node(n) for n in nodes]
    assert len(set(nodes)) == 3 and len({n.parent_id for n in made if n}) == 1
    assert all(n is not None and n.kind == "style" and n.style == "comic" for n in made)
    assert await store.count_delivered(start_of_day(), platform="telegram", user_id=str(ALICE.id)) == 3
    assert sum((await store.delivered_by_model(start_of_day())).values()) == 3

    # A reply to the second album photo edits the second candidate.
    tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=album[1].message_id)
    crowned = await run.photo_reply(ALICE_CHAT)
    assert crowned.caption is not None and "crown" in crowned.caption.lower()
    crowned_node = await store.get_node(await node_of(run, crowned))
    assert crowned_node is not None and crowned_node.parent_id == nodes[1]

    # Button 3 brings the third out as a result of its own (with its buttons); a reply to it continues from it.
    query = tg.press_button(ALICE_CHAT, ALICE, picker.message_id, picker.buttons[2]["callback_data"])
    assert (await tg.wait_for_callback_answer(query)).get("text") == texts.VARIANT_PICKED
    chosen = await run.photo_reply(ALICE_CHAT)
    assert chosen.photo == pictures[2] and chosen.buttons, "the third picture, with the result's buttons"
    assert await node_of(run, chosen) == nodes[2]
    tg.send_text(ALICE_CHAT, ALICE, "add sunglasses", reply_to=chosen.message_id)
    shades = await run.photo_reply(ALICE_CHAT)
    shades_node = await store.get_node(await node_of(run, shades))
    assert shades_node is not None and shades_node.parent_id == nodes[2]
    await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


async def test_a_request_for_more_pictures_than_are_left_is_refused_whole_and_up_front(
        tg: FakeTelegram, tmp_path: Path, selfie: bytes) -> None:
    async with running_bot(tg, tmp_path, user_daily=4) as run:
        await choose_variants(run, 3)
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/noir")
        await tg.wait_for_messages(3, in_album, chat_id=ALICE.id, timeout=30)
        await tg.wait_for_message(with_buttons, chat_id=ALICE.id)
        await run.finished()
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/noir")
        refusal = await run.text_reply(ALICE_CHAT)
        assert refusal.text is not None and refusal.text.startswith("That takes 3 pictures, and only 1 is left")
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/pack 2")
        refusal = await run.text_reply(ALICE_CHAT)
        assert refusal.text is not None and refusal.text.startswith("That takes 2 pictures, and only 1 is left")
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert not tg.calls_of("getFile")[1:], "nothing past the first photo was even downloaded"


# -- Again -------------------------------------------------------------------------------------------


async def test_again_on_the_offline_engine_makes_a_new_picture_in_the_same_style(run: Running,
                                                                                 selfie: bytes) -> None:
    tg = run.tg
    tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
    first = await run.photo_reply(ALICE_CHAT)
    node = await node_of(run, first)
    # Telegram has no Again button (Discord and the playground do, tested there): the use case itself.
    ctx = Context(Chat("telegram", str(ALICE.id), True), Person(str(ALICE.id), "Alice"), str(first.message_id))
    await run.studio.again(ctx, node)
    again = await run.photo_reply(ALICE_CHAT)
    assert first.photo is not None and again.photo is not None
    assert again.photo != first.photo, "Again is never the same picture twice"
    noir = await OfflineEngine().stylize(selfie, get_style("noir"), options=RenderOptions())  # type: ignore[arg-type]
    apart = difference(first.photo, again.photo)
    assert apart > 5, "a person sees the difference"
    assert apart < difference(again.photo, noir.image), "and it is still a comic, not another style"
    again_node = await run.studio.store.get_node(await node_of(run, again))
    first_node = await run.studio.store.get_node(node)
    assert again_node is not None and first_node is not None
    assert again_node.parent_id == first_node.parent_id and again_node.style == "comic"


# -- style packs -------------------------------------------------------------------------------------


async def test_a_pack_of_six_is_one_album_of_six_styles_each_replyable(run: Running, selfie: bytes) -> None:
    tg = run.tg
    photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/pack")
    album = await tg.wait_for_messages(6, in_album, chat_id=ALICE.id, timeout=60)
    assert len({m.media_group_id for m in album}) == 1 and all(m.reply_to_message_id == photo_id for m in album)
    labels = [get_style(s).label for s in PACK_ORDER[:6]]  # type: ignore[union-attr]
    assert [(m.caption or "").split(" — ")[0] for m in album] == [f"{i}. {label}" for i, label in
                                                                  enumerate(labels, start=1)]
    picker = await tg.wait_for_message(with_buttons, chat_id=ALICE.id)
    assert [b["text"] for b in picker.buttons] == ["1", "2", "3", "4", "5", "6"]

    store = run.studio.store
    nodes = [await store.get_node(await node_of(run, m)) for m in album]
    assert [n.style for n in nodes if n] == list(PACK_ORDER[:6])
    assert len({n.parent_id for n in nodes if n}) == 1, "the same selfie in every style"
    assert await store.count_delivered(start_of_day(), platform="telegram", user_id=str(ALICE.id)) == 6

    tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=album[3].message_id)
    crowned = await run.photo_reply(ALICE_CHAT)
    crowned_node = await store.get_node(await node_of(run, crowned))
    assert crowned_node is not None and nodes[3] is not None and crowned_node.parent_id == nodes[3].id

    # /pack 3 replying to a result: the original selfie behind it, in three styles.
    tg.send_text(ALICE_CHAT, ALICE, "/pack 3", reply_to=crowned.message_id)
    three = await tg.wait_for_messages(3, in_album, chat_id=ALICE.id, timeout=30)
    assert len({m.media_group_id for m in three}) == 1
    root = [await store.get_node(await node_of(run, m)) for m in three]
    assert all(n is not None and nodes[0] is not None and n.parent_id == nodes[0].parent_id for n in root)
    await tg.wait_for_message(with_buttons, chat_id=ALICE.id)
    await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


async def test_pack_explains_itself_without_a_selfie_or_with_a_wrong_number(run: Running, selfie: bytes) -> None:
    tg = run.tg
    tg.send_text(ALICE_CHAT, ALICE, "/pack")
    how = await run.text_reply(ALICE_CHAT)
    assert how.text == texts.pack_how("telegram", 6, 10)
    tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/pack 11")
    wrong = await run.text_reply(ALICE_CHAT)
    assert wrong.text == texts.pack_count(10, "11")
    assert "pack" in {c["command"] for c in tg.commands}, "the menu lists /pack, from the command table"
    await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


# -- the setting -------------------------------------------------------------------------------------


async def test_the_operators_default_applies_until_a_person_chooses(tg: FakeTelegram, tmp_path: Path,
                                                                    selfie: bytes) -> None:
    from tests.test_telegram_harness import make_settings

    settings = make_settings(tg, tmp_path).model_copy(deep=True)
    settings.gemini.variants = 2
    async with running_bot(tg, tmp_path, settings=settings) as run:
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/sketch")
        assert len(await tg.wait_for_messages(2, in_album, chat_id=ALICE.id, timeout=30)) == 2
        await tg.wait_for_message(with_buttons, chat_id=ALICE.id)
        await run.finished()
        await run.studio.store.set_preferences("person", "telegram", str(ALICE.id), Preferences(variants=1))
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/sketch")
        single = await run.photo_reply(ALICE_CHAT)
        assert single.caption is not None and not single.caption.startswith("1. ")
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


def test_offline_variants_differ_yet_keep_the_style() -> None:
    """The offline engine's seeds, looked at as pictures: each style's takes differ from each other and from
    the engine's own picture, and each stays nearer its own style than another style's take."""

    async def takes() -> dict[str, list[bytes]]:
        engine = OfflineEngine()
        picture = small_selfie(200)
        try:
            return {name: [(await engine.stylize(picture, get_style(name), options=RenderOptions(seed=seed))).image  # type: ignore[arg-type]
                           for seed in (None, 101, 202)] for name in ("comic", "noir")}
        finally:
            await engine.aclose()

    made = asyncio.run(takes())
    for name, (own, one, two) in made.items():
        assert own != one != two
        assert min(difference(own, one), difference(one, two)) > 5, f"{name}: visibly different takes"
    assert difference(made["comic"][1], made["comic"][0]) < difference(made["comic"][1], made["noir"][0])
    assert Image.open(io.BytesIO(made["noir"][1])).convert("RGB").getextrema()[0] is not None


# -- Discord: one message with every picture and a menu to pick one ------------------------------------


async def test_discord_variants_are_one_message_with_a_menu_and_each_is_priced(tmp_path: Path,
                                                                               face_image: Image.Image) -> None:
    from core.engines.gemini import GeminiEngine
    from tests.conftest import jpeg_bytes
    from tests.standins import gemini_api
    from tests.standins.discord_api import FakeDiscord, user
    from tests.test_discord_people import running, selects

    alice = user(5101, "alice")
    picture = jpeg_bytes(face_image.resize((320, 320)), quality=90)
    async with FakeDiscord() as fake, gemini_api.FakeGemini() as gem:
        engine = GeminiEngine(api_key=gem.api_key, base_url=gem.base_url, retry_budget_s=2, request_timeout_s=10)
        async with running(fake, tmp_path, engine) as studio:
            opened = await fake.slash(alice, "settings")
            menu = await fake.wait_for(lambda: next(iter(fake.answers(opened)), None))
            press = await fake.choose(alice, menu, "pixme:setting:variants", ["3"])
            await fake.wait_for(lambda: 7 in press.responses)  # the settings message, redrawn

            before = fake.last_id()
            await fake.slash(alice, "avatar", {"style": "anime"}, attachments={"photo": fake.upload(picture)})
            shown = await fake.wait_for_bot_message(lambda m: len(m["attachments"]) == 3, after=before)
            assert len(gem.generate_requests) == 3, "three calls, one per candidate"
            assert [line.split(".")[0] for line in shown["content"].splitlines()[:3]] == ["1", "2", "3"]
            menu = selects(shown)["pixme:variants"]
            await studio.jobs.wait_idle(10)
            store = studio.store
            job = await store.get_job(1)
            assert job is not None and len(job.result_nodes) == 3 and job.pictures == 3
            assert [o["value"] for o in menu["options"]] == [str(n) for n in job.result_nodes]
            assert await store.count_delivered(start_of_day(), platform="discord") == 3
            assert sum((await store.delivered_by_model(start_of_day())).values()) == 3, "/stats prices all three"

            # Picking the second brings it out on its own, with its buttons; a reply to it continues from it.
            picked = await fake.choose(alice, shown, "pixme:variants", [str(job.result_nodes[1])])
            brought = await fake.wait_for(lambda: next((m for m in fake.answers(picked) if m["attachments"]), None))
            assert fake.file_of(brought) == fake.file_of(shown, 1)
            assert any(c.startswith("pixme:edit:") for r in brought["components"] for c in
                       [x.get("custom_id", "") for x in r["components"]]), "with the result's buttons"
            async with asyncio.timeout(10):  # the bot records which picture a message shows right after posting it
                while (node := await store.node_for_message("discord", str(fake.channel_id), brought["id"])) is None:  # noqa: ASYNC110 - the link is written by the bot, not signalled
                    await asyncio.sleep(0.01)
            assert node.id == job.result_nodes[1]

            # /pack count:2 on Discord: the same selfie in two styles, one message, from the same table.
            before = fake.last_id()
            await fake.slash(alice, "pack", {"count": "2"}, attachments={"photo": fake.upload(picture)})
            pack = await fake.wait_for_bot_message(lambda m: len(m["attachments"]) == 2, after=before)
            labels = [get_style(s).label for s in PACK_ORDER[:2]]  # type: ignore[union-attr]
            assert all(label in pack["content"] for label in labels)
            assert "pixme:variants" in selects(pack)


# -- the playground: a grid ------------------------------------------------------------------------------


async def test_playground_variants_are_a_grid_of_replyable_pictures(tmp_path: Path, selfie: bytes) -> None:
    from bots.playground.app import PLAYGROUND_KEY
    from tests.test_playground import open_page, serve

    async with serve(tmp_path, OfflineEngine()) as client:
        studio = client.app[PLAYGROUND_KEY].studio
        await studio.store.set_preferences("person", "playground", "pg-alex", Preferences(variants=2))
        page = await open_page(client)
        photo_id = await page.upload(selfie)
        await page.act("text", text="/noir", reply_to=photo_id)
        one = (await page.next(lambda e: e["type"] == "message" and bool(e["message"].get("album"))))["message"]
        two = (await page.next(lambda e: e["type"] == "message" and bool(e["message"].get("album"))))["message"]
        assert one["album"] == two["album"], "laid out together, as a grid"
        assert one["kind"] == two["kind"] == "image", "each a result of its own: replyable, with its buttons"
        assert one["image"] != two["image"] and one["text"].startswith("1. ") and two["text"].startswith("2. ")
        assert one["pick"]["action"] == f"variant:{one['node']}"

        await page.act("press", message=two["id"], action=two["pick"]["action"])
        chosen = (await page.next(lambda e: e["type"] == "message" and e["message"]["kind"] == "image"
                                  and not e["message"].get("album")))["message"]
        assert chosen["node"] == two["node"] and chosen["reply_to"] == two["id"]
        await page.act("text", text="add a crown", reply_to=one["id"])
        crowned = (await page.next(lambda e: e["type"] == "message" and e["message"]["kind"] == "image"
                                   and "crown" in e["message"]["text"].lower()))["message"]
        node = await studio.store.get_node(crowned["node"])
        assert node is not None and node.parent_id == one["node"]
        await page.close()
