"""The operator's side: /healthz, /readyz and /metrics against a real studio on SQLite, the Telegram and Gemini
stand-ins, JSON logs without secrets, and SIGTERM on a real `pixme run` that exits within a container's 10 s."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bots.ops import OpsServer
from core.config import OpsSettings
from core.engines.models import model_info
from core.logsafe import configure_logging
from core.metrics import Metrics
from tests.backends import Backend
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import Chat, FakeTelegram, User
from tests.test_telegram_gemini import gemini_settings
from tests.test_telegram_harness import ALICE, BOB, Running, private, running_bot, small_selfie

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@contextlib.asynccontextmanager
async def serving(run: Running, metrics: Metrics) -> AsyncIterator[str]:
    """The ops endpoints for a running bot, as `pixme run` wires them (a free port); yields the base URL."""
    ops = OpsServer(OpsSettings(port=0), metrics=metrics, store_problem=run.studio.store_problem)
    ops.watch("telegram", run.bot)
    await ops.start()
    try:
        yield ops.url
    finally:
        await ops.stop()


async def scrape(base: str) -> tuple[str, Samples]:
    """GET /metrics, parsed the way Prometheus parses it: (content type, every sample by name and labels)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
        content_type = response.headers["Content-Type"]
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def labelled(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Wait until `condition()` (or what it returns, if awaitable) is true: for what another task or process does."""
    async with asyncio.timeout(timeout):
        while True:
            answer = condition()
            if inspect.isawaitable(answer):
                answer = await answer
            if answer:
                return
            await asyncio.sleep(0.02)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_metrics_count_what_happened(tmp_path: Path) -> None:
    """Three pictures delivered (two styles, one edit), one edit the model's safety filter stopped, and a wait in
    line while one person's picture was slow: /metrics says exactly that, and its spend is what /stats prices."""
    selfie = small_selfie(256)
    metrics = Metrics()
    alice, bob = private(ALICE), private(BOB)
    async with FakeTelegram() as tg, FakeGemini() as gem:
        settings = gemini_settings(tg, gem, tmp_path, retry_budget_s=2, request_timeout_s=20)
        settings.limits.concurrency = 1
        async with running_bot(tg, tmp_path, settings=settings, observer=metrics) as run, \
                serving(run, metrics) as base:
            assert await get(f"{base}/healthz") == (200, "ok\n")
            content_type, samples = await scrape(base)
            assert content_type.startswith("text/plain") and "version=" in content_type
            assert total(samples, "pixme_jobs_finished_total") == 0
            assert value(samples, "pixme_queue_length") == 0

            # Alice's picture is slow; Bob's waits in line behind it (one job at a time).
            gem.script(gem.slow(gem.image(text="Brains!"), 2.0), gem.image(text="Comic!"))
            tg.send_photo(alice, ALICE, selfie, caption="/zombie")
            await until(lambda: len(gem.generate_requests) == 1, 20)
            tg.send_photo(bob, BOB, selfie, caption="/comic")
            await until(lambda: run.studio.jobs.queue_length == 1, 20)
            _, samples = await scrape(base)
            assert value(samples, "pixme_queue_length") == 1
            assert value(samples, "pixme_jobs_running") == 1
            first = await run.photo_reply(alice)
            await run.photo_reply(bob)

            gem.script(gem.finished("IMAGE_SAFETY"))
            tg.send_text(alice, ALICE, "make it spookier", reply_to=first.message_id)
            refusal = await run.text_reply(alice)
            assert refusal.text is not None and "safety" in refusal.text
            tg.send_text(alice, ALICE, "add a crown", reply_to=first.message_id)
            await tg.wait_for_message(lambda m: m.photo is not None and m.message_id != first.message_id,
                                      chat_id=alice.id, timeout=20)
            await run.finished()

            _, samples = await scrape(base)
            assert labelled(samples, "pixme_jobs_finished_total") == {
                frozenset({("status", "delivered"), ("kind", "style")}): 2,
                frozenset({("status", "delivered"), ("kind", "edit")}): 1,
                frozenset({("status", "failed"), ("kind", "edit")}): 1,
            }
            # The same as the database says, which is what /stats reads.
            counts = await run.studio.store.job_counts(0)
            assert (counts["delivered"], counts["failed"]) == (3, 1)
            assert labelled(samples, "pixme_engine_errors_total") == {frozenset({("kind", "Blocked")}): 1}
            spent = sum(n * model_info(model).price(size or None)
                        for (model, size), n in (await run.studio.store.delivered_by_model(0)).items())
            assert spent > 0
            assert total(samples, "pixme_spend_usd_total") == pytest.approx(spent)
            assert set(labelled(samples, "pixme_spend_usd_total")) == {frozenset({("model", settings.gemini.model)})}
            # Every delivered picture was timed from its request; every job that ran, for how long it ran.
            assert value(samples, "pixme_delivery_latency_seconds_count", kind="style") == 2
            assert value(samples, "pixme_delivery_latency_seconds_count", kind="edit") == 1
            assert value(samples, "pixme_job_duration_seconds_count", kind="style") == 2
            assert value(samples, "pixme_job_duration_seconds_count", kind="edit") == 2
            # Alice's slow picture took its two seconds; Bob waited for it, so his took longer than his job ran.
            assert value(samples, "pixme_delivery_latency_seconds_sum", kind="style") >= 2.0 + 2.0
            assert value(samples, "pixme_delivery_latency_seconds_bucket", kind="style", le="1.0") == 0
            assert value(samples, "pixme_delivery_latency_seconds_sum", kind="style") < 60
            assert 2.0 <= value(samples, "pixme_job_duration_seconds_sum", kind="style") < 60
            assert value(samples, "pixme_queue_length") == 0 and value(samples, "pixme_jobs_running") == 0


async def test_a_cancelled_request_is_counted_as_cancelled(tmp_path: Path) -> None:
    selfie = small_selfie(256)
    metrics = Metrics()
    alice = private(ALICE)
    async with FakeTelegram() as tg, FakeGemini() as gem:
        settings = gemini_settings(tg, gem, tmp_path, retry_budget_s=2, request_timeout_s=30)
        async with running_bot(tg, tmp_path, settings=settings, observer=metrics) as run, \
                serving(run, metrics) as base:
            gem.script(gem.hang(60))
            tg.send_photo(alice, ALICE, selfie, caption="/zombie")
            await until(lambda: len(gem.generate_requests) == 1, 20)
            tg.send_text(alice, ALICE, "/cancel")
            await run.finished()
            _, samples = await scrape(base)
    cancelled = frozenset({("status", "cancelled"), ("kind", "style")})
    assert labelled(samples, "pixme_jobs_finished_total") == {cancelled: 1}
    assert total(samples, "pixme_delivery_latency_seconds_count") == 0
    assert value(samples, "pixme_job_duration_seconds_count", kind="style") == 1


async def test_two_studios_keep_their_own_numbers() -> None:
    """Each studio's registry is its own: nothing lands in prometheus-client's global one."""
    from prometheus_client import REGISTRY

    one, two = Metrics(), Metrics()
    one.engine_failed("Busy")
    assert one.registry.get_sample_value("pixme_engine_errors_total", {"kind": "Busy"}) == 1
    assert two.registry.get_sample_value("pixme_engine_errors_total", {"kind": "Busy"}) is None
    assert REGISTRY.get_sample_value("pixme_engine_errors_total", {"kind": "Busy"}) is None


async def test_readyz_fails_while_the_database_is_locked_and_recovers(tmp_path: Path) -> None:
    """Another process holding SQLite's write lock (a backup, a `sqlite3` shell mid-transaction) means no job
    could be recorded: /readyz says so in one line, within about a second, and is ready again once it lets go."""
    async with FakeTelegram() as tg, running_bot(tg, tmp_path) as run, serving(run, Metrics()) as base:
        assert await get(f"{base}/readyz") == (200, "ready\n")
        blocker = sqlite3.connect(tmp_path / "pixme.sqlite3", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            status, body = await get(f"{base}/readyz")
            assert status == 503
            assert body.startswith("database:") and "locked" in body and body.count("\n") == 1, body
            assert time.monotonic() - started < 2.5
            assert (await get(f"{base}/healthz"))[0] == 200, "alive, just not ready"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await get(f"{base}/readyz") == (200, "ready\n")

        await run.bot.stop_taking_updates()  # no longer polling Telegram
        assert await get(f"{base}/readyz") == (503, "telegram: not connected\n")


async def test_readyz_fails_once_the_database_is_gone(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, running_bot(tg, tmp_path) as run, serving(run, Metrics()) as base:
        await run.studio.store.close()
        status, body = await get(f"{base}/readyz")
    assert status == 503 and body.startswith("database:"), body


async def test_readyz_fails_while_postgresql_is_down_and_recovers_after(postgres: Backend, tmp_path: Path) -> None:
    """PostgreSQL stopped (as for a restart): /readyz turns 503 with the reason in one line while /healthz stays
    200 (alive, just not ready); started again, /readyz is ready once more and a picture asked for is delivered."""
    cluster = postgres.cluster
    assert cluster is not None
    async with FakeTelegram() as tg, running_bot(tg, tmp_path) as run, serving(run, Metrics()) as base:
        assert await get(f"{base}/readyz") == (200, "ready\n")
        await asyncio.to_thread(cluster.pause)
        try:
            answers: list[tuple[int, str]] = []

            async def not_ready() -> bool:
                answers.append(await get(f"{base}/readyz"))
                return answers[-1][0] != 200
            await until(not_ready, 15)
            status, body = answers[-1]
            assert status == 503 and body.startswith("database:") and body.count("\n") == 1, body
            assert (await get(f"{base}/healthz"))[0] == 200
        finally:
            await asyncio.to_thread(cluster.resume)
        await until(lambda: _ready(base), 30)
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
        await run.photo_reply(private(ALICE), timeout=30)
        await run.finished()


async def _ready(base: str) -> bool:
    return await get(f"{base}/readyz") == (200, "ready\n")


async def test_a_second_ops_server_on_the_same_port_is_one_clear_line(tmp_path: Path) -> None:
    from bots.ops import OpsError

    async def fine() -> None:
        return None

    first = OpsServer(OpsSettings(port=0), metrics=Metrics(), store_problem=fine)
    await first.start()
    try:
        port = int(first.url.rsplit(":", 1)[1])
        second = OpsServer(OpsSettings(port=port), metrics=Metrics(), store_problem=fine)
        with pytest.raises(OpsError) as refused:
            await second.start()
    finally:
        await first.stop()
    message = str(refused.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "[ops] port" in message


def test_json_logs_are_one_object_a_line_and_never_hold_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    token = FakeTelegram().token
    configure_logging([token], fmt="json")
    log = logging.getLogger("pixme.test")
    log.info("downloading %s", f"https://api.telegram.org/file/bot{token}/photos/file_1.jpg")
    log.warning("quoted: https://x.test/bot%s", token.replace(":", "%3A"))
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot{token}/getUpdates failed")
    except RuntimeError:
        log.exception("polling failed")
    err = capsys.readouterr().err
    assert token not in err and token.split(":")[1] not in err
    lines = err.strip().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["logger"]) for r in records] == [("INFO", "pixme.test"), ("WARNING", "pixme.test"),
                                                           ("ERROR", "pixme.test")]
    assert records[0]["message"] == "downloading https://api.telegram.org/file/bot[redacted]/photos/file_1.jpg"
    assert "[redacted]" in records[1]["message"]
    assert "RuntimeError" in records[2]["exception"] and "[redacted]" in records[2]["exception"]
    assert all(r["time"].endswith("+00:00") and "exception" not in r for r in records[:2])


# -- SIGTERM on a real `pixme run` -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tg: FakeTelegram, gem: FakeGemini, data_dir: Path, ops_port: int, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXME_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
                                                       "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update({
        "PIXME_TELEGRAM__TOKEN": tg.token, "PIXME_TELEGRAM__API_URL": tg.api_url,
        "PIXME_TELEGRAM__FILE_URL": tg.file_url, "PIXME_GEMINI__API_KEY": gem.api_key,
        "PIXME_GEMINI__BASE_URL": gem.base_url, "PIXME_GEMINI__REQUEST_TIMEOUT_S": "120",
        "PIXME_STORAGE__DIR": str(data_dir), "PIXME_OPS__PORT": str(ops_port), "PIXME_LOG__FORMAT": "json",
        **more,
    })
    return env


