"""A clock the test moves: `sleep` waits until `advance` passes its time, so no test waits on real seconds."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class ManualClock:
    """Implements core.clock.Clock. Time stands still until `advance`; sleepers wake in time order."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        self._changed.set()
        await future

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wake(self) -> float | None:
        live = [when for when, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def wait_for_sleepers(self, n: int = 1, timeout: float = 10.0) -> None:
        """Wait (on the loop, not on this clock) until at least `n` sleeps are pending: the proof that the
        code under test reached its wait."""
        async with asyncio.timeout(timeout):
            while self.sleeping < n:
                self._changed.clear()
                await self._changed.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each due sleeper in order and letting it run before the next."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = max(self._now, when)
            future.set_result(None)
            for _ in range(5):  # let the woken task run up to its next await
                await asyncio.sleep(0)
        self._now = target


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait (on the loop) until `condition()` holds: for state the code under test changes without signalling."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polled: nothing signals it
            await asyncio.sleep(0.005)
