"""A loopback stand-in of the Gemini API (Generative Language REST) for the real google-genai client.

It speaks the wire protocol the SDK uses: ``POST /v1beta/models/{model}:generateContent`` with the key
in the ``x-goog-api-key`` header, camelCase JSON bodies, base64 ``inlineData`` parts, and Google's
JSON error bodies (``{"error": {"code", "message", "status", "details": [...]}}``); plus the paged
``GET /v1beta/models`` list and ``GET /v1beta/models/{model}``. Models not served (shut down, or never
offered to the key) answer 404 NOT_FOUND to every call, as retired models do. Other API versions
answer 404, as the real service does for image settings on ``v1``::

    async with FakeGemini() as gem:
        engine = GeminiEngine(api_key=gem.api_key, base_url=gem.base_url, ...)
        gem.script(gem.image(text="Looking sharp!"), gem.error(503))   # next two answers
        gem.fail_next(429, retry_delay="2s")                            # or: queue failures
        result = await engine.stylize(selfie, style)
        body = gem.requests[-1].body                                    # what the client sent

When nothing is scripted, generateContent answers like a model would: a PNG derived from the first
input image (colours inverted) and one line of commentary, so end-to-end tests can use it as "the
model". Scripted answers are consumed first-in, first-out, one per generateContent call.

The API key is never logged; recorded requests keep only whether the key matched (`key_ok`).
Harness methods must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import logging
import secrets
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

# What Google serves today: gemini-2.5-flash-image is shut down (404), 3.1-flash-image deprecated but up.
DEFAULT_MODELS: tuple[str, ...] = (
    "gemini-nano-banana-2.1",
    "gemini-3.1-flash-lite-image",
    "gemini-3-pro-image",
    "gemini-3.1-flash-image",
    "gemini-2.5-flash",
    "text-embedding-004",
)
DEFAULT_COMMENTARY = "Here you are: same face, brand-new vibe."

_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    502: "Bad Gateway",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}


@dataclass
class Reply:
    """One scripted answer to a generateContent call. Build them with the `FakeGemini` helpers."""

    kind: str  # "json" | "hang" | "reset" | "raw"
    status: int = 200
    body: Any = None
    raw: bytes = b""
    content_type: str = "application/json"
    hang_s: float = 3600.0
    delay_s: float = 0.0  # think this long before answering (a slow model); see `FakeGemini.slow`


@dataclass
class RecordedRequest:
    """One request the stand-in received (generateContent or models list)."""

    method: str
    path: str
    query: dict[str, str]
    model: str  # "" for the models list
    api_version: str
    key_ok: bool
    body: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> list[dict[str, Any]]:
        """Every part of every content turn, in order."""
        return [p for c in self.body.get("contents", []) for p in c.get("parts", [])]

    def texts(self) -> list[str]:
        return [p["text"] for p in self.parts() if "text" in p]

    def images(self) -> list[bytes]:
        """The decoded bytes of every inline image sent, in order."""
        return [b64decode(p["inlineData"]["data"]) for p in self.parts() if "inlineData" in p]

    @property
    def text(self) -> str:
        return "\n".join(self.texts())


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)  # a real PNG, made fast (the model's own are not our CPU)
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Base64 as Google accepts it: standard or URL-safe alphabet (the Python SDK sends URL-safe)."""
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


def _error_body(status: int, message: str | None, details: list[dict[str, Any]]) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message or _MESSAGES.get(status, "Error"),
        "status": _STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


