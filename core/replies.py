"""Where answers go: each front-end's Messenger by platform, and the one-line reply to a request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.requests import Context, Messenger, ReplyTarget

T = TypeVar("T")
LINK_WAIT_S = 2.0  # how long a reply or a press waits for a message that was just sent to be recorded
LINK_POLL_S = 0.1  # how often the database is asked again for a message another process is recording
# How long for a message another process sent: its record may wait out a database restart.
LINK_WAIT_ELSEWHERE_S = 5.0


class Replies:
    """The messenger registry. Front-ends attach theirs at start; use cases answer through it."""

    def __init__(self, *, sent_elsewhere: bool = False) -> None:
        self._messengers: dict[str, Messenger] = {}
        # Other processes send pictures too (workers sharing the database): their records are not awaitable here.
        self.sent_elsewhere = sent_elsewhere
        self._linking: set[asyncio.Future[Any]] = set()  # sends whose message is not linked to its picture yet

    def attach(self, platform: str, messenger: Messenger) -> None:
        self._messengers[platform] = messenger

    @property
    def platforms(self) -> set[str]:
        """The platforms whose front-end is running now."""
        return set(self._messengers)

    def get(self, platform: str) -> Messenger | None:
        """The platform's messenger, or None while its front-end isn't running (its jobs wait)."""
        return self._messengers.get(platform)

    def to(self, ctx: Context) -> Messenger:
        """The messenger of the platform a request came from (it is running: the request came through it)."""
        return self._messengers[ctx.chat.platform]

    @staticmethod
    def target(ctx: Context, reply_to: str | None = None) -> ReplyTarget:
        """Where an answer to `ctx` goes: its chat, as a reply to `reply_to` or to the request itself."""
        return ReplyTarget(ctx.chat.platform, ctx.chat.id, reply_to or ctx.message_id)

    def linking(self, send_and_link: Awaitable[T]) -> asyncio.Future[T]:
        """Run a picture's send and the record of which picture its message shows as one piece: a reply that
        arrives in between waits for it (`links_settled`) instead of finding nothing behind the message."""
        future = asyncio.ensure_future(send_and_link)
        self._linking.add(future)
        future.add_done_callback(self._linking.discard)
        return future

    async def links_settled(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for the sends under way to be linked to their pictures."""
        if self._linking:
            await asyncio.wait(set(self._linking), timeout=timeout)

    async def found(self, find: Callable[[], Awaitable[T | None]], timeout: float = LINK_WAIT_S) -> T | None:
        """`find()` (what a message shows); if it finds nothing, again once the sends under way here are linked,
        and where other processes send too, again every `LINK_POLL_S` for `LINK_WAIT_ELSEWHERE_S`: a picture a
        worker elsewhere has just sent may be replied to before that worker has recorded its message."""
        result = await find()
        if result is not None:
            return result
        await self.links_settled(timeout)
        result = await find()
        deadline = time.monotonic() + max(timeout, LINK_WAIT_ELSEWHERE_S)
        while result is None and self.sent_elsewhere and time.monotonic() < deadline:
            await asyncio.sleep(LINK_POLL_S)
            result = await find()
        return result

    async def say(self, ctx: Context, text: str) -> None:
        """One line of text in answer to the request."""
        await self.to(ctx).send_text(self.target(ctx), text)
