"""Durable, fair job running.

Every job is written to SQLite before any work starts and resumed after a restart. At most
`concurrency` jobs run at once and one per person. Waiting jobs are served in rounds (fair queuing):
a person's first waiting job belongs to the current round, their second to the next, and so on, so
one person's burst never holds up another person by more than one round.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from core.clock import SYSTEM_CLOCK, Clock
from core.metrics import FINAL_STATUSES, NO_OBSERVER, JobObserver
from core.ports import Job, JobStore, QueueCounts
from core.requests import ReplyTarget

log = logging.getLogger(__name__)

Work = Callable[[Job], Awaitable[None]]
PositionsChanged = Callable[[list[tuple[Job, int]]], Awaitable[None]]
Cancelled = Callable[[Job], Awaitable[None]]


class Requeue(Exception):
    """Raised by `work` to put its job back at the front of the line and pause dispatch for a while."""

    def __init__(self, pause_s: float) -> None:
        super().__init__(f"requeue after {pause_s:.1f}s")
        self.pause_s = pause_s


def _person(job: Job) -> tuple[str, str]:
    return (job.platform, job.user_id)


class Queue(Protocol):
    """The fair queue as the use cases see it: this module's `JobRunner` (one process) or
    `core.shared_jobs.SharedJobRunner` (jobs claimed from a database many processes share)."""

    async def submit(self, platform: str, chat_id: str, user_id: str, kind: str,
                     payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job: ...

    def enqueue(self, job: Job) -> None: ...

    async def resume(self, platforms: set[str] | None = None) -> int: ...

    async def counts(self, platform: str, chat_id: str, user_id: str) -> QueueCounts: ...

    def position(self, job_id: int) -> int | None: ...

    @property
    def queue_length(self) -> int: ...

    @property
    def running_count(self) -> int: ...

    async def cancel_for(self, platform: str, user_id: str, chat_id: str | None = None) -> list[Job]: ...

    async def wait_idle(self, timeout: float | None = None) -> None: ...

    async def aclose(self, grace_s: float = 0.0) -> None: ...

    async def release_held(self) -> None: ...


class JobRunner:
    def __init__(self, store: JobStore, work: Work, *, concurrency: int,
                 on_positions: PositionsChanged | None = None, on_cancelled: Cancelled | None = None,
                 on_crashed: Cancelled | None = None, clock: Clock = SYSTEM_CLOCK,
                 observer: JobObserver = NO_OBSERVER) -> None:
        self._store = store
        self._clock = clock
        self._observer = observer  # told about each job that ends here
        self._work = work
        self._concurrency = concurrency
        self._on_positions = on_positions  # waiting jobs whose place in line changed
        self._on_cancelled = on_cancelled  # each job `cancel_for` took out, once it is recorded
        self._on_crashed = on_crashed  # a job whose work raised, once it is recorded as failed
        self._waiting: list[Job] = []  # in serving order: by (round, arrival)
        self._keys: dict[int, tuple[int, int]] = {}  # job id -> (round, arrival), fixed at enqueue
        self._last_round: dict[tuple[str, str], int] = {}  # each person's latest round
        self._round = 0  # the round of the job dispatched last
        self._arrivals = itertools.count()
        self._running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._started: dict[int, float] = {}  # job id -> when it was dispatched (for its run time)
        self._busy: set[tuple[str, str]] = set()
        self._cancelled: set[int] = set()
        self._positions: dict[int, int] = {}
        self._paused_until = 0.0
        self._wake: asyncio.Task[None] | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._side_tasks: set[asyncio.Task[None]] = set()

    # -- submitting and resuming -------------------------------------------------------------

    async def submit(self, platform: str, chat_id: str, user_id: str, kind: str,
                     payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job:
        """Persist the job, then queue it. Once this returns, the job will be delivered."""
        job = await self._store.add_job(platform, chat_id, user_id, kind, payload, target, pictures=pictures)
        self._enqueue(job)
        return job

    def enqueue(self, job: Job) -> None:
        """Queue a job its caller has persisted itself (with the credit it holds, in one transaction)."""
        self._enqueue(job)

    async def resume(self, platforms: set[str] | None = None) -> int:
        """Queue every unfinished job (for `platforms`, or all) in the order they were accepted."""
        known = {j.id for j in self._waiting} | set(self._running)
        jobs = [j for j in await self._store.unfinished_jobs()
                if (platforms is None or j.platform in platforms) and j.id not in known]
        for job in jobs:
            self._enqueue(job)
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        return len(jobs)

    # -- what people ask about --------------------------------------------------------------

    def pending_for(self, platform: str, user_id: str) -> int:
        """How many of this person's jobs are waiting or running."""
        return self._count(lambda j: _person(j) == (platform, user_id))

    def pending_in_chat(self, platform: str, chat_id: str) -> int:
        return self._count(lambda j: (j.platform, j.chat_id) == (platform, chat_id))

    def _count(self, matches: Callable[[Job], bool]) -> int:
        return sum(1 for j in self._waiting if matches(j)) + sum(1 for j, _ in self._running.values() if matches(j))

    # Daily limits count pictures: a job making several (variants, a style pack) counts as that many.

    def pictures_for(self, platform: str, user_id: str) -> int:
        """Pictures this person's waiting and running jobs will make."""
        return self._pictures(lambda j: _person(j) == (platform, user_id))

    def pictures_in_chat(self, platform: str, chat_id: str) -> int:
        return self._pictures(lambda j: (j.platform, j.chat_id) == (platform, chat_id))

    @property
    def pictures_pending(self) -> int:
        """Pictures every waiting and running job will make."""
        return self._pictures(lambda j: True)

    def _pictures(self, matches: Callable[[Job], bool]) -> int:
        jobs = [*self._waiting, *(j for j, _ in self._running.values())]
        return sum(max(1, j.pictures) for j in jobs if matches(j))

    async def counts(self, platform: str, chat_id: str, user_id: str) -> QueueCounts:
        """What admission counts: this person's jobs, and the pictures waiting and running jobs will make."""
        return QueueCounts(self.pending_for(platform, user_id), self.pictures_pending,
                           self.pictures_for(platform, user_id), self.pictures_in_chat(platform, chat_id))

    def position(self, job_id: int) -> int | None:
        """1 for the next job to start; None if the job is running or unknown."""
        return next((i + 1 for i, j in enumerate(self._waiting) if j.id == job_id), None)

    def is_running(self, job_id: int) -> bool:
        return job_id in self._running

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    @property
    def running_count(self) -> int:
        return len(self._running)

    async def cancel_for(self, platform: str, user_id: str, chat_id: str | None = None) -> list[Job]:
        """Cancel this person's waiting and running jobs (in one chat, or everywhere)."""

        def mine(job: Job) -> bool:
            return _person(job) == (platform, user_id) and (chat_id is None or job.chat_id == chat_id)

        cancelled = [j for j in self._waiting if mine(j)]
        self._waiting = [j for j in self._waiting if not mine(j)]
        for job in cancelled:
            self._keys.pop(job.id, None)
        for job, task in list(self._running.values()):
            if mine(job):
                self._cancelled.add(job.id)
                task.cancel()
                cancelled.append(job)
        ran_from = {job.id: self._started.get(job.id) for job in cancelled}  # before the tasks end
        for job in cancelled:
            await self._store.update_job(job.id, status="cancelled")
            self._observe_end(replace(job, status="cancelled"), ran_from[job.id])
        self._dispatch()
        if self._on_cancelled is not None:
            for job in cancelled:
                await self._on_cancelled(job)
        return cancelled

    # -- lifecycle ---------------------------------------------------------------------------

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until nothing is waiting or running (tests and graceful shutdown)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def wait_reported(self) -> None:
        """Wait until the position reports already under way are done (tests: nothing more will be said)."""
        if self._side_tasks:
            await asyncio.wait(set(self._side_tasks))

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Stop: nothing new starts; jobs already running get `grace_s` seconds to finish, then are cancelled.
        Unfinished rows (waiting, or cut off) stay in the table and are resumed at the next start."""
        self._closing = True
        running = [task for _, task in self._running.values()]
        if running and grace_s > 0:
            log.info("waiting up to %.0f s for %d running job(s)", grace_s, len(running))
            grace = asyncio.ensure_future(self._clock.sleep(grace_s))
            finished = asyncio.ensure_future(asyncio.wait(running))  # cancelling this leaves the jobs be
            await asyncio.wait({grace, finished}, return_when=asyncio.FIRST_COMPLETED)
            grace.cancel()
            finished.cancel()
        tasks = [task for _, task in self._running.values()] + list(self._side_tasks)
        if self._wake is not None:
            tasks.append(self._wake)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def release_held(self) -> None:
        """Nothing to do here: in one process, the rows left unfinished are resumed at the next start."""

    # -- dispatching -------------------------------------------------------------------------

    def _enqueue(self, job: Job, *, front: bool = False) -> None:
        """Place `job` by its round; `front` (a retry after an outage) keeps the place it had."""
        key = self._keys.get(job.id)
        if key is None or not front:
            person = _person(job)
            job_round = max(self._round, self._last_round.get(person, -1) + 1)
            self._last_round[person] = job_round
            key = (job_round, next(self._arrivals))
            self._keys[job.id] = key
        bisect.insort(self._waiting, job, key=lambda j: self._keys[j.id])
        self._idle.clear()
        self._dispatch()

    def _dispatch(self) -> None:
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        if self._clock.now() >= self._paused_until:
            index = 0
            while len(self._running) < self._concurrency and index < len(self._waiting):
                job = self._waiting[index]
                if _person(job) in self._busy:
                    index += 1
                    continue
                del self._waiting[index]
                self._round = max(self._round, self._keys[job.id][0])
                self._busy.add(_person(job))
                task = loop.create_task(self._run(job), name=f"job-{job.id}")
                self._running[job.id] = (job, task)
                self._started[job.id] = self._clock.now()
        if not self._waiting and not self._running:
            self._idle.set()
        self._report_positions()

    def _report_positions(self) -> None:
        current = {job.id: i + 1 for i, job in enumerate(self._waiting)}
        changed = [(job, current[job.id]) for job in self._waiting if self._positions.get(job.id) != current[job.id]]
        self._positions = current
        if changed and self._on_positions is not None:
            self._side_task(self._on_positions(changed))

    def _side_task(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:
                log.exception("queue notification failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock.now() + seconds)
        if self._wake is not None:
            self._wake.cancel()
        self._wake = asyncio.get_running_loop().create_task(self._wake_at(self._paused_until), name="queue-wake")

    async def _wake_at(self, when: float) -> None:
        while (left := when - self._clock.now()) > 0:  # again if the wall clock was set back meanwhile
            await self._clock.sleep(left)
        self._dispatch()

    async def _run(self, job: Job) -> None:
        requeue: Requeue | None = None
        ended = False  # the work returned (or crashed): the job may have reached its final status
        try:
            await self._work(job)
            ended = True
        except Requeue as signal:
            requeue = signal
        except asyncio.CancelledError:
            if job.id not in self._cancelled:
                raise  # shutting down: the row stays unfinished and is resumed next time
        except Exception:
            # `work` handles expected failures itself; this is the last line of defence.
            log.exception("job %s crashed", job.id)
            await self._store.update_job(job.id, status="failed", error="crash")
            if self._on_crashed is not None:
                await self._on_crashed(job)
            ended = True
        finally:
            self._running.pop(job.id, None)
            ran_from = self._started.pop(job.id, None)
            self._busy.discard(_person(job))
            self._cancelled.discard(job.id)
        if requeue is not None and not self._closing:
            fresh = await self._store.get_job(job.id)
            if fresh is not None and fresh.status in ("queued", "running", "done"):
                self._pause(requeue.pause_s)
                self._enqueue(fresh, front=True)
                return
            ended = True  # recorded as over meanwhile (a chat that refuses us): nothing to put back
        if ended:  # before the queue can count as idle, so whoever waits for that sees it counted
            await self._report_end(job, ran_from)
        self._keys.pop(job.id, None)
        self._dispatch()

    async def _report_end(self, job: Job, ran_from: float | None) -> None:
        await report_end(self._store, self._observer, self._clock, job, ran_from)

    def _observe_end(self, job: Job, ran_from: float | None) -> None:
        observe_end(self._observer, self._clock, job, ran_from)


async def report_end(store: JobStore, observer: JobObserver, clock: Clock, job: Job, ran_from: float | None) -> None:
    """Tell the observer how the job ended, as recorded (not ended: it waits for the next start)."""
    try:
        recorded = await store.get_job(job.id)
    except Exception:  # the numbers miss one job; the job itself is as it was recorded
        log.warning("job %s: could not read how it ended", job.id, exc_info=True)
        return
    if recorded is not None and recorded.status in FINAL_STATUSES:
        observe_end(observer, clock, recorded, ran_from)


def observe_end(observer: JobObserver, clock: Clock, job: Job, ran_from: float | None) -> None:
    """The observer's numbers for a job that ended: how long it ran, and since it was accepted."""
    now = clock.now()
    observer.job_ended(job, ran_s=None if ran_from is None else now - ran_from, since_accepted_s=now - job.created_at)
