"""Gemini as Google runs it today, end to end: the real Telegram bot and the real google-genai client
against their loopback stand-ins. Models retire, day quotas run out, pictures cost by size, and the
operator's spending limit holds."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings, load_settings
from tests.backends import storage_settings
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import FakeTelegram
from tests.test_telegram_harness import ALICE, BOB, private, running_bot, small_selfie
from tests.test_telegram_settings import choose, settings_menu

ALICE_CHAT, BOB_CHAT = private(ALICE), private(BOB)
NANO = "gemini-nano-banana-2.1"


def today_settings(tg: FakeTelegram, gem: FakeGemini, data_dir: Path, *, limits: dict[str, Any] | None = None,
                   **gemini: Any) -> Settings:
    """Telegram and Gemini on their stand-ins; Alice is the bot's admin (she may read /stats)."""
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url},
        storage=storage_settings(data_dir, retention_days=0),
        engine={"default": "gemini", "input_max_px": 256},
        gemini={"api_key": gem.api_key, "base_url": gem.base_url, "retry_budget_s": 120, "request_timeout_s": 10,
                **gemini},
        limits={"concurrency": 4, **(limits or {})},
        access={"admins": [str(ALICE.id)]},
        # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
        likeness={"enabled": False},
    )


async def stats(run: Any) -> str:
    run.tg.send_text(ALICE_CHAT, ALICE, "/stats")
    return str((await run.text_reply(ALICE_CHAT)).text)


async def test_the_default_configuration_draws_with_nano_banana_2_1(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem:
        async with running_bot(tg, tmp_path, settings=today_settings(tg, gem, tmp_path)) as run:
            assert await run.studio.engine.check() is None
            tg.send_photo(ALICE_CHAT, ALICE, small_selfie(256), caption="/zombie")
            await run.photo_reply(ALICE_CHAT)
            assert [r.model for r in gem.generate_requests] == [NANO]


async def test_a_configured_shut_down_model_still_gives_pictures_from_its_successor(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with FakeTelegram() as tg, FakeGemini() as gem:
        settings = today_settings(tg, gem, tmp_path, model="gemini-2.5-flash-image")
        async with running_bot(tg, tmp_path, settings=settings) as run:
            # No start-up check here: the first call meets the 404 and the request carries on.
            tg.send_photo(ALICE_CHAT, ALICE, small_selfie(256), caption="/zombie")
            first = await run.photo_reply(ALICE_CHAT)
            tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=first.message_id)
            await run.photo_reply(ALICE_CHAT)
            tg.send_photo(BOB_CHAT, BOB, small_selfie(256), caption="/anime")
            await run.photo_reply(BOB_CHAT)
            assert [r.model for r in gem.generate_requests] == ["gemini-2.5-flash-image", NANO, NANO, NANO]
            said = await stats(run)
            assert "gemini-2.5-flash-image" in said and f"using {NANO} instead" in said
    switches = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "gemini-2.5-flash-image" in r.getMessage()]
    assert len(switches) == 1 and NANO in switches[0], "one warning naming both models"


async def test_a_day_quota_answers_at_once_and_stops_calling_the_model(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem:
        async with running_bot(tg, tmp_path, settings=today_settings(tg, gem, tmp_path)) as run:
            gem.script(gem.day_quota())  # its RetryInfo says 37 s: honouring it would miss the timeout below
            asked = tg.send_photo(ALICE_CHAT, ALICE, small_selfie(256), caption="/zombie")
            told = await run.text_reply(ALICE_CHAT, timeout=10)
            assert told.reply_to_message_id == asked
            assert "quota" in str(told.text) and "midnight Pacific" in str(told.text)
            assert len(gem.generate_requests) == 1, "a day quota is not retried"

            # Later requests are answered at once and never sent, until the quota resets.
            bob_asked = tg.send_photo(BOB_CHAT, BOB, small_selfie(256), caption="/anime")
            bob_told = await run.text_reply(BOB_CHAT, timeout=10)
            assert bob_told.reply_to_message_id == bob_asked and "quota" in str(bob_told.text)
            assert len(gem.generate_requests) == 1
            said = await stats(run)
            assert "quota" in said and NANO in said


async def test_a_4k_picture_is_priced_at_4k_and_sizes_limit_the_menu(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem:
        settings = today_settings(tg, gem, tmp_path, sizes=["1K", "2K", "4K"])
        async with running_bot(tg, tmp_path, settings=settings) as run:
            menu = await settings_menu(run, ALICE_CHAT, ALICE)
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:size")
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:size:4K")
            tg.send_photo(ALICE_CHAT, ALICE, small_selfie(256), caption="/zombie")
            await run.photo_reply(ALICE_CHAT)
            assert gem.generate_requests[-1].body["generationConfig"]["imageConfig"]["imageSize"] == "4K"
            said = await stats(run)
            assert "Estimated spend: $0.08" in said, said  # 4K is $0.0756 on nano-banana-2.1, not 1K's $0.0336
            assert f"{NANO} 4K: 1 × ≈ $0.076" in said


async def test_the_default_sizes_offer_no_4k(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem:
        async with running_bot(tg, tmp_path, settings=today_settings(tg, gem, tmp_path)) as run:
            menu = await settings_menu(run, ALICE_CHAT, ALICE)
            await choose(run, ALICE_CHAT, ALICE, menu, "do:set:menu:size")
            offered = [b["callback_data"] for b in menu.buttons if b["callback_data"].startswith("do:set:size:")]
            assert offered == ["do:set:size:auto", "do:set:size:1K", "do:set:size:2K"]
            # A forged 4K press is refused, and nothing 4K is ever asked of the model.
            query = tg.press_button(ALICE_CHAT, ALICE, menu.message_id, "do:set:size:4K", strict=False)
            answer = await tg.wait_for_callback_answer(query)
            assert "4K" in str(answer.get("text"))
            tg.send_photo(ALICE_CHAT, ALICE, small_selfie(256), caption="/zombie")
            await run.photo_reply(ALICE_CHAT)
            assert gem.generate_requests[-1].body["generationConfig"]["imageConfig"].get("imageSize") == "1K"


async def test_daily_usd_stops_paid_calls_and_offers_the_offline_engine(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem:
        settings = today_settings(tg, gem, tmp_path, limits={"daily_usd": 0.05})  # one 1K picture is $0.0336
        async with running_bot(tg, tmp_path, settings=settings) as run:
            for _ in range(2):  # under the limit before each: both are made
                tg.send_photo(BOB_CHAT, BOB, small_selfie(256), caption="/zombie")
                await run.photo_reply(BOB_CHAT)
            asked = tg.send_photo(BOB_CHAT, BOB, small_selfie(256), caption="/zombie")
            refused = await run.text_reply(BOB_CHAT)
            assert refused.reply_to_message_id == asked
            assert "$0.05" in str(refused.text) and "/model offline" in str(refused.text)
            assert len(gem.generate_requests) == 2, "no paid call past the limit"

            # The free engine still answers.
            tg.send_text(BOB_CHAT, BOB, "/model offline")
            await run.text_reply(BOB_CHAT)
            tg.send_photo(BOB_CHAT, BOB, small_selfie(256), caption="/zombie")
            await run.photo_reply(BOB_CHAT)
            assert len(gem.generate_requests) == 2
            said = await stats(run)
            assert "Daily spending limit: $0.05" in said and "Estimated spend: $0.07" in said