class FakeGemini:
    """The stand-in server plus its harness API (see the module docstring)."""

    def __init__(self, *, models: tuple[str, ...] = DEFAULT_MODELS, api_key: str | None = None,
                 page_size: int = 50) -> None:
        self.api_key = api_key or "AIza" + secrets.token_urlsafe(26)
        self.models = list(models)
        self.page_size = page_size  # the most models one list page holds (the client may ask for fewer)
        self.think_s = 0.0  # how long an unscripted generateContent answer takes (a model at work)
        # Unscripted answers wait while this is clear (a test holds every drawing at the model); `held` counts them.
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.held = 0
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeGemini:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/{version}/models", self._list_models)
        app.router.add_route("*", "/{version}/models/{tail:.+}", self._model_call)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # bound here so the random port is known before serving
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What to pass as the client's base URL (the SDK appends ``v1beta/...``)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def generate_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(":generateContent")]

    # ---------------------------------------------------------------- scripting

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next generateContent calls, in order."""
        self._replies.extend(replies)

    def fail_next(self, status: int, times: int = 1, *, message: str | None = None,
                  retry_delay: str | None = None) -> None:
        """Queue `times` HTTP errors with Google's JSON error body (429 may carry a RetryInfo delay)."""
        for _ in range(times):
            self.script(self.error(status, message=message, retry_delay=retry_delay))

    def clear(self) -> None:
        """Forget answers scripted but not yet consumed."""
        self._replies.clear()

    @property
    def pending(self) -> int:
        """Scripted answers not yet consumed."""
        return len(self._replies)

    @staticmethod
    def image(png: bytes | None = None, *, text: str | None = DEFAULT_COMMENTARY, mime: str = "image/png",
              thoughts: tuple[str, ...] = (), thought_image: bytes | None = None,
              signature: bool = True, finish_reason: str = "STOP") -> Reply:
        """An image answer. `thoughts` become thought text parts (and `thought_image` a thought image)
        before the answer, as thinking models send them; the answer parts carry a thoughtSignature."""
        data = png if png is not None else png_bytes(Image.new("RGB", (64, 64), (200, 40, 160)))
        parts: list[dict[str, Any]] = [{"text": t, "thought": True} for t in thoughts]
        if thought_image is not None:
            parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(thought_image)}, "thought": True})
        answer: list[dict[str, Any]] = []
        if text is not None:
            answer.append({"text": text})
        answer.append({"inlineData": {"mimeType": mime, "data": _b64(data)}})
        if signature:
            answer[0]["thoughtSignature"] = _b64(b"sig-" + secrets.token_bytes(8))
        return Reply("json", body=_candidate_body(parts + answer, finish_reason))

    @staticmethod
    def text(text: str, *, finish_reason: str = "STOP") -> Reply:
        """A text-only answer (the model talked instead of drawing)."""
        return Reply("json", body=_candidate_body([{"text": text}], finish_reason))

    @staticmethod
    def blocked_prompt(reason: str = "SAFETY") -> Reply:
        """The prompt itself was blocked: no candidates, promptFeedback.blockReason set."""
        return Reply("json", body={
            "promptFeedback": {"blockReason": reason, "safetyRatings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "HIGH", "blocked": True}]},
            "usageMetadata": {"promptTokenCount": 1290, "totalTokenCount": 1290},
            "modelVersion": "stand-in",
        })

    @staticmethod
    def finished(reason: str, *, text: str | None = None) -> Reply:
        """A candidate that stopped for `reason` (IMAGE_SAFETY, SAFETY, NO_IMAGE…) without an image."""
        parts = [{"text": text}] if text else []
        return Reply("json", body=_candidate_body(parts, reason, content=bool(parts)))

    @staticmethod
    def error(status: int, *, message: str | None = None, retry_delay: str | None = None,
              reason: str | None = None) -> Reply:
        """An HTTP error with Google's JSON body; `retry_delay` ("7s") adds a google.rpc.RetryInfo,
        `reason` ("API_KEY_INVALID") a google.rpc.ErrorInfo."""
        details: list[dict[str, Any]] = []
        if reason:
            details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"}})
        if status == 429:
            details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
                "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute"}]})
        if retry_delay is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
        return Reply("json", status=status, body=_error_body(status, message, details))

    @staticmethod
    def day_quota(*, free_tier: bool = False) -> Reply:
        """A 429 for a per-day quota, as Google sends it: a QuotaFailure whose quotaId says PerDay (the
        free tier's says "limit: 0" too) and a RetryInfo that waiting a few seconds would not honour."""
        quota_id = "GenerateRequestsPerDayPerProjectPerModel" + ("-FreeTier" if free_tier else "")
        message = ("You exceeded your current quota, please check your plan and billing details. * Quota exceeded "
                   f"for metric: generativelanguage.googleapis.com/generate_requests_per_model_per_day, "
                   f"limit: {0 if free_tier else 250}, model: gemini-nano-banana-2.1")
        return Reply("json", status=429, body=_error_body(429, message, [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
                "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": "gemini-nano-banana-2.1"},
                "quotaValue": "0" if free_tier else "250"}]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
                "description": "Learn more about Gemini API quotas",
                "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
        ]))

    @staticmethod
    def hang(seconds: float = 3600.0) -> Reply:
        """Accept the request and answer nothing for `seconds` (the client should time out)."""
        return Reply("hang", hang_s=seconds)

    @staticmethod
    def slow(reply: Reply, seconds: float) -> Reply:
        """`reply`, after thinking for `seconds` (a big model at work); a client that gives up cuts it short."""
        return dataclasses.replace(reply, delay_s=seconds)

    @staticmethod
    def reset() -> Reply:
        """Drop the TCP connection (RST) without answering."""
        return Reply("reset")

    @staticmethod
    def malformed(raw: bytes = b'{"candidates": [{"content": {"parts": [{"text": "Here', *,
                  status: int = 200, content_type: str = "application/json") -> Reply:
        """A body that is not the JSON it claims to be (truncated by default)."""
        return Reply("raw", status=status, raw=raw, content_type=content_type)

    # ---------------------------------------------------------------- handlers

    def _record(self, request: web.Request, model: str, body: dict[str, Any]) -> RecordedRequest:
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        rec = RecordedRequest(
            method=request.method, path=request.path, query=dict(request.query), model=model,
            api_version=request.match_info["version"], key_ok=secrets.compare_digest(key, self.api_key),
            body=body,
        )
        self.requests.append(rec)
        return rec

    def _auth_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if not key:
            return web.json_response(_error_body(
                403, "Method doesn't allow unregistered callers (callers without established identity). "
                     "Please use API Key or other form of API consumer identity to call this API.", []),
                status=403)
        if not secrets.compare_digest(key, self.api_key):
            return web.json_response(_error_body(400, "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
                status=400)
        return None

    def _version_error(self, version: str) -> web.Response | None:
        if version == "v1beta":
            return None
        return web.json_response(_error_body(
            404, f"Image generation settings are not supported by API version {version}; use v1beta.", []),
            status=404)

    async def _list_models(self, request: web.Request) -> web.Response:
        self._record(request, "", {})
        if (problem := self._version_error(request.match_info["version"]) or self._auth_error(request)):
            return problem
        try:
            size = min(self.page_size, int(request.query.get("pageSize", self.page_size)) or self.page_size)
            start = int(request.query.get("pageToken") or 0)
        except ValueError:
            return web.json_response(_error_body(400, "Invalid page token or size.", []), status=400)
        page = self.models[start:start + size]
        body: dict[str, Any] = {"models": [_model_resource(m) for m in page]}
        if start + size < len(self.models):
            body["nextPageToken"] = str(start + size)
        return web.json_response(body)

    async def _model_call(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        model, _, method = tail.partition(":")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        self._record(request, model, body if isinstance(body, dict) else {"_body": body})
        if (problem := self._version_error(request.match_info["version"]) or self._auth_error(request)):
            return problem
        if request.method == "GET" and not method:
            if model in self.models:
                return web.json_response(_model_resource(model))
            return web.json_response(_error_body(404, f"models/{model} is not found.", []), status=404)
        if request.method != "POST" or method != "generateContent":
            return web.json_response(_error_body(404, f"Method {method or '(none)'} is not served here.", []),
                                     status=404)
        if model not in self.models:
            return web.json_response(_error_body(
                404, f"models/{model} is not found for API version v1beta, or is not supported for "
                     "generateContent. Call ListModels to see the list of available models and their "
                     "supported methods.", []), status=404)
        if not isinstance(body, dict) or not body.get("contents"):
            return web.json_response(_error_body(400, "* GenerateContentRequest.contents: contents is not "
                                                       "specified", []), status=400)
        reply = self._replies.popleft() if self._replies else None
        if reply is None:
            if self.think_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.think_s)
            if not self.flowing.is_set():
                self.held += 1
                try:
                    await asyncio.wait([asyncio.ensure_future(self.flowing.wait()),
                                        asyncio.ensure_future(self._closing.wait())],
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self.held -= 1
            return web.json_response(_default_answer(body))
        return await self._play(request, reply)

    async def _play(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay_s)
        if reply.kind == "hang":
            try:
                await asyncio.wait_for(self._closing.wait(), reply.hang_s)
            except TimeoutError:
                pass
            return web.json_response(_error_body(504, None, []), status=504)
        if reply.kind == "reset":
            transport = request.transport
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:  # linger 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if reply.kind == "raw":
            return web.Response(status=reply.status, body=reply.raw, content_type=reply.content_type)
        return web.json_response(reply.body, status=reply.status)


def _model_resource(model: str) -> dict[str, Any]:
    image = "image" in model
    embedding = "embedding" in model
    methods = ["embedContent"] if embedding else ["generateContent", "countTokens", "batchGenerateContent"]
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model.replace("-", " ").title(),
        "description": "Stand-in model" + (" with native image output" if image else ""),
        "inputTokenLimit": 65536 if image else 1048576,
        "outputTokenLimit": 32768 if image else 65536,
        "supportedGenerationMethods": methods,
        "temperature": 1.0,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2.0,
        "thinking": "3" in model,
    }


def _candidate_body(parts: list[dict[str, Any]], finish_reason: str, *, content: bool = True) -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if content:
        candidate["content"] = {"role": "model", "parts": parts}
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 1290, "candidatesTokenCount": 1290, "totalTokenCount": 2580,
                          "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]},
        "modelVersion": "stand-in",
        "responseId": secrets.token_urlsafe(12),
    }


def _default_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A plausible model answer: the first input image with its colours inverted, plus a comment."""
    first = next((p["inlineData"] for c in body.get("contents", []) for p in c.get("parts", [])
                  if isinstance(p, dict) and "inlineData" in p), None)
    image = Image.new("RGB", (256, 256), (90, 160, 220))
    if first is not None:
        try:
            with Image.open(io.BytesIO(b64decode(first["data"]))) as src:
                image = ImageOps.invert(src.convert("RGB"))
        except Exception:
            log.info("stand-in: first input image did not decode; answering with a plain image")
    parts: list[dict[str, Any]] = [{"text": DEFAULT_COMMENTARY, "thoughtSignature": _b64(b"default-signature")},
                                    {"inlineData": {"mimeType": "image/png", "data": _b64(png_bytes(image))}}]
    return _candidate_body(parts, "STOP")
