"""SQLite storage: migrations upgrade an old database in place, and history survives a reopen."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

from core.ports import NewNode
from storage.sqlite import SqliteStore


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


async def test_history_and_message_links_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = await SqliteStore.open(path)
    photo = await store.add_node(NewNode("telegram", "5", "7", "photo", "aa", "image/jpeg"))
    result = await store.add_node(NewNode("telegram", "5", "7", "style", "bb", "image/png", parent=photo,
                                          style="zombie", commentary="Braaains"))
    await store.link_message(result, "99")
    await store.close()
    store = await SqliteStore.open(path)
    try:
        found = await store.node_for_message("telegram", "5", "99")
        assert found is not None and found.id == result.id and found.root_id == photo.id
        assert found.commentary == "Braaains" and found.depth == 1
        assert await store.node_for_message("telegram", "6", "99") is None  # other chats don't see it
    finally:
        await store.close()
