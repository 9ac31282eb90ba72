"""The fair queue (core.jobs.JobRunner) on its own: an in-memory job table, work the test releases by hand,
and a clock the test moves. Nothing here waits on real seconds."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from core.jobs import JobRunner, Requeue
from core.metrics import NoObserver
from core.ports import Job, JobStatus
from core.requests import ReplyTarget
from tests.clock import ManualClock


class MemoryJobs:
    """The JobStore protocol in a dict."""

    def __init__(self) -> None:
        self.rows: dict[int, Job] = {}

    async def add_job(self, platform: str, chat_id: str, user_id: str, kind: str,
                      payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job:
        job = Job(len(self.rows) + 1, platform, chat_id, user_id, kind, payload, target, "queued",
                  pictures=pictures)
        self.rows[job.id] = job
        return job

    async def get_job(self, job_id: int) -> Job | None:
        return self.rows.get(job_id)

    async def update_job(self, job_id: int, *, status: JobStatus | None = None, result_node: int | None = None,
                         delivered_message: str | None = None, error: str | None = None,
                         attempt: bool = False, result_nodes: tuple[int, ...] | None = None,
                         pictures: int | None = None) -> None:
        job = self.rows[job_id]
        self.rows[job_id] = dataclasses.replace(
            job, status=status or job.status, error=error or job.error, attempts=job.attempts + attempt)

    async def unfinished_jobs(self) -> list[Job]:
        return [j for j in self.rows.values() if j.status in ("queued", "running")]


class Work:
    """Each job runs until the test releases it (or tells it to requeue); the order jobs start is recorded."""

    def __init__(self, store: MemoryJobs) -> None:
        self.store = store
        self.started: list[str] = []  # payload names, in the order their work began
        self._gates: dict[str, asyncio.Future[float | None]] = {}
        self._changed = asyncio.Event()

    async def __call__(self, job: Job) -> None:
        name = job.payload["name"]
        self.started.append(name)
        gate: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._gates[name] = gate
        self._changed.set()
        pause = await gate
        if pause is not None:
            raise Requeue(pause)
        await self.store.update_job(job.id, status="done")

    async def wait_started(self, n: int) -> None:
        """The positive signal that dispatch happened: `n` jobs have begun their work."""
        async with asyncio.timeout(5):
            while len(self.started) < n:
                self._changed.clear()
                await self._changed.wait()

    async def run_through(self, n: int) -> None:
        """Let `n` jobs start and finish one after another, each released only once it has started."""
        for i in range(n):
            await self.wait_started(i + 1)
            if not self._gates[self.started[i]].done():
                self.finish(self.started[i])

    def finish(self, name: str) -> None:
        self._gates[name].set_result(None)

    def requeue(self, name: str, pause_s: float) -> None:
        self._gates[name].set_result(pause_s)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> MemoryJobs:
    return MemoryJobs()


@pytest.fixture
def work(store: MemoryJobs) -> Work:
    return Work(store)


async def submit(runner: JobRunner, person: str, name: str) -> Job:
    return await runner.submit("test", f"chat-{person}", person, "style", {"name": name},
                               ReplyTarget("test", f"chat-{person}"))


async def settled() -> None:
    """Let every task the runner just created reach its first wait (no time passes on any clock)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_persons_second_request_waits_behind_everyones_first(store: MemoryJobs, work: Work,
                                                                       clock: ManualClock) -> None:
    runner = JobRunner(store, work, concurrency=1, clock=clock)
    await submit(runner, "ann", "ann-1")  # starts at once
    await work.wait_started(1)
    for name in ("ann-2", "ann-3"):
        await submit(runner, "ann", name)
    await submit(runner, "bob", "bob-1")
    await submit(runner, "cat", "cat-1")
    await submit(runner, "bob", "bob-2")
    positions = {j.payload["name"]: runner.position(j.id) for j in store.rows.values()}
    assert positions == {"ann-1": None, "bob-1": 1, "cat-1": 2, "ann-2": 3, "bob-2": 4, "ann-3": 5}
    await work.run_through(6)
    await runner.wait_idle(5)
    assert work.started == ["ann-1", "bob-1", "cat-1", "ann-2", "bob-2", "ann-3"]
    assert all(j.status == "done" for j in store.rows.values())


