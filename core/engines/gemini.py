"""The Gemini engine: Google's native image models ("Nano Banana") through google-genai's async client.

One `generateContent` call per picture: the input image(s) and the whole instruction go in a single
user turn (image models reject `system_instruction`), with `responseModalities` TEXT and IMAGE on
the `v1beta` API (SDK 3.x defaults to `v1`, which rejects image output settings). The answer's
non-thought image is the result and its non-thought text the commentary.

Failures become the typed outcomes of `core.engines.base`. Transient ones (per-minute 429s, 5xx,
timeouts, dropped connections, malformed answers) are retried with exponential backoff and jitter,
honouring the server's `RetryInfo.retryDelay`, for at most `retry_budget_s` of waiting; then `Busy`.
A per-day quota 429 is not retried: the model is rested until midnight Pacific time (`QuotaExhausted`).
An answer without a picture is asked for once more. Each attempt is bounded by `request_timeout_s`.

Models come and go (`models.toml` says which are deprecated or shut down and what succeeds them): a
model that is shut down, missing from the key's model list at start-up, or answering 404 at any time
is replaced by its successor (else the default), with one warning in the log, and the request goes on.
The API key never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import math
import random
import re
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image, ImageDraw, ImageOps
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from core.config import DEFAULT_MODEL
from core.engines.base import (
    BadRequest,
    Blocked,
    Busy,
    EngineError,
    EngineNotice,
    EngineResult,
    ModelInfo,
    NoImage,
    Portrait,
    QuotaExhausted,
    RenderOptions,
)
from core.engines.models import MODELS, known, model_info, successors
from core.engines.offline import default_face, detect_faces, label_font  # DejaVu when installed: accents render
from core.i18n import N_
from core.styles import COMMENTARY_CLAUSE, Style
from core.tls import client_context

log = logging.getLogger(__name__)

API_VERSION = "v1beta"
PUBLIC_HOST = "generativelanguage.googleapis.com"

# What a person reads. `detail` (logs only) says what actually happened.
BUSY_MESSAGE = N_("Google's image service is busy right now, so your picture couldn't be made yet. "
                "Please try again in a few minutes.")
PROMPT_BLOCKED_MESSAGE = N_("Google's safety filter stopped this request before any picture was made. "
                          "Try rephrasing what you asked for, or use a different photo.")
OUTPUT_BLOCKED_MESSAGE = N_("Google's safety filter held back the picture it made. "
                          "Try rephrasing your request, or use a different photo.")
NO_IMAGE_MESSAGE = N_("The model drew nothing this time. Try rephrasing your request, a little more concretely.")
RECITATION_MESSAGE = N_("The model held this picture back because it came out too close to an existing work. "
                        "Try asking for something a little different.")
LANGUAGE_MESSAGE = N_("The model couldn't work with the language of this request. Try writing it in English.")
QUOTA_MESSAGE = N_("Today's quota for Google's image model is used up, so no new pictures can be made until it "
                   "resets in {resets} (midnight Pacific time).")
MODEL_GONE_MESSAGE = N_("The bot's image model has been retired by Google and no replacement is available. "
                        "Please let the bot's operator know.")
BAD_REQUEST_MESSAGE = N_("The image service couldn't accept this request. "
                       "Try a different photo or simpler wording.")
KEY_MESSAGE = N_("The bot can't reach its image service right now because of a setup problem on its side. "
               "Please let the bot's operator know.")
UNEXPECTED_MESSAGE = N_("Something went wrong while making your picture. Please try again.")

# HTTP codes worth another attempt: timeouts, rate limits, overload and gateway trouble.
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Finish reasons: a safety filter or policy stopped the output (told as such) ...
SAFETY_FINISH = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT",
                           "BLOCKLIST", "SPII"})
# ... the output came too close to existing work, or the request's language is not supported ...
RECITATION_FINISH = frozenset({"RECITATION", "IMAGE_RECITATION"})
LANGUAGE_FINISH = frozenset({"LANGUAGE"})
# ... or the model simply drew nothing: worth one more try, and never called a safety block.
NOTHING_FINISH = frozenset({"NO_IMAGE", "IMAGE_OTHER"})
NO_PICTURE_TRIES = 2
QUOTA_TIMEZONE = "America/Los_Angeles"  # Google resets per-day quotas at midnight Pacific time
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED",
                          "API_KEY_IP_ADDRESS_BLOCKED", "API_KEY_ANDROID_APP_BLOCKED", "API_KEY_IOS_APP_BLOCKED"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")  # google.protobuf.Duration in JSON: "7s", "1.500s"

_SHEET_CELL = 384  # px per face crop on a contact sheet
_SHEET_LABEL = 56  # px of name band under each crop
_MAX_NAME = 40
_MAX_INSTRUCTION = 1500
_MAX_LISTED_MODELS = 1000


class _NoPicture(Exception):
    """The model answered but drew nothing (NO_IMAGE, IMAGE_OTHER, or text only)."""

    def __init__(self, detail: str, text: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.text = text


class _ModelGone(Exception):
    """The model answered 404 NOT_FOUND: Google no longer serves it (to this key)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _DayQuota(Exception):
    """A 429 for a per-day quota (or a free tier with no quota at all): waiting minutes will not help."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Transient(Exception):
    """An attempt failed in a way another attempt may not; `retry_after` is the server's hint."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Sheet:
    image: bytes
    names: list[str]
    columns: int


Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class GeminiEngine:
    """An `ImageEngine` backed by a Gemini image model."""

    name = "gemini"

    def __init__(self, *, api_key: str, model: str = DEFAULT_MODEL, base_url: str = "",
                 request_timeout_s: float = 120.0, retry_budget_s: float = 90.0,
                 image_size: str = "1K", backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0,
                 sleep: Sleep | None = None, clock: Clock | None = None, wall_clock: Clock | None = None) -> None:
        if not api_key:
            raise ValueError("the Gemini engine needs an API key")
        self.configured = model.strip().removeprefix("models/") or DEFAULT_MODEL
        self.model = self.configured  # what draws by default: the configured model or, once it is gone, its heir
        self.info: ModelInfo = model_info(self.model)
        self._switched: dict[str, tuple[str, str]] = {}  # gone model -> (replacement, why)
        self._available: set[str] | None = None  # the key's generateContent models, once listed
        self._quota_until: dict[str, float] = {}  # model -> UNIX time its per-day quota resets
        self._wall: Clock = wall_clock or time.time
        self._key = api_key.strip()
        self._base_url = base_url.strip()
        self._timeout_s = request_timeout_s
        self._budget_s = retry_budget_s
        self._image_size = image_size if image_size in self.info.image_sizes and len(self.info.image_sizes) > 1 \
            else None  # models with one size (2.5 Flash Image) reject the option
        self._backoff = wait_exponential_jitter(initial=backoff_initial_s, max=backoff_max_s, exp_base=2,
                                                jitter=backoff_initial_s)
        self._sleep: Sleep = sleep or asyncio.sleep
        self._clock: Clock = clock or time.monotonic
        self._client = genai.Client(
            api_key=self._key,
            vertexai=False,  # never let GOOGLE_GENAI_USE_VERTEXAI in the environment reroute us
            http_options=types.HttpOptions(
                api_version=API_VERSION,
                base_url=self._base_url or None,
                timeout=max(1, round(request_timeout_s * 1000)),
                # One attempt per call: retries are ours, so they share one budget and see RetryInfo.
                retry_options=types.HttpRetryOptions(attempts=1),
                # The process's one TLS context (httpx reads `verify`, aiohttp and websockets `ssl`), instead
                # of the SDK loading the CA bundle three times for every client.
                client_args={"verify": client_context()},
                async_client_args={"verify": client_context(), "ssl": client_context()},
            ),
        )

    # ------------------------------------------------------------------ the ImageEngine protocol

    async def stylize(self, selfie: bytes, style: Style, *, options: RenderOptions | None = None) -> EngineResult:
        parts = [_image_part(selfie), types.Part.from_text(text=_with_persona(style.prompt(), options))]
        return await self._run("stylize", parts, self._ratio_like(selfie, options), options)

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None,
                   options: RenderOptions | None = None) -> EngineResult:
        wish = " ".join(instruction.split())[:_MAX_INSTRUCTION]
        if not wish:
            raise BadRequest(N_("Tell me what to change, for example “add a crown”."), detail="empty instruction")
        if identity is None:
            parts = [_image_part(image), types.Part.from_text(
                text=_with_persona(_edit_prompt(wish, with_identity=False), options))]
        else:
            parts = [
                types.Part.from_text(text="Image 1 — IDENTITY REFERENCE: the original photo of the person. "
                                          "Do not edit or return it; use it only to get their face right."),
                _image_part(identity),
                types.Part.from_text(text="Image 2 — THE PICTURE TO EDIT."),
                _image_part(image),
                types.Part.from_text(text=_with_persona(_edit_prompt(wish, with_identity=True), options)),
            ]
        return await self._run("edit", parts, self._ratio_like(image, options), options)

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        if not portraits:
            raise BadRequest(N_("There is nobody to put in the picture yet."), detail="fuse with no portraits")
        names = _unique_names([p.name for p in portraits])
        info = self._info(options)
        parts: list[types.Part] = []
        # Beyond the people a model keeps consistent (or the images it takes), faces go on labelled
        # contact sheets: a few sheets, each within what the model keeps straight.
        if len(portraits) <= min(info.max_input_images, info.max_people):
            for i, (name, portrait) in enumerate(zip(names, portraits, strict=True), start=1):
                parts.append(types.Part.from_text(text=f"Photo {i}: {name}."))
                parts.append(_image_part(portrait.image))
            where = "in the photos"
        else:
            try:
                count = min(max(1, info.max_input_images), math.ceil(len(portraits) / max(1, info.max_people)))
                sheets = await asyncio.to_thread(_contact_sheets, [p.image for p in portraits], names, count)
            except Exception as exc:
                raise BadRequest(N_("One of the party photos couldn't be read. Please send it again."),
                                 detail=f"contact sheet failed: {type(exc).__name__}: {exc}") from None
            for i, sheet in enumerate(sheets, start=1):
                parts.append(types.Part.from_text(text=f"Contact sheet {i}: face crops, each labelled with the "
                                                       f"person's name. {_sheet_positions(sheet)}"))
                parts.append(types.Part(inline_data=types.Blob(data=sheet.image, mime_type="image/jpeg")))
            where = "on the contact sheets"
        parts.append(types.Part.from_text(text=_in_language(_fuse_prompt(names, style, theme, where), options)))
        n = len(portraits)
        ratio = self._chosen_ratio(options) or self._nearest_ratio(1.0 if n == 1 else 4 / 3 if n <= 3 else 16 / 9,
                                                                   self._info(options))
        return await self._run("fuse", parts, ratio, options)

    async def check(self) -> str | None:
        """List the models this key can use; replace a configured model that is gone. Returns a warning."""
        host = self._base_url or PUBLIC_HOST
        try:
            async with asyncio.timeout(min(self._timeout_s, 20.0)):
                available = await self._list_models()
        except genai_errors.APIError as exc:
            if _is_key_problem(exc):
                return (f"Gemini refused the API key (HTTP {exc.code} {exc.status}): every image request will "
                        "fail until GEMINI_API_KEY / [gemini] api_key is fixed.")
            return self._scrub(f"Gemini could not list its models (HTTP {exc.code} {exc.status}: "
                               f"{_short(exc.message)}); image requests may fail.")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._scrub(f"The Gemini API at {host} is unreachable ({type(exc).__name__}: {_short(str(exc))});"
                               " image requests will fail until it can be reached.")
        usable = {name for name, actions in available.items() if actions is None or "generateContent" in actions}
        self._available = usable
        warnings: list[str] = []
        model, info = self.configured, model_info(self.configured)
        if not known(model):
            warnings.append(f"The configured Gemini model '{model}' is not in Pix Me!'s model table: assuming "
                            f"{info.max_input_images} input images, sizes {', '.join(info.image_sizes)} and "
                            f"${info.usd_per_image:.3f} a picture.")
        if info.status == "shut_down" or model not in usable:
            why = ("is shut down" + (f" since {info.retires}" if info.retires else "") if info.status == "shut_down"
                   else "does not support generateContent" if model in available else "is not offered to this API key")
            if self._retire(model, why) is None:
                image_models = sorted(name for name in usable if "image" in name)
                listed = ", ".join(image_models) if image_models else "none"
                warnings.append(f"The configured Gemini model '{model}' {why} (API {API_VERSION}) and no successor "
                                f"is available. Image models that are: {listed}. Set [gemini] model (or "
                                "PIXME_GEMINI__MODEL) to one of them.")
        elif info.status == "deprecated":
            warnings.append(f"The configured Gemini model '{model}' is deprecated"
                            + (f" and shuts down on {info.retires}" if info.retires else "")
                            + (f"; its successor is '{info.successor}' (set [gemini] model)" if info.successor else "")
                            + ". The bot switches by itself when it is gone.")
        return "\n".join(warnings) or None

    # ------------------------------------------------------------------ models coming and going

    def resolve(self, model: str) -> str:
        """The model that draws when `model` is asked for: its replacement once it is gone."""
        seen: set[str] = set()
        current = model.strip().removeprefix("models/") or self.model
        while current in self._switched and current not in seen:
            seen.add(current)
            current = self._switched[current][0]
        return current

    def unavailable(self, model: str | None) -> EngineError | None:
        """The per-day quota refusal a call to `model` would meet now; no call is made for it."""
        chosen = self.resolve(model or self.model)
        until = self._quota_until.get(chosen)
        if until is None:
            return None
        if self._wall() >= until:
            del self._quota_until[chosen]
            log.info("gemini: the per-day quota of %s has reset; calling it again", chosen)
            return None
        return QuotaExhausted(QUOTA_MESSAGE, until=until, model=chosen,
                              detail=f"{chosen}: per-day quota used up until {_pacific(until)}")

    def notices(self) -> list[EngineNotice]:
        found = [EngineNotice("switched", old, new, why) for old, (new, why) in self._switched.items()]
        info = model_info(self.model)
        if info.status == "deprecated":
            found.append(EngineNotice("deprecated", self.model, info.successor, info.retires))
        now = self._wall()
        found += [EngineNotice("quota", model, until=until) for model, until in self._quota_until.items()
                  if until > now]
        return found

    def _retire(self, model: str, why: str) -> str | None:
        """Stop using `model`; returns what replaces it (logged once), or None when nothing can."""
        if model in self._switched:
            return self._switched[model][0]
        replacement = next((m for m in self._candidates(model) if self._usable(m)), None)
        if replacement is None:
            log.error("gemini: model %s %s, and no successor or default model is available", model, why)
            return None
        self._switched[model] = (replacement, why)
        if self.model == model:
            self.model, self.info = replacement, model_info(replacement)
        log.warning("gemini: model %s %s; using %s instead from now on", model, why, replacement)
        return replacement

    def _candidates(self, model: str) -> list[str]:
        """Who may replace `model`: its named successors, the default, then every current model."""
        current = [m.id for m in MODELS.values() if m.status == "current" and m.id != "offline"]
        return [m for m in dict.fromkeys([*successors(model), DEFAULT_MODEL, *current]) if m != model]

    def _usable(self, model: str) -> bool:
        if model in self._switched or model_info(model).status == "shut_down":
            return False
        return self._available is None or model in self._available

    async def aclose(self) -> None:
        try:
            await self._client.aio.aclose()
            self._client.close()
        except Exception as exc:  # closing must never mask the real reason we are shutting down
            log.debug("gemini: closing the client failed: %s", self._scrub(repr(exc)))

    # ------------------------------------------------------------------ one request, with retries

    async def _run(self, op: str, parts: list[types.Part], aspect_ratio: str | None,
                   options: RenderOptions | None = None) -> EngineResult:
        """The whole request, from first attempt to typed outcome; nothing untyped escapes."""
        model = asked = self._model_for(options)
        try:
            while True:
                refusal = self.unavailable(model)
                if refusal is not None:
                    raise refusal
                info = model_info(model)
                size: str | None = options.image_size if options and options.image_size in info.image_sizes \
                    else (self._image_size if self._image_size in info.image_sizes else "1K")
                if len(info.image_sizes) <= 1:
                    size = None  # models with one size (2.5 Flash Image) reject the option
                try:
                    return await self._generate(op, parts, aspect_ratio, model, size)
                except _ModelGone as gone:
                    if self._available is None:  # no listing yet: learn what exists before picking an heir
                        await self._learn_models()
                    replacement = self._retire(model, f"answered 404 NOT_FOUND ({gone.detail})")
                    if replacement is None:
                        raise BadRequest(MODEL_GONE_MESSAGE, detail=f"{op}: {asked} is gone and nothing "
                                                                     "replaces it; check [gemini] model") from None
                    model = replacement
        except EngineError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            detail = self._scrub(f"{op}: unexpected {type(exc).__name__}: {_short(str(exc))}")
            log.error("gemini %s", detail)
            raise EngineError(UNEXPECTED_MESSAGE, detail=detail) from None

    async def _generate(self, op: str, parts: list[types.Part], aspect_ratio: str | None, model: str,
                        image_size: str | None) -> EngineResult:
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),  # no tools here
        )
        contents = [types.Content(role="user", parts=parts)]
        start = self._clock()

        def remaining() -> float:
            return self._budget_s - (self._clock() - start)

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            hint = failure.retry_after if isinstance(failure, _Transient) else None
            delay = hint + random.uniform(0, min(1.0, 0.1 * hint)) if hint is not None else self._backoff(state)
            return max(0.0, min(delay, remaining()))

        def stop(state: RetryCallState) -> bool:
            # A wait clamped to the budget's end leaves ~0 (float residue), not exactly 0: stop there.
            return remaining() <= 1e-3 or state.upcoming_sleep > remaining()

        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            log.info("gemini %s: attempt %d failed (%s); retrying in %.1fs", op, state.attempt_number,
                     self._scrub(str(failure)), state.upcoming_sleep)

        attempts = 0
        try:
            for tries_left in range(NO_PICTURE_TRIES - 1, -1, -1):
                retrying = AsyncRetrying(retry=retry_if_exception_type(_Transient), wait=wait, stop=stop,
                                         sleep=self._sleep, before_sleep=before_sleep, reraise=True)
                try:
                    async for attempt in retrying:
                        with attempt:
                            attempts += 1
                            result = await self._attempt(contents, config, model)
                            return dataclasses.replace(result, image_size=image_size or "1K")
                except _NoPicture as nothing:
                    if tries_left == 0:
                        raise NoImage(NO_IMAGE_MESSAGE, text=nothing.text,
                                      detail=f"{op}: no picture after {NO_PICTURE_TRIES} tries ({nothing.detail})"
                                      ) from None
                    log.info("gemini %s: the model drew nothing (%s); asking once more", op, nothing.detail)
        except _DayQuota as quota:
            until = _next_pacific_midnight(self._wall())
            self._quota_until[model] = until
            log.warning("gemini: the per-day quota of %s is used up (%s); no calls to it until %s (or a restart)",
                        model, quota.detail, _pacific(until))
            raise QuotaExhausted(QUOTA_MESSAGE, until=until, model=model, detail=f"{op}: {quota.detail}") from None
        except _Transient as exc:
            detail = self._scrub(f"{op}: gave up after {attempts} attempt(s) in {self._clock() - start:.1f}s "
                                 f"(budget {self._budget_s:g}s); last: {exc.detail}")
            log.warning("gemini %s", detail)
            raise Busy(BUSY_MESSAGE, detail=detail) from None
        except EngineError as exc:
            log.info("gemini %s: %s (%s)", op, type(exc).__name__, exc.detail)
            raise
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

    async def _attempt(self, contents: list[types.Content], config: types.GenerateContentConfig,
                       model: str) -> EngineResult:
        """One HTTP call, its failure sorted into transient (`_Transient`) or final (`EngineError`)."""
        try:
            async with asyncio.timeout(self._timeout_s + 1.0):  # the SDK's own timeout should fire first
                response = await self._client.aio.models.generate_content(
                    model=model, contents=contents, config=config)
        except genai_errors.APIError as exc:
            raise self._api_failure(exc, model) from None
        except TimeoutError:
            raise _Transient(f"no answer within {self._timeout_s:g}s") from None
        except (genai_errors.UnknownApiResponseError, json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise _Transient(f"malformed answer: {type(exc).__name__}: {_short(str(exc))}") from None
        except (OSError, EOFError) as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}: {_short(str(exc))}") from None
        except Exception as exc:
            # The SDK talks aiohttp; its errors (disconnects, payload errors) are matched by origin
            # because core/ does not import aiohttp.
            if _from_aiohttp(exc):
                raise _Transient(f"connection failed: {type(exc).__name__}: {_short(str(exc))}") from None
            raise
        return await self._interpret(response, model)

    def _api_failure(self, exc: genai_errors.APIError, model: str) -> Exception:
        code = exc.code or 0
        what = self._scrub(f"HTTP {code} {exc.status}: {_short(exc.message)}")
        if code == 429 and _is_daily_quota(exc):
            return _DayQuota(what)
        if code in RETRYABLE_CODES or code >= 500:
            return _Transient(what, retry_after=_retry_delay(exc.details))
        if _is_key_problem(exc):
            return BadRequest(KEY_MESSAGE, detail=f"the Gemini API refused the operator's API key ({what}); "
                                                  "check GEMINI_API_KEY / [gemini] api_key")
        if code == 404:
            return _ModelGone(what)
        return BadRequest(BAD_REQUEST_MESSAGE, detail=what)

    async def _interpret(self, response: types.GenerateContentResponse, model: str) -> EngineResult:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            raise Blocked(PROMPT_BLOCKED_MESSAGE, detail=f"prompt blocked: {_name(feedback.block_reason)} "
                                                         f"{feedback.block_reason_message or ''}".strip())
        if not response.candidates:
            raise _Transient("malformed answer: no candidates and no block reason")
        candidate = response.candidates[0]
        reason = _name(candidate.finish_reason)
        # Thought parts are the model's drafts and musings: never the result, never the commentary.
        # (Their signatures only matter when replaying history, which this engine never does.)
        parts = [p for p in (candidate.content.parts or [] if candidate.content else []) if not p.thought]
        text = " ".join(p.text.strip() for p in parts if p.text and p.text.strip())
        why = f"finish_reason={reason} {candidate.finish_message or ''}".strip()
        if reason in SAFETY_FINISH:
            raise Blocked(OUTPUT_BLOCKED_MESSAGE, detail=f"output blocked: {why}")
        if reason in RECITATION_FINISH:
            raise NoImage(RECITATION_MESSAGE, detail=f"output withheld: {why}")
        if reason in LANGUAGE_FINISH:
            raise NoImage(LANGUAGE_MESSAGE, detail=f"unsupported language: {why}")
        if reason in NOTHING_FINISH:
            raise _NoPicture(why, text)
        images = [p.inline_data for p in parts
                  if p.inline_data is not None and p.inline_data.data
                  and (p.inline_data.mime_type or "image/").startswith("image/")]
        if not images:
            if text:
                raise _NoPicture(f"text only, {why}", text)
            raise _Transient(f"empty answer ({why})")
        blob = images[-1]  # an interleaved answer may hold several; the last is the finished one
        assert blob.data is not None
        mime = await asyncio.to_thread(_image_mime, blob.data)
        if mime is None:
            raise _Transient("malformed answer: the image does not decode")
        return EngineResult(image=blob.data, mime=blob.mime_type or mime, commentary=text, model=model)

    async def _learn_models(self) -> None:
        """List the key's models once, quietly: a failure leaves the successor table to decide."""
        try:
            async with asyncio.timeout(min(self._timeout_s, 20.0)):
                listed = await self._list_models()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("gemini: could not list models after a 404 (%s)", self._scrub(type(exc).__name__))
            return
        self._available = {name for name, actions in listed.items() if actions is None or "generateContent" in actions}

    async def _list_models(self) -> dict[str, list[str] | None]:
        """Model id -> supported methods (None when the listing does not say), every page."""
        found: dict[str, list[str] | None] = {}
        pager = await self._client.aio.models.list(config=types.ListModelsConfig(page_size=100, query_base=True))
        async for model in pager:
            if model.name:
                found[model.name.removeprefix("models/")] = model.supported_actions
            if len(found) >= _MAX_LISTED_MODELS:
                break
        return found

    # ------------------------------------------------------------------ helpers

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text

    def _model_for(self, options: RenderOptions | None) -> str:
        chosen = (options.model or "").strip().removeprefix("models/") if options else ""
        return self.resolve(chosen or self.model)

    def _info(self, options: RenderOptions | None) -> ModelInfo:
        return model_info(self._model_for(options))

    def _chosen_ratio(self, options: RenderOptions | None) -> str | None:
        """The person's aspect ratio, if the model can draw it (the studio told them otherwise)."""
        if options is None or not options.aspect_ratio:
            return None
        return options.aspect_ratio if options.aspect_ratio in self._info(options).aspect_ratios else None

    def _ratio_like(self, image: bytes, options: RenderOptions | None = None) -> str | None:
        """The person's chosen ratio, else the supported one nearest the input's, so framing survives."""
        chosen = self._chosen_ratio(options)
        if chosen is not None:
            return chosen
        try:
            with Image.open(io.BytesIO(image)) as im:  # reads the header only
                width, height = ImageOps.exif_transpose(im).size if _has_rotation(im) else im.size
        except Exception:
            return None
        return self._nearest_ratio(width / height, self._info(options)) if height else None

    def _nearest_ratio(self, target: float, info: ModelInfo | None = None) -> str | None:
        ratios = (info or self.info).aspect_ratios
        if not ratios:
            return None

        def distance(ratio: str) -> float:
            w, h = (float(v) for v in ratio.split(":"))
            return abs(math.log((w / h) / target))

        return min(ratios, key=distance)


