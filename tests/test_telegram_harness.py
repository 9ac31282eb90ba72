"""Runs the real Telegram adapter (PTB Application + studio + SQLite) against the loopback Bot API.

Shared by the tests/test_telegram_*.py end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from telegram import Update
from telegram.ext import ContextTypes, TypeHandler

from bots.telegram import TelegramBot, TelegramMessenger
from core.breaker import CircuitBreaker
from core.clock import SYSTEM_CLOCK, Clock
from core.config import Settings, load_settings
from core.engines.base import ImageEngine
from core.engines.factory import build_engine
from core.intake_pool import Intake
from core.metrics import NO_OBSERVER, JobObserver
from core.requests import Messenger
from core.shared_jobs import Leases
from core.studio import Shared, Studio
from core.worker import FULL_DISK_RETRY_S
from storage.backend import open_storage
from storage.postgres import PostgresStore
from tests.backends import storage_settings
from tests.standins.telegram_api import Chat, FakeTelegram, SentMessage, User

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut.png"

ALICE = User(id=1001, first_name="Alice", username="alice")
BOB = User(id=1002, first_name="Bob")
CAROL = User(id=1003, first_name="Carol")
GROUP = Chat(id=-100777, type="supergroup", title="Avatars")


def as_messenger(messenger: TelegramMessenger) -> Messenger:
    """Type-checked: the adapter's messenger implements core's `Messenger` protocol."""
    return messenger


def private(user: User) -> Chat:
    return Chat(id=user.id)


def small_selfie(side: int = 320) -> bytes:
    """The astronaut portrait as a small JPEG: big enough for intake, cheap for the engines."""
    image = Image.open(FIXTURE).convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def png_bytes(size: tuple[int, int], color: str = "orange") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute pixel difference (0-255) of two images compared at 64x64."""
    first = np.asarray(Image.open(io.BytesIO(a)).convert("RGB").resize((64, 64)), dtype=np.float32)
    second = np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((64, 64)), dtype=np.float32)
    return float(np.abs(first - second).mean())


def is_photo(m: SentMessage) -> bool:
    return m.method == "sendPhoto"


def is_text(m: SentMessage) -> bool:
    return m.method == "sendMessage"


@dataclass
class Running:
    tg: FakeTelegram
    settings: Settings
    studio: Studio
    bot: TelegramBot

    async def photo_reply(self, chat: Chat, timeout: float = 20.0) -> SentMessage:
        """The next picture in `chat`, once what was being sent is recorded too: the bot links a message to its
        picture just after the platform accepts it, and a reply sent in between would find nothing to edit."""
        message = await self.tg.wait_for_message(is_photo, chat_id=chat.id, timeout=timeout)
        await self.studio.worker.drain(timeout)
        return message

    async def text_reply(self, chat: Chat, timeout: float = 20.0) -> SentMessage:
        return await self.tg.wait_for_message(is_text, chat_id=chat.id, timeout=timeout)

    first_update: int = 0  # updates before this one were confirmed before this bot started

    async def settle(self, timeout: float = 20.0) -> None:
        await self.studio.jobs.wait_idle(timeout)

    async def finished(self, timeout: float = 20.0) -> None:
        """The bot has nothing left that could send: every update sent so far handled, every album gathered
        and routed, every job done and every delivery under way finished."""
        async with asyncio.timeout(timeout):
            await self.tg.wait_handled(self.first_update)
            # Every album photo is in, so every album still gathering has its task by now.
            if albums := [t for t in asyncio.all_tasks() if t.get_name().startswith("album-")]:
                await asyncio.wait(albums)
            await self.studio.jobs.wait_idle()
            # Sends under way, and the queue's place-in-line notes (which delete themselves once moot).
            await asyncio.gather(self.studio.worker.drain(), self.studio.jobs.wait_reported())
            await self.bot.messenger.recorded()  # what each delivered photo is known by (inline sharing)


# Telegram's send limits with windows of a second, not a minute: 20 messages in a group (and in a private chat,
# whose one a second would have a long journey spend its time waiting) still hold the 21st back.
TEST_WINDOWS = {"group_window_s": 1.0, "chat_messages": 20}


def with_test_windows(settings: Settings) -> Settings:
    """The settings with `TEST_WINDOWS` wherever the test left Telegram's send limits as they come."""
    kept = {key: value for key, value in TEST_WINDOWS.items() if key not in settings.telegram.model_fields_set}
    return settings.model_copy(update={"telegram": settings.telegram.model_copy(update=kept)})


