"""The real GeminiEngine (google-genai) behind the real Telegram bot: both services are loopback stand-ins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.config import Settings, load_settings
from tests.backends import storage_settings
from tests.standins.telegram_api import FakeTelegram
from tests.test_telegram_harness import ALICE, difference, private, running_bot, small_selfie

gemini_api = pytest.importorskip("tests.standins.gemini_api")
pytest.importorskip("core.engines.gemini")

ALICE_CHAT = private(ALICE)


def gemini_settings(tg: FakeTelegram, gem: Any, data_dir: Path, **gemini: float) -> Settings:
    """Telegram and Gemini both pointed at their loopback stand-ins."""
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url},
        storage=storage_settings(data_dir, retention_days=0),
        engine={"default": "gemini", "input_max_px": 256},
        gemini={"api_key": gem.api_key, "base_url": gem.base_url, **gemini},
        # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
        likeness={"enabled": False},
    )


async def test_gemini_style_journey_and_a_blocked_picture(tmp_path: Path) -> None:
    selfie = small_selfie(256)
    async with FakeTelegram() as tg, gemini_api.FakeGemini() as gem:
        settings = gemini_settings(tg, gem, tmp_path, retry_budget_s=2, request_timeout_s=10)
        async with running_bot(tg, tmp_path, settings=settings) as run:
            assert run.studio.engine.name == "gemini"
            gem.script(gem.image(text="Brains! And cheekbones."))
            photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
            result = await run.photo_reply(ALICE_CHAT)
            assert result.reply_to_message_id == photo_id
            assert result.caption == "Brains! And cheekbones."
            assert result.photo is not None and difference(result.photo, selfie) > 10
            [call] = gem.generate_requests
            assert call.images, "the selfie went to the model"
            assert "recognisable" in call.text

            # The model's safety filter holds back the picture: a friendly sentence, no image.
            gem.script(gem.finished("IMAGE_SAFETY"))
            ask = tg.send_text(ALICE_CHAT, ALICE, "make it spookier", reply_to=result.message_id)
            answer = await run.text_reply(ALICE_CHAT)
            assert answer.reply_to_message_id == ask
            assert answer.text is not None and "safety filter" in answer.text
            assert "IMAGE_SAFETY" not in answer.text
            await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())


async def test_an_outage_is_announced_once_and_the_saved_request_runs_when_the_service_is_back(
        tmp_path: Path) -> None:
    from core.breaker import CircuitBreaker

    selfie = small_selfie(256)
    async with FakeTelegram() as tg, gemini_api.FakeGemini() as gem:
        settings = gemini_settings(tg, gem, tmp_path, retry_budget_s=0.2, request_timeout_s=5)
        breaker = CircuitBreaker(threshold=2, cooldown_s=0.3, max_cooldown_s=0.6)
        async with running_bot(tg, tmp_path, settings=settings, breaker=breaker) as run:
            gem.fail_next(503, times=10_000)  # the image service is down
            photo_id = tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
            notice = await run.text_reply(ALICE_CHAT)
            assert notice.reply_to_message_id == photo_id
            assert notice.text is not None and "down right now" in notice.text and "saved" in notice.text
            await tg.wait_until(lambda: len(gem.generate_requests) >= 4, timeout=20)  # it keeps trying, spaced
            gem.clear()  # the service is back
            result = await run.photo_reply(ALICE_CHAT, timeout=30)
            assert result.reply_to_message_id == photo_id
            assert [m.text for m in tg.bot_messages if m.chat_id == ALICE.id and m.text] == [notice.text]
