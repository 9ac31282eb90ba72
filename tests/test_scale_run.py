"""Beyond one machine: 2 gateways on webhooks behind nginx, 3 workers, one PostgreSQL, all real processes.

100 people each ask for 3 pictures (two selfies captioned with a style, then an edit by replying to the first
result) through the Telegram stand-in, which POSTs every update to nginx and, as Telegram does, retries it
until a gateway answers 200. Mid-run one worker is killed with -9 while it holds a job, and PostgreSQL is
stopped and started again while updates keep coming. Every request is answered with exactly one picture,
nothing is lost, no job is left unfinished, every place-in-line note is gone, and every process but the killed
one is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import texts
from storage.postgres import PostgresStore
from tests.backends import Backend
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, SentMessage, User
from tests.test_many_workers import _env, _start, _until, _until_async
from tests.test_telegram_harness import small_selfie
from tests.test_webhooks import PUBLIC_URL, SECRET, Nginx, _nginx_missing, nginx_running

PEOPLE = 100
OVER = ("delivered", "failed", "cancelled")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    reason = _nginx_missing()
    if reason:
        pytest.skip(reason)
    with nginx_running(tmp_path_factory.mktemp("nginx")) as found:
        yield found


FAILURES = (texts.STORAGE_BUSY, texts.INTERNAL_ERROR, texts.STORAGE_FULL)  # English: the people here speak it


async def _jobs(store: PostgresStore) -> list[tuple[int, str, str | None]]:
    rows = await store._pool.fetch("SELECT id, status, claimed_by FROM jobs ORDER BY id")
    return [(r["id"], r["status"], r["claimed_by"]) for r in rows]


@pytest.mark.slow
@pytest.mark.timeout(420)  # six processes and a database: ~60-80 s on a free 2-core machine, more on a shared one
async def test_two_gateways_and_three_workers_answer_300_requests_once_through_a_kill_and_a_database_restart(
        postgres: Backend, tmp_path: Path, proxy: Nginx) -> None:
    cluster = postgres.cluster
    assert cluster is not None
    selfie = small_selfie(160)
    people = [User(id=90_000 + n, first_name=f"Person {n}") for n in range(PEOPLE)]
    chats = {person.id: Chat(person.id) for person in people}
    logs = {name: tmp_path / f"{name}.log" for name in ("gw0", "gw1", "w0", "w1", "w2")}
    store = await PostgresStore.open(postgres.url)
    procs: dict[str, asyncio.subprocess.Process] = {}
    async with FakeTelegram() as tg, FakeGemini() as gem:
        gem.think_s = 0.4  # a worker killed mid-job is killed while it waits for the model
        tg.webhook_target = proxy.webhook
        for person in people:
            tg.add_chat(chats[person.id], person)
        env = _env(tg, gem, tmp_path / "data", postgres.url)
        env.update({"PIXME_TELEGRAM__WEBHOOK_URL": PUBLIC_URL, "PIXME_TELEGRAM__WEBHOOK_SECRET": SECRET,
                    "PIXME_TELEGRAM__WEBHOOK_LISTEN": "127.0.0.1", "PIXME_LIMITS__CONCURRENCY": "4",
                    # A database restart (a few seconds) is outlived by the leases of the jobs running through it.
                    "PIXME_STORAGE__LEASE_S": "10"})
        requests: dict[tuple[int, int], str] = {}  # (chat, message id) -> what was asked

        def answers() -> Counter[tuple[int, int]]:
            return Counter((m.chat_id, m.reply_to_message_id) for m in tg.bot_messages
                           if m.method in ("sendPhoto", "sendMediaGroup")
                           and (m.chat_id, m.reply_to_message_id) in requests)

        def ask(person: User, caption: str) -> None:
            requests[(person.id, tg.send_photo(chats[person.id], person, selfie, caption=caption))] = caption

        async def edit_each_first_result() -> None:
            """Each person replies to their first picture as soon as it arrives: the third request."""
            edited: set[int] = set()
            firsts = {key for key, asked in requests.items() if asked == "/zombie"}
            while len(edited) < PEOPLE:
                for m in list(tg.bot_messages):
                    key = (m.chat_id, m.reply_to_message_id)
                    if m.method == "sendPhoto" and key in firsts and m.chat_id not in edited:
                        edited.add(m.chat_id)
                        person = next(p for p in people if p.id == m.chat_id)
                        asked = tg.send_text(chats[person.id], person, "add a pirate hat", reply_to=m.message_id)
                        requests[(person.id, asked)] = "edit"
                await asyncio.sleep(0.05)

        editing: asyncio.Task[None] | None = None
        try:
            for n in range(2):
                gw_env = {**env, "PIXME_TELEGRAM__WEBHOOK_PORT": str(proxy.upstreams[n])}
                procs[f"gw{n}"] = await _start("gateway", gw_env, tmp_path, logs[f"gw{n}"])
            for n in range(3):
                procs[f"w{n}"] = await _start("worker", env, tmp_path, logs[f"w{n}"])
            await _until(lambda: all("webhook for @" in logs[f"gw{n}"].read_text() for n in range(2)), 60)
            await _until(lambda: all("sending as @" in logs[f"w{n}"].read_text() for n in range(3)), 60)

            for person in people:
                ask(person, "/zombie")
            for person in people[:80]:
                ask(person, "/anime")
            editing = asyncio.create_task(edit_each_first_result())

            # Kill the first worker with -9 mid-job: while it holds jobs (the database says whose claim it is) and
            # every job running anywhere is waiting for the model, held there. (Killed between Telegram accepting
            # a picture and its record, a worker's picture would be sent again: Telegram has no idempotent send.)
            await _until(lambda: sum(answers().values()) >= 20, 90)
            victim = procs["w0"]
            held: list[int] = []
            gem.flowing.clear()

            async def victim_is_drawing() -> bool:
                jobs = await _jobs(store)
                held[:] = [i for i, status, by in jobs
                           if by is not None and by.endswith(f":{victim.pid}") and status not in OVER]
                drawing = [i for i, status, by in jobs if by is not None and status == "running"]
                at_model = not any(status == "done" for _, status, _ in jobs) and gem.held == len(drawing)
                return bool(held) and at_model
            await _until_async(victim_is_drawing, 60)
            victim.kill()
            await victim.wait()
            gem.flowing.set()

            # PostgreSQL goes down while people keep writing; up again once a gateway has refused an update.
            await _until(lambda: sum(answers().values()) >= 80, 90)
            refused_before = sum(1 for _, status in tg.webhook_posts if status != 200)
            await asyncio.to_thread(cluster.pause)
            try:
                for person in people[80:]:
                    ask(person, "/anime")
                await _until(lambda: sum(1 for _, s in tg.webhook_posts if s != 200) > refused_before, 30)
            finally:
                await asyncio.to_thread(cluster.resume)

            try:
                await _until(lambda: editing is not None and editing.done() and len(answers()) == len(requests),
                             150)
            except TimeoutError:
                missing = sorted(set(requests) - set(answers()))
                said = {key: [(m.method, m.text or m.caption) for m in tg.bot_messages
                              if (m.chat_id, m.reply_to_message_id) == key] for key in missing[:5]}
                ids = {(u["message"]["chat"]["id"], u["message"]["message_id"]): u["update_id"]
                       for u in tg.updates if "message" in u}
                posts = {ids.get(key): [st for u, st in tg.webhook_posts if u == ids.get(key)] for key in missing[:5]}
                chat = missing[0][0]
                seen = [(m.message_id, m.method, m.reply_to_message_id) for m in tg.bot_messages if m.chat_id == chat]
                links = [tuple(r) for r in await store._pool.fetch(
                    "SELECT message_id, node_id FROM node_messages WHERE chat_id = $1", str(chat))]
                pytest.fail(f"{len(missing)} of {len(requests)} requests unanswered, e.g. {said}, posts {posts}; "
                            f"in {chat}: sent {seen}, linked {links}; "
                            f"jobs not over: {[j for j in await _jobs(store) if j[1] not in OVER][:5]}")
            # Nothing could send any more: every job is over.
            await _until_async(lambda: _all_over(store), 30)
            # The "#N in line" notes (places read from the jobs table by the gateway that took each request): shown
            # while people waited, and gone once their pictures arrived, whichever worker drew them.
            notes = [m for m in tg.bot_messages if m.method == "sendMessage" and "in line" in m.params.get("text", "")]
            assert notes, "people waiting were told their place in line"
            await _until(lambda: all(m.deleted for m in notes), 15)
            assert len(requests) == 3 * PEOPLE
            assert [key for key in requests if answers()[key] != 1] == [], "each request answered exactly once"
            jobs = await _jobs(store)
            assert len(jobs) == 3 * PEOPLE and {status for _, status, _ in jobs} == {"delivered"}
            assert all(by is None for _, _, by in jobs)
            assert {status for i, status, _ in jobs if i in held} == {"delivered"}  # finished by the others
            said: list[SentMessage] = [m for m in tg.bot_messages
                                       if any(line in (m.text or m.caption or "") for line in FAILURES)]
            assert not said, f"people were told of a failure: {said[:3]}"
            assert {name: proc.returncode for name, proc in procs.items() if name != "w0"} == dict.fromkeys(
                ("gw0", "gw1", "w1", "w2")), "every process but the killed one is still running"
            assert any(status != 200 for _, status in tg.webhook_posts), "the outage was seen by Telegram"
        finally:
            if editing is not None:
                editing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await editing
            codes = {name: await _stop(proc) for name, proc in procs.items()}
            await store.close()
    assert {name: code for name, code in codes.items() if name != "w0"} == dict.fromkeys(
        ("gw0", "gw1", "w1", "w2"), 0), {name: logs[name].read_text()[-3000:] for name in logs}
    for log in logs.values():
        text = log.read_text()
        assert tg.token not in text and gem.api_key not in text and SECRET not in text


async def _all_over(store: PostgresStore) -> bool:
    return all(status in OVER for _, status, _ in await _jobs(store))


async def _stop(proc: asyncio.subprocess.Process) -> int | None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)
