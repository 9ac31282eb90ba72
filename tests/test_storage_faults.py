"""A locked database or a full disk gets the person a polite reply, and the bot keeps working."""

from __future__ import annotations

import asyncio
import errno
import socket
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.errors import StorageBusy, StorageFull
from core.requests import Chat, Context, Person, PhotoRef
from core.studio import Studio
from storage.images import FileImageStore, PostgresImageStore
from storage.postgres import PostgresStore, storage_error
from storage.sqlite import SqliteStore
from tests.backends import Backend
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


# -- the same on PostgreSQL: the server's own errors (a lock held by another session, SQLSTATE 53100 raised by
# the server, a connection it cut) come back as the same polite replies. -----------------------------------


async def postgres_studio(url: str, **options: Any) -> tuple[PostgresStore, Studio, FakeMessenger]:
    store = await PostgresStore.open(url, **options)
    studio = Studio(store=store, images=PostgresImageStore(store), engine=FakeEngine())
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    return store, studio, messenger


async def test_a_table_locked_on_postgres_gets_a_polite_reply_and_the_next_request_works(
        postgres: Backend, selfie: bytes) -> None:
    store, studio, messenger = await postgres_studio(postgres.url, busy_timeout_ms=200)
    other = await asyncpg.connect(postgres.url)
    try:
        locked = other.transaction()
        await locked.start()
        await other.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")  # another process holds it
        await studio.style(Context(CHAT, ADA, "1"), "zombie", photo(selfie, "1"))
        assert messenger.texts() == ["Sorry, I'm overloaded for a moment — please try again in a few seconds."]
        await locked.rollback()
        await studio.style(Context(CHAT, ADA, "2"), "zombie", photo(selfie, "2"))
        await studio.jobs.wait_idle(timeout=10)
        assert messenger.sent[-1].kind == "image" and messenger.sent[-1].target.reply_to == "2"
    finally:
        await other.close()
        await studio.aclose()
        await store.close()


async def test_a_request_whose_language_cannot_be_read_gets_the_polite_reply_and_nothing_escapes(
        postgres: Backend, selfie: bytes) -> None:
    """The gate's first step (the person's language, from the database) failing is answered like any later one;
    it used to break the use case's `async with` (RuntimeError: generator didn't yield)."""
    store, studio, messenger = await postgres_studio(postgres.url, busy_timeout_ms=200)
    other = await asyncpg.connect(postgres.url)
    try:
        locked = other.transaction()
        await locked.start()
        await other.execute("LOCK TABLE preferences IN ACCESS EXCLUSIVE MODE")
        await studio.style(Context(CHAT, ADA, "1"), "zombie", photo(selfie, "1"))
        await studio.edit(Context(CHAT, ADA, "2"), "add a crown", "1")
        assert messenger.texts() == ["Sorry, I'm overloaded for a moment — please try again in a few seconds."] * 2
        await locked.rollback()
        await studio.style(Context(CHAT, ADA, "3"), "zombie", photo(selfie, "3"))
        await studio.jobs.wait_idle(timeout=10)
        assert messenger.sent[-1].kind == "image" and messenger.sent[-1].target.reply_to == "3"
    finally:
        await other.close()
        await studio.aclose()
        await store.close()


async def test_a_full_disk_on_postgres_gets_a_polite_reply_and_the_bot_recovers(
        postgres: Backend, selfie: bytes) -> None:
    store, studio, messenger = await postgres_studio(postgres.url)
    admin = await asyncpg.connect(postgres.url)
    try:
        # The server itself answers "could not extend file: No space left on device" (SQLSTATE 53100).
        await admin.execute("""
            CREATE FUNCTION disk_is_full() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
            CREATE TRIGGER disk_is_full BEFORE INSERT ON images FOR EACH ROW EXECUTE FUNCTION disk_is_full();""")
        with pytest.raises(StorageFull):
            await store.put_image("0" * 64, b"x")
        await studio.style(Context(CHAT, ADA, "1"), "zombie", photo(selfie, "1"))
        assert messenger.texts() == ["Sorry, I'm out of storage space right now — please try again later."]
        await admin.execute("DROP TRIGGER disk_is_full ON images")
        await studio.style(Context(CHAT, ADA, "2"), "zombie", photo(selfie, "2"))
        await studio.jobs.wait_idle(timeout=10)
        assert messenger.sent[-1].kind == "image"
    finally:
        await admin.close()
        await studio.aclose()
        await store.close()


async def test_a_connection_cut_by_the_server_mid_statement_is_busy_and_the_pool_reconnects(
        postgres: Backend) -> None:
    store = await PostgresStore.open(postgres.url, busy_timeout_ms=30_000)
    admin = await asyncpg.connect(postgres.url)
    try:
        locked = admin.transaction()
        await locked.start()
        await admin.execute("LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE")
        reading = asyncio.create_task(store.get_node(1))  # waits for the lock, on the server
        async with asyncio.timeout(10):
            while not await admin.fetchval(  # noqa: ASYNC110 - the server's own view of who waits for a lock
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'pixme' AND wait_event_type = 'Lock'"):
                await asyncio.sleep(0.01)
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'pixme' AND wait_event_type = 'Lock'")
        with pytest.raises(StorageBusy):
            await reading
        await locked.rollback()
        assert await store.get_node(1) is None, "the next call gets a new connection"
    finally:
        await admin.close()
        await store.close()


def test_a_connection_closed_under_a_transaction_is_busy_but_a_mistake_in_a_call_is_not() -> None:
    """What asyncpg raised in the scale run when the server restarted while a node was being added (the job was
    taken for crashed); a call with the wrong arguments, asyncpg's other InterfaceError, stays a bug."""
    closed = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    assert isinstance(storage_error(closed), StorageBusy)
    mistake = asyncpg.InterfaceError("the server expects 3 arguments for this query, 2 were passed")
    assert storage_error(mistake) is mistake


async def test_a_server_out_of_reach_is_busy_and_says_where_without_the_password(postgres: Backend) -> None:
    assert postgres.cluster is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(StorageBusy, match=rf"cannot connect to postgresql://pixme:\*\*\*@127\.0\.0\.1:{free}/x"):
        await PostgresStore.open(f"postgresql://pixme:hunter22@127.0.0.1:{free}/x")