async def _start(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT)




async def _ready(base: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        return (await get(f"{base}/readyz"))[0] == 200
    return False


def _photos_to(tg: FakeTelegram, chat: Chat) -> int:
    return sum(1 for m in tg.bot_messages if m.chat_id == chat.id and m.photo is not None)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigterm_finishes_what_it_can_hands_back_the_rest_and_exits_within_10_s(tmp_path: Path) -> None:
    """Two pictures are being drawn when the container runtime sends SIGTERM: the quick one is delivered before
    the bot exits, the slow one is handed back; the bot exits 0 within 10 s, and after the restart the slow one
    is delivered (each person gets exactly one picture). Its logs are JSON lines without the token."""
    log = tmp_path / "bot.log"
    data = tmp_path / "data"
    ada, bea = User(701, "Ada"), User(702, "Bea")
    ada_chat, bea_chat = Chat(701), Chat(702)
    selfie = small_selfie(256)
    async with FakeTelegram() as tg, FakeGemini() as gem:
        tg.add_chat(ada_chat, ada)
        tg.add_chat(bea_chat, bea)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = _env(tg, gem, data, port)
        first = await _start(env, tmp_path, log)
        try:
            await until(lambda: _ready(base), 60)
            gem.script(gem.slow(gem.image(text="Quick one."), 2.0), gem.slow(gem.image(text="Slow one."), 60.0))
            tg.send_photo(ada_chat, ada, selfie, caption="/zombie")
            await until(lambda: len(gem.generate_requests) == 1, 30)
            tg.send_photo(bea_chat, bea, selfie, caption="/zombie")
            await until(lambda: len(gem.generate_requests) == 2, 30)
            _, samples = await scrape(base)
            assert value(samples, "pixme_jobs_running") == 2
            sent_at = time.monotonic()
            first.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(first.wait(), 30)
            took = time.monotonic() - sent_at
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        print(f"SIGTERM to exit: {took:.2f} s")
        assert code == 0, log.read_text()[-3000:]
        assert took < 10.0, f"took {took:.1f} s"
        assert _photos_to(tg, ada_chat) == 1, "the quick picture was finished and delivered before exit"
        assert _photos_to(tg, bea_chat) == 0, "the slow one was handed back, not delivered"

        second = await _start(env, tmp_path, log)
        try:
            result = await tg.wait_for_message(lambda m: m.photo is not None, chat_id=bea_chat.id, timeout=60)
            # The model's own picture and commentary (`pixme run` also ends the caption with its likeness).
            assert (result.caption or "").splitlines()[0] == gemini_default_caption()
            await until(lambda: _all_delivered(data), 30)
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 30) == 0
        assert _photos_to(tg, ada_chat) == 1 and _photos_to(tg, bea_chat) == 1

    lines = log.read_text().splitlines()
    assert lines, "the bot logged"
    for line in lines:
        record = json.loads(line)  # every line: one JSON object (no stray traceback or warning text)
        assert set(record) >= {"time", "level", "logger", "message"}
    text = log.read_text()
    assert tg.token not in text and tg.token.split(":")[1] not in text and gem.api_key not in text


def gemini_default_caption() -> str:
    from tests.standins.gemini_api import DEFAULT_COMMENTARY

    return DEFAULT_COMMENTARY


async def _all_delivered(data: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{data / 'pixme.sqlite3'}?mode=ro", uri=True)) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM jobs")]
    return len(statuses) == 2 and all(status == "delivered" for status in statuses)


@pytest.mark.slow
async def test_pixme_run_refuses_an_ops_port_in_use_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PIXME_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
                                                           "GEMINI_API_KEY", "GOOGLE_API_KEY")}
        env.update(PIXME_STORAGE__DIR=str(tmp_path / "data"), PIXME_PLAYGROUND__PORT="0", PIXME_OPS__PORT=str(port))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots.cli", "run", env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    errors = [line for line in err.decode().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"ops: cannot listen on 127.0.0.1:{port}" in errors[0], err.decode()
    assert "Traceback" not in err.decode() and "playground" not in out.decode(), "nothing else was started"

