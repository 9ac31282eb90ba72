"""Send slots: a platform's send limits ("20 messages a minute in one group") kept by every process together.

Each limit is a scope ("bot", "chat:-100123") allowing `limit` sends in any `window_s`. A send reserves its moment
in every scope it falls under at once: the earliest time no scope's window would hold one too many, and no sooner
than the moment any of them was pushed back to (a 429's retry_after). The reservation is written before anyone
sends, so the next caller, in this process or another, plans after it. With PostgreSQL the scopes are rows locked
for the reservation (storage/postgres.py); one process on SQLite keeps them in memory (`LocalSlots`), with the same
arithmetic (`plan`).

A window is kept a little wider than the platform's (`MARGIN`, `PAD_S`): a send that leaves a moment after its slot
(a busy event loop, an upload being encoded) must not make a later one arrive inside the platform's window.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MARGIN = 0.05  # each window is kept 5 % wider than the platform's …
PAD_S = 0.1  # … and 100 ms more


@dataclass(frozen=True)
class SendRule:
    """At most `limit` sends in any `window_s` seconds within `scope`."""

    scope: str
    limit: int
    window_s: float

    @property
    def kept_window_s(self) -> float:
        return self.window_s * (1 + MARGIN) + PAD_S


@dataclass
class Slot:
    """A scope's state: its reservations still inside a window (in time order), and when a 429 said to wait until."""

    sent: list[float] = field(default_factory=list)
    blocked_until: float = 0.0

    def to_json(self) -> str:
        return json.dumps([round(t, 4) for t in self.sent])

    @classmethod
    def from_row(cls, sent: str, blocked_until: float) -> Slot:
        return cls([float(t) for t in json.loads(sent or "[]")], float(blocked_until))

    def idle_after(self, rule: SendRule) -> float:
        """From then on the row says nothing a reservation would need (it may be deleted)."""
        return max(self.blocked_until, (self.sent[-1] + rule.kept_window_s) if self.sent else 0.0)


def plan(rules: Sequence[SendRule], slots: dict[str, Slot], now: float) -> float:
    """Reserve one send under every rule: its moment (>= now), recorded in `slots` (changed in place).

    A scope's reservations need not come in order: a private chat waiting its second must not hold the bot's other
    chats back, so a later reservation may take a moment before an earlier one's, where every window has room."""
    for rule in rules:
        slot = slots.setdefault(rule.scope, Slot())
        del slot.sent[:bisect.bisect_right(slot.sent, now - rule.kept_window_s)]  # they share no window with `now`
    at = max([now, *(slots[rule.scope].blocked_until for rule in rules)])
    while True:
        later = max(_earliest(slots[rule.scope].sent, at, rule) for rule in rules)
        if later <= at:
            break
        at = later
    for rule in rules:
        bisect.insort(slots[rule.scope].sent, at)
    return at


def _earliest(sent: list[float], start: float, rule: SendRule) -> float:
    """A moment from `start` on when `sent` (sorted) has room for one more in every window: `start` itself if it
    fits between what is reserved (another chat's send is not held back by one waiting its turn), else after the
    last reservation, once the window has room. Gaps in a backlog are left unused: planning stays cheap however
    long the backlog."""
    if _fits(sent, start, rule.limit, rule.kept_window_s):
        return start
    tail = max(start, sent[-1])
    if len(sent) >= rule.limit:
        tail = max(tail, sent[-rule.limit] + rule.kept_window_s)
    return tail


def _fits(sent: list[float], t: float, limit: int, window: float) -> bool:
    """Whether one more at `t` leaves every window [s, s + window) that would hold it with at most `limit`."""
    first = bisect.bisect_right(sent, t - window)
    starts = [*sent[first:bisect.bisect_right(sent, t)], t]
    for s in starts:
        held = bisect.bisect_left(sent, s + window) - bisect.bisect_left(sent, s) + 1
        if held > limit:
            return False
    return True


def push(scopes: Sequence[str], slots: dict[str, Slot], until: float) -> None:
    """Nothing more is sent in these scopes before `until` (the platform said so)."""
    for scope in scopes:
        slot = slots.setdefault(scope, Slot())
        slot.blocked_until = max(slot.blocked_until, until)


class LocalSlots:
    """Send slots for one process (SQLite): in memory, on this process's monotonic clock."""

    PRUNE_AT = 10_000  # scopes kept before the idle ones are forgotten

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slots: dict[str, Slot] = {}
        self._idle: dict[str, float] = {}

    async def reserve_send(self, rules: Sequence[SendRule]) -> float:
        now = self._clock()
        if len(self._slots) > self.PRUNE_AT:
            for scope in [s for s, idle in self._idle.items() if idle < now]:
                self._slots.pop(scope, None)
                self._idle.pop(scope, None)
        at = plan(rules, self._slots, now)
        for rule in rules:
            self._idle[rule.scope] = self._slots[rule.scope].idle_after(rule)
        return at - now

    async def push_sends(self, scopes: Sequence[str], seconds: float) -> None:
        now = self._clock()
        push(scopes, self._slots, now + seconds)
        for scope in scopes:
            self._idle[scope] = max(self._idle.get(scope, 0.0), now + seconds)
