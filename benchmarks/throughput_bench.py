"""(3) Throughput and fairness, and (5) memory: 500 people at once, a 2 s engine, 64 at a time.

Everything real but the platform and the model: the studio, the job runner, intake in worker
threads, SQLite and the image files. The messenger only notes times. All 500 photos (960×1280,
as Telegram delivers them) arrive at once; they are handed to the studio 64 at a time, as the
Telegram adapter does.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Target, peak_rss_mb, reset_peak_rss, rss_mb, summary_ms
from benchmarks.engines import FixedEngine, TimingMessenger
from benchmarks.photos import small_result, telegram_photos
from core.config import LikenessSettings, LimitsSettings
from core.requests import Chat, Context, Person, PhotoRef
from core.studio import Studio
from storage.images import FileImageStore
from storage.sqlite import SqliteStore

PLATFORM = "bench"
TICK_S = 0.01
# Requests reach the studio as the Telegram adapter hands them over: PTB's concurrent_updates lets at
# most this many handlers (download + intake + submit) run at once (TelegramBot's default).
HANDLERS = 64


def _photo(path: Path, message_id: str) -> PhotoRef:
    async def fetch() -> bytes:
        return await asyncio.to_thread(path.read_bytes)  # the download, from local disk

    return PhotoRef(fetch=fetch, message_id=message_id, size=path.stat().st_size, mime="image/jpeg")


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 10 ms sleep wakes up: the event loop's responsiveness while the bot works."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(TICK_S)
        lags.append(max(0.0, loop.time() - before - TICK_S))


def _extra_rounds(accepted: dict[str, float], started: dict[str, float], concurrency: int) -> list[int]:
    """Per person: rounds lost to people who asked later but were served first."""
    order = sorted(accepted, key=accepted.__getitem__)
    extra = []
    for i, person in enumerate(order):
        mine = started.get(person, math.inf)
        overtaken = sum(1 for later in order[i + 1:] if started.get(later, math.inf) < mine)
        extra.append(math.ceil(overtaken / concurrency))
    return extra


async def _run(quick: bool) -> dict[str, Any]:
    people, delay, concurrency = (20, 0.05, 4) if quick else (500, 2.0, 64)
    with tempfile.TemporaryDirectory(prefix="pixme-bench-") as tmp:
        data_dir = Path(tmp)
        photos = []
        for i, data in enumerate(telegram_photos(people)):
            path = data_dir / f"in-{i}.jpg"
            path.write_bytes(data)
            photos.append(path)
        store = await SqliteStore.open(data_dir / "pixme.sqlite3")
        engine = FixedEngine(small_result(), delay)
        # As `pixme run` wires it: every result scored for likeness in the image-work pool.
        studio = Studio(store=store, images=FileImageStore(data_dir, store), engine=engine,
                        limits=LimitsSettings(concurrency=concurrency, queue_per_user=3), likeness=LikenessSettings())
        messenger = TimingMessenger()
        studio.attach(PLATFORM, messenger)
        accepted: dict[str, float] = {}
        handlers = asyncio.Semaphore(HANDLERS)

        async def ask(i: int) -> None:
            chat = Chat(PLATFORM, str(10_000 + i), is_private=True)
            ctx = Context(chat, Person(chat.id, f"Person {i}"), "1")
            async with handlers:
                await studio.style(ctx, "zombie", _photo(photos[i], "1"))
            accepted[chat.id] = time.perf_counter()

        lags: list[float] = []
        stop = asyncio.Event()
        baseline_rss = rss_mb()
        peak_reset = reset_peak_rss()
        ticker = asyncio.create_task(_ticker(lags, stop))
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        try:
            await asyncio.gather(*(ask(i) for i in range(people)))
            all_accepted = time.perf_counter()
            await messenger.wait_all_delivered(people, timeout=max(120.0, 4 * people * delay / concurrency))
            finished = time.perf_counter()
            await studio.jobs.wait_idle(timeout=30)
        finally:
            stop.set()
            await ticker
            await studio.aclose()
            await store.close()
        peak = peak_rss_mb()
    total = finished - began
    ideal = math.ceil(people / concurrency) * delay
    extra = _extra_rounds(accepted, messenger.started, concurrency)
    waits = [messenger.delivered[c] - began for c in accepted if c in messenger.delivered]
    # How long a job holds its slot: the engine's 2 s plus our work before and after it.
    service = [messenger.delivered[c] - messenger.started[c] for c in accepted
               if c in messenger.delivered and c in messenger.started]
    lag = summary_ms(lags)
    refused = sum(1 for c in accepted if c not in messenger.delivered)
    return {
        "figures": {
            "people": people, "engine_s": delay, "concurrency": concurrency, "adapter_handlers": HANDLERS,
            "total_s": round(total, 3), "ideal_s": ideal, "total_over_ideal": round(total / ideal, 4),
            "all_accepted_after_s": round(all_accepted - began, 3),
            "time_to_result": summary_ms(waits),
            "slot_time_working_to_delivered": summary_ms(service),
            "loop_lag": lag,
            "max_extra_rounds": max(extra), "people_over_one_extra_round": sum(1 for e in extra if e > 1),
            "not_delivered": refused, "engine_calls": engine.calls,
            "messages_sent": messenger.sends, "messages_edited": messenger.edits,
        },
        "memory": {"peak_rss_mb": round(peak, 1), "rss_before_mb": round(baseline_rss, 1),
                   "peak_measured_from_run_start": peak_reset},
        "targets": [
            Target("total time vs ideal", total / ideal, 1.10, "x"),
            Target("event-loop lag p99", float(lag["p99_ms"]), 20, "ms"),
            Target("extra rounds waited because of others (max)", max(extra), 1, "rounds"),
        ],
        "memory_targets": [Target("peak RSS during the throughput run", peak, 400, "MB")],
    }


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(_run(quick))
