"""Many workers on one PostgreSQL (part 11): claims per second and claim latency, and total time for 500 jobs with
a 2 s engine on 1, 2 and 4 worker processes against the ideal.

A throwaway PostgreSQL server is started in a temporary folder (tests/postgres_cluster.py). Workers are
`core.shared_jobs.SharedJobRunner`s over `storage.postgres.PostgresStore`, each with its own connection pool as
a `pixme run --role worker` has; their work is the engine's wait (none, or 2 s) and then recording the delivery,
which ends the job and gives up its claim in one statement. The platforms and the model are left out: what is
measured is the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.common import ROOT, Target, summary_ms
from core.ports import Job
from core.shared_jobs import Leases, SharedJobRunner
from storage.postgres import PostgresStore

PLATFORM = "bench"
LEASES = Leases(lease_s=20.0, heartbeat_s=5.0, poll_s=0.5)


class _TimedClaims:
    """The store, with how long each claim took noted (the runner sees the store it was given)."""

    def __init__(self, store: PostgresStore, latencies: list[float]) -> None:
        self._store = store
        self._latencies = latencies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim_jobs(self, owner: str, lease_s: float, platforms: Sequence[str], limit: int) -> list[Job]:
        began = time.perf_counter()
        jobs = await self._store.claim_jobs(owner, lease_s, platforms, limit)
        took = time.perf_counter() - began
        self._latencies.extend(took for _ in jobs)
        return jobs


def _work(store: PostgresStore, engine_s: float, done: Callable[[], None]) -> Callable[[Job], Any]:
    async def work(job: Job) -> None:
        if engine_s:
            await asyncio.sleep(engine_s)
        await store.update_job(job.id, status="delivered", delivered_message=f"m{job.id}")
        done()

    return work


async def _add_jobs(store: PostgresStore, n: int) -> None:
    """`n` jobs from `n` people, in one transaction, then the announcement that wakes the workers."""
    now = time.time()
    async with store._pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, created_at, updated_at) "
            "VALUES ($1, $2, $2, 'style', '{}', $3, 'queued', $4, $4)",
            [(PLATFORM, f"p{i}", f'{{"platform": "{PLATFORM}", "chat_id": "p{i}", "reply_to": null}}', now)
             for i in range(n)])
    await store.announce_jobs()


async def _delivered(store: PostgresStore) -> int:
    return int(await store._pool.fetchval("SELECT COUNT(*) FROM jobs WHERE status = 'delivered'"))


async def claims(url: str, jobs: int, workers: int = 8, concurrency: int = 8) -> dict[str, Any]:
    """`workers` runners in this process (own pools), an instant engine: claims per second and claim latency."""
    latencies: list[float] = []
    stores = [await PostgresStore.open(url, pool_size=concurrency + 2) for _ in range(workers)]
    finished = asyncio.Event()
    count = [0]

    def done() -> None:
        count[0] += 1
        if count[0] >= jobs:
            finished.set()

    runners = [SharedJobRunner(_TimedClaims(s, latencies), _work(s, 0.0, done),  # type: ignore[arg-type]
                               concurrency=concurrency, owner=f"w{i}", leases=LEASES)
               for i, s in enumerate(stores)]
    try:
        for runner in runners:
            await runner.resume({PLATFORM})
        began = time.perf_counter()
        await _add_jobs(stores[0], jobs)
        await asyncio.wait_for(finished.wait(), 600)
        seconds = time.perf_counter() - began
    finally:
        for runner in runners:
            await runner.aclose()
            await runner.release_held()
        for s in stores:
            await s.close()
    return {"jobs": jobs, "workers": workers, "concurrency": concurrency, "seconds": round(seconds, 3),
            "claims_per_s": round(jobs / seconds, 1), "claim_latency": summary_ms(latencies)}


async def _worker_process(url: str, engine_s: float, concurrency: int) -> None:
    """A child: one worker, claiming until told to stop (stdin closes)."""
    store = await PostgresStore.open(url, pool_size=concurrency + 2)
    runner = SharedJobRunner(store, _work(store, engine_s, lambda: None), concurrency=concurrency,
                             owner=f"proc{os.getpid()}", leases=LEASES)
    await runner.resume({PLATFORM})
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await runner.aclose()
    await runner.release_held()
    await store.close()


async def processes(url: str, jobs: int, procs: int, engine_s: float, concurrency: int) -> dict[str, Any]:
    """`jobs` jobs over `procs` worker processes of `concurrency` each: total time against the ideal."""
    store = await PostgresStore.open(url)
    children = [subprocess.Popen([sys.executable, "-m", "benchmarks.workers_bench", "--worker", url,  # noqa: ASYNC220
                                  str(engine_s), str(concurrency)], cwd=ROOT, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.to_thread(child.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"worker process did not start: {line!r}")
        await store._pool.execute("DELETE FROM jobs")
        began = time.perf_counter()
        await _add_jobs(store, jobs)
        while await _delivered(store) < jobs:  # noqa: ASYNC110 - counting other processes' rows
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - began
    finally:
        for child in children:
            with contextlib.suppress(Exception):
                assert child.stdin is not None
                child.stdin.close()
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        await store.close()
    ideal = jobs * engine_s / (procs * concurrency)
    return {"processes": procs, "concurrency": concurrency, "jobs": jobs, "engine_s": engine_s,
            "seconds": round(seconds, 3), "ideal_s": round(ideal, 3), "vs_ideal": round(seconds / ideal, 3)}


async def _main(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.postgres_cluster import PostgresCluster, unavailable

    reason = unavailable()
    if reason:
        raise RuntimeError(f"PostgreSQL is needed: {reason}")
    cluster = PostgresCluster()
    await asyncio.to_thread(cluster.start)
    try:
        name = await asyncio.to_thread(cluster.create_database, "template0")
        url = cluster.url(name)
        await (await PostgresStore.open(url)).close()  # migrated
        claimed = await claims(url, 200 if quick else 4000)
        # Each run's jobs are delivered before the next starts; the table is emptied between runs.
        plan = [(1, 0.2, 5, 20), (2, 0.2, 5, 20)] if quick else [(p, 2.0, 25, 500) for p in (1, 2, 4)]
        runs = [await processes(url, jobs, procs, engine_s, conc) for procs, engine_s, conc, jobs in plan]
    finally:
        await asyncio.to_thread(cluster.stop)
    targets = [Target("claims per second, 8 workers, instant engine", claimed["claims_per_s"], 500, "claims/s",
                      at_most=False),
               Target("claim latency p99, 8 workers", claimed["claim_latency"]["p99_ms"], 50, "ms")]
    targets += [Target(f"{r['jobs']} jobs, {r['engine_s']:g} s engine, {r['processes']} worker process(es) × "
                       f"{r['concurrency']}: total vs ideal", r["vs_ideal"], 1.1, "x") for r in runs]
    return {"figures": {"claims": claimed, "processes": runs}, "targets": targets}


def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory():
        return asyncio.run(_main(quick))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        asyncio.run(_worker_process(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