# ---------------------------------------------------------------------- prompts


def _edit_prompt(instruction: str, *, with_identity: bool) -> str:
    if with_identity:
        target = "Image 2"
        identity = ("The person must stay exactly the person in Image 1: the same face shape and proportions, "
                    "skin tone, hair colour, length and hairline, eye colour, and any glasses, facial hair, "
                    "freckles or marks, unless the instruction asks to change one of them. Return only the "
                    "edited Image 2, not Image 1.")
    else:
        target = "this picture"
        identity = ("Keep the person unmistakably recognisable as themselves: the same face shape, skin tone, "
                    "hair, eye colour and features, unless the instruction asks to change one of them.")
    quoted = f" {QUOTED_TEXT_RULE}" if _QUOTED.search(instruction) else ""
    return (f"Edit {target}: {instruction}\n"
            f"Change only what that asks for; keep everything else in {target} — its art style, colours, "
            f"background, pose and framing — as it is.{quoted} {identity} {COMMENTARY_CLAUSE}")


QUOTED_TEXT_RULE = ("Any words in quotation marks are text to show in the picture: write them exactly as quoted, "
                    "letter for letter, with the same spelling, capitals and punctuation.")
_QUOTED = re.compile(r'"[^"]+"|“[^”]+”|«[^»]+»|„[^“”]+[“”]')


