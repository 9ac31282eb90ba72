"""Telegram webhooks: a small aiohttp server Telegram (through a reverse proxy) POSTs updates to.

PTB's own webhook server runs on tornado; this one is aiohttp, which the bot already uses for HTTP. It only
checks and hands on: the secret header (403 when wrong or missing), the body (400 unless it is an update),
then `take`, which records the update and handles it (its request persisted as a job, or answered) before the
answer is 200. When `take` fails (the database is away before anything came of the update) the answer is 500,
so Telegram delivers the update again.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024  # an update is JSON text; photos arrive as file ids, never as bytes

Take = Callable[[dict[str, Any]], Awaitable[None]]


class WebhookError(Exception):
    """The webhook server could not listen; the message says where and why."""


class WebhookServer:
    """POST `path` on `listen:port` -> `take(update as JSON)` for requests carrying `secret`."""

    def __init__(self, *, listen: str, port: int, path: str, secret: str, take: Take) -> None:
        self.listen = listen
        self.path = path
        self._port = port
        self._secret = secret.encode()
        self._take = take
        self._runner: web.AppRunner | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when 0 was asked for)."""
        return self._port

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        app.router.add_post(self.path, self._on_update)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.listen, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise WebhookError(f"telegram: the webhook server cannot listen on {self.listen}:{self._port} "
                               f"({exc.strerror}); set [telegram] webhook_listen / webhook_port") from None
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop taking updates (the proxy sends the next ones to another gateway; Telegram retries the rest)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _on_update(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("telegram: webhook request from %s without the right secret refused", request.remote)
            return web.Response(status=403, text="forbidden")
        try:
            update = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="not JSON")
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return web.Response(status=400, text="not an update")
        try:
            await self._take(update)
        except ValueError:  # PTB could not make an Update of it
            return web.Response(status=400, text="not an update")
        except Exception as exc:  # Telegram retries what is not answered 200
            log.warning("telegram: webhook update %s not taken: %s", update["update_id"], type(exc).__name__)
            return web.Response(status=500, text="try again")
        return web.Response(text="ok")
