"""Durable job running: persisted before work starts, one job per person at a time, a global cap on
concurrent model calls, and resumption of whatever was unfinished when the process last stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.ports import Job, JobStore
from core.requests import ReplyTarget

log = logging.getLogger(__name__)

Work = Callable[[Job], Awaitable[None]]


class JobRunner:
    """Runs `work(job)` for every submitted job, in the background, surviving restarts.

    `work` owns the job's status transitions and delivery; the runner owns ordering and limits:
    a person's jobs run one after another (FIFO), and at most `concurrency` run at once overall.
    """

    def __init__(self, store: JobStore, work: Work, *, concurrency: int) -> None:
        self._store = store
        self._work = work
        self._slots = asyncio.Semaphore(concurrency)
        # Per-person lock plus how many jobs hold or await it, so idle people's locks are dropped.
        self._person_locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(self, platform: str, chat_id: str, user_id: str, kind: str,
                     payload: dict[str, Any], target: ReplyTarget) -> Job:
        """Persist the job, then start it. Once this returns, the job will be delivered."""
        job = await self._store.add_job(platform, chat_id, user_id, kind, payload, target)
        self._schedule(job)
        return job

    async def resume(self, platforms: set[str] | None = None) -> int:
        """Restart every unfinished job (for `platforms`, or all); returns how many."""
        jobs = [j for j in await self._store.unfinished_jobs() if platforms is None or j.platform in platforms]
        for job in jobs:
            self._schedule(job)
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        return len(jobs)

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no job is running or queued (tests and graceful shutdown)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop running jobs; their rows stay unfinished and are resumed at the next start."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _schedule(self, job: Job) -> None:
        if self._closing:
            return
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        key = (job.platform, job.user_id)
        lock, users = self._person_locks.get(key, (asyncio.Lock(), 0))
        self._person_locks[key] = (lock, users + 1)
        try:
            async with lock, self._slots:
                await self._work(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            # `work` handles expected failures itself; this is the last line of defence.
            log.exception("job %s crashed", job.id)
            await self._store.update_job(job.id, status="failed", error="crash")
        finally:
            lock, users = self._person_locks[key]
            if users <= 1:
                del self._person_locks[key]
            else:
                self._person_locks[key] = (lock, users - 1)
