"""A locked database or a full disk gets the person a polite reply, and the bot keeps working."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from core.requests import Chat, Context, Person, PhotoRef
from core.studio import Studio
from storage.images import FileImageStore
from storage.sqlite import SqliteStore
from tests.fakes import FakeEngine, FakeMessenger

CHAT = Chat("test", "42", is_private=True)
ADA = Person("7", "Ada")


def photo(data: bytes, message_id: str) -> PhotoRef:
    async def fetch() -> bytes:
        return data

    return PhotoRef(fetch=fetch, message_id=message_id, size=len(data))


class DiskFullImages(FileImageStore):
    """The real image store on a disk that has just filled up."""

    full = True

    def _write(self, data: bytes) -> tuple[str, bool]:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super()._write(data)


async def test_a_locked_database_gets_a_polite_reply_and_the_next_request_works(
        tmp_path: Path, selfie: bytes, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "db.sqlite3"
    store = await SqliteStore.open(path, busy_timeout_ms=200)
    studio = Studio(store=store, images=FileImageStore(tmp_path, store), engine=FakeEngine())
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        await studio.style(Context(CHAT, ADA, "1"), "zombie", photo(selfie, "1"))
        assert messenger.texts() == ["Sorry, I'm overloaded for a moment — please try again in a few seconds."]
        assert any("failed" in r.message and r.levelname == "ERROR" for r in caplog.records)
        other.execute("ROLLBACK")
        await studio.style(Context(CHAT, ADA, "2"), "zombie", photo(selfie, "2"))
        await studio.jobs.wait_idle(timeout=10)
        assert messenger.sent[-1].kind == "image" and messenger.sent[-1].target.reply_to == "2"
    finally:
        other.close()
        await studio.aclose()
        await store.close()


async def test_a_full_disk_gets_a_polite_reply_and_the_bot_recovers(tmp_path: Path, selfie: bytes) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    images = DiskFullImages(tmp_path, store)
    studio = Studio(store=store, images=images, engine=FakeEngine())
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    try:
        await studio.style(Context(CHAT, ADA, "1"), "zombie", photo(selfie, "1"))
        assert messenger.texts() == ["Sorry, I'm out of storage space right now — please try again later."]
        images.full = False
        await studio.style(Context(CHAT, ADA, "2"), "zombie", photo(selfie, "2"))
        await studio.jobs.wait_idle(timeout=10)
        assert messenger.sent[-1].kind == "image"
    finally:
        await studio.aclose()
        await store.close()
