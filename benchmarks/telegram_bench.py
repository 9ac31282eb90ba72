"""(2) The bot's own time per request, through the real Telegram adapter, with an instant engine.

The real python-telegram-bot Application polls the loopback Bot API stand-in (tests/standins); the
studio runs on SQLite and files as in production. Timed from the stand-in's side: from the moment
getUpdates hands out a person's photo to the moment the bot's sendPhoto arrives. The stand-in
shares the event loop, so its own work (serving getFile, the download, sendChatAction) is inside
the figure: an upper bound on the bot's overhead.

Requests are sent one at a time, at most 10 a second: the adapter's flood control (Telegram allows a
bot 30 messages a second) would otherwise add waits that are Telegram's rule, not our work.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import defaultdict
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks.common import Target, summary_ms
from benchmarks.engines import FixedEngine
from benchmarks.photos import small_result, telegram_photos
from bots.cli import open_studio
from bots.telegram import TelegramBot
from core.config import load_settings
from tests.standins.telegram_api import Chat, FakeTelegram, SentMessage, Upload, User

_arrived: ContextVar[float] = ContextVar("arrived", default=0.0)


class TimedTelegram(FakeTelegram):
    """The stand-in, noting when each update was handed out and when each call arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_out: dict[int, float] = {}  # chat id -> first getUpdates that returned its message
        self.photo_arrived: dict[int, float] = {}  # chat id -> first sendPhoto to it
        self.cpu: dict[int, list[float]] = {}  # chat id -> process CPU time at those two moments
        self.timeline: list[tuple[float, str]] = []  # (arrival, method) of every call

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = time.perf_counter()
        _arrived.set(now)
        self.timeline.append((now, request.path.rsplit("/", 1)[-1] if "/file/" not in request.path else "file"))
        return await super()._handle(request)

    async def _api_getUpdates(self, params: dict[str, Any], files: dict[str, Upload]) -> list[Any]:
        updates = await super()._api_getUpdates(params, files)
        now = time.perf_counter()
        for update in updates:
            if "message" in update:
                chat_id = int(update["message"]["chat"]["id"])
                if chat_id not in self.handed_out:
                    self.handed_out[chat_id] = now
                    self.cpu[chat_id] = [time.process_time()]
        return updates

    async def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if chat_id not in self.photo_arrived:
            self.photo_arrived[chat_id] = _arrived.get() or time.perf_counter()
            self.cpu.get(chat_id, []).append(time.process_time())
        return await super()._api_sendPhoto(params, files)


def _is_photo(message: SentMessage) -> bool:
    return message.method == "sendPhoto"


def _segments(tg: TimedTelegram, chat_ids: list[int]) -> dict[str, Any]:
    """Per request, when each Bot API call arrived, counted from the update being handed out."""
    marks: dict[str, list[float]] = defaultdict(list)
    for chat_id in chat_ids:
        start, end = tg.handed_out[chat_id], tg.photo_arrived[chat_id]
        seen: set[str] = set()
        for at, method in tg.timeline:
            if start <= at <= end and method not in seen and method != "getUpdates":
                seen.add(method)
                marks[method].append(at - start)
    return {f"{method}_arrives": summary_ms(values) for method, values in marks.items()}


async def _run(quick: bool) -> dict[str, Any]:
    requests, warmup, spacing = (10, 2, 0.0) if quick else (300, 5, 0.1)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    photos = list(telegram_photos(requests + warmup, seed=3))
    tg = TimedTelegram()
    await tg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="pixme-bench-") as tmp:
            settings = load_settings(
                None,
                telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url},
                storage={"dir": Path(tmp), "retention_days": 0},
                engine={"default": "offline", "input_max_px": 1024},
                gemini={"api_key": ""},
            )
            async with open_studio(settings, FixedEngine(small_result())) as studio:
                bot = TelegramBot(settings.telegram, studio, engine_name=studio.engine.name)
                await bot.start()
                try:
                    await studio.resume()
                    measured: list[int] = []
                    for i, photo in enumerate(photos):
                        began = time.perf_counter()
                        user = User(id=5_000_000 + i, first_name=f"Person {i}")
                        chat = Chat(id=user.id)
                        tg.send_photo(chat, user, photo, caption="/zombie")
                        await tg.wait_for_message(_is_photo, chat_id=chat.id, timeout=30)
                        await studio.jobs.wait_idle(timeout=30)
                        if i >= warmup:
                            measured.append(chat.id)
                        await asyncio.sleep(max(0.0, spacing - (time.perf_counter() - began)))
                finally:
                    await bot.stop()
    finally:
        await tg.stop()
    overhead = [tg.photo_arrived[c] - tg.handed_out[c] for c in measured]
    stats = summary_ms(overhead)
    # CPU time of the whole process (all threads) in each window: moves less with the machine's load.
    cpu = summary_ms([tg.cpu[c][1] - tg.cpu[c][0] for c in measured if len(tg.cpu.get(c, [])) == 2])
    return {
        "figures": {
            "requests": len(measured), "warmup": warmup,
            "photo": f"960x1280 JPEG (as Telegram delivers photos), {sum(map(len, photos)) // len(photos)} bytes",
            "overhead": stats,
            "cpu_time_in_window": cpu,
            "calls": _segments(tg, measured),
        },
        "targets": [
            Target("update fetched -> photo sent p50", float(stats["p50_ms"]), 25, "ms"),
            Target("update fetched -> photo sent p99", float(stats["p99_ms"]), 60, "ms"),
        ],
    }


def run(quick: bool) -> dict[str, Any]:
    return asyncio.run(_run(quick))