_LANGUAGE_NAMES = {"es": "Spanish", "ru": "Russian"}  # English needs no instruction


# Appended to a retry of a picture whose face the likeness check could not recognise (`[likeness] retry_below`).
STRONGER_IDENTITY = (
    "IMPORTANT — LIKENESS: a first attempt at this picture lost the person's face. This time the face must be "
    "instantly recognisable as the same person as in the photo: keep their exact face shape and proportions, the "
    "shape and spacing of the eyes, nose, mouth and eyebrows, their skin tone, hairline and any glasses, facial "
    "hair or marks. Show the face clearly, turned towards the viewer and not hidden; apply the style fully to "
    "everything else and only lightly to the face itself."
)


def _with_persona(prompt: str, options: RenderOptions | None) -> str:
    """Add who the person says they are, so the picture suits them; their face is not theirs to restyle. A
    likeness retry also insists harder on the face."""
    persona = " ".join((options.persona if options else "").split())[:2000]
    if persona:
        prompt = (f"{prompt}\nAbout the person: {persona}; let the picture fit who they are, "
                  "without changing their face.")
    if options is not None and options.stronger_identity:
        prompt = f"{prompt}\n{STRONGER_IDENTITY}"
    return _in_language(prompt, options)


def _in_language(prompt: str, options: RenderOptions | None) -> str:
    """The prompt stays English; only the one line the person reads is asked for in their language."""
    language = _LANGUAGE_NAMES.get(options.language if options else "en")
    return f"{prompt}\nWrite the short sentence to the person in {language}." if language else prompt


