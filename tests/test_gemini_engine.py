"""The Gemini engine through the real google-genai client, against the loopback Gemini stand-in."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from core.engines.base import (
    BadRequest,
    Blocked,
    Busy,
    EngineError,
    NoImage,
    Portrait,
    QuotaExhausted,
    RenderOptions,
)
from core.engines.gemini import GeminiEngine
from core.styles import STYLES, Style
from tests.standins.gemini_api import FakeGemini, png_bytes

ZOMBIE: Style = next(s for s in STYLES if s.id == "zombie")
GREEN, RED = (20, 200, 40), (230, 10, 10)


class FakeTime:
    """An injectable clock and sleep: retry waits are recorded and pass instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
async def gem() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        yield server


@pytest.fixture
async def engines() -> AsyncIterator[list[GeminiEngine]]:
    made: list[GeminiEngine] = []
    yield made
    for engine in made:
        await engine.aclose()


@pytest.fixture
def make(gem: FakeGemini, engines: list[GeminiEngine]) -> Any:
    def build(**overrides: Any) -> GeminiEngine:
        options: dict[str, Any] = dict(api_key=gem.api_key, base_url=gem.base_url, request_timeout_s=5.0,
                                       retry_budget_s=2.0, backoff_initial_s=0.02, backoff_max_s=0.1)
        options.update(overrides)
        engine = GeminiEngine(**options)
        engines.append(engine)
        return engine

    return build


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    return png_bytes(Image.new("RGB", size, colour))


