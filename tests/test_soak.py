"""Soak: 1,000 requests from 200 people through the real job runner, SQLite and image store.

Every request must be answered exactly once — one picture replying to the message that asked —
with a fast fake model, a small concurrency cap and some people cancelling along the way.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from core import texts
from core.config import LimitsSettings
from core.requests import Chat, Context, Person, PhotoRef
from core.studio import Studio
from storage.images import FileImageStore
from storage.sqlite import SqliteStore
from tests.fakes import FakeEngine, FakeMessenger

# Real processes or long runs, seconds each: `python3 manage.py test --fast` leaves them out.
pytestmark = pytest.mark.slow

PEOPLE = 200
PER_PERSON = 5


def small_selfie(face_image: Image.Image) -> bytes:
    out = io.BytesIO()
    face_image.resize((128, 128)).save(out, "JPEG", quality=80)
    return out.getvalue()


async def test_a_thousand_requests_from_two_hundred_people_are_each_answered_once(
        tmp_path: Path, face_image: Image.Image) -> None:
    data = small_selfie(face_image)
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    engine = FakeEngine(delay=0.002)
    studio = Studio(store=store, images=FileImageStore(tmp_path, store), engine=engine,
                    limits=LimitsSettings(concurrency=8, queue_per_user=PER_PERSON))
    messenger = FakeMessenger()
    studio.attach("test", messenger)

    async def fetch() -> bytes:
        return data

    async def person_sends(n: int) -> None:
        person = Person(str(n), f"P{n}")
        chat = Chat("test", str(n), is_private=True)
        for k in range(PER_PERSON):
            message_id = f"{n}-{k}"
            await studio.style(Context(chat, person, message_id), random.choice(["zombie", "comic", "pixel"]),
                               PhotoRef(fetch=fetch, message_id=message_id, size=len(data)))
            await asyncio.sleep(random.random() * 0.01)

    random.seed(5)
    try:
        await asyncio.gather(*(person_sends(n) for n in range(PEOPLE)))
        await studio.jobs.wait_idle(timeout=90)
    finally:
        await studio.aclose()
    try:
        images = Counter(s.target.reply_to for s in messenger.sent if s.kind == "image")
        expected = {f"{n}-{k}" for n in range(PEOPLE) for k in range(PER_PERSON)}
        assert set(images) == expected, f"{len(expected - set(images))} requests never answered"
        assert max(images.values()) == 1, "some request was answered twice"
        queue_notes = ("in line", texts.WORKING)  # "You're #N in line", edited to "Working on it…"
        refusals = [s.text for s in messenger.sent if s.kind == "text" and not any(n in s.text for n in queue_notes)]
        assert refusals == []
        # Each picture went to the chat of the person who asked.
        assert all(s.target.chat_id == s.target.reply_to.split("-")[0]  # type: ignore[union-attr]
                   for s in messenger.sent if s.kind == "image")
        counts = await store.job_counts(0)
        assert counts.get("delivered") == PEOPLE * PER_PERSON
    finally:
        await store.close()
