"""Many workers on one PostgreSQL (part 11): claims per second and claim latency, and total time for 500 jobs with
a 2 s engine on 1, 2 and 4 worker processes against the ideal.

A throwaway PostgreSQL server is started in a temporary folder (tests/postgres_cluster.py). Every worker is a
child process (`python -m benchmarks.workers_bench --worker …`), as a `pixme run --role worker` is: a
`core.shared_jobs.SharedJobRunner` over `storage.postgres.PostgresStore` with its own connection pool. Its work is
the engine's wait (none, or 2 s) and then recording the delivery, which ends the job and gives up its claim in one
statement. The platforms and the model are left out: what is measured is the queue. Each child notes how long
each of its claim statements took and when it recorded its last delivery, and reports them when told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.common import ROOT, Target, summary_ms
from core.ports import Job
from core.shared_jobs import Leases, SharedJobRunner
from storage.postgres import PostgresStore

PLATFORM = "bench"
LEASES = Leases(lease_s=20.0, heartbeat_s=5.0, poll_s=0.5)
WARM_UP_JOBS = 200  # before the claims run: every worker's connections have prepared their statements


class _TimedClaims:
    """The store, with each claim statement that returned jobs noted as (wall clock at its start, seconds, jobs)."""

    def __init__(self, store: PostgresStore, claims: list[tuple[float, float, int]]) -> None:
        self._store = store
        self._claims = claims

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim_jobs(self, owner: str, lease_s: float, platforms: Sequence[str], limit: int) -> list[Job]:
        at, began = time.time(), time.perf_counter()
        jobs = await self._store.claim_jobs(owner, lease_s, platforms, limit)
        if jobs:
            self._claims.append((at, time.perf_counter() - began, len(jobs)))
        return jobs


def _work(store: PostgresStore, engine_s: float, done: Callable[[], None]) -> Callable[[Job], Any]:
    async def work(job: Job) -> None:
        if engine_s:
            await asyncio.sleep(engine_s)
        await store.update_job(job.id, status="delivered", delivered_message=f"m{job.id}")
        done()

    return work


async def _add_jobs(store: PostgresStore, n: int) -> float:
    """`n` jobs from `n` people in one transaction, then the announcement that wakes the workers; returns the wall
    clock when the jobs became visible (committed)."""
    now = time.time()
    async with store._pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, created_at, updated_at) "
            "VALUES ($1, $2, $2, 'style', '{}', $3, 'queued', $4, $4)",
            [(PLATFORM, f"p{i}", f'{{"platform": "{PLATFORM}", "chat_id": "p{i}", "reply_to": null}}', now)
             for i in range(n)])
    committed = time.time()
    await store.announce_jobs()
    return committed


async def _delivered(store: PostgresStore) -> int:
    return int(await store._pool.fetchval("SELECT COUNT(*) FROM jobs WHERE status = 'delivered'"))


async def _worker_process(url: str, engine_s: float, concurrency: int) -> None:
    """A child: one worker, claiming until told to stop (stdin closes); then one JSON line with its claims and the
    wall clock of its last delivery."""
    store = await PostgresStore.open(url, pool_size=concurrency + 2)
    # Every connection of the pool open, as in a worker that has been busy: asyncpg opens them as they are first
    # needed, and 25 jobs ending together would otherwise wait for 25 new server processes (~0.3 s here).
    await asyncio.gather(*(store._pool.execute("SELECT 1") for _ in range(concurrency + 2)))
    claims: list[tuple[float, float, int]] = []
    last = [0.0]

    def delivered() -> None:
        last[0] = time.time()

    runner = SharedJobRunner(_TimedClaims(store, claims), _work(store, engine_s, delivered),  # type: ignore[arg-type]
                             concurrency=concurrency, owner=f"proc{os.getpid()}", leases=LEASES)
    await runner.resume({PLATFORM})
    print("ready", flush=True)
    cpu_ready = time.process_time()
    await asyncio.to_thread(sys.stdin.read)
    await runner.aclose()
    await runner.release_held()
    await store.close()
    print(json.dumps({"claims": claims, "last_delivered": last[0], "cpu_s": time.process_time() - cpu_ready}),
          flush=True)


class _Workers:
    """`procs` worker processes of `concurrency` each, started and waited for until every one said it is ready."""

    def __init__(self, url: str, procs: int, engine_s: float, concurrency: int) -> None:
        self._command = [sys.executable, "-m", "benchmarks.workers_bench", "--worker", url, str(engine_s),
                         str(concurrency)]
        self._procs = procs
        self._children: list[subprocess.Popen[str]] = []

    async def __aenter__(self) -> _Workers:
        self._children = [subprocess.Popen(self._command, cwd=ROOT, stdin=subprocess.PIPE,  # noqa: ASYNC220
                                           stdout=subprocess.PIPE, text=True) for _ in range(self._procs)]
        try:
            for child in self._children:
                assert child.stdout is not None
                line = await asyncio.to_thread(child.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"worker process did not start: {line!r}")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> list[dict[str, Any]]:
        """Tell every child to stop; what each reported (its claims, its last delivery)."""
        for child in self._children:
            with contextlib.suppress(Exception):
                assert child.stdin is not None
                child.stdin.close()
        reports = []
        for child in self._children:
            assert child.stdout is not None
            try:
                out = await asyncio.wait_for(asyncio.to_thread(child.stdout.read), 30)
                await asyncio.to_thread(child.wait, 30)
            except (TimeoutError, subprocess.TimeoutExpired):
                child.kill()
                continue
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if lines:
                reports.append(json.loads(lines[-1]))
        self._children = []
        return reports


async def _until_delivered(store: PostgresStore, jobs: int) -> None:
    while await _delivered(store) < jobs:  # noqa: ASYNC110 - counting other processes' rows
        await asyncio.sleep(0.1)


async def claims(url: str, jobs: int, workers: int = 8, concurrency: int = 8,
                 warm_up: int = WARM_UP_JOBS) -> dict[str, Any]:
    """`workers` worker processes, an instant engine: claims per second and claim latency, after a warm-up."""
    store = await PostgresStore.open(url)
    try:
        async with _Workers(url, workers, 0.0, concurrency) as children:
            await _add_jobs(store, warm_up)
            await asyncio.wait_for(_until_delivered(store, warm_up), 120)
            await store._pool.execute("DELETE FROM jobs")
            began = await _add_jobs(store, jobs)
            await asyncio.wait_for(_until_delivered(store, jobs), 600)
            reports = await children.stop()
    finally:
        await store.close()
    if len(reports) != workers:
        raise RuntimeError(f"{workers - len(reports)} worker process(es) did not report")
    seconds = max(r["last_delivered"] for r in reports) - began
    timed = [(took, n) for r in reports for at, took, n in r["claims"] if at + took >= began]  # not the warm-up
    latencies = [took for took, n in timed for _ in range(n)]  # each job claimed, with its statement's time
    return {"jobs": jobs, "workers": workers, "concurrency": concurrency, "warm_up_jobs": warm_up,
            "seconds": round(seconds, 3), "claims_per_s": round(jobs / seconds, 1),
            "claim_statements": len(timed), "jobs_per_statement": round(jobs / max(1, len(timed)), 2),
            # the workers' own CPU (warm-up included) for each job: on 2 cores, what bounds the rate
            "worker_cpu_ms_per_job": round(1000 * sum(r["cpu_s"] for r in reports) / (jobs + warm_up), 3),
            "claim_latency": summary_ms(latencies)}


async def processes(url: str, jobs: int, procs: int, engine_s: float, concurrency: int) -> dict[str, Any]:
    """`jobs` jobs over `procs` worker processes of `concurrency` each: total time against the ideal."""
    store = await PostgresStore.open(url)
    try:
        async with _Workers(url, procs, engine_s, concurrency) as children:
            await store._pool.execute("DELETE FROM jobs")
            began = await _add_jobs(store, jobs)
            await asyncio.wait_for(_until_delivered(store, jobs), 600)
            reports = await children.stop()
    finally:
        await store.close()
    if len(reports) != procs:
        raise RuntimeError(f"{procs - len(reports)} worker process(es) did not report")
    seconds = max(r["last_delivered"] for r in reports) - began
    ideal = jobs * engine_s / (procs * concurrency)
    statements = sum(1 for r in reports for at, took, _ in r["claims"] if at + took >= began)
    return {"processes": procs, "concurrency": concurrency, "jobs": jobs, "engine_s": engine_s,
            "seconds": round(seconds, 3), "ideal_s": round(ideal, 3), "vs_ideal": round(seconds / ideal, 3),
            "claim_statements": statements}


async def _main(quick: bool) -> dict[str, Any]:
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
        claimed = await claims(url, 200, warm_up=20) if quick else await claims(url, 4000)
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
    return asyncio.run(_main(quick))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        asyncio.run(_worker_process(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
