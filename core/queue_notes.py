"""The "you're #N in line" note a waiting job shows: sent after a short wait, edited as the line moves,
turned into "working…" when the job starts, deleted when it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from core import i18n, texts
from core.breaker import CircuitBreaker
from core.clock import Clock
from core.ports import Job
from core.replies import Replies
from core.requests import Messenger


@dataclass
class _Note:
    message_id: str
    shown: int  # the place it says


class QueueNotes:
    """Shows each waiting job its place in line. `position(job_id)` says where a job is now (None once it
    started or left); the queue calls `show` with the jobs whose place changed."""

    def __init__(self, *, replies: Replies, breaker: CircuitBreaker, clock: Clock, after_s: float,
                 position: Callable[[int], int | None]) -> None:
        self.replies = replies
        self.breaker = breaker
        self.clock = clock
        self.after_s = after_s  # a wait shorter than this gets no note
        self.position = position
        self._notes: dict[int, _Note] = {}
        self._lock = asyncio.Lock()  # one notifier at a time, so notes are never doubled

    async def show(self, changes: list[tuple[Job, int]]) -> None:
        if any(job.id not in self._notes for job, _ in changes):
            # A wait shorter than this needs no note: it would only flash "#1 in line" and vanish.
            await self.clock.sleep(self.after_s)
        async with self._lock:
            for job, _ in changes:
                await self._show(job)

    async def _show(self, job: Job) -> None:
        messenger = self.replies.get(job.platform)
        # The line may have moved while earlier notes were sent: act on where the job is now.
        position = self.position(job.id)
        # A job back in line after an outage was already told its request is saved.
        if messenger is None or position is None or self.breaker.is_open or job.attempts:
            return
        shown = self._notes.get(job.id)
        with i18n.speaking(job.payload.get("lang")):  # its owner's language, whoever moved the line
            note = texts.in_line(position)
        if shown is None:
            message_id = await messenger.send_text(job.target, note)
            if self.position(job.id) is None:  # it started (or finished) meanwhile
                with contextlib.suppress(Exception):
                    await messenger.delete(job.target, message_id)
                return
            self._notes[job.id] = _Note(message_id, position)
        elif position != shown.shown and (position <= 5 or position <= shown.shown * 0.8):
            # Every step near the front; further back, only noticeable moves (chat edit limits).
            shown.shown = position
            with contextlib.suppress(Exception):
                await messenger.edit_text(job.target, shown.message_id, note)

    async def working(self, messenger: Messenger, job: Job) -> None:
        """The job started: its note says so."""
        shown = self._notes.get(job.id)
        if shown is not None:
            with contextlib.suppress(Exception):
                await messenger.edit_text(job.target, shown.message_id, texts.WORKING)

    async def started(self, job: Job) -> None:
        """The job started in another process (a worker elsewhere claimed it): its note here says so."""
        messenger = self.replies.get(job.platform)
        if messenger is not None:
            await self.working(messenger, job)

    async def clear(self, job: Job) -> None:
        """The job ended (or was cancelled): its note goes."""
        shown = self._notes.pop(job.id, None)
        messenger = self.replies.get(job.platform)
        if shown is not None and messenger is not None:
            with contextlib.suppress(Exception):
                await messenger.delete(job.target, shown.message_id)
