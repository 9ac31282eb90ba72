"""python-telegram-bot's HTTP on aiohttp instead of httpx.

PTB talks to the Bot API through a `BaseRequest`, its documented extension point; the default is httpx.
Profiling the overhead benchmark showed the bot's own CPU per picture going mostly into httpx, httpcore,
h11 and anyio (getFile, the download, sendChatAction and sendPhoto): a multipart POST over loopback
costs ≈1.5 ms of CPU through httpx and ≈0.3 ms through aiohttp (BENCHMARKS.md). aiohttp is already a
dependency (the playground and discord.py use it).

Same behaviour as PTB's HTTPXRequest where it matters: JSON parameters as form fields, files as
multipart, the same default timeouts, `TimedOut` for timeouts and `NetworkError` for everything else on
the wire. Calls are logged at DEBUG only, their URLs (which carry the token) masked like every log line.
"""

from __future__ import annotations

import logging

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bots.telegram.shim import Timeout, timeout_or
from core.gate import settle
from core.tls import client_context

log = logging.getLogger(__name__)

# Bot API methods that people see the effect of: once one is called for a request, the request has been answered
# (a webhook update is no longer given back for Telegram to deliver again, see core.gate.Redelivery).
_SEEN_PREFIXES = ("send", "edit", "delete", "answer", "copy", "forward", "pin", "unpin", "setChatPhoto",
                  "setMessageReaction", "refund")
_UNSEEN = frozenset({"sendChatAction"})


class AiohttpRequest(BaseRequest):
    """A pooled aiohttp session for the Bot API; one per PTB request role (API calls, getUpdates)."""

    def __init__(self, *, connection_pool_size: int = 256, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 1.0, media_write_timeout: float | None = 20.0) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, ssl=client_context()),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Timeout = BaseRequest.DEFAULT_NONE,
                         write_timeout: Timeout = BaseRequest.DEFAULT_NONE,
                         connect_timeout: Timeout = BaseRequest.DEFAULT_NONE,
                         pool_timeout: Timeout = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        fields = request_data.json_parameters if request_data else None

        read = timeout_or(read_timeout, self._read_timeout)
        connect = timeout_or(connect_timeout, self._connect_timeout)
        pool = timeout_or(pool_timeout, self._pool_timeout)
        write = timeout_or(write_timeout, self._media_write_timeout if files else self._write_timeout)
        # aiohttp has no write timeout: the whole exchange is bounded by the sum of the parts instead.
        parts = (read, write, connect, pool)
        total = None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
        timeout = aiohttp.ClientTimeout(total=total, sock_read=read, sock_connect=connect,
                                        connect=None if connect is None or pool is None else connect + pool)

        body: aiohttp.FormData | dict[str, str] | None = None
        if files:
            form = aiohttp.FormData()
            for name, value in (fields or {}).items():
                form.add_field(name, str(value))
            for name, (filename, content, mime) in files.items():
                form.add_field(name, content, filename=filename, content_type=mime)
            body = form
        elif fields:
            body = {name: str(value) for name, value in fields.items()}
        called = url.rsplit("/", 1)[-1]
        if called.startswith(_SEEN_PREFIXES) and called not in _UNSEEN:
            settle()
        try:
            # Redirects are not followed: the Bot API never answers with one, and following one would
            # carry the token (in the URL) somewhere else.
            async with session.request(method, url, data=body, timeout=timeout, allow_redirects=False) as response:
                answer = await response.read()
        except TimeoutError as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err
        # With --verbose, every call is logged; the token in the URL is masked by core.logsafe's filter.
        log.debug("HTTP Request: %s %s %d", method, url, response.status)
        return response.status, answer
