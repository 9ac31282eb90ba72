"""Storage: migrations upgrade an old SQLite database in place, and history survives a reopen (on SQLite and
PostgreSQL alike, through the `backend` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from core.ports import NewNode, Preferences
from storage.images import FileImageStore
from storage.migrations import migrations
from storage.postgres import PostgresStore, SchemaBehind, redacted
from storage.sqlite import PREFERENCES_CACHED, SqliteStore, StoreInUse
from tests.backends import Backend, image_store, open_store


async def delete_nodes_behind_its_back(store: SqliteStore | PostgresStore, ids: list[int]) -> None:
    """Rows gone as retention or another process leaves them, without the store's own bookkeeping."""
    if isinstance(store, PostgresStore):
        await store._pool.execute("DELETE FROM nodes WHERE id = ANY($1::bigint[])", ids)
    else:
        await store._write(f"DELETE FROM nodes WHERE id IN ({', '.join('?' * len(ids))})", ids)


async def test_a_database_from_the_first_release_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    first = (resources.files("storage") / "migrations" / "0001_initial.sql").read_text(encoding="utf-8")
    with sqlite3.connect(path) as db:
        db.executescript(first + "\nPRAGMA user_version = 1;")
        db.execute("INSERT INTO nodes (platform, chat_id, user_id, kind, image_sha, mime, created_at) "
                   "VALUES ('telegram', '1', '2', 'photo', 'abc', 'image/jpeg', 0)")
    store = await SqliteStore.open(path)
    try:
        await store.set_chat_blocked("telegram", "1", True)  # a table the first release did not have
        assert await store.is_chat_blocked("telegram", "1")
        old = await store.get_node(1)
        assert old is not None and old.image_sha == "abc"  # nothing lost in the upgrade
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 2