def colour_of(data: bytes) -> tuple[int, ...]:
    with Image.open(io.BytesIO(data)) as im:
        return tuple(im.convert("RGB").getpixel((im.width // 2, im.height // 2)))  # type: ignore[arg-type]


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (300, 400)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


# ---------------------------------------------------------------------------- success paths


async def test_stylize_returns_the_answer_image_and_its_words_not_the_thoughts(
        gem: FakeGemini, make: Any, selfie: bytes) -> None:
    gem.script(gem.image(solid(GREEN), text="  Braaains suit you.  ", thoughts=("Planning the zombie look…",),
                         thought_image=solid(RED)))
    result = await make().stylize(selfie, ZOMBIE)

    assert colour_of(result.image) == GREEN  # the final image, not the red draft among the thoughts
    assert result.mime == "image/png"
    assert result.commentary == "Braaains suit you."
    assert result.model == "gemini-nano-banana-2.1"  # the default model today

    [sent] = gem.generate_requests
    assert sent.path == "/v1beta/models/gemini-nano-banana-2.1:generateContent"
    assert sent.key_ok
    assert "systemInstruction" not in sent.body  # image models reject it
    [turn] = sent.body["contents"]
    assert turn["role"] == "user"
    assert sent.images() == [selfie]
    assert ZOMBIE.prompt() in sent.text
    config = sent.body["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["imageConfig"] == {"aspectRatio": "1:1", "imageSize": "1K"}  # the selfie is square


async def test_unscripted_stand_in_answers_with_the_selfie_inverted(gem: FakeGemini, make: Any) -> None:
    result = await make().stylize(jpeg((200, 100, 50)), ZOMBIE)
    r, g, b = colour_of(result.image)
    assert abs(r - 55) < 8 and abs(g - 155) < 8 and abs(b - 205) < 8
    assert result.commentary


async def test_portrait_selfie_keeps_a_portrait_aspect_ratio_and_a_one_size_model_gets_no_size(
        gem: FakeGemini, make: Any) -> None:
    await make(model="gemini-3.1-flash-lite-image").stylize(jpeg(GREEN, (600, 800)), ZOMBIE)
    [sent] = gem.generate_requests
    assert sent.model == "gemini-3.1-flash-lite-image"
    assert sent.body["generationConfig"]["imageConfig"] == {"aspectRatio": "3:4"}


async def test_edit_sends_the_original_selfie_as_identity_then_the_image_and_the_instruction(
        gem: FakeGemini, make: Any) -> None:
    identity, current = jpeg(GREEN), jpeg(RED)
    result = await make().edit(current, "add a golden crown", identity=identity)
    assert result.image

    [sent] = gem.generate_requests
    assert sent.images() == [identity, current]
    parts = sent.parts()
    kinds = ["image" if "inlineData" in p else p["text"] for p in parts]
    assert "IDENTITY REFERENCE" in kinds[0] and kinds[1] == "image"
    assert "PICTURE TO EDIT" in kinds[2] and kinds[3] == "image"
    assert "add a golden crown" in kinds[4] and "Image 1" in kinds[4]
    assert "systemInstruction" not in sent.body


async def test_edit_without_identity_sends_one_image(gem: FakeGemini, make: Any) -> None:
    await make().edit(jpeg(RED), "make it sepia")
    [sent] = gem.generate_requests
    assert sent.images() == [jpeg(RED)]
    assert "make it sepia" in sent.text


async def test_edit_with_an_empty_instruction_asks_what_to_change(gem: FakeGemini, make: Any) -> None:
    with pytest.raises(BadRequest):
        await make().edit(jpeg(RED), "   ")
    assert gem.generate_requests == []


async def test_fuse_within_the_limit_sends_each_photo_after_its_name(gem: FakeGemini, make: Any) -> None:
    people = [Portrait("Ann", jpeg(GREEN)), Portrait("Bob", jpeg(RED))]
    result = await make().fuse(people, ZOMBIE, theme="a rooftop party")
    assert result.image
    [sent] = gem.generate_requests
    assert sent.images() == [people[0].image, people[1].image]
    texts = sent.texts()
    assert texts[0] == "Photo 1: Ann." and texts[1] == "Photo 2: Bob."
    assert "Ann and Bob" in texts[-1] and "rooftop party" in texts[-1]


async def test_fuse_beyond_the_model_limit_puts_everyone_on_labelled_contact_sheets(
        gem: FakeGemini, make: Any, selfie: bytes) -> None:
    names = ["Ann", "Bob", "Chloé", "Dev", "Eve"]
    people = [Portrait(n, selfie) for n in names]
    await make(model="gemini-3.1-flash-lite-image").fuse(people, ZOMBIE)

    [sent] = gem.generate_requests
    sheets = sent.images()
    assert 1 <= len(sheets) <= 3  # gemini-3.1-flash-lite-image takes at most three images
    crops = 0
    for data in sheets:
        with Image.open(io.BytesIO(data)) as sheet:
            assert sheet.format == "JPEG"
            crops += (sheet.width // 384) * (sheet.height // 440)
    assert crops >= len(names)  # room for every face
    for name in names:
        assert name in sent.text
    assert "5 people" in sent.text


async def test_fuse_with_nobody_is_refused_without_a_call(gem: FakeGemini, make: Any) -> None:
    with pytest.raises(BadRequest):
        await make().fuse([], ZOMBIE)
    assert gem.generate_requests == []


# ---------------------------------------------------------------------------- retries


async def test_429_waits_as_long_as_the_server_says_then_succeeds(gem: FakeGemini, make: Any) -> None:
    time = FakeTime()
    gem.fail_next(429, retry_delay="7s")
    result = await make(retry_budget_s=30, sleep=time.sleep, clock=time.clock).stylize(jpeg(GREEN), ZOMBIE)
    assert result.image
    assert len(gem.generate_requests) == 2
    [waited] = time.sleeps
    assert 7.0 <= waited <= 7.7


async def test_503_then_success(gem: FakeGemini, make: Any) -> None:
    gem.fail_next(503)
    result = await make().stylize(jpeg(GREEN), ZOMBIE)
    assert result.image and len(gem.generate_requests) == 2


async def test_an_exhausted_budget_becomes_busy_with_a_friendly_message(gem: FakeGemini, make: Any) -> None:
    time = FakeTime()
    gem.fail_next(503, times=50)
    engine = make(retry_budget_s=10, backoff_initial_s=1.0, backoff_max_s=4.0, sleep=time.sleep, clock=time.clock)
    with pytest.raises(Busy) as caught:
        await engine.stylize(jpeg(GREEN), ZOMBIE)
    assert caught.value.retryable
    assert "try again" in caught.value.message.lower() and "503" not in caught.value.message
    assert "503" in caught.value.detail
    assert sum(time.sleeps) <= 10.0 + 1e-9
    # Backing off, not hammering: jitter may blur neighbours, but the third wait is at least double the first.
    assert len(time.sleeps) >= 3 and time.sleeps[2] >= time.sleeps[0] * 1.5
    assert 3 <= len(gem.generate_requests) < 50


async def test_a_server_delay_beyond_the_budget_is_cut_to_what_is_left(gem: FakeGemini, make: Any) -> None:
    time = FakeTime()
    gem.fail_next(429, times=5, retry_delay="60s")
    with pytest.raises(Busy):
        await make(retry_budget_s=5, sleep=time.sleep, clock=time.clock).stylize(jpeg(GREEN), ZOMBIE)
    assert time.sleeps == [pytest.approx(5.0)]  # waited what was left, then one last try
    assert len(gem.generate_requests) == 2


async def test_no_budget_means_one_attempt(gem: FakeGemini, make: Any) -> None:
    gem.fail_next(500, times=3)
    with pytest.raises(Busy):
        await make(retry_budget_s=0).stylize(jpeg(GREEN), ZOMBIE)
    assert len(gem.generate_requests) == 1


async def test_a_hung_request_times_out_and_is_retried(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.hang())
    result = await make(request_timeout_s=0.4, retry_budget_s=3).stylize(jpeg(GREEN), ZOMBIE)
    assert result.image and len(gem.generate_requests) == 2


async def test_hanging_until_the_budget_is_gone_is_busy(gem: FakeGemini, make: Any) -> None:
    gem.script(*[gem.hang() for _ in range(10)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Busy) as caught:
        await make(request_timeout_s=0.3, retry_budget_s=0.5).stylize(jpeg(GREEN), ZOMBIE)
    assert loop.time() - started < 3.0
    assert "no answer" in caught.value.detail


async def test_a_reset_connection_is_retried(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.reset())
    result = await make().stylize(jpeg(GREEN), ZOMBIE)
    assert result.image and len(gem.generate_requests) == 2


async def test_malformed_json_is_retried(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.malformed(), gem.malformed(b"<html>oops</html>", content_type="text/html"))
    result = await make().stylize(jpeg(GREEN), ZOMBIE)
    assert result.image and len(gem.generate_requests) == 3


async def test_an_image_that_does_not_decode_is_retried(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.image(b"definitely not a png"), gem.image(solid(GREEN)))
    result = await make().stylize(jpeg(GREEN), ZOMBIE)
    assert colour_of(result.image) == GREEN


# ---------------------------------------------------------------------------- final outcomes


async def test_a_blocked_prompt_is_blocked_and_not_retried(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.blocked_prompt("PROHIBITED_CONTENT"))
    with pytest.raises(Blocked) as caught:
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert "rephras" in caught.value.message
    assert "PROHIBITED_CONTENT" in caught.value.detail
    assert len(gem.generate_requests) == 1


@pytest.mark.parametrize("reason", ["IMAGE_SAFETY", "SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT"])
async def test_a_blocked_output_is_blocked(gem: FakeGemini, make: Any, reason: str) -> None:
    gem.script(gem.finished(reason))
    with pytest.raises(Blocked) as caught:
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert "rephras" in caught.value.message and reason in caught.value.detail
    assert len(gem.generate_requests) == 1


async def test_words_without_a_picture_are_asked_once_more_then_no_image_with_those_words(
        gem: FakeGemini, make: Any) -> None:
    gem.script(gem.text("I can't draw crowns on Mondays."), gem.text("I can't draw crowns on Mondays."))
    with pytest.raises(NoImage) as caught:
        await make().edit(jpeg(GREEN), "add a crown")
    assert caught.value.text == "I can't draw crowns on Mondays."
    assert "safety" not in caught.value.message.lower() and "drew nothing" in caught.value.message
    assert len(gem.generate_requests) == 2


@pytest.mark.parametrize("reason", ["NO_IMAGE", "IMAGE_OTHER"])
async def test_no_image_is_retried_once_then_told_without_mentioning_safety(
        gem: FakeGemini, make: Any, reason: str) -> None:
    gem.script(gem.finished(reason), gem.finished(reason))
    with pytest.raises(NoImage) as caught:
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert not isinstance(caught.value, Blocked)
    assert "safety" not in caught.value.message.lower() and "rephras" in caught.value.message
    assert reason in caught.value.detail
    assert len(gem.generate_requests) == 2


async def test_no_image_then_a_picture_gives_the_picture(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.finished("NO_IMAGE"), gem.image(solid(GREEN)))
    result = await make().stylize(jpeg(RED), ZOMBIE)
    assert colour_of(result.image) == GREEN
    assert len(gem.generate_requests) == 2


@pytest.mark.parametrize(("reason", "words"), [("RECITATION", "existing work"), ("IMAGE_RECITATION", "existing work"),
                                                ("LANGUAGE", "language")])
async def test_recitation_and_language_have_messages_of_their_own_and_no_retry(
        gem: FakeGemini, make: Any, reason: str, words: str) -> None:
    gem.script(gem.finished(reason))
    with pytest.raises(NoImage) as caught:
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert words in caught.value.message and "safety" not in caught.value.message.lower()
    assert len(gem.generate_requests) == 1


async def test_400_is_a_bad_request_and_not_retried(gem: FakeGemini, make: Any) -> None:
    gem.fail_next(400, message="Unable to process input image.")
    with pytest.raises(BadRequest) as caught:
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert "Unable to process input image" in caught.value.detail
    assert "API key" not in caught.value.detail
    assert len(gem.generate_requests) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_is_a_bad_request_that_blames_the_operator(
        gem: FakeGemini, make: Any, status: int) -> None:
    gem.fail_next(status)
    with pytest.raises(BadRequest) as caught:
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert "API key" in caught.value.detail and "GEMINI_API_KEY" in caught.value.detail
    assert "operator" in caught.value.message and "key" not in caught.value.message.lower()
    assert len(gem.generate_requests) == 1


async def test_a_wrong_key_is_reported_as_a_key_problem(gem: FakeGemini, make: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        await make(api_key="AIza-wrong-key-0123456789").stylize(jpeg(GREEN), ZOMBIE)
    assert "API key" in caught.value.detail
    assert not gem.generate_requests[0].key_ok


async def test_a_model_answering_404_is_replaced_and_the_request_still_gives_a_picture(
        gem: FakeGemini, make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.engines.gemini")
    engine = make(model="gemini-2.5-flash-image")  # shut down: the stand-in answers 404, as Google does
    for _ in range(2):
        result = await engine.stylize(jpeg(GREEN), ZOMBIE)
        assert result.image and result.model == "gemini-nano-banana-2.1"
    assert [r.model for r in gem.generate_requests] == [
        "gemini-2.5-flash-image", "gemini-nano-banana-2.1", "gemini-nano-banana-2.1"]  # the gone one once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "gemini-2.5-flash-image" in warnings[0] and "gemini-nano-banana-2.1" in warnings[0]
    [notice] = engine.notices()
    assert (notice.kind, notice.model, notice.other) == ("switched", "gemini-2.5-flash-image",
                                                         "gemini-nano-banana-2.1")


async def test_a_person_chosen_model_that_is_gone_draws_with_its_successor(gem: FakeGemini, make: Any) -> None:
    engine = make()
    result = await engine.stylize(jpeg(GREEN), ZOMBIE, options=RenderOptions(model="gemini-2.5-flash-image"))
    assert result.model == "gemini-nano-banana-2.1"
    assert engine.resolve("gemini-2.5-flash-image") == "gemini-nano-banana-2.1"


async def test_a_404_with_nothing_left_to_replace_it_tells_the_operator(engines: list[GeminiEngine]) -> None:
    async with FakeGemini(models=("gemini-2.5-flash",)) as bare:
        engine = GeminiEngine(api_key=bare.api_key, base_url=bare.base_url, model="gemini-3-pro-image")
        engines.append(engine)
        with pytest.raises(BadRequest) as caught:
            await engine.stylize(jpeg(GREEN), ZOMBIE)
        assert len(bare.generate_requests) == 1  # it listed the models instead of trying each heir
    assert "operator" in caught.value.message and "gemini-3-pro-image" in caught.value.detail


# ---------------------------------------------------------------------------- start-up check


async def test_check_is_quiet_when_the_model_exists(gem: FakeGemini, make: Any) -> None:
    assert await make().check() is None


async def test_check_replaces_a_mistyped_model_with_the_default_and_says_both(
        engines: list[GeminiEngine], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.engines.gemini")
    async with FakeGemini(page_size=2) as paged:  # six models over three pages
        engine = GeminiEngine(api_key=paged.api_key, base_url=paged.base_url, model="gemini-3.1-flash-imag")
        engines.append(engine)
        warning = await engine.check()
        assert len([r for r in paged.requests if r.path == "/v1beta/models"]) == 3
        await engine.stylize(jpeg(GREEN), ZOMBIE)
        assert [r.model for r in paged.generate_requests] == ["gemini-nano-banana-2.1"]  # no doomed call first
    assert warning is not None and "gemini-3.1-flash-imag'" in warning and "not in Pix Me!'s model table" in warning
    [switched] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "gemini-3.1-flash-imag " in switched and "not offered to this API key" in switched
    assert "gemini-nano-banana-2.1" in switched


async def test_check_switches_a_shut_down_model_at_start_up(gem: FakeGemini, make: Any) -> None:
    engine = make(model="gemini-2.5-flash-image")
    assert await engine.check() is None  # the switch is logged as it happens, once
    assert engine.model == "gemini-nano-banana-2.1"
    await engine.stylize(jpeg(GREEN), ZOMBIE)
    assert [r.model for r in gem.generate_requests] == ["gemini-nano-banana-2.1"]


async def test_check_warns_that_a_deprecated_model_has_a_successor(gem: FakeGemini, make: Any) -> None:
    engine = make(model="gemini-3.1-flash-image")
    warning = await engine.check()
    assert warning is not None and "deprecated" in warning and "gemini-nano-banana-2.1" in warning
    await engine.stylize(jpeg(GREEN), ZOMBIE)
    assert [r.model for r in gem.generate_requests] == ["gemini-3.1-flash-image"]  # still served, still used
    assert [n.kind for n in engine.notices()] == ["deprecated"]


async def test_check_with_no_model_left_names_the_image_models_there_are(engines: list[GeminiEngine]) -> None:
    async with FakeGemini(models=("gemini-2.5-flash", "text-embedding-004", "imagen-5")) as bare:
        engine = GeminiEngine(api_key=bare.api_key, base_url=bare.base_url, model="gemini-3-pro-image")
        engines.append(engine)
        warning = await engine.check()
    assert warning is not None and "no successor" in warning and "imagen-5" in warning
    assert "text-embedding-004" not in warning


# ---------------------------------------------------------------------------- quotas


class WallClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_per_day_quota_is_not_retried_and_rests_the_model_until_midnight_pacific(
        gem: FakeGemini, make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="core.engines.gemini")
    # 2026-12-01 20:00 UTC is 12:00 in Los Angeles (PST): the quota resets 12 hours later.
    wall = WallClock(dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC).timestamp())
    time = FakeTime()
    engine = make(retry_budget_s=60, sleep=time.sleep, clock=time.clock, wall_clock=wall)
    gem.script(gem.day_quota())
    with pytest.raises(QuotaExhausted) as caught:
        await engine.stylize(jpeg(GREEN), ZOMBIE)
    assert len(gem.generate_requests) == 1 and time.sleeps == []  # not retried, not waited on
    assert caught.value.until - wall.now == 12 * 3600
    assert "midnight Pacific" in caught.value.message
    with pytest.raises(QuotaExhausted):
        await engine.stylize(jpeg(GREEN), ZOMBIE)
    assert len(gem.generate_requests) == 1  # later requests are not sent
    assert isinstance(engine.unavailable(None), QuotaExhausted)
    assert [n.kind for n in engine.notices()] == ["quota"]
    assert any("per-day quota" in r.getMessage() for r in caplog.records)
    wall.now += 12 * 3600  # midnight in Los Angeles
    assert engine.unavailable(None) is None
    assert (await engine.stylize(jpeg(GREEN), ZOMBIE)).image
    assert len(gem.generate_requests) == 2


async def test_a_free_tier_with_no_quota_is_a_day_quota_too(gem: FakeGemini, make: Any) -> None:
    gem.script(gem.day_quota(free_tier=True))
    with pytest.raises(QuotaExhausted):
        await make().stylize(jpeg(GREEN), ZOMBIE)
    assert len(gem.generate_requests) == 1


async def test_a_per_minute_quota_is_still_retried(gem: FakeGemini, make: Any) -> None:
    time = FakeTime()
    engine = make(retry_budget_s=60, sleep=time.sleep, clock=time.clock)
    gem.fail_next(429, retry_delay="5s")  # its QuotaFailure is ...PerModelPerMinute
    assert (await engine.stylize(jpeg(GREEN), ZOMBIE)).image
    assert len(gem.generate_requests) == 2 and 5 <= time.sleeps[0] < 6
    assert engine.unavailable(None) is None


async def test_a_picture_reports_the_size_it_was_asked_at(gem: FakeGemini, make: Any) -> None:
    result = await make().stylize(jpeg(GREEN), ZOMBIE, options=RenderOptions(image_size="4K"))
    assert result.image_size == "4K"
    assert gem.generate_requests[-1].body["generationConfig"]["imageConfig"]["imageSize"] == "4K"


async def test_a_six_person_party_on_a_four_character_model_goes_on_contact_sheets(
        gem: FakeGemini, make: Any, selfie: bytes) -> None:
    names = ["Ann", "Bob", "Chloé", "Dev", "Eve", "Fay"]
    await make().fuse([Portrait(n, selfie) for n in names], ZOMBIE)  # nano-banana-2.1: 14 inputs, 4 people
    [sent] = gem.generate_requests
    assert 1 <= len(sent.images()) < len(names)
    assert sum("Contact sheet" in t for t in sent.texts()) == len(sent.images())
    for name in names:
        assert name in sent.text


async def test_four_people_on_a_four_character_model_are_sent_as_photos(
        gem: FakeGemini, make: Any, selfie: bytes) -> None:
    await make().fuse([Portrait(n, selfie) for n in ("Ann", "Bob", "Cy", "Di")], ZOMBIE)
    [sent] = gem.generate_requests
    assert len(sent.images()) == 4 and "Photo 4: Di." in sent.texts()


async def test_check_with_nothing_listening_returns_a_warning(engines: list[GeminiEngine]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the check: nothing listens there
    engine = GeminiEngine(api_key="AIza-test-key-unreachable", base_url=f"http://127.0.0.1:{port}/",
                          request_timeout_s=2)
    engines.append(engine)
    warning = await engine.check()
    assert warning is not None and "unreachable" in warning and f"127.0.0.1:{port}" in warning


async def test_check_with_a_wrong_key_says_so(gem: FakeGemini, make: Any) -> None:
    warning = await make(api_key="AIza-not-the-right-key-42").check()
    assert warning is not None and "API key" in warning


# ---------------------------------------------------------------------------- secrets


async def test_the_api_key_never_reaches_logs_or_errors(gem: FakeGemini, make: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    time = FakeTime()
    engine = make(retry_budget_s=3, sleep=time.sleep, clock=time.clock)
    failures: list[EngineError] = []
    gem.script(gem.reset(), gem.malformed(), gem.error(429, retry_delay="1s"), gem.image(solid(GREEN)))
    await engine.stylize(jpeg(GREEN), ZOMBIE)
    outcomes = [[gem.error(503)] * 100, [gem.error(403)], [gem.error(400)], [gem.blocked_prompt()],
                [gem.text("no"), gem.text("no")], [gem.day_quota()]]
    for replies in outcomes:
        gem.clear()
        gem.script(*replies)
        with pytest.raises(EngineError) as failed:
            await engine.stylize(jpeg(GREEN), ZOMBIE)
        failures.append(failed.value)
    wrong = make(api_key="AIza-another-secret-key-xyz")
    with pytest.raises(BadRequest) as caught:
        await wrong.stylize(jpeg(GREEN), ZOMBIE)
    failures.append(caught.value)
    await wrong.check()

    assert {type(f) for f in failures} >= {Busy, BadRequest, Blocked, NoImage, QuotaExhausted}
    assert caplog.records  # the failures were logged…
    for secret in (gem.api_key, "AIza-another-secret-key-xyz"):
        assert secret not in caplog.text  # …without the key
        for failure in failures:
            assert secret not in f"{failure} {failure.message} {failure.detail} {failure!r}"
