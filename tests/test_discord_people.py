"""Settings, persona, history, exports, languages and provenance on Discord, end to end.

The real discord.py client against the loopback Discord stand-in; the real google-genai client
against the loopback Gemini stand-in where a setting must reach the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from bots.discord import DiscordBot
from core import i18n, texts
from core.config import DiscordSettings, LimitsSettings
from core.engines.base import ImageEngine
from core.engines.gemini import GeminiEngine
from core.engines.offline import OfflineEngine
from core.exports import has_provenance
from core.studio import Studio
from tests.backends import open_stores
from tests.conftest import jpeg_bytes
from tests.standins.discord_api import EPHEMERAL, MEMBER_PERMISSIONS, FakeDiscord, Interaction, Payload, user

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

gemini_api = pytest.importorskip("tests.standins.gemini_api")

ALICE = user(6001, "alice")
SOFIA = user(6002, "sofia", locale="es-ES")
MODELS = ["gemini-nano-banana-2.1", "gemini-3-pro-image", "gemini-3.1-flash-lite-image"]


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, data_dir: Path, engine: ImageEngine,
                  model_choices: list[str] | None = None) -> AsyncIterator[Studio]:
    store, images = await open_stores(data_dir / "pixme.sqlite3")
    studio = Studio(store=store, images=images, engine=engine,
                    limits=LimitsSettings(concurrency=4, queue_per_user=5), delivery_retry_delays=(0.05,),
                    input_max_px=256, model_choices=model_choices)
    bot = DiscordBot(DiscordSettings(token=SecretStr(fake.token), api_url=fake.api_url), studio,
                     engine_name=engine.name, guild_ready_timeout=0.05)
    try:
        await bot.start()
        await bot.wait_ready(10)
        yield studio
    finally:
        await bot.stop()
        await studio.aclose()
        await engine.aclose()
        await store.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as dc:
        yield dc


@pytest.fixture
def selfie(face_image: Image.Image) -> bytes:
    return jpeg_bytes(face_image.resize((320, 320)), quality=90)


def selects(message: Payload) -> dict[str, Payload]:
    return {c["custom_id"]: c for row in message["components"] for c in row["components"] if c.get("type") == 3}


def chosen(select: Payload) -> list[str]:
    return [o["value"] for o in select["options"] if o.get("default")]


def custom_ids(message: Payload) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"] if "custom_id" in c]


async def first_answer(fake: FakeDiscord, interaction: Interaction) -> Payload:
    found: Payload = await fake.wait_for(lambda: next(iter(fake.answers(interaction)), None))
    return found


async def avatar(fake: FakeDiscord, person: Payload, style: str, data: bytes) -> Payload:
    before = fake.last_id()
    await fake.slash(person, "avatar", {"style": style}, attachments={"photo": fake.upload(data)})
    result: Payload = await fake.wait_for_bot_message(lambda m: m["attachments"] and "pixme:edit:" in str(
        m["components"]), after=before)
    return result


def image_config(request: Any) -> dict[str, Any]:
    return dict(request.body["generationConfig"].get("imageConfig") or {})


async def test_settings_are_select_menus_and_reach_gemini(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with gemini_api.FakeGemini() as gem:
        engine = GeminiEngine(api_key=gem.api_key, base_url=gem.base_url, retry_budget_s=2, request_timeout_s=10)
        async with running(fake, tmp_path, engine, MODELS):
            opened = await fake.slash(ALICE, "settings")
            menu = await first_answer(fake, opened)
            assert menu["flags"] & EPHEMERAL, "settings are private"
            menus = selects(menu)
            assert set(menus) == {f"pixme:setting:{k}" for k in ("model", "ratio", "size", "delivery", "variants")}
            assert chosen(menus["pixme:setting:model"]) == ["gemini-nano-banana-2.1"]
            pro = next(o for o in menus["pixme:setting:model"]["options"] if o["value"] == "gemini-3-pro-image")
            assert "+$" in (pro.get("description") or ""), "the price difference is shown"

            for key, value in (("model", "gemini-3-pro-image"), ("ratio", "16:9"), ("size", "2K")):
                press = await fake.choose(ALICE, menu, f"pixme:setting:{key}", [value])
                await fake.wait_for(lambda p=press: 7 in p.responses)  # the same message, redrawn
                menu = fake.messages[int(menu["id"])]
                assert chosen(selects(menu)[f"pixme:setting:{key}"]) == [value]
            assert "gemini-3-pro-image" in menu["content"] and "16:9" in menu["content"] and "2K" in menu["content"]

            await avatar(fake, ALICE, "comic", selfie)
            request = gem.generate_requests[-1]
            assert request.model == "gemini-3-pro-image"
            assert image_config(request) == {"aspectRatio": "16:9", "imageSize": "2K"}


async def test_persona_reaches_the_prompt_on_discord(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with gemini_api.FakeGemini() as gem:
        engine = GeminiEngine(api_key=gem.api_key, base_url=gem.base_url, retry_budget_s=2, request_timeout_s=10)
        async with running(fake, tmp_path, engine):
            saved = await first_answer(fake, await fake.slash(ALICE, "persona", {"about": "a DJ from Lagos"}))
            assert "a DJ from Lagos" in saved["content"] and saved["flags"] & EPHEMERAL
            await avatar(fake, ALICE, "cyberpunk", selfie)
            assert "About the person: a DJ from Lagos" in gem.generate_requests[-1].text


async def test_exports_history_and_provenance_on_discord(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with running(fake, tmp_path, OfflineEngine()) as studio:
        result = await avatar(fake, ALICE, "comic", selfie)
        delivered = fake.file_of(result)
        assert has_provenance(delivered), "the delivered picture says it is AI-made"

        def export(kind: str) -> str:
            return next(c for c in custom_ids(result) if c.startswith(f"pixme:export:{kind}:"))

        sizes = {"sticker": ((512, 512), "WEBP"), "profile": ((1024, 1024), "JPEG")}
        for kind, (size, fmt) in sizes.items():
            press = await fake.click(ALICE, result, export(kind))
            sent = await fake.wait_for(lambda p=press: next((m for m in fake.answers(p) if m["attachments"]), None))
            assert sent["flags"] & EPHEMERAL, "an export is for the presser only"
            picture = Image.open(io.BytesIO(fake.file_of(sent)))
            assert (picture.size, picture.format) == (size, fmt)
            assert has_provenance(fake.file_of(sent))
        press = await fake.click(ALICE, result, export("original"))
        original = await fake.wait_for(lambda: next((m for m in fake.answers(press) if m["attachments"]), None))
        assert Image.open(io.BytesIO(fake.file_of(original))).tobytes() == \
            Image.open(io.BytesIO(delivered)).tobytes(), "the original is the very picture"

        second = await avatar(fake, ALICE, "noir", selfie)
        await studio.jobs.wait_idle(10)
        before = fake.last_id()
        await fake.slash(ALICE, "history")

        # One message, a gallery of both pictures (oldest first), listing the steps, with a menu of them.
        gallery = await fake.wait_for_bot_message(lambda m: len(m["attachments"]) == 2, after=before)
        assert [fake.file_of(gallery, i) for i in (0, 1)] == [delivered, fake.file_of(second)]
        assert "1. Step 1 · 💥 Comic" in gallery["content"] and "2. Step 1 · 🕵️ Film Noir" in gallery["content"]
        menu = selects(gallery)["pixme:step"]
        comic = await studio.store.node_for_message("discord", str(fake.channel_id), result["id"])
        noir = await studio.store.node_for_message("discord", str(fake.channel_id), second["id"])
        assert comic is not None and noir is not None
        assert [o["value"] for o in menu["options"]] == [str(comic.id), str(noir.id)]

        # A reply to the gallery itself continues from its newest picture...
        async with asyncio.timeout(10):  # the bot records which step a message shows right after posting it
            while await studio.store.node_for_message("discord", str(fake.channel_id), gallery["id"]) is None:  # noqa: ASYNC110 - the link is written by the bot, not signalled
                await asyncio.sleep(0.01)
        await fake.post(ALICE, "add sunglasses", reply_to=int(gallery["id"]))
        shades = await fake.wait_for_bot_message(lambda m: m["attachments"] and "pixme:edit:" in str(m["components"]),
                                              after=int(gallery["id"]))
        await studio.jobs.wait_idle(10)
        shades_node = await studio.store.node_for_message("discord", str(fake.channel_id), shades["id"])
        assert shades_node is not None and shades_node.parent_id == noir.id

        # ...and picking an older step brings it out on its own, to reply to: the edit continues from it.
        picked = await fake.choose(ALICE, gallery, "pixme:step", [str(comic.id)])
        brought = await fake.wait_for(lambda: next((m for m in fake.answers(picked) if m["attachments"]), None))
        assert fake.file_of(brought) == delivered and "Step 1 · 💥 Comic" in brought["content"]
        assert not brought["flags"] & EPHEMERAL, "a step brought out is there to be replied to"
        assert any(c.startswith("pixme:export:sticker:") for c in custom_ids(brought)), "with its buttons"
        async with asyncio.timeout(10):
            while await studio.store.node_for_message("discord", str(fake.channel_id), brought["id"]) is None:  # noqa: ASYNC110 - as above
                await asyncio.sleep(0.01)
        await fake.post(ALICE, "add a crown", reply_to=int(brought["id"]))
        edited = await fake.wait_for_bot_message(lambda m: m["attachments"], after=int(brought["id"]))
        await studio.jobs.wait_idle(10)
        node = await studio.store.node_for_message("discord", str(fake.channel_id), edited["id"])
        assert node is not None and node.parent_id == comic.id and node.depth == 2


async def test_a_spanish_speaker_is_answered_in_spanish(fake: FakeDiscord, tmp_path: Path, selfie: bytes) -> None:
    async with running(fake, tmp_path, OfflineEngine()):
        # The command picker shows Spanish descriptions to Spanish clients; names stay as typed.
        avatar_command = next(c for c in fake.commands[None] if c["name"] == "avatar")
        assert avatar_command["description_localizations"]["es-ES"] != avatar_command["description"]
        styles_es = (await first_answer(fake, await fake.slash(SOFIA, "styles")))["content"]
        styles_en = (await first_answer(fake, await fake.slash(ALICE, "styles")))["content"]
        with i18n.speaking("es"):
            assert styles_es == texts.styles_list(prefix="")
        assert styles_en == texts.styles_list(prefix="") and styles_es != styles_en

        result = await avatar(fake, SOFIA, "comic", selfie)
        labels = [c.get("label") for row in result["components"] for c in row["components"]]
        with i18n.speaking("es"):
            assert texts.BUTTON_EDIT in labels and texts.BUTTON_EDIT != "Edit", labels

        # /language overrides the app's language, for everything said afterwards.
        chosen_language = await first_answer(fake, await fake.slash(ALICE, "language", {"language": "ru"}))
        assert "Русский" in chosen_language["content"]
        help_ru = (await first_answer(fake, await fake.slash(ALICE, "help")))["content"]
        with i18n.speaking("ru"):
            assert help_ru == texts.discord_help("offline")
        assert help_ru != texts.discord_help("offline")


async def test_server_defaults_are_for_managers_and_own_settings_live_in_a_dm(fake: FakeDiscord,
                                                                               tmp_path: Path) -> None:
    member = user(6003, "maria")
    fake.set_permissions(member, MEMBER_PERMISSIONS)
    async with running(fake, tmp_path, OfflineEngine()) as studio:
        menu = await first_answer(fake, await fake.slash(member, "settings"))
        assert menu["content"].startswith(texts.SETTINGS_TITLE_CHAT)
        press = await fake.choose(member, menu, "pixme:setting:ratio", ["16:9"])
        await fake.wait_for(lambda: 7 in press.responses)
        redrawn = fake.messages[int(menu["id"])]
        assert redrawn["content"].startswith(texts.SETTINGS_ADMINS_ONLY), "the refusal says why, in one line"
        assert chosen(selects(redrawn)["pixme:setting:ratio"]) == ["auto"], "nothing changed"
        assert (await studio.store.get_preferences("chat", "discord", str(fake.channel_id))).aspect_ratio is None

        dm = await first_answer(fake, await fake.slash(member, "settings", channel_id=fake.dm_channel(member)))
        assert dm["content"].startswith(texts.SETTINGS_TITLE_PERSON)
        press = await fake.choose(member, dm, "pixme:setting:delivery", ["both"])
        await fake.wait_for(lambda: 7 in press.responses)
        assert (await studio.store.get_preferences("person", "discord", member["id"])).delivery == "both"