async def test_a_latecomer_joins_the_current_round_not_the_end_of_the_line(store: MemoryJobs, work: Work,
                                                                           clock: ManualClock) -> None:
    runner = JobRunner(store, work, concurrency=1, clock=clock)
    for name in ("ann-1", "ann-2", "ann-3"):
        await submit(runner, "ann", name)
    await work.wait_started(1)
    await submit(runner, "bob", "bob-1")  # ann's burst came first, yet bob is next
    assert runner.position(4) == 1
    work.finish("ann-1")
    await work.wait_started(2)
    assert work.started == ["ann-1", "bob-1"]
    for name in ("bob-1", "ann-2"):
        work.finish(name)
        await work.wait_started(len(work.started) + 1)
    work.finish("ann-3")
    await runner.wait_idle(5)
    assert work.started == ["ann-1", "bob-1", "ann-2", "ann-3"]


async def test_one_job_per_person_at_a_time_within_the_concurrency_limit(store: MemoryJobs, work: Work,
                                                                         clock: ManualClock) -> None:
    runner = JobRunner(store, work, concurrency=2, clock=clock)
    await submit(runner, "ann", "ann-1")
    await submit(runner, "ann", "ann-2")
    await submit(runner, "bob", "bob-1")
    await submit(runner, "cat", "cat-1")
    await work.wait_started(2)
    await settled()
    assert work.started == ["ann-1", "bob-1"], "two at once, and never two of ann's"
    assert runner.running_count == 2 and runner.queue_length == 2
    work.finish("bob-1")  # a free slot; ann is still busy, so cat's job goes ahead of ann's second
    await work.wait_started(3)
    assert work.started[-1] == "cat-1"
    await settled()
    assert runner.running_count == 2 and runner.position(2) == 1
    work.finish("ann-1")
    await work.wait_started(4)
    assert work.started[-1] == "ann-2"
    work.finish("cat-1")
    work.finish("ann-2")
    await runner.wait_idle(5)
    assert runner.pending_for("test", "ann") == 0


async def test_cancel_drops_waiting_and_running_jobs_of_that_person_only(store: MemoryJobs, work: Work,
                                                                         clock: ManualClock) -> None:
    runner = JobRunner(store, work, concurrency=1, clock=clock)
    await submit(runner, "ann", "ann-1")
    await submit(runner, "ann", "ann-2")
    await submit(runner, "bob", "bob-1")
    await work.wait_started(1)
    assert runner.pending_for("test", "ann") == 2
    cancelled = await runner.cancel_for("test", "ann")
    assert sorted(j.payload["name"] for j in cancelled) == ["ann-1", "ann-2"]
    await work.wait_started(2)  # the slot ann's running job held goes to bob
    assert work.started == ["ann-1", "bob-1"]
    assert runner.pending_for("test", "ann") == 0
    work.finish("bob-1")
    await runner.wait_idle(5)
    assert [store.rows[i].status for i in (1, 2, 3)] == ["cancelled", "cancelled", "done"]


async def test_each_cancelled_job_is_told_once_it_is_recorded(store: MemoryJobs, work: Work,
                                                                clock: ManualClock) -> None:
    told: list[tuple[str, str]] = []  # (name, its stored status when told)

    async def on_cancelled(job: Job) -> None:
        told.append((job.payload["name"], store.rows[job.id].status))

    runner = JobRunner(store, work, concurrency=1, on_cancelled=on_cancelled, clock=clock)
    await submit(runner, "ann", "ann-1")
    await submit(runner, "ann", "ann-2")
    await submit(runner, "bob", "bob-1")
    await work.wait_started(1)
    await runner.cancel_for("test", "ann")
    assert sorted(told) == [("ann-1", "cancelled"), ("ann-2", "cancelled")], "bob's job is not touched"
    await work.run_through(2)
    await runner.wait_idle(5)
    assert len(told) == 2


