"""The fair queue when many processes share one database (PostgreSQL): jobs are claimed, not handed round.

A gateway persists jobs and announces them; a worker claims as many as it has free slots with one statement
(`FOR UPDATE SKIP LOCKED`: the earliest rounds of people with nothing claimed anywhere, then the oldest), runs
each under a lease its heartbeat renews, and ends it with the statement that records how it ended; a slot is
claimed again the moment its job leaves it. A worker killed outright stops renewing: once its lease runs out any
other worker claims the job and resumes it (a result already saved is delivered, not made again). At most
`concurrency` jobs run in each process, one per person across all of them (the database refuses a second claim
for a person).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol

from core.clock import SYSTEM_CLOCK, Clock
from core.errors import StorageBusy
from core.jobs import Cancelled, Requeue, Work, observe_end, report_end
from core.metrics import FINAL_STATUSES, NO_OBSERVER, JobObserver
from core.ports import UNFINISHED, Job, LeaseStore, QueueCounts
from core.requests import ReplyTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leases:
    """How claims are held: renewed every `heartbeat_s` for `lease_s`; idle workers look for work every `poll_s`
    even when no announcement arrives."""

    lease_s: float = 20.0
    heartbeat_s: float = 5.0
    poll_s: float = 2.0
    busy_retry_s: float = 0.5  # a job that found the database out of reach tries again this often


class LineNotes(Protocol):
    """The "#N in line" notes (core.queue_notes.QueueNotes) of the jobs this process submitted."""

    async def show(self, changes: list[tuple[Job, int]]) -> None: ...

    async def started(self, job: Job) -> None: ...

    async def clear(self, job: Job) -> None: ...


class SharedJobRunner:
    """`core.jobs.JobRunner`'s interface over a `LeaseStore`. With `works=False` (a gateway) it only persists
    and announces jobs; the workers elsewhere claim them."""

    def __init__(self, store: LeaseStore, work: Work, *, concurrency: int, owner: str, works: bool = True,
                 leases: Leases = Leases(), on_cancelled: Cancelled | None = None,
                 on_crashed: Cancelled | None = None, clock: Clock = SYSTEM_CLOCK,
                 observer: JobObserver = NO_OBSERVER, notes: LineNotes | None = None) -> None:
        self._store = store
        self._work = work
        self._concurrency = concurrency
        self.owner = owner  # this process's name on the claims it holds
        self.works = works
        self.leases = leases
        self._on_cancelled = on_cancelled
        self._on_crashed = on_crashed
        self._clock = clock
        self._observer = observer
        self._platforms: list[str] = []
        self._running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._started: dict[int, float] = {}
        self._cancelled: set[int] = set()  # ended by a /cancel or /forget (here or elsewhere): not an error
        self._paused_until = 0.0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False
        self._sizes = (0, 0)  # (waiting, claimed) across every process, as last read
        self._held: set[int] = set()  # claims this process holds (running, or cut off at shutdown)
        self._finishing: set[int] = set()  # jobs whose work returned: ended, their claim being given up
        # Places in line of the jobs submitted here, read from the database while they wait (their notes).
        self._notes = notes
        self._watched: dict[int, Job] = {}
        self._places: dict[int, int] = {}  # job id -> place (0: claimed, by a worker here or elsewhere)
        self._watching: asyncio.Task[None] | None = None
        self._line_changed = asyncio.Event()

    # -- submitting ----------------------------------------------------------------------------

    async def submit(self, platform: str, chat_id: str, user_id: str, kind: str,
                     payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job:
        job = await self._store.add_job(platform, chat_id, user_id, kind, payload, target, pictures=pictures)
        self.enqueue(job)
        return job

    def enqueue(self, job: Job) -> None:
        """The job is in the table already: wake a worker (here at once, elsewhere by NOTIFY)."""
        if self.works:
            self._wakeup.set()
            self._idle.clear()
        self._spawn(self._announce())
        if self._notes is not None and not self._closing:
            self._watched[job.id] = job
            self._line_changed.set()
            if self._watching is None:
                self._watching = asyncio.get_running_loop().create_task(self._watch_line(), name="line")

    async def _announce(self) -> None:
        try:
            await self._store.announce_jobs()
        except Exception:  # the workers' polling finds the job a moment later
            log.warning("could not announce a new job", exc_info=True)

    async def resume(self, platforms: set[str] | None = None) -> int:
        """Start claiming jobs for `platforms` (those this process can deliver to); returns how many wait now."""
        if not self.works or self._closing:
            return 0
        self._platforms = sorted(platforms or set())
        if not self._loops or all(t.get_name() != "claims" for t in self._loops):
            for name, loop in (("claims", self._claim_loop), ("heartbeat", self._heartbeat_loop)):
                self._spawn(loop(), name=name)
        waiting, _ = await self._store.queue_sizes()
        return waiting

    # -- what people ask about ------------------------------------------------------------------

    async def counts(self, platform: str, chat_id: str, user_id: str) -> QueueCounts:
        return await self._store.queue_counts(platform, chat_id, user_id)

    def position(self, job_id: int) -> int | None:
        """The place in line (1 = next) of a job submitted here that waits, across every process, as last read;
        None once it was claimed or ended, or for a job submitted elsewhere."""
        return self._places.get(job_id) or None

    async def _watch_line(self) -> None:
        """While jobs submitted here wait: read their places every `poll_s` and tell their notes of moves, of a
        start (wherever it was claimed) and of the end."""
        while True:
            self._line_changed.clear()
            places = None
            try:
                if self._watched:
                    places = await self._store.queue_positions(list(self._watched))
            except Exception as exc:  # the database is away: the notes wait
                log.debug("could not read places in line: %s", type(exc).__name__)
            if places is not None:
                await self._tell_notes(places)
            # A job submitted here is placed at once; the others' moves are read every `poll_s`.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.leases.poll_s if self._watched else None):
                    await self._line_changed.wait()

    async def _tell_notes(self, places: dict[int, int]) -> None:
        assert self._notes is not None
        moved: list[tuple[Job, int]] = []
        for job_id, job in list(self._watched.items()):
            place, before = places.get(job_id), self._places.get(job_id)
            if place is None:  # over
                self._watched.pop(job_id, None)
                self._places.pop(job_id, None)
                self._side_task(self._notes.clear(job))
                continue
            self._places[job_id] = place
            if place and place != before:
                moved.append((job, place))
            elif not place and before != 0 and job_id not in self._running:  # claimed elsewhere
                self._side_task(self._notes.started(job))
        if moved:
            self._side_task(self._notes.show(moved))

    def _side_task(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:  # a note is a courtesy: its failure is logged, never raised
                log.warning("could not update a place-in-line note", exc_info=True)

        self._spawn(guarded())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """A task of this runner's own, kept in `_loops` while it runs (cancelled and awaited at shutdown)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._loops.append(task)
        task.add_done_callback(self._loops.remove)

    def is_running(self, job_id: int) -> bool:
        return job_id in self._running

    @property
    def queue_length(self) -> int:
        return self._sizes[0]

    @property
    def running_count(self) -> int:
        return self._sizes[1]

    async def cancel_for(self, platform: str, user_id: str, chat_id: str | None = None) -> list[Job]:
        """Cancel this person's unfinished jobs wherever they wait or run (a worker elsewhere stops its own at its
        next heartbeat)."""
        cancelled = await self._store.cancel_jobs(platform, user_id, chat_id)
        for job in cancelled:
            here = self._running.get(job.id)
            ran_from = self._started.get(job.id)
            if here is not None:
                self._cancelled.add(job.id)
                here[1].cancel()
            self._observe_end(replace(job, status="cancelled"), ran_from)
        if self._on_cancelled is not None:
            for job in cancelled:
                await self._on_cancelled(job)
        return cancelled

    # -- lifecycle --------------------------------------------------------------------------------

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until this process runs nothing and found nothing more to claim."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def wait_reported(self) -> None:
        return None

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Stop claiming; running jobs get `grace_s`, then are cut off. Their claims stay until `release_held`
        (after sends under way were recorded) or until their leases run out."""
        self._closing = True
        for task in [t for t in self._loops if t.get_name() == "claims"]:
            task.cancel()
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
            self._watching = None
        running = [task for _, task in self._running.values()]
        if running and grace_s > 0:
            log.info("waiting up to %.0f s for %d running job(s)", grace_s, len(running))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await asyncio.wait(running)
        for _, task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*(t for _, t in self._running.values()), return_exceptions=True)

    async def release_held(self) -> None:
        """At the very end of a shutdown: give up the claims of jobs cut off, so another worker resumes them now
        rather than when their leases run out."""
        for task in list(self._loops):
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for job_id in list(self._held):
            with contextlib.suppress(Exception):
                await self._store.release_job(job_id, self.owner)
        self._held.clear()

    # -- claiming ---------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        stop_listening: Callable[[], Awaitable[None]] | None = None
        try:
            try:
                stop_listening = await self._store.listen_jobs(self._wakeup.set)
            except Exception:
                log.warning("cannot listen for new jobs; looking every %.1f s", self.leases.poll_s, exc_info=True)
            while True:
                self._wakeup.clear()
                found_all = await self._claim_what_fits()
                if found_all and not self._running:
                    self._idle.set()
                # After a failed claim (the database restarting), look again soon rather than at the next poll.
                wait_s = self.leases.busy_retry_s if found_all is None else self.leases.poll_s
                if self._paused_until > self._clock.now():
                    wait_s = max(0.01, min(wait_s, self._paused_until - self._clock.now()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wakeup.wait()
        finally:
            if stop_listening is not None:
                await stop_listening()

    async def _claim_what_fits(self) -> bool | None:
        """Claim jobs while this process has room, as many as there are free slots in each statement; True when
        the line had nothing more for it, None when the database could not be asked."""
        while (free := self._concurrency - len(self._running)) > 0:
            if self._clock.now() < self._paused_until:
                return False
            try:
                jobs = await self._store.claim_jobs(self.owner, self.leases.lease_s, self._platforms, free)
            except Exception as exc:
                log.warning("could not claim a job: %s", exc)
                return None
            if not jobs:
                return True
            self._idle.clear()
            for job in jobs:
                self._held.add(job.id)
                self._started[job.id] = self._clock.now()
                self._running[job.id] = (job, asyncio.get_running_loop().create_task(self._run(job),
                                                                                     name=f"job-{job.id}"))
        return False

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._clock.sleep(self.leases.heartbeat_s)
            try:
                self._sizes = await self._store.queue_sizes()
                ids = list(self._running)
                if not ids:
                    continue
                kept = await self._store.renew_leases(self.owner, ids, self.leases.lease_s)
            except Exception:
                log.warning("could not renew leases", exc_info=True)
                continue
            for job_id in ids:
                if job_id not in kept and job_id in self._running:
                    if job_id in self._finishing:
                        continue  # its work is done (it ended a moment ago): only its clean-up is left to run
                    # Cancelled elsewhere, or our lease ran out and another worker has it: stop, don't deliver.
                    log.info("job %s: no longer ours (cancelled, or its lease lapsed); stopping it", job_id)
                    self._cancelled.add(job_id)
                    self._held.discard(job_id)
                    self._running[job_id][1].cancel()

    async def _run(self, job: Job) -> None:
        ended = False
        try:
            while True:
                try:
                    await self._work(job)
                    self._finishing.add(job.id)
                    ended = True
                    break
                except Requeue as signal:  # an outage, a full disk: this process pauses, the job keeps its lease
                    self._paused_until = max(self._paused_until, self._clock.now() + signal.pause_s)
                    await self._clock.sleep(signal.pause_s)
                except StorageBusy as exc:
                    # The database went away mid-job (a restart, a failover): not the job's fault. It keeps its
                    # claim and goes on where it was once the database answers (what was saved is not made again);
                    # if the lease lapsed meanwhile, the heartbeat finds the job another worker's and stops it.
                    log.warning("job %s: the database is out of reach (%s); going on once it answers", job.id, exc)
                    await self._clock.sleep(self.leases.busy_retry_s)
                fresh = await self._reread(job)
                if fresh is None or fresh.status not in UNFINISHED:
                    ended = True
                    break
                job = fresh
        except asyncio.CancelledError:
            if job.id not in self._cancelled:
                raise  # shutting down: the claim is released once sends under way are recorded
        except Exception:
            log.exception("job %s crashed", job.id)
            try:
                await self._store.update_job(job.id, status="failed", error="crash")
                if self._on_crashed is not None:
                    await self._on_crashed(job)
            except Exception:  # the claim lapses and another worker tries it again
                log.warning("job %s: could not record the crash", job.id, exc_info=True)
            ended = True
        finally:
            self._running.pop(job.id, None)
            self._wakeup.set()  # a slot is free: claimed again now, not after the round trips below
            self._finishing.discard(job.id)
            ran_from = self._started.pop(job.id, None)
            cancelled = job.id in self._cancelled
            self._cancelled.discard(job.id)
            recorded: Job | None = None
            if not self._closing or cancelled or ended:
                self._held.discard(job.id)
                with contextlib.suppress(Exception):
                    # Already given up if it ended; what it reads back says how it ended, for the numbers below.
                    recorded = await self._store.release_job(job.id, self.owner)
        if ended:
            try:
                if recorded is None:
                    await self._report_end(job, ran_from)
                elif recorded.status in FINAL_STATUSES:
                    self._observe_end(recorded, ran_from)
            except Exception:
                log.warning("job %s: could not report how it ended", job.id, exc_info=True)

    async def _reread(self, job: Job) -> Job | None:
        """The job as the database has it now, waiting for the database to answer."""
        while True:
            try:
                return await self._store.get_job(job.id)
            except StorageBusy:
                await self._clock.sleep(self.leases.busy_retry_s)

    async def _report_end(self, job: Job, ran_from: float | None) -> None:
        await report_end(self._store, self._observer, self._clock, job, ran_from)

    def _observe_end(self, job: Job, ran_from: float | None) -> None:
        observe_end(self._observer, self._clock, job, ran_from)
