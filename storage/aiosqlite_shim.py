"""The one place that uses aiosqlite's private API: running a function on its connection's own thread.

aiosqlite runs every call on one worker thread per connection; a function that needs several statements
and a commit in one trip (a node insert and its bookkeeping, a /forget) runs there through the private
`Connection._execute` with the `sqlite3.Connection` in `_conn`. aiosqlite is pinned in pyproject.toml
(`>=0.21,<0.23`) and tests/test_aiosqlite_shim.py pins the behaviour relied on, so an upgrade that
changes it fails a test instead of the bot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar, cast

import aiosqlite

T = TypeVar("T")


async def in_db_thread(db: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run `work(connection)` on the connection's thread, between its other calls, and return its result;
    its exceptions propagate. `work` commits (or rolls back) itself."""
    connection = db._conn

    def run() -> T:
        return work(connection)

    return cast(T, await db._execute(run))
