"""Many workers sharing one PostgreSQL: jobs claimed under leases (core.shared_jobs.SharedJobRunner).

In-process first: several runners, each with its own connection pool as separate processes would have, claim
from one table; every job is delivered exactly once, a person never has two jobs running at once anywhere, and
no runner exceeds its concurrency. Then real `pixme run --role worker` processes, one killed with -9 mid-job.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from PIL import Image

from core.errors import StorageBusy
from core.metrics import NoObserver
from core.ports import Job
from core.requests import ReplyTarget
from core.shared_jobs import Leases, SharedJobRunner
from storage.postgres import PostgresStore
from tests.backends import Backend
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, User

FAST = Leases(lease_s=5.0, heartbeat_s=0.5, poll_s=0.2)


@dataclass
class Ledger:
    """What the work saw, across every runner: when each job ran, where, and each delivery."""

    total: int
    spans: dict[int, list[tuple[float, float, str]]] = field(default_factory=lambda: defaultdict(list))
    delivered: Counter[int] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)  # runner -> jobs running there now
    peak: Counter[str] = field(default_factory=Counter)
    people: dict[int, str] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    all_delivered: asyncio.Event = field(default_factory=asyncio.Event)


def _work(ledger: Ledger, store: PostgresStore, runner: str,
          seconds: tuple[float, float] = (0.01, 0.06)) -> Callable[[Job], Awaitable[None]]:
    async def work(job: Job) -> None:
        ledger.order.append(job.id)
        ledger.running[runner] += 1
        ledger.peak[runner] = max(ledger.peak[runner], ledger.running[runner])
        started = time.monotonic()
        try:
            await asyncio.sleep(random.uniform(*seconds))  # the engine at work
            ledger.delivered[job.id] += 1
            await store.update_job(job.id, status="delivered", delivered_message=f"m{job.id}")
        finally:
            ledger.running[runner] -= 1
            ledger.spans[job.id].append((started, time.monotonic(), runner))
        if sum(ledger.delivered.values()) >= ledger.total:
            ledger.all_delivered.set()

    return work


@contextlib.asynccontextmanager
async def _runners(postgres: Backend, ledger: Ledger, n: int, concurrency: int,
                   seconds: tuple[float, float] = (0.01, 0.06)) -> AsyncIterator[list[SharedJobRunner]]:
    stores = [await PostgresStore.open(postgres.url) for _ in range(n)]
    runners = [SharedJobRunner(store, _work(ledger, store, f"w{i}", seconds), concurrency=concurrency,
                               owner=f"w{i}", leases=FAST) for i, store in enumerate(stores)]
    try:
        yield runners
    finally:
        for runner in runners:
            await runner.aclose()
            await runner.release_held()
        for store in stores:
            await store.close()


async def test_three_workers_deliver_each_job_once_one_per_person_within_concurrency(postgres: Backend) -> None:
    ledger = Ledger(total=60)
    gateway_store = await PostgresStore.open(postgres.url)
    gateway = SharedJobRunner(gateway_store, _work(ledger, gateway_store, "gateway"), concurrency=2,
                              owner="gateway", works=False)
    try:
        async with _runners(postgres, ledger, n=3, concurrency=2) as runners:
            for runner in runners:
                await runner.resume({"telegram"})
            for i in range(60):
                person = f"p{i % 20}"
                job = await gateway.submit("telegram", f"c{person}", person, "style", {"style": "zombie"},
                                           ReplyTarget("telegram", f"c{person}", None))
                ledger.people[job.id] = person
            await asyncio.wait_for(ledger.all_delivered.wait(), 60)
            for runner in runners:
                await runner.wait_idle(10)
        rows = await gateway_store._pool.fetch("SELECT id, status, claimed_by FROM jobs")
    finally:
        await gateway.aclose()
        await gateway_store.close()

    assert len(rows) == 60 and all(r["status"] == "delivered" and r["claimed_by"] is None for r in rows)
    assert set(ledger.delivered) == set(ledger.people) and set(ledger.delivered.values()) == {1}
    assert all(len(spans) == 1 for spans in ledger.spans.values())
    # One running job per person at any moment, across every worker.
    by_person: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for job_id, spans in ledger.spans.items():
        by_person[ledger.people[job_id]].extend((s, e) for s, e, _ in spans)
    for person, spans in by_person.items():
        spans.sort()
        overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
        assert not overlaps, f"{person} had two jobs running at once: {overlaps}"
    assert max(ledger.peak.values()) <= 2, ledger.peak  # [limits] concurrency, per process
    assert len({runner for spans in ledger.spans.values() for _, _, runner in spans}) == 3  # all three worked


async def test_a_burst_from_one_person_waits_its_turns_behind_everyone_elses_first(postgres: Backend) -> None:
    """Rounds, as the single-process queue has them: Ada's three jobs are accepted first, Bob's one after; Bob's
    is the second to run, not the fourth."""
    ledger = Ledger(total=4)
    async with _runners(postgres, ledger, n=1, concurrency=1) as (runner,):
        store = runner._store
        ids = []
        for person in ("ada", "ada", "ada", "bob"):
            job = await store.add_job("telegram", person, person, "style", {}, ReplyTarget("telegram", person, None))
            ids.append(job.id)
        await runner.resume({"telegram"})
        await asyncio.wait_for(ledger.all_delivered.wait(), 30)
    assert ledger.order == [ids[0], ids[3], ids[1], ids[2]]


async def test_free_slots_fill_together_with_the_next_people_never_with_a_second_job_of_one_person(
        postgres: Backend) -> None:
    """Four free slots and Ada, Bob and Cy waiting (Ada twice): the three start together; Ada's second waits for
    her first to end although a slot is free, then starts without anything else happening."""
    store = await PostgresStore.open(postgres.url)
    gates: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
    running: set[int] = set()
    alongside: dict[int, set[int]] = {}  # what was running when each job started
    changed = asyncio.Condition()

    async def work(job: Job) -> None:
        async with changed:
            alongside[job.id] = set(running)
            running.add(job.id)
            changed.notify_all()
        await gates[job.id].wait()
        await store.update_job(job.id, status="delivered", delivered_message=f"m{job.id}")
        async with changed:
            running.discard(job.id)
            changed.notify_all()

    async def until_running(ids: set[int]) -> None:
        async with changed:
            await asyncio.wait_for(changed.wait_for(lambda: running == ids), 10)

    ended: list[tuple[int, str]] = []
    all_ended = asyncio.Event()

    class Observer(NoObserver):  # /metrics: each job counted once, as it ended
        def job_ended(self, job: Job, *, ran_s: float | None, since_accepted_s: float) -> None:
            ended.append((job.id, job.status))
            if len(ended) == 4:
                all_ended.set()

    runner = SharedJobRunner(store, work, concurrency=4, owner="w", leases=FAST, observer=Observer())
    try:
        ids = {}
        for name in ("ada", "ada2", "bob", "cy"):
            person = name.rstrip("2")
            ids[name] = (await store.add_job("telegram", person, person, "style", {},
                                             ReplyTarget("telegram", person, None))).id
        await runner.resume({"telegram"})
        await until_running({ids["ada"], ids["bob"], ids["cy"]})
        gates[ids["bob"]].set()  # a slot more, and still not Ada's second
        await until_running({ids["ada"], ids["cy"]})
        gates[ids["ada"]].set()
        await until_running({ids["cy"], ids["ada2"]})
        gates[ids["cy"]].set()
        gates[ids["ada2"]].set()
        await until_running(set())
        await runner.wait_idle(10)
        assert alongside[ids["ada2"]] == {ids["cy"]}  # not beside her first
        await asyncio.wait_for(all_ended.wait(), 10)
        assert sorted(ended) == sorted((job_id, "delivered") for job_id in ids.values())
        rows = await store._pool.fetch("SELECT status, claimed_by FROM jobs")
        assert [(r["status"], r["claimed_by"]) for r in rows] == [("delivered", None)] * 4
    finally:
        await runner.aclose()
        await runner.release_held()
        await store.close()


async def test_a_worker_that_stops_renewing_loses_the_job_to_another_which_delivers_it_once(
        postgres: Backend) -> None:
    """A worker whose database connections are all cut (as a machine that vanished) keeps nothing: once its lease
    runs out, another worker claims the job and delivers it."""
    ledger = Ledger(total=1)
    short = Leases(lease_s=1.0, heartbeat_s=0.3, poll_s=0.2)
    lost_store = await PostgresStore.open(postgres.url)
    began = asyncio.Event()

    async def hangs(job: Job) -> None:
        began.set()
        await asyncio.Event().wait()

    lost = SharedJobRunner(lost_store, hangs, concurrency=1, owner="lost", leases=short)
    other_store = await PostgresStore.open(postgres.url)
    other = SharedJobRunner(other_store, _work(ledger, other_store, "other"), concurrency=1, owner="other",
                            leases=short)
    try:
        job = await other_store.add_job("telegram", "c", "ada", "style", {}, ReplyTarget("telegram", "c", None))
        await lost.resume({"telegram"})
        await asyncio.wait_for(began.wait(), 10)
        lost_store._pool.terminate()  # no heartbeat reaches the database from here on
        await other.resume({"telegram"})
        await asyncio.wait_for(ledger.all_delivered.wait(), 15)
        assert ledger.delivered == Counter({job.id: 1})
        claimed = await other_store.get_job(job.id)
        assert claimed is not None and claimed.status == "delivered"
    finally:
        await lost.aclose()
        await other.aclose()
        await other.release_held()
        await other_store.close()


# -- real processes -------------------------------------------------------------------------------------------


def _env(tg: FakeTelegram, gem: FakeGemini, data_dir: Path, url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXME_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
                                                       "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update({
        "PIXME_TELEGRAM__TOKEN": tg.token, "PIXME_TELEGRAM__API_URL": tg.api_url,
        "PIXME_TELEGRAM__FILE_URL": tg.file_url, "PIXME_GEMINI__API_KEY": gem.api_key,
        "PIXME_GEMINI__BASE_URL": gem.base_url, "PIXME_STORAGE__DIR": str(data_dir),
        "PIXME_GEMINI__RETRY_BUDGET_S": "5", "PIXME_OPS__PORT": "0",
        # A worker killed with -9 loses its jobs after 3 s (20 s in production).
        "PIXME_STORAGE__LEASE_S": "3", "PIXME_STORAGE__HEARTBEAT_S": "0.5", "PIXME_STORAGE__POLL_S": "0.3",
    })
    if url:
        env["PIXME_STORAGE__URL"] = url
    return env


async def _start(role: str, env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", "--role", role, env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT)


async def _until(condition: Callable[[], object], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling other processes
            await asyncio.sleep(0.05)


async def _jobs_over(store: PostgresStore) -> bool:
    statuses = [r["status"] for r in await store._pool.fetch("SELECT status FROM jobs")]
    return bool(statuses) and all(s in ("delivered", "failed", "cancelled") for s in statuses)


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)


@pytest.mark.slow
async def test_a_worker_killed_with_9_mid_job_loses_it_to_another_worker_which_delivers_it_once(
        postgres: Backend, tmp_path: Path, face_image: Image.Image) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "first", "second")}
    store = await PostgresStore.open(postgres.url)
    async with FakeTelegram() as tg, FakeGemini() as gem:
        ada, chat = User(701, "Ada"), Chat(701)
        tg.add_chat(chat, ada)
        gem.script(gem.hang(120))  # the first model call never answers: its worker dies during it
        env = _env(tg, gem, tmp_path / "data", postgres.url)
        procs: dict[str, asyncio.subprocess.Process] = {}
        try:
            procs["gateway"] = await _start("gateway", env, tmp_path, logs["gateway"])
            procs["first"] = await _start("worker", env, tmp_path, logs["first"])
            await _until(lambda: tg.calls_of("getUpdates"), 60)
            await _until(lambda: "sending as @" in logs["first"].read_text(), 60)
            out = io.BytesIO()
            face_image.resize((320, 320)).save(out, "JPEG", quality=88)
            asked = tg.send_photo(chat, ada, out.getvalue(), caption="/zombie")
            await _until(lambda: len(gem.generate_requests) >= 1, 30)  # the first worker is drawing it
            claimed = await store._pool.fetchval("SELECT claimed_by FROM jobs")
            assert claimed and claimed.endswith(f":{procs['first'].pid}")

            procs["second"] = await _start("worker", env, tmp_path, logs["second"])
            await _until(lambda: "sending as @" in logs["second"].read_text(), 60)
            procs["first"].kill()  # SIGKILL: no clean-up of any kind
            await procs["first"].wait()
            assert not any(m.photo for m in tg.bot_messages), "nothing was finished before the kill"

            result = await tg.wait_for_message(lambda m: m.photo is not None, chat_id=chat.id, timeout=60)
            assert result.reply_to_message_id == asked
            # Never sent twice: once every job is over, nothing is left that could send.
            jobs_over = asyncio.ensure_future(_until_async(lambda: _jobs_over(store), 30))
            await tg.expect_no_message(chat_id=chat.id, after=jobs_over)
            row = await store._pool.fetchrow("SELECT status, claimed_by, attempts FROM jobs")
            assert row["status"] == "delivered" and row["claimed_by"] is None and row["attempts"] == 2
            assert len([m for m in tg.bot_messages if m.chat_id == chat.id and m.photo is not None]) == 1
            assert len(gem.generate_requests) == 2  # drawn again by the second worker, once
        finally:
            codes = {name: await _stop(proc) for name, proc in procs.items()}
            await store.close()
    assert codes["gateway"] == 0 and codes["second"] == 0, logs["second"].read_text()[-3000:]
    for log in logs.values():
        text = log.read_text()
        assert tg.token not in text and gem.api_key not in text


async def _until_async(condition: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - polling another process's rows
            await asyncio.sleep(0.05)


async def test_sqlite_refuses_another_role_in_one_line(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.cli", "run", "--role", "worker", env=_env(tg, gem, tmp_path / "data"),
            cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and not out
    lines = err.decode().strip().splitlines()
    assert lines == ['pixme: --role worker needs [storage] url = "postgresql://…" (processes share jobs through '
                     'PostgreSQL); with SQLite one process runs everything: pixme run'], lines
    assert not (tmp_path / "data").exists()  # refused before opening anything


async def test_a_job_that_meets_the_database_away_goes_on_once_it_answers_not_failed(postgres: Backend) -> None:
    """A database restart in the middle of a job is not the job's fault: the worker keeps its claim, waits, and
    finishes the job (delivered once), rather than marking it failed."""
    ledger = Ledger(total=1)
    store = await PostgresStore.open(postgres.url)
    tries: list[int] = []
    deliver = _work(ledger, store, "w0")

    async def meets_a_restart_once(job: Job) -> None:
        tries.append(job.id)
        if len(tries) == 1:
            raise StorageBusy("postgres: the database system is shutting down")
        await deliver(job)

    runner = SharedJobRunner(store, meets_a_restart_once, concurrency=1, owner="w0",
                             leases=replace(FAST, busy_retry_s=0.05))
    try:
        job = await store.add_job("telegram", "c", "ada", "style", {}, ReplyTarget("telegram", "c", None))
        await runner.resume({"telegram"})
        await asyncio.wait_for(ledger.all_delivered.wait(), 15)
        await runner.wait_idle(10)
        row = await store._pool.fetchrow("SELECT status, error, claimed_by FROM jobs WHERE id = $1", job.id)
    finally:
        await runner.aclose()
        await runner.release_held()
        await store.close()
    assert tries == [job.id, job.id] and ledger.delivered == Counter({job.id: 1})
    assert (row["status"], row["error"], row["claimed_by"]) == ("delivered", None, None)


async def test_new_jobs_are_heard_of_again_after_the_server_restarts(postgres: Backend) -> None:
    """The LISTEN connection is cut by a PostgreSQL restart; the worker listens again, so a job announced after
    the restart is claimed at once, not at its next poll (30 s here)."""
    assert postgres.cluster is not None
    ledger = Ledger(total=1)
    slow_poll = Leases(lease_s=5.0, heartbeat_s=0.5, poll_s=30.0)
    worker_store = await PostgresStore.open(postgres.url)
    gateway_store = await PostgresStore.open(postgres.url)
    worker = SharedJobRunner(worker_store, _work(ledger, worker_store, "w0"), concurrency=1, owner="w0",
                             leases=slow_poll)
    gateway = SharedJobRunner(gateway_store, _work(ledger, gateway_store, "gw"), concurrency=1, owner="gw",
                              works=False)
    try:
        await worker.resume({"telegram"})
        await worker.wait_idle(10)  # it found nothing and waits for an announcement
        await asyncio.to_thread(postgres.cluster.pause)
        await asyncio.to_thread(postgres.cluster.resume)
        listening = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pixme-listen'"
        await _until_async(lambda: _fetch_true(gateway_store, listening), 15)
        job = await gateway.submit("telegram", "c", "ada", "style", {}, ReplyTarget("telegram", "c", None))
        await asyncio.wait_for(ledger.all_delivered.wait(), 10)
        assert ledger.delivered == Counter({job.id: 1})
    finally:
        await worker.aclose()
        await worker.release_held()
        await gateway.aclose()
        await worker_store.close()
        await gateway_store.close()


async def _fetch_true(store: PostgresStore, query: str) -> bool:
    with contextlib.suppress(Exception):  # the pool's connections were cut by the restart: try again
        return bool(await store._pool.fetchval(query))
    return False