def _fuse_prompt(names: list[str], style: Style, theme: str, where: str) -> str:
    n = len(names)
    who = names[0] if n == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    setting = " ".join(theme.split())[:300]
    scene = f" The scene: {setting}." if setting else ""
    return (
        f"Make one {style.title.lower()} group picture of all {n} people shown {where}: {who}.{scene} "
        f"{style.look} Every one of the {n} people appears exactly once, together in the same scene, and is "
        "unmistakably recognisable as themselves: their own face shape and proportions, skin tone, hair colour "
        "and hairline, eye colour, and any glasses, facial hair or marks. Do not merge faces, swap features "
        "between people, or add anyone else. Do not write names or labels into the picture. "
        f"{COMMENTARY_CLAUSE}"
    )


def _unique_names(raw: Sequence[str]) -> list[str]:
    names: list[str] = []
    for i, name in enumerate(raw, start=1):
        clean = " ".join(name.split())[:_MAX_NAME] or f"Person {i}"
        candidate, n = clean, 2
        while candidate in names:
            candidate, n = f"{clean} ({n})", n + 1
        names.append(candidate)
    return names


def _sheet_positions(sheet: _Sheet) -> str:
    cells = []
    rows = math.ceil(len(sheet.names) / sheet.columns)
    for i, name in enumerate(sheet.names):
        row, col = divmod(i, sheet.columns)
        cells.append(name if len(sheet.names) == 1 else
                     f"{name} (row {row + 1} of {rows}, column {col + 1} of {sheet.columns})")
    return "It shows: " + "; ".join(cells) + "."


