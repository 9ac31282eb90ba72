"""The operator's endpoints on `[ops] listen:port`: /healthz, /readyz and /metrics.

/healthz says the process (its event loop) is alive; /readyz that the database could record a job now and
every configured front-end is connected, else 503 with the first reason in one line; /metrics is the studio's
`core.metrics.Metrics` in Prometheus's text format (or OpenMetrics, if the scraper asks for it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from core.config import OpsSettings
from core.metrics import Metrics

log = logging.getLogger(__name__)

StoreProblem = Callable[[], Awaitable[str | None]]


class Connected(Protocol):
    """A front-end that can say whether it is connected to its platform now."""

    @property
    def connected(self) -> bool: ...


class OpsError(Exception):
    """The endpoints could not be served (the address is taken, or not ours); the message is one line."""


class OpsServer:
    """Serves the three endpoints; front-ends are added as they are configured (not ready until connected)."""

    def __init__(self, settings: OpsSettings, *, metrics: Metrics, store_problem: StoreProblem) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store_problem = store_problem
        self.front_ends: dict[str, Connected] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self.app = app

    def watch(self, name: str, front_end: Connected) -> None:
        """Count `front_end` in readiness from now on (it is not ready until it says it is connected)."""
        self.front_ends[name] = front_end

    async def start(self) -> None:
        """Listen on `[ops] listen:port`; OpsError (one line) if that address cannot be had."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.listen, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OpsError(f"ops: cannot listen on {self.settings.listen}:{self.settings.port} "
                           f"({exc.strerror or exc}); set [ops] port (PIXME_OPS__PORT) to a free one, "
                           "or 0 to turn the endpoints off") from None
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        log.info("ops: /healthz, /readyz and /metrics on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def readiness_problem(self) -> str | None:
        """The first reason the bot is not ready, in one line; None when it is."""
        problem = await self.store_problem()
        if problem is not None:
            return problem
        for name, front_end in self.front_ends.items():
            if not front_end.connected:
                return f"{name}: not connected"
        return None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        problem = await self.readiness_problem()
        if problem is not None:
            return web.Response(status=503, text=problem + "\n")
        return web.Response(text="ready\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})