def make_settings(tg: FakeTelegram, data_dir: Path, *, concurrency: int = 8,
                  admins: list[str] | None = None, credits: dict[str, Any] | None = None,
                  telegram: dict[str, Any] | None = None, **limits: Any) -> Settings:
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url, "connections": 32,
                  **(telegram or {})},
        storage=storage_settings(data_dir, retention_days=0),
        engine={"default": "offline", "input_max_px": 256},
        limits={"concurrency": concurrency, **limits},
        access={"admins": admins or []},
        gemini={"api_key": ""},
        # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
        likeness={"enabled": False},
        credits=credits or {},
    )


@contextlib.asynccontextmanager
async def open_studio(settings: Settings, engine: ImageEngine | None, *, clock: Clock,
                      breaker: CircuitBreaker | None, full_disk_retry_s: float,
                      observer: JobObserver = NO_OBSERVER, shared_jobs: bool = False) -> AsyncIterator[Studio]:
    """`bots.cli.open_studio`'s wiring (the storage `[storage]` names: SQLite and image files under `dir`, or the
    test's PostgreSQL database), with the studio's timings a test sets: a failed send is tried again as often,
    sooner; its own clock and breaker. `shared_jobs`: on PostgreSQL, jobs are claimed under leases as `pixme run`
    claims them (core.shared_jobs), not queued in this process."""
    storage = await open_storage(settings.storage)
    store = storage.store
    shared = None
    if shared_jobs and isinstance(store, PostgresStore):
        s = settings.storage
        shared = Shared(store, owner=f"test:{os.getpid()}",
                        leases=Leases(lease_s=s.lease_s, heartbeat_s=s.heartbeat_s, poll_s=s.poll_s))
    engine = engine or build_engine(settings)
    studio = Studio(store=store, images=storage.images, engine=engine,
                    limits=settings.limits, access=settings.access, input_max_px=settings.engine.input_max_px,
                    party=settings.party, intake=Intake(settings.intake),
                    model_choices=settings.gemini.choices if engine.name == "gemini" else None,
                    sizes=list(settings.gemini.sizes), variants=settings.gemini.variants,
                    delivery_retry_delays=(0.05, 0.1, 0.2), full_disk_retry_s=full_disk_retry_s,
                    breaker=breaker, clock=clock, likeness=settings.likeness,
                    credits=settings.credits, observer=observer, shared=shared)
    try:
        yield studio
    finally:
        await studio.aclose()
        await engine.aclose()
        await store.close()


@contextlib.asynccontextmanager
async def running_bot(tg: FakeTelegram, data_dir: Path, *, engine: ImageEngine | None = None,
                      concurrency: int = 8, admins: list[str] | None = None,
                      settings: Settings | None = None, clock: Clock = SYSTEM_CLOCK,
                      breaker: CircuitBreaker | None = None, full_disk_retry_s: float = FULL_DISK_RETRY_S,
                      credits: dict[str, Any] | None = None, observer: JobObserver = NO_OBSERVER,
                      shared_jobs: bool = False, **limits: Any) -> AsyncIterator[Running]:
    """What `pixme run` does for Telegram: studio on SQLite, the bot started, unfinished jobs resumed.
    `clock` keeps the core's waits (party deadlines among them); `breaker` and `full_disk_retry_s` as the test
    needs them; `observer` (a `core.metrics.Metrics`) counts what happens."""
    settings = with_test_windows(settings or make_settings(tg, data_dir, concurrency=concurrency, admins=admins,
                                                           credits=credits, **limits))
    async with open_studio(settings, engine, clock=clock, breaker=breaker, full_disk_retry_s=full_disk_retry_s,
                           observer=observer, shared_jobs=shared_jobs) as studio:
        bot = TelegramBot(settings.telegram, studio, engine_name=studio.engine.name)

        async def handled(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
            tg.mark_handled(update.update_id)

        # A later group runs once the bot's own handlers are done with the update: the positive signal
        # `Running.finished` waits for before a test checks that nothing (more) was said.
        bot.application.add_handler(TypeHandler(Update, handled), group=1_000)
        first_update = tg.first_unconfirmed_update()
        await bot.start()
        try:
            await studio.resume()
            yield Running(tg, settings, studio, bot, first_update)
        finally:
            await bot.stop()
