"""Telegram's send limits for every Bot API call, kept by every process together (PTB's `BaseRateLimiter`).

python-telegram-bot hands each call it makes to the application's rate limiter; this one reserves the call's moment
in the shared send slots (`core.send_slots`: PostgreSQL rows, or memory for one process on SQLite) under every
limit it falls under — the bot's messages a second, and the chat's (a group's 20 a minute, a private chat's one a
second) — waits for it, and calls. A 429 all the same is Telegram's word: its retry_after pushes those slots back
for every process, then the call is made again.

What counts is what Telegram limits: messages sent or edited in a chat (`send…` but chat actions, `edit…`, copies
and forwards). Everything else (answers to button presses and inline queries, getFile, chat actions) goes at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from core.config import TelegramSettings
from core.ports import SendSlots
from core.send_slots import LocalSlots, SendRule

log = logging.getLogger(__name__)

BOT_SCOPE = "bot"
_COUNTED = re.compile(r"^(send(?!ChatAction)|edit|copyMessage|forwardMessage)", re.IGNORECASE)
_Result = bool | dict[str, Any] | list[dict[str, Any]]


def counted(endpoint: str) -> bool:
    """Whether a Bot API method sends (or edits) a message, which Telegram's limits count."""
    return bool(_COUNTED.match(endpoint))


class SharedRateLimiter(BaseRateLimiter[int]):
    """Reserves each message's moment in the send slots shared by every process, then sends; waits a 429 out."""

    def __init__(self, settings: TelegramSettings, slots: SendSlots | None) -> None:
        self.settings = settings
        self._slots: SendSlots = slots if slots is not None else LocalSlots()
        self._fallback = LocalSlots()  # while the database cannot be reached: this process alone keeps the limits

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def rules(self, endpoint: str, chat_id: object) -> list[SendRule]:
        """The limits one call falls under: none unless it sends to a chat; the bot's, and the chat's own."""
        if chat_id is None or not counted(endpoint):
            return []
        s = self.settings
        chat = str(chat_id)
        try:
            group = int(chat) < 0  # groups, supergroups and channels have negative ids
        except ValueError:
            group = True  # "@channelname"
        found = [SendRule(BOT_SCOPE, s.bot_messages, s.bot_window_s)]
        found.append(SendRule(f"chat:{chat}", s.group_messages, s.group_window_s) if group
                     else SendRule(f"chat:{chat}", s.chat_messages, s.chat_window_s))
        return [rule for rule in found if rule.limit > 0]

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, _Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> _Result:
        rules = self.rules(endpoint, data.get("chat_id"))
        retries = self.settings.flood_retries if rate_limit_args is None else rate_limit_args
        attempt = 0
        while True:
            if rules:
                wait = await self._reserve(rules)
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = _seconds(exc)
                scopes = [rule.scope for rule in rules] or [BOT_SCOPE]
                log.warning("telegram: 429 on %s; every process waits %.0f s in %s", endpoint, seconds,
                            ", ".join(scopes))
                await self._push(scopes, seconds)
                if attempt >= retries:
                    raise
                attempt += 1
                if not rules:  # nothing reserved for it: wait here
                    await asyncio.sleep(seconds)

    async def _reserve(self, rules: list[SendRule]) -> float:
        try:
            return await self._slots.reserve_send(rules)
        except Exception as exc:  # the database is away: keep the limits in this process rather than stop sending
            log.warning("telegram: send slots unavailable (%s); keeping the limits in this process alone",
                        type(exc).__name__)
            return await self._fallback.reserve_send(rules)

    async def _push(self, scopes: list[str], seconds: float) -> None:
        await self._fallback.push_sends(scopes, seconds)
        try:
            await self._slots.push_sends(scopes, seconds)
        except Exception as exc:
            log.warning("telegram: could not share a 429's wait (%s)", type(exc).__name__)


def _seconds(exc: RetryAfter) -> float:
    """retry_after in seconds (PTB gives an int or a timedelta, by its settings)."""
    value = exc.retry_after
    return float(value) if isinstance(value, int | float) else float(value.total_seconds())