# ---------------------------------------------------------------------- images


def _image_part(data: bytes) -> types.Part:
    return types.Part(inline_data=types.Blob(data=data, mime_type=_sniff_mime(data)))


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"  # intake hands engines JPEGs


def _has_rotation(image: Image.Image) -> bool:
    return image.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def _image_mime(data: bytes) -> str | None:
    """The decoded image's MIME type, or None when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.verify()
    except Exception:
        return None
    return Image.MIME.get(fmt or "", "image/png")


def _face_crop(data: bytes, side: int) -> Image.Image:
    """A square crop around the most prominent face (head and hair), or the upper centre."""
    with Image.open(io.BytesIO(data)) as src:
        rgb = ImageOps.exif_transpose(src).convert("RGB")
    rgb.thumbnail((1024, 1024))
    faces = detect_faces(np.asarray(rgb))
    face = faces[0] if faces else default_face(*rgb.size)
    # About twice the face box (hair, ears and chin included), moved inside the photo rather than
    # padded, and never more than the photo's short side.
    crop = min(max(face.w, face.h) * 1.9, min(rgb.size))
    x0 = min(max(face.cx - crop / 2, 0.0), rgb.width - crop)
    y0 = min(max(face.cy + 0.08 * face.h - crop / 2, 0.0), rgb.height - crop)
    box = (round(x0), round(y0), round(x0 + crop), round(y0 + crop))
    return ImageOps.pad(rgb.crop(box), (side, side), color=(255, 255, 255))


def _contact_sheets(images: Sequence[bytes], names: Sequence[str], max_images: int) -> list[_Sheet]:
    """Everyone's face crop, labelled with their name, on at most `max_images` sheets."""
    per_sheet = math.ceil(len(images) / max_images)
    count = math.ceil(len(images) / per_sheet)
    sheets: list[_Sheet] = []
    for s in range(count):
        chunk = list(range(s * per_sheet, min(len(images), (s + 1) * per_sheet)))
        columns = math.ceil(math.sqrt(len(chunk)))
        rows = math.ceil(len(chunk) / columns)
        cell_h = _SHEET_CELL + _SHEET_LABEL
        sheet = Image.new("RGB", (columns * _SHEET_CELL, rows * cell_h), "white")
        draw = ImageDraw.Draw(sheet)
        for k, index in enumerate(chunk):
            row, col = divmod(k, columns)
            x, y = col * _SHEET_CELL, row * cell_h
            sheet.paste(_face_crop(images[index], _SHEET_CELL - 8), (x + 4, y + 4))
            size = 30
            while size > 14 and draw.textlength(names[index], font=label_font(size)) > _SHEET_CELL - 12:
                size -= 2
            draw.text((x + _SHEET_CELL / 2, y + _SHEET_CELL + _SHEET_LABEL / 2), names[index], fill="black",
                      font=label_font(size), anchor="mm")
        out = io.BytesIO()
        sheet.save(out, "JPEG", quality=90)
        sheets.append(_Sheet(out.getvalue(), [names[i] for i in chunk], columns))
    return sheets


