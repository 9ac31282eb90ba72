"""The gate every use case passes: the person's language, access, and any failure turned into one line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from core import i18n, texts
from core.access import Access
from core.errors import StorageBusy, StorageFull
from core.ports import Store
from core.replies import Replies
from core.requests import Context

log = logging.getLogger(__name__)

REFUSAL_REPEAT_S = 3600.0  # tell a refused person at most once an hour


@dataclass
class Redelivery:
    """A request its platform delivers again unless it is taken (a Telegram webhook update not answered 200).

    While nothing of it is settled (no job persisted, nothing sent to anyone), a database out of reach is not
    the person's problem: the request is given back (`given_back`) for the platform to deliver again, instead
    of being answered "try again" and lost."""

    settled: bool = False
    given_back: StorageBusy | None = None


_REDELIVERY: ContextVar[Redelivery | None] = ContextVar("pixme_redelivery", default=None)


@contextlib.contextmanager
def redeliverable() -> Iterator[Redelivery]:
    """Handle a request, in this task and those it starts, as one its platform would deliver again."""
    redelivery = Redelivery()
    token = _REDELIVERY.set(redelivery)
    try:
        yield redelivery
    finally:
        _REDELIVERY.reset(token)


def settle() -> None:
    """The request being handled has had an effect (a job persisted, a message sent): it can no longer be given
    back for redelivery, or it would have it twice."""
    redelivery = _REDELIVERY.get()
    if redelivery is not None:
        redelivery.settled = True


def give_back(exc: BaseException) -> bool:
    """If the request being handled can still be delivered again and `exc` is the database out of reach,
    leave it to the platform (True); otherwise it must be answered here (False)."""
    redelivery = _REDELIVERY.get()
    if redelivery is None or redelivery.settled or not isinstance(exc, StorageBusy):
        return False
    redelivery.given_back = exc
    return True


class Gate:
    """Admission and failure handling, shared by every use case.

    `handling(ctx)` sets the language the task answers in (`language_for`), yields whether the person is
    let in, and turns any exception the use case raises into one polite line (logged with its traceback)."""

    def __init__(self, *, access: Access, store: Store, replies: Replies,
                 language_for: Callable[[Context], Awaitable[str]], remembers: bool = True) -> None:
        self.access = access
        self._store = store
        self._replies = replies
        self._language_for = language_for
        self._refused_at: dict[tuple[str, str], float] = {}
        self._blocked_chats: set[tuple[str, str]] = set()
        # False when processes share the database: a chat a worker elsewhere marked is read from the database.
        self.remembers = remembers

    @contextlib.asynccontextmanager
    async def handling(self, ctx: Context) -> AsyncIterator[bool]:
        """Admission, then the use case; nothing escapes: log it and tell the person once.

        From here on this task speaks the person's language (their /language choice, else their app's)."""
        try:
            i18n.set_language(await self._language_for(ctx))
            admitted = await self.admit(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the use case must still be entered (an async with), as one not admitted
            await self._failed(ctx, exc)
            yield False
            return
        try:
            yield admitted
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(ctx, exc)

    async def _failed(self, ctx: Context, exc: Exception) -> None:
        if give_back(exc):
            log.warning("request %s:%s: %s; left for the platform to deliver again", ctx.chat.platform,
                        ctx.message_id, exc)
            return
        log.error("request %s:%s failed", ctx.chat.platform, ctx.message_id, exc_info=exc)
        with contextlib.suppress(Exception):
            await self._replies.say(ctx, failure_message(exc))

    async def admit(self, ctx: Context) -> bool:
        """Access control: refused people hear why in private chats (once an hour); groups see silence."""
        key = (ctx.chat.platform, ctx.chat.id)
        if key in self._blocked_chats or (not self.remembers and await self._store.is_chat_blocked(*key)):
            self._blocked_chats.discard(key)  # they wrote to us again, so they unblocked the bot
            await self._store.set_chat_blocked(*key, False)
        if self.access.allows(ctx):
            return True
        person = (ctx.chat.platform, ctx.person.id)
        now = time.monotonic()
        if ctx.chat.is_private and now - self._refused_at.get(person, -REFUSAL_REPEAT_S) >= REFUSAL_REPEAT_S:
            self._refused_at[person] = now
            await self._replies.say(ctx, texts.NOT_ALLOWED)
        return False

    async def chat_blocked(self, platform: str, chat_id: str) -> None:
        """The platform refuses our messages to this chat for good (the person blocked the bot)."""
        self._blocked_chats.add((platform, chat_id))
        await self._store.set_chat_blocked(platform, chat_id, True)


def failure_message(exc: Exception) -> str:
    """The one line a person reads when their request failed on our side."""
    return storage_trouble(exc) or texts.INTERNAL_ERROR


def storage_trouble(exc: Exception) -> str | None:
    if isinstance(exc, StorageFull):
        return texts.STORAGE_FULL
    if isinstance(exc, StorageBusy):
        return texts.STORAGE_BUSY
    return None
