"""python-telegram-bot on our aiohttp transport, when the network misbehaves.

The Bot API stand-in covers the happy paths and Bot API errors; these cover the wire itself, with the
real `telegram.Bot` on `bots.telegram.http.AiohttpRequest` against small servers on 127.0.0.1: a Bot API
that never answers is a `TimedOut` (which the bot retries) rather than a hang, a closed port is a
`NetworkError`, and a redirect is never followed, so the token in the URL cannot leave for another host.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bots.telegram.http import AiohttpRequest

TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ME = {"ok": True, "result": {"id": 7012345678, "is_bot": True, "first_name": "Pix Me", "username": "pixme_bot"}}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a one-route server for every Bot API method; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def bot(base: str) -> Bot:
    return Bot(TOKEN, base_url=f"{base}/bot", request=AiohttpRequest())


async def test_calls_and_uploads_reach_the_bot_api(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[tuple[str, dict[str, str], bytes | None]] = []

    async def api(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload = form.get("photo")
        fields = {k: str(v) for k, v in form.items() if k != "photo"}
        seen.append((request.path, fields, upload.file.read() if isinstance(upload, web.FileField) else None))
        if request.path.endswith("/sendPhoto"):
            return web.json_response({"ok": True, "result": {
                "message_id": 5, "date": 0, "chat": {"id": 42, "type": "private"},
                "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]}})
        return web.json_response(ME)

    async with bot(await serve(api)) as client:
        assert client.username == "pixme_bot"
        sent = await client.send_photo(42, b"\xff\xd8 a jpeg", caption="🧟 Zombie")
    assert sent.message_id == 5
    path, fields, photo = seen[-1]
    assert path == f"/bot{TOKEN}/sendPhoto"
    assert fields["chat_id"] == "42" and fields["caption"] == "🧟 Zombie" and photo == b"\xff\xd8 a jpeg"


async def test_a_bot_api_that_never_answers_times_out(serve: Callable[[Handler], Awaitable[str]]) -> None:
    answer = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        await answer.wait()  # not before the client has given up
        return web.json_response(ME)

    base = await serve(silent)
    request = AiohttpRequest(read_timeout=0.3)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            async with asyncio.timeout(5):
                await request.post(f"{base}/bot{TOKEN}/getMe")
    finally:
        answer.set()  # so the server can close at once
        await request.shutdown()


async def test_a_closed_port_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once the socket closes: nothing listens there
    request = AiohttpRequest(connect_timeout=2)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as raised:
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
        assert not isinstance(raised.value, TimedOut)
    finally:
        await request.shutdown()


async def test_a_redirect_is_not_followed(serve: Callable[[Handler], Awaitable[str]]) -> None:
    elsewhere: list[str] = []

    async def other_host(request: web.Request) -> web.StreamResponse:
        elsewhere.append(request.path)
        return web.json_response(ME)

    target = await serve(other_host)

    async def redirecting(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{target}{request.path}")

    base = await serve(redirecting)
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(NetworkError):  # PTB: an unexpected status from the Bot API
            await request.post(f"{base}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()
    assert elsewhere == [], "the token never went to the other host"