async def test_a_requeued_job_keeps_its_place_and_dispatch_pauses_until_the_clock_says(
        store: MemoryJobs, work: Work, clock: ManualClock) -> None:
    runner = JobRunner(store, work, concurrency=1, clock=clock)
    await submit(runner, "ann", "ann-1")
    await submit(runner, "bob", "bob-1")
    await work.wait_started(1)
    work.requeue("ann-1", 30.0)  # an outage: ann's job goes back to the front, nothing starts for 30 s
    await clock.wait_for_sleepers(1)  # the proof that the runner is now waiting out its pause
    assert clock.next_wake() == clock.now() + 30.0
    assert runner.position(1) == 1 and runner.position(2) == 2
    assert runner.running_count == 0 and work.started == ["ann-1"], "paused: nothing was dispatched"
    await clock.advance(29.0)
    assert runner.running_count == 0 and work.started == ["ann-1"], "still paused a second before the end"
    await clock.advance(1.0)
    await work.wait_started(2)
    assert work.started == ["ann-1", "ann-1"], "the requeued job went first, ahead of bob's"
    work.finish("ann-1")
    await work.wait_started(3)
    work.finish("bob-1")
    await runner.wait_idle(5)
    assert work.started == ["ann-1", "ann-1", "bob-1"]


async def test_resume_queues_unfinished_jobs_in_the_order_accepted(store: MemoryJobs, work: Work,
                                                                   clock: ManualClock) -> None:
    for person, name in (("ann", "ann-1"), ("ann", "ann-2"), ("bob", "bob-1")):
        await store.add_job("test", person, person, "style", {"name": name}, ReplyTarget("test", person))
    runner = JobRunner(store, work, concurrency=1, clock=clock)
    assert await runner.resume() == 3
    await work.run_through(3)
    await runner.wait_idle(5)
    assert work.started == ["ann-1", "bob-1", "ann-2"]
    await runner.aclose()


async def test_at_shutdown_running_jobs_get_the_grace_period_and_the_rest_are_handed_back(
        store: MemoryJobs, work: Work, clock: ManualClock) -> None:
    runner = JobRunner(store, work, concurrency=2, clock=clock)
    for person in ("ann", "bob", "cat"):
        await submit(runner, person, f"{person}-1")
    await work.wait_started(2)  # cat's waits for a slot
    closing = asyncio.create_task(runner.aclose(grace_s=7))
    await clock.wait_for_sleepers()
    work.finish("ann-1")  # finishes within the grace period
    await clock.advance(7)
    await asyncio.wait_for(closing, 5)
    assert work.started == ["ann-1", "bob-1"], "nothing new starts once closing"
    assert [store.rows[i].status for i in (1, 2, 3)] == ["done", "queued", "queued"]
    # Bob's was cut off and Cat's never started: both are still unfinished, for the next start to resume.
    assert [j.payload["name"] for j in await store.unfinished_jobs()] == ["bob-1", "cat-1"]


async def test_each_job_that_ends_is_reported_once_as_recorded(store: MemoryJobs, work: Work,
                                                                clock: ManualClock) -> None:
    ended: list[tuple[str, str, float | None]] = []

    class Observer(NoObserver):
        def job_ended(self, job: Job, *, ran_s: float | None, since_accepted_s: float) -> None:
            ended.append((job.payload["name"], job.status, ran_s))

    runner = JobRunner(store, work, concurrency=1, clock=clock, observer=Observer())
    await submit(runner, "ann", "ann-1")
    await submit(runner, "bob", "bob-1")
    await work.wait_started(1)
    await clock.advance(3)
    work.finish("ann-1")  # recorded "done": its delivery is still to come (at the next start), so not an end
    await work.wait_started(2)
    await clock.advance(2)
    await runner.cancel_for("test", "bob")  # ends here: reported with the time it ran by the queue's clock
    await runner.wait_idle(5)
    assert ended == [("bob-1", "cancelled", 2.0)]
