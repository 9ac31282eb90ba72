"""The real GeminiEngine (google-genai) behind the real Telegram bot: both services are loopback stand-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from tests.standins.telegram_api import FakeTelegram
from tests.test_telegram_harness import ALICE, difference, private, running_bot, small_selfie

gemini_api = pytest.importorskip("tests.standins.gemini_api")
pytest.importorskip("core.engines.gemini")

ALICE_CHAT = private(ALICE)


async def test_gemini_style_journey_and_a_blocked_picture(tmp_path: Path) -> None:
    selfie = small_selfie(256)
    async with FakeTelegram() as tg, gemini_api.FakeGemini() as gem:
        settings = load_settings(
            None,
            telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url},
            storage={"dir": tmp_path, "retention_days": 0},
            engine={"default": "gemini", "input_max_px": 256},
            gemini={"api_key": gem.api_key, "base_url": gem.base_url, "retry_budget_s": 2,
                    "request_timeout_s": 10},
        )
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
            await tg.expect_no_message(chat_id=ALICE.id, within=0.2)