async def test_an_older_database_learns_whose_photos_and_group_pictures_it_holds(tmp_path: Path) -> None:
    """Before senders were recorded: a photo is credited to who asked for it, and a group picture to the
    people whose photos its job names, so /forget still finds them."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for step in migrations("sqlite")[:4]:
            db.executescript(step.script)
        db.execute("PRAGMA user_version = 4")
        for node_id, user, kind, sha in ((1, "7", "photo", "a1"), (2, "8", "photo", "b1"), (3, "8", "fuse", "f1"),
                                         (4, "9", "edit", "e1")):
            db.execute("INSERT INTO nodes (id, platform, chat_id, user_id, kind, image_sha, mime, created_at, "
                       "parent_id, root_id) VALUES (?, 'telegram', '-5', ?, ?, ?, 'image/png', 0, ?, ?)",
                       (node_id, user, kind, sha, 3 if node_id == 4 else None, 3 if node_id == 4 else None))
        db.execute("INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, result_node, "
                   "created_at, updated_at) VALUES ('telegram', '-5', '8', 'fuse', ?, '{}', 'delivered', 3, 0, 0)",
                   ('{"style": "comic", "portraits": [["Ada", 1], ["Ben", 2]]}',))
    store = await SqliteStore.open(path)
    try:
        photo = await store.get_node(1)
        assert photo is not None and photo.owner_id == "7"
        gone = await store.forget_person("telegram", "7")  # Ada asked for nothing but is in Ben's picture
        assert sorted(gone) == ["a1", "e1", "f1"]
        assert await store.get_node(3) is None and await store.get_node(4) is None
        kept = await store.get_node(2)
        assert kept is not None and kept.owner_id == "8"
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        [(payload,)] = db.execute("SELECT payload FROM jobs").fetchall()
    assert "Ada" not in payload and '["Ben", 2]' in payload


async def test_forget_finds_pictures_of_a_person_after_retention_removed_their_photo(
        tmp_path: Path, backend: Backend) -> None:
    store = await open_store(tmp_path / "db.sqlite3")
    try:
        # Ada's photo, restyled by Ben, edited by Cy; later Ben's own photo in a group picture with hers.
        ada = await store.add_node(NewNode("telegram", "-5", "8", "photo", "a", "image/jpeg", owner_id="7"))
        styled = await store.add_node(NewNode("telegram", "-5", "8", "style", "s", "image/png", parent=ada))
        edited = await store.add_node(NewNode("telegram", "-5", "9", "edit", "e", "image/png", parent=styled))
        ben = await store.add_node(NewNode("telegram", "-5", "8", "photo", "b", "image/jpeg", owner_id="8"))
        group = await store.add_node(NewNode("telegram", "-5", "8", "fuse", "g", "image/png", inputs=(ada, ben)))
        again = await store.add_node(NewNode("telegram", "-5", "9", "edit", "g2", "image/png", parent=group))
        # Retention took the oldest two: Cy's edit no longer leads back to Ada's photo through the tree.
        await delete_nodes_behind_its_back(store, [ada.id, styled.id])
        assert sorted(await store.forget_person("telegram", "7")) == ["e", "g", "g2"]
        assert [await store.get_node(n.id) for n in (edited, group, again)] == [None] * 3
        assert await store.get_node(ben.id) is not None, "Ben's own photo stays"
    finally:
        await store.close()


async def test_history_and_message_links_survive_a_reopen(tmp_path: Path, backend: Backend) -> None:
    path = tmp_path / "db.sqlite3"
    store = await open_store(path)
    photo = await store.add_node(NewNode("telegram", "5", "7", "photo", "aa", "image/jpeg"))
    result = await store.add_node(NewNode("telegram", "5", "7", "style", "bb", "image/png", parent=photo,
                                          style="zombie", commentary="Braaains"))
    await store.link_message(result, "99")
    await store.close()
    store = await open_store(path)
    try:
        found = await store.node_for_message("telegram", "5", "99")
        assert found is not None and found.id == result.id and found.root_id == photo.id
        assert found.commentary == "Braaains" and found.depth == 1
        assert await store.node_for_message("telegram", "6", "99") is None  # other chats don't see it
    finally:
        await store.close()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def _checkpointed(store: SqliteStore, rounds: int = 1) -> None:
    """Wait until the background task has finished `rounds` more checkpoints (the event, not a guess at when)."""
    target = store.checkpoints_done + rounds
    async with asyncio.timeout(10):
        while store.checkpoints_done < target:  # noqa: ASYNC110 - a counter the checkpoint task bumps
            await asyncio.sleep(0.005)


async def test_the_wal_is_checkpointed_off_the_request_path_and_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    wal = Path(f"{path}-wal")
    store = await SqliteStore.open(path, checkpoint_interval_s=0.02)
    try:
        async with store._db.execute("PRAGMA wal_autocheckpoint") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == 0  # no checkpoint inside a request's commit
        sizes = []
        for i in range(3000):
            node = await store.add_node(NewNode("telegram", str(i % 50), "7", "photo", f"{i:064x}", "image/jpeg"))
            await store.link_message(node, str(i))
            if i % 100 == 99:
                # A gap in traffic, as real traffic has: long enough for one whole checkpoint begun after
                # these writes (the one under way when the gap began may have started before them).
                await _checkpointed(store, 2)
                sizes.append(_size(wal))
        assert store.checkpoints_done >= 10
        # Without checkpoints the WAL holds every insert: ~3 MB per 100 here, 100 MB at the end. With them
        # it is reused from its beginning and stays at what is written between two checkpoints (~3.6 MB).
        assert max(sizes) < 12_000_000, sizes
        assert sizes[-1] < 3 * sizes[0], sizes  # flat, not growing with history
        assert await store.node_for_message("telegram", str(2999 % 50), "2999") is not None
    finally:
        await store.close()
    assert _size(wal) == 0  # close folds the whole WAL into the database
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0] == 3000


async def test_close_stops_the_checkpoints_and_memory_databases_work(tmp_path: Path) -> None:
    store = await SqliteStore.open(":memory:")
    try:
        node = await store.add_node(NewNode("telegram", "1", "2", "photo", "aa", "image/jpeg"))
        await store.link_message(node, "5")
        assert (await store.node_for_message("telegram", "1", "5")) is not None
    finally:
        await store.close()
    await store.close()  # twice is harmless
    disk = await SqliteStore.open(tmp_path / "db.sqlite3", checkpoint_interval_s=0.01)
    await _checkpointed(disk)
    tasks_before = {t.get_name() for t in asyncio.all_tasks()}
    assert "sqlite-checkpoints" in tasks_before
    await asyncio.wait_for(disk.close(), timeout=5)
    assert "sqlite-checkpoints" not in {t.get_name() for t in asyncio.all_tasks()}


async def test_settings_read_from_memory_never_go_stale(tmp_path: Path, backend: Backend) -> None:
    """Settings are kept in memory after the first read (on SQLite): a change, a /forget, or a change landing
    while a read is under way is seen by the very next read, and the copies stay bounded."""
    store = await open_store(tmp_path / "db.sqlite3")
    try:
        assert await store.get_preferences("person", "telegram", "7") == Preferences()
        await store.set_preferences("person", "telegram", "7", Preferences(aspect_ratio="16:9"))
        assert (await store.get_preferences("person", "telegram", "7")).aspect_ratio == "16:9"

        for round_ in range(20):  # reads racing writes: whatever they return, the next read is the latest
            wanted = Preferences(persona=f"round {round_}")
            reads = [asyncio.create_task(store.get_preferences("person", "telegram", "7")) for _ in range(3)]
            await asyncio.gather(store.set_preferences("person", "telegram", "7", wanted), *reads)
            assert await store.get_preferences("person", "telegram", "7") == wanted

        await store.forget_person("telegram", "7")
        assert await store.get_preferences("person", "telegram", "7") == Preferences()

        if isinstance(store, SqliteStore):
            for owner in range(PREFERENCES_CACHED + 10):
                await store.get_preferences("chat", "discord", str(owner))
            assert len(store._preferences) == PREFERENCES_CACHED
    finally:
        await store.close()
    again = await open_store(tmp_path / "db.sqlite3")  # and what was written is on disk, not only in memory
    try:
        assert (await again.get_preferences("person", "telegram", "7")) == Preferences()
        await again.set_preferences("chat", "discord", "1", Preferences(model="offline"))
    finally:
        await again.close()
    third = await open_store(tmp_path / "db.sqlite3")
    try:
        assert (await third.get_preferences("chat", "discord", "1")).model == "offline"
    finally:
        await third.close()


async def test_images_are_kept_once_on_disk_and_forgotten_everywhere(tmp_path: Path) -> None:
    """Recent images are served from memory, but a deleted image is gone from memory and disk alike, and the
    memory held stays under its limit."""
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        images = FileImageStore(tmp_path, store, cache_bytes=4000)
        first = await images.put(b"a" * 900)
        assert await images.put(b"a" * 900) == first, "the same bytes are stored once"
        assert images.path(first).read_bytes() == b"a" * 900, "on disk before put() returns"
        assert await images.get(first) == b"a" * 900

        await images.delete(first)
        assert not images.path(first).exists()
        with pytest.raises(FileNotFoundError):
            await images.get(first)  # not served from memory after a /forget or the retention purge

        shas = [await images.put(bytes([n]) * 900) for n in range(10)]
        assert images._cached <= 4000
        assert [await images.get(sha) for sha in shas] == [bytes([n]) * 900 for n in range(10)], \
            "the ones no longer in memory come from disk"
        fresh = FileImageStore(tmp_path, store)  # a restart: everything from disk
        assert await fresh.get(shas[0]) == bytes([0]) * 900
    finally:
        await store.close()


async def test_one_process_at_a_time_owns_a_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    first = await SqliteStore.open(path)
    try:
        with pytest.raises(StoreInUse, match=rf"already in use by another pixme \(process {os.getpid()}\)"):
            await SqliteStore.open(path)
    finally:
        await first.close()
    again = await SqliteStore.open(path)  # closed (or killed): free again
    await again.close()


async def test_images_are_stored_once_by_their_hash_and_forgotten_everywhere(tmp_path: Path,
                                                                            backend: Backend) -> None:
    """The same bytes sent twice are kept once under their SHA-256; a deleted image is gone from memory and the
    store alike; a restarted process reads what an earlier one stored."""
    store = await open_store(tmp_path / "db.sqlite3")
    try:
        images = image_store(store, tmp_path)
        first = await images.put(b"a" * 900)
        assert first == hashlib.sha256(b"a" * 900).hexdigest()
        assert await images.put(b"a" * 900) == first
        assert await images.get(first) == b"a" * 900
        await images.delete(first)
        with pytest.raises(FileNotFoundError):
            await images.get(first)
        kept = await images.put(b"b" * 5000)
        assert await image_store(store, tmp_path).get(kept) == b"b" * 5000  # a fresh process: from storage
    finally:
        await store.close()


async def test_postgres_keeps_images_in_the_database_and_sweeps_the_orphans(postgres: Backend) -> None:
    store = await PostgresStore.open(postgres.url)
    try:
        images = image_store(store, Path("/nonexistent"))
        used = await images.put(b"used" * 100)
        orphan = await images.put(b"orphan" * 100)
        await store.add_node(NewNode("telegram", "1", "2", "photo", used, "image/jpeg"))
        assert await store._pool.fetchval("SELECT size FROM images WHERE sha = $1", orphan) == 600
        assert await images.sweep_orphans(min_age_s=3600) == 0, "too recent: a node may be about to refer to it"
        assert await images.sweep_orphans(min_age_s=0) == 1
        with pytest.raises(FileNotFoundError):
            await images.get(orphan)
        assert await images.get(used) == b"used" * 100
        assert await store.unreferenced([used]) == []
    finally:
        await store.close()


async def test_postgres_processes_starting_together_migrate_once(postgres: Backend) -> None:
    """Two processes opening an empty database at the same moment: one migrates under the advisory lock, the
    other waits and finds nothing left to do; a process that must not migrate says what to run."""
    async with postgres.empty_database() as url:
        with pytest.raises(SchemaBehind, match="run `pixme migrate`"):
            await PostgresStore.open(url, migrate=False)
        first, second = await asyncio.gather(PostgresStore.open(url), PostgresStore.open(url))
        try:
            versions = await first._pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [r[0] for r in versions] == [m.number for m in migrations("postgres")]
            assert await second.migrate() == [], "nothing left to do"
            await second.check_version()
        finally:
            await first.close()
            await second.close()


def test_a_database_url_is_shown_without_its_password() -> None:
    assert redacted("postgresql://pixme:s3cret@db.example:5433/pixme") == "postgresql://pixme:***@db.example:5433/pixme"
    assert redacted("postgresql:///pixme") == "postgresql:///pixme"