# ---------------------------------------------------------------------- error details


def _details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    body = exc.details
    error = body.get("error", body) if isinstance(body, dict) else {}
    found = error.get("details") if isinstance(error, dict) else None
    return [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []


def _retry_delay(body: Any) -> float | None:
    """The `google.rpc.RetryInfo` delay in seconds from an error body, if the server sent one."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    for detail in (error.get("details") or []) if isinstance(error, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _is_daily_quota(exc: genai_errors.APIError) -> bool:
    """A QuotaFailure for a per-day quota, or a free tier whose limit is 0: waiting minutes won't help."""
    if "limit: 0" in (exc.message or ""):
        return True
    for detail in _details(exc):
        if str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and "perday" in str(violation.get("quotaId", "")).lower():
                    return True
    return False


def _next_pacific_midnight(now: float) -> float:
    """The next midnight in Pacific time, when Google resets per-day quotas (DST handled)."""
    zone = zoneinfo.ZoneInfo(QUOTA_TIMEZONE)
    today = datetime.fromtimestamp(now, zone).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), zone).timestamp()


def _pacific(moment: float) -> str:
    return datetime.fromtimestamp(moment, zoneinfo.ZoneInfo(QUOTA_TIMEZONE)).strftime("%Y-%m-%d %H:%M %Z")


def _is_key_problem(exc: genai_errors.APIError) -> bool:
    if exc.code in (401, 403):
        return True
    return any(str(d.get("reason", "")) in _KEY_REASONS for d in _details(exc))


def _from_aiohttp(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] == "aiohttp" for cls in type(exc).__mro__)


def _name(value: Any) -> str:
    """An SDK enum (or the raw string of one it does not know yet) as its wire name."""
    if value is None:
        return ""
    return str(getattr(value, "value", value)).upper()


def _short(text: str | None, limit: int = 300) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
