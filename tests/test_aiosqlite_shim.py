"""Pins the aiosqlite behaviour storage/aiosqlite_shim.py relies on (a private API), for the pinned versions."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest

from storage.aiosqlite_shim import in_db_thread


async def test_work_runs_on_the_connections_thread_and_its_writes_are_seen(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "shim.sqlite3") as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        threads: list[threading.Thread] = []

        def insert(conn: sqlite3.Connection) -> int | None:
            threads.append(threading.current_thread())
            cur = conn.execute("INSERT INTO t (v) VALUES ('a')")
            conn.commit()
            return cur.lastrowid

        assert await in_db_thread(db, insert) == 1
        await in_db_thread(db, lambda conn: threads.append(threading.current_thread()))
        assert threads[0] is not threading.main_thread() and threads[0] is threads[1]
        async with db.execute("SELECT v FROM t") as cur:  # a public call sees the committed row
            assert await cur.fetchall() == [("a",)]


async def test_an_error_propagates_and_a_rolled_back_write_is_gone(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "shim.sqlite3") as db:
        await db.execute("CREATE TABLE t (v TEXT UNIQUE)")
        await db.execute("INSERT INTO t VALUES ('a')")
        await db.commit()

        def duplicate(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("INSERT INTO t VALUES ('b')")
                conn.execute("INSERT INTO t VALUES ('a')")
            except BaseException:
                conn.rollback()
                raise

        with pytest.raises(sqlite3.IntegrityError):
            await in_db_thread(db, duplicate)
        async with db.execute("SELECT v FROM t ORDER BY v") as cur:
            assert await cur.fetchall() == [("a",)]
