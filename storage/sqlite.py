"""SQLite persistence (aiosqlite, WAL) for the edit tree and the job table.

Schema changes are the numbered steps of `storage/migrations/` (shared with PostgreSQL), applied in order and
tracked with `PRAGMA user_version`, so an old database is upgraded in place at start-up.

WAL checkpoints run off the request path: SQLite's automatic checkpoint would copy the WAL into the
database (with an fsync) inside whichever commit crosses ~1000 pages, making that request wait 10-150
ms. Automatic checkpoints are off on the main connection; a background task checkpoints PASSIVE-ly every
few seconds from a second connection (a passive checkpoint never blocks the writer), and once more, fully,
on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import inspect
import json
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiosqlite

from core.errors import StorageBusy, StorageError, StorageFull
from core.ports import (
    Balance,
    Job,
    JobStatus,
    LikenessStatus,
    Member,
    NewNode,
    Node,
    Party,
    PartyStatus,
    Payment,
    Preferences,
    PreferenceScope,
    ReplyToken,
    SourceGone,
)
from core.requests import ReplyTarget
from core.send_slots import LocalSlots, SendRule
from storage.aiosqlite_shim import in_db_thread
from storage.migrations import migrations
from storage.rows import JOB_COLUMNS as _JOB_COLUMNS
from storage.rows import NODE_COLUMNS as _NODE_COLUMNS
from storage.rows import PARTY_COLUMNS as _PARTY_COLUMNS
from storage.rows import job_from_row as _job
from storage.rows import node_from_row as _node
from storage.rows import without_pictures as _without

log = logging.getLogger(__name__)


class StoreInUse(StorageError):
    """Another process has this database open: two bots on one database would both resume the same jobs
    (sending pictures twice) and each trust its own in-memory copies."""

    def __init__(self, path: Path | str, holder: str) -> None:
        who = f" (process {holder})" if holder else ""
        super().__init__(f"{path} is already in use by another pixme{who}: stop it first, or give this one "
                         "its own [storage] dir.")

PREFERENCES_CACHED = 4096  # people (and chats) whose settings stay in memory, most recently used
CHECKPOINT_INTERVAL_S = 2.0  # a node insert writes ~5 WAL pages: a few seconds of traffic is a small WAL

class SqliteStore:
    """Implements `core.ports.Store` on one SQLite file."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._slots = LocalSlots()  # one process: send limits need no table
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self.checkpoints_done = 0  # background checkpoints that ran (tests and diagnostics)
        # Settings are read three times a request (language, then the person's and the chat's choices for the
        # job) and written rarely; this process is the database's only writer, so a copy stays true.
        self._preferences: OrderedDict[tuple[str, str, str], Preferences] = OrderedDict()
        self._preferences_changes = 0  # bumped by every write: a read that raced one is not cached
        self._lock: IO[str] | None = None  # `<database>.lock`, held while open

    @classmethod
    async def open(cls, path: Path | str, *, busy_timeout_ms: int = 5000,
                   checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> SqliteStore:
        """Open (creating and migrating) the database; a write waits up to `busy_timeout_ms` for a lock.

        The WAL is checkpointed every `checkpoint_interval_s` seconds by a background task (not for
        ":memory:", which has no WAL); `close()` stops it.
        """
        in_memory = str(path) == ":memory:"
        lock = None
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            lock = _hold_lock(Path(f"{path}.lock"), path)
        try:
            db = await aiosqlite.connect(str(path))
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        db.row_factory = aiosqlite.Row
        # WAL lets readers proceed during a write; NORMAL sync is durable across process crashes.
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        store = cls(db)
        store._lock = lock
        try:
            await store._migrate()
            if not in_memory:
                await store._start_checkpoints(path, checkpoint_interval_s)
        except BaseException:
            await store.close()
            raise
        return store

    async def _start_checkpoints(self, path: Path | str, interval_s: float) -> None:
        # No checkpoint inside a commit: the request that crosses the threshold would pay for it.
        await self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = await aiosqlite.connect(str(path))
        await self._checkpointer.execute("PRAGMA synchronous=NORMAL")
        self._checkpoints = asyncio.create_task(self._checkpoint_every(interval_s), name="sqlite-checkpoints")

    async def _checkpoint_every(self, interval_s: float) -> None:
        assert self._checkpointer is not None
        while True:
            await asyncio.sleep(interval_s)
            try:
                # PASSIVE: copies what no reader still needs, never waits for a lock, never blocks writers;
                # once everything is copied, the next write starts the WAL file over from its beginning.
                await self._checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints_done += 1
            except Exception as exc:  # never let the task die: the next round tries again; commits go on
                log.warning("sqlite: background WAL checkpoint failed: %s", exc)

    async def _stop_checkpoints(self) -> None:
        task, self._checkpoints = self._checkpoints, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await checkpointer.close()

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        for step in migrations("sqlite"):
            if step.number > version:
                await self._db.executescript(f"BEGIN;\n{step.script}\nPRAGMA user_version = {step.number};\nCOMMIT;")
        await self._db.commit()

    async def close(self) -> None:
        """Stop the checkpoint task, fold the whole WAL into the database and close."""
        try:
            await self._stop_checkpoints()
            with contextlib.suppress(sqlite3.Error, ValueError):  # ValueError: already closed
                # Never wait at shutdown: if another process is reading or writing, what can be copied is
                # copied and the rest waits for the next start (or for that process's own checkpoints).
                await self._db.execute("PRAGMA busy_timeout=0")
                await self._db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            await self._db.close()
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.close()  # closing the file releases the lock

    async def ping(self, wait_s: float = 0.9) -> None:
        """Answer if the database could record a job now: take the write lock (waiting at most `wait_s`, not
        the usual busy timeout) and let it go, in one trip, so no other statement can fall inside. Raises
        StorageBusy while another connection holds the lock, and whatever SQLite says when it cannot."""
        def run(conn: sqlite3.Connection) -> None:
            if conn.in_transaction:  # writes commit within their own trip, so this is a read: it answered
                conn.execute("SELECT 1").fetchone()
                return
            usual = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout={max(0, int(wait_s * 1000))}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.rollback()
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(usual)}")

        await in_db_thread(self._db, run)

    async def _write(self, sql: str, args: Sequence[object]) -> tuple[int | None, int]:
        """One statement and its commit in one trip to aiosqlite's thread; `execute` then `commit` take two,
        and each trip costs ~0.1 ms of queueing and waking (a node insert and its message link were four).
        Returns the cursor's lastrowid and rowcount. Like execute + commit: a failing statement is not
        committed and raises."""
        def run(conn: sqlite3.Connection) -> tuple[int | None, int]:
            cur = conn.execute(sql, args)
            conn.commit()
            return cur.lastrowid, cur.rowcount

        return await in_db_thread(self._db, run)

    # -- images --------------------------------------------------------------------------------

    async def record_image(self, sha: str, size: int) -> None:
        await self._write("INSERT OR IGNORE INTO images (sha, size, created_at) VALUES (?, ?, ?)",
                          (sha, size, time.time()))

    async def referenced_images(self, shas: Sequence[str]) -> set[str]:
        """Which of `shas` a node refers to."""
        found: set[str] = set()
        for start in range(0, len(shas), 500):
            batch = shas[start:start + 500]
            rows = await self._db.execute_fetchall(
                f"SELECT DISTINCT image_sha FROM nodes WHERE image_sha IN ({', '.join('?' * len(batch))})", batch)
            found.update(row[0] for row in rows)
        return found

    async def forget_images(self, shas: Sequence[str]) -> None:
        """Drop the bookkeeping rows of image files that were deleted."""
        if shas:
            await self._db.executemany("DELETE FROM images WHERE sha = ?", [(s,) for s in shas])
            await self._db.commit()

    # -- edit tree -----------------------------------------------------------------------------

    async def add_node(self, node: NewNode) -> Node:
        """Insert a node; raises SourceGone if its parent or one of its input photos no longer exists (checked
        in the same trip as the insert, so a /forget can never slip between the check and the row)."""
        parent = node.parent
        root_id = None if parent is None else (parent.root_id or parent.id)
        depth = 0 if parent is None else parent.depth + 1
        now = time.time()
        needed = sorted({n.id for n in (*([parent] if parent else []), *node.inputs)})
        # Whose faces it shows: a photo's sender, everyone in a group picture, and whoever its parent showed;
        # kept on every picture, so /forget finds it even once retention has removed the photo it came from.
        from_photos = [*node.inputs, *([parent] if parent is not None and parent.kind == "photo" else [])]
        pictured = sorted({n.owner for n in from_photos})
        def run(conn: sqlite3.Connection) -> int | None:  # aiosqlite's thread: nothing else runs on it meanwhile
            if needed:
                marks = ", ".join("?" * len(needed))
                (found,) = conn.execute(f"SELECT COUNT(*) FROM nodes WHERE id IN ({marks})", needed).fetchone()
                if found != len(needed):
                    return None
            try:
                cur = conn.execute(
                    "INSERT INTO nodes (platform, chat_id, user_id, parent_id, root_id, kind, image_sha, mime, "
                    "style, instruction, engine, model, commentary, depth, created_at, owner_id, image_size) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (node.platform, node.chat_id, node.user_id, parent.id if parent else None, root_id, node.kind,
                     node.image_sha, node.mime, node.style, node.instruction, node.engine, node.model,
                     node.commentary, depth, now, node.owner_id, node.image_size),
                )
                conn.executemany("INSERT OR IGNORE INTO pictured (node_id, platform, user_id) VALUES (?, ?, ?)",
                                 [(cur.lastrowid, node.platform, who) for who in pictured])
                if parent is not None:
                    conn.execute("INSERT OR IGNORE INTO pictured (node_id, platform, user_id) "
                                 "SELECT ?, platform, user_id FROM pictured WHERE node_id = ?",
                                 (cur.lastrowid, parent.id))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return cur.lastrowid

        node_id = await in_db_thread(self._db, run)
        if node_id is None:
            raise SourceGone(f"node {needed} is gone")
        return Node(id=node_id, platform=node.platform, chat_id=node.chat_id, user_id=node.user_id,
                    parent_id=parent.id if parent else None, root_id=root_id, kind=node.kind,
                    image_sha=node.image_sha, mime=node.mime, style=node.style, instruction=node.instruction,
                    engine=node.engine, model=node.model, commentary=node.commentary, depth=depth,
                    created_at=now, image_size=node.image_size, owner_id=node.owner_id)

    async def get_node(self, node_id: int) -> Node | None:
        # execute_fetchall is one trip to the database thread; execute + fetchone + close are three.
        rows = await self._db.execute_fetchall(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id = ?", (node_id,))
        row = next(iter(rows), None)
        return _node(row) if row is not None else None

    async def node_for_message(self, platform: str, chat_id: str, message_id: str) -> Node | None:
        rows = await self._db.execute_fetchall(
            "SELECT n.* FROM node_messages m JOIN nodes n ON n.id = m.node_id "
            "WHERE m.platform = ? AND m.chat_id = ? AND m.message_id = ?",
            (platform, chat_id, message_id),
        )
        row = next(iter(rows), None)
        return _node(row) if row is not None else None

    async def link_message(self, node: Node, message_id: str) -> None:
        await self._write(
            "INSERT OR REPLACE INTO node_messages (platform, chat_id, message_id, node_id) VALUES (?, ?, ?, ?)",
            (node.platform, node.chat_id, message_id, node.id),
        )

    # -- jobs ----------------------------------------------------------------------------------

    async def add_job(self, platform: str, chat_id: str, user_id: str, kind: str,
                      payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job:
        now = time.time()
        job_id, _ = await self._write(
            "INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, created_at, updated_at,"
            " pictures) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (platform, chat_id, user_id, kind, json.dumps(payload), json.dumps(target.to_json()), now, now,
             pictures),
        )
        assert job_id is not None
        return Job(id=job_id, platform=platform, chat_id=chat_id, user_id=user_id, kind=kind,
                   payload=payload, target=target, status="queued", created_at=now, pictures=pictures)

    async def get_job(self, job_id: int) -> Job | None:
        async with self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _job(row) if row else None

    async def update_job(self, job_id: int, *, status: JobStatus | None = None,
                         result_node: int | None = None, delivered_message: str | None = None,
                         error: str | None = None, attempt: bool = False,
                         result_nodes: tuple[int, ...] | None = None, pictures: int | None = None,
                         extra_calls: int | None = None, delivering: bool = False) -> None:
        sets: list[str] = ["updated_at = ?"]
        args: list[object] = [time.time()]
        if delivering:
            sets.append("delivering_at = ?")
            args.append(args[0])
        results = ",".join(str(n) for n in result_nodes) if result_nodes is not None else None
        for column, value in (("status", status), ("result_node", result_node),
                              ("delivered_message", delivered_message), ("error", error),
                              ("result_nodes", results), ("pictures", pictures), ("extra_calls", extra_calls)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if attempt:
            sets.append("attempts = attempts + 1")
        await self._write(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))

    async def finish_delivery(self, job_id: int, links: Sequence[tuple[Node, str]], message_id: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO node_messages (platform, chat_id, message_id, node_id) VALUES (?, ?, ?, ?)",
                    [(node.platform, node.chat_id, each, node.id) for node, each in links])
                conn.execute("UPDATE jobs SET status = 'delivered', delivered_message = ?, updated_at = ? WHERE id = ?",
                             (message_id, time.time(), job_id))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

        await in_db_thread(self._db, run)

    async def unfinished_jobs(self) -> list[Job]:
        async with self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running', 'done') ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        return [_job(r) for r in rows]

    async def latest_photo(self, platform: str, chat_id: str, user_id: str) -> Node | None:
        async with self._db.execute(
            # Their own photo: one they sent, not someone else's they asked a picture of.
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE platform = ? AND chat_id = ? AND owner_id = ? "
            "AND kind = 'photo' ORDER BY id DESC LIMIT 1", (platform, chat_id, user_id),
        ) as cur:
            row = await cur.fetchone()
        return _node(row) if row else None

    # -- parties ---------------------------------------------------------------------------------

    async def add_party(self, platform: str, chat_id: str, host: Member, style: str, theme: str,
                        deadline: float, reply_to: str | None) -> Party | None:
        now = time.time()
        try:
            cur = await self._db.execute(
                "INSERT INTO parties (platform, chat_id, host_id, host_name, style, theme, status, reply_to, "
                "deadline, created_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (platform, chat_id, host.user_id, host.name, style, theme, reply_to, deadline, now))
        except sqlite3.IntegrityError:  # the chat already has an open party
            await self._db.rollback()
            return None
        assert cur.lastrowid is not None
        await self._db.execute("INSERT INTO party_members VALUES (?, ?, ?, ?, ?)",
                               (cur.lastrowid, host.user_id, host.name, host.node_id, now))
        await self._db.commit()
        return await self.get_party(cur.lastrowid)

    async def get_party(self, party_id: int) -> Party | None:
        async with self._db.execute(f"SELECT {_PARTY_COLUMNS} FROM parties WHERE id = ?", (party_id,)) as cur:
            row = await cur.fetchone()
        return await self._party(row) if row else None

    async def open_party(self, platform: str, chat_id: str) -> Party | None:
        async with self._db.execute(
            f"SELECT {_PARTY_COLUMNS} FROM parties WHERE platform = ? AND chat_id = ? AND status = 'open'",
            (platform, chat_id),
        ) as cur:
            row = await cur.fetchone()
        return await self._party(row) if row else None

    async def party_for_lobby(self, platform: str, chat_id: str, message_id: str) -> Party | None:
        async with self._db.execute(
            f"SELECT {_PARTY_COLUMNS} FROM parties WHERE platform = ? AND chat_id = ? AND lobby_message = ?",
            (platform, chat_id, message_id),
        ) as cur:
            row = await cur.fetchone()
        return await self._party(row) if row else None

    async def open_parties(self) -> list[Party]:
        async with self._db.execute(
            f"SELECT {_PARTY_COLUMNS} FROM parties WHERE status = 'open' ORDER BY id") as cur:
            rows = await cur.fetchall()
        return [await self._party(r) for r in rows]

    async def set_party(self, party_id: int, *, status: PartyStatus | None = None,
                        lobby_message: str | None = None) -> None:
        if status is not None:
            await self._db.execute("UPDATE parties SET status = ? WHERE id = ?", (status, party_id))
        if lobby_message is not None:
            await self._db.execute("UPDATE parties SET lobby_message = ? WHERE id = ?", (lobby_message, party_id))
        await self._db.commit()

    async def move_party(self, party_id: int, status: PartyStatus, *, was: PartyStatus = "open") -> Party | None:
        def run(conn: sqlite3.Connection) -> Any:
            # In one trip to aiosqlite's thread: a RETURNING statement is in progress until its rows are read,
            # and a commit from another coroutine in between would fail.
            row = conn.execute(f"UPDATE parties SET status = ? WHERE id = ? AND status = ? RETURNING {_PARTY_COLUMNS}",
                               (status, party_id, was)).fetchall()
            conn.commit()
            return row[0] if row else None

        row = await in_db_thread(self._db, run)
        return await self._party(row) if row is not None else None

    async def put_member(self, party_id: int, member: Member) -> None:
        """Add a member, or give an existing one a (new) selfie; their place in the roster is kept."""
        await self._db.execute(
            "INSERT INTO party_members VALUES (?, ?, ?, ?, ?) ON CONFLICT (party_id, user_id) DO UPDATE SET "
            "name = excluded.name, node_id = COALESCE(excluded.node_id, party_members.node_id)",
            (party_id, member.user_id, member.name, member.node_id, time.time()))
        await self._db.commit()

    async def remove_member(self, party_id: int, user_id: str) -> bool:
        cur = await self._db.execute("DELETE FROM party_members WHERE party_id = ? AND user_id = ?",
                                     (party_id, user_id))
        await self._db.commit()
        return cur.rowcount > 0

    async def _party(self, row: Any) -> Party:
        async with self._db.execute(
            "SELECT user_id, name, node_id FROM party_members WHERE party_id = ? ORDER BY joined_at, rowid",
            (row["id"],),
        ) as cur:
            members = tuple(Member(r[0], r[1], r[2]) for r in await cur.fetchall())
        return Party(id=row["id"], platform=row["platform"], chat_id=row["chat_id"], host_id=row["host_id"],
                     style=row["style"], theme=row["theme"], status=row["status"],
                     lobby_message=row["lobby_message"], reply_to=row["reply_to"], deadline=row["deadline"],
                     members=members)

    # -- usage and quotas ----------------------------------------------------------------------

    async def count_delivered(self, since: float, *, platform: str | None = None,
                              user_id: str | None = None, chat_id: str | None = None) -> int:
        sql = "SELECT COALESCE(SUM(pictures), 0) FROM jobs WHERE status = 'delivered' AND updated_at >= ?"
        args: list[object] = [since]
        for column, value in (("platform", platform), ("user_id", user_id), ("chat_id", chat_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        async with self._db.execute(sql, args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def job_counts(self, since: float) -> dict[str, int]:
        """Jobs touched since `since`, by status (failed jobs by their error kind too)."""
        async with self._db.execute(
            "SELECT status, COALESCE(error, ''), COUNT(*) FROM jobs WHERE updated_at >= ? GROUP BY 1, 2",
            (since,),
        ) as cur:
            rows = await cur.fetchall()
        counts: dict[str, int] = {}
        for status, error, n in rows:
            counts[status] = counts.get(status, 0) + n
            if status == "failed" and error:
                counts[f"failed:{error}"] = counts.get(f"failed:{error}", 0) + n
        return counts

    async def delivered_by_model(self, since: float) -> dict[tuple[str, str], int]:
        async with self._db.execute(
            # A job's pictures share its model and size: its first one speaks for all.
            "SELECT COALESCE(n.model, ''), COALESCE(n.image_size, ''), SUM(j.pictures) FROM jobs j "
            "JOIN nodes n ON n.id = j.result_node WHERE j.status = 'delivered' AND j.updated_at >= ? GROUP BY 1, 2",
            (since,),
        ) as cur:
            rows = await cur.fetchall()
        return {(model, size): n for model, size, n in rows}

    async def extra_calls_by_model(self, since: float) -> dict[tuple[str, str], int]:
        async with self._db.execute(
            "SELECT COALESCE(n.model, ''), COALESCE(n.image_size, ''), SUM(j.extra_calls) FROM jobs j "
            "JOIN nodes n ON n.id = j.result_node WHERE j.status = 'delivered' AND j.extra_calls > 0 "
            "AND j.updated_at >= ? GROUP BY 1, 2",
            (since,),
        ) as cur:
            rows = await cur.fetchall()
        return {(model, size): n for model, size, n in rows}

    # -- likeness --------------------------------------------------------------------------------

    async def set_likeness(self, node_id: int, status: LikenessStatus, percent: float | None = None) -> None:
        await self._write("UPDATE nodes SET likeness = ?, likeness_status = ? WHERE id = ?",
                          (percent if status == "scored" else None, status, node_id))

    async def set_member_likeness(self, node_id: int, scores: Mapping[str, float | None]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.executemany("UPDATE pictured SET likeness = ? WHERE node_id = ? AND user_id = ?",
                                 [(percent, node_id, who) for who, percent in scores.items()])
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

        await in_db_thread(self._db, run)

    async def member_likeness(self, node_id: int) -> dict[str, float | None]:
        rows = await self._db.execute_fetchall(
            "SELECT user_id, likeness FROM pictured WHERE node_id = ? ORDER BY user_id", (node_id,))
        return {row["user_id"]: row["likeness"] for row in rows}

    async def likeness_by_style(self, since: float) -> dict[tuple[str, str], tuple[float, int]]:
        rows = await self._db.execute_fetchall(
            "SELECT COALESCE(model, ''), COALESCE(style, ''), AVG(likeness), COUNT(*) FROM nodes "
            "WHERE likeness_status = 'scored' AND created_at >= ? GROUP BY 1, 2", (since,))
        return {(model, style): (float(mean), int(n)) for model, style, mean, n in rows}

    # -- credits ---------------------------------------------------------------------------------

    async def balance(self, platform: str, user_id: str, since: float) -> Balance:
        def run(conn: sqlite3.Connection) -> Balance:
            return Balance(_free_used(conn, platform, user_id, since), _credits_left(conn, platform, user_id))

        return await in_db_thread(self._db, run)

    async def add_job_holding(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, Any],
                              target: ReplyTarget, *, free_daily: int, since: float, pictures: int = 1) -> Job | None:
        now = time.time()

        def run(conn: sqlite3.Connection) -> int | None:  # aiosqlite's thread: nothing else runs on it meanwhile
            try:
                free = max(0, free_daily - _free_used(conn, platform, user_id, since))
                units: list[str | None] = [None] * min(free, pictures)
                if len(units) < pictures:  # the rest from the oldest payments with credits left
                    for charge_id, remaining in conn.execute(
                            "SELECT charge_id, remaining FROM payments WHERE platform = ? AND user_id = ? "
                            "AND remaining > 0 AND refunded_at IS NULL ORDER BY paid_at, charge_id",
                            (platform, user_id)).fetchall():
                        take = min(int(remaining), pictures - len(units))
                        conn.execute("UPDATE payments SET remaining = remaining - ? WHERE charge_id = ?",
                                     (take, charge_id))
                        units += [charge_id] * take
                        if len(units) == pictures:
                            break
                if len(units) < pictures:
                    conn.rollback()
                    return None
                cur = conn.execute(
                    "INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, created_at, "
                    "updated_at, pictures) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (platform, chat_id, user_id, kind, json.dumps(payload), json.dumps(target.to_json()), now, now,
                     pictures))
                conn.executemany(
                    "INSERT INTO credit_holds (job_id, unit, platform, user_id, charge_id, status, held_at) "
                    "VALUES (?, ?, ?, ?, ?, 'held', ?)",
                    [(cur.lastrowid, unit, platform, user_id, charge_id, now) for unit, charge_id in enumerate(units)])
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return cur.lastrowid

        job_id = await in_db_thread(self._db, run)
        if job_id is None:
            return None
        return Job(id=job_id, platform=platform, chat_id=chat_id, user_id=user_id, kind=kind,
                   payload=payload, target=target, status="queued", created_at=now, pictures=pictures)

    async def settle_hold(self, job_id: int, pictures: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            try:
                spent = conn.execute(
                    "UPDATE credit_holds SET status = 'spent', settled_at = ? WHERE job_id = ? AND status = 'held' "
                    "AND unit < ?", (time.time(), job_id, pictures)).rowcount
                returned = _return_hold(conn, job_id, time.time())  # candidates that failed cost nothing
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return spent > 0 or returned

        return await in_db_thread(self._db, run)

    async def return_hold(self, job_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            try:
                returned = _return_hold(conn, job_id, time.time())
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return returned

        return await in_db_thread(self._db, run)

    async def settle_ended_holds(self) -> tuple[int, int]:
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            now = time.time()
            try:
                spent = conn.execute(
                    "UPDATE credit_holds SET status = 'spent', settled_at = ? WHERE status = 'held' AND unit < "
                    "(SELECT pictures FROM jobs WHERE jobs.id = credit_holds.job_id AND jobs.status = 'delivered')",
                    (now,)).rowcount
                ended = [row[0] for row in conn.execute(
                    "SELECT DISTINCT h.job_id FROM credit_holds h LEFT JOIN jobs j ON j.id = h.job_id "
                    "WHERE h.status = 'held' AND (j.id IS NULL OR j.status IN ('failed', 'cancelled', 'delivered'))")]
                returned = sum(_return_hold(conn, job_id, now) for job_id in ended)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return spent, returned

        return await in_db_thread(self._db, run)

    async def record_payment(self, charge_id: str, platform: str, user_id: str, stars: int, images: int,
                             payload: str) -> bool:
        _, added = await self._write(
            "INSERT INTO payments (charge_id, platform, user_id, stars, images, remaining, payload, paid_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (charge_id) DO NOTHING",
            (charge_id, platform, user_id, stars, images, images, payload, time.time()))
        return added > 0

    async def get_payment(self, charge_id: str) -> Payment | None:
        rows = await self._db.execute_fetchall(
            "SELECT charge_id, platform, user_id, stars, images, remaining, refunded_at, removed FROM payments "
            "WHERE charge_id = ?", (charge_id,))
        row = next(iter(rows), None)
        if row is None:
            return None
        return Payment(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), row[6] is not None, int(row[7]))

    async def refund_payment(self, charge_id: str) -> Payment | None:
        await self._write(
            "UPDATE payments SET refunded_at = ?, removed = remaining, remaining = 0 "
            "WHERE charge_id = ? AND refunded_at IS NULL", (time.time(), charge_id))
        return await self.get_payment(charge_id)

    # -- forgetting ------------------------------------------------------------------------------

    async def forget_person(self, platform: str, user_id: str) -> list[str]:
        """Delete what the person asked for, their photos and everything made from them (whoever asked), every
        group picture they are in and everything made from it, their jobs, settings and party rows, and their
        name in other people's jobs; returns image hashes no node refers to any more."""
        def run(conn: sqlite3.Connection) -> list[str]:
            try:
                shas = self._forget_in(conn, platform, user_id)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return shas

        shas = await in_db_thread(self._db, run)
        self._forget_preferences(("person", platform, user_id))
        return await self._unreferenced(shas)

    @staticmethod
    def _forget_in(conn: sqlite3.Connection, platform: str, user_id: str) -> list[str]:
        """The statements of `forget_person`, in one transaction on aiosqlite's thread."""
        doomed = [row[0] for row in conn.execute(
            "WITH RECURSIVE doomed(id) AS ("
            " SELECT id FROM nodes WHERE platform = :p AND owner_id = :u"
            " UNION SELECT node_id FROM pictured WHERE platform = :p AND user_id = :u"
            " UNION SELECT n.id FROM nodes n JOIN doomed d ON n.root_id = d.id"
            " UNION SELECT n.id FROM nodes n JOIN doomed d ON n.parent_id = d.id"
            ") SELECT id FROM doomed UNION SELECT id FROM nodes WHERE platform = :p AND user_id = :u",
            {"p": platform, "u": user_id})]
        ids = json.dumps(doomed)
        shas = [row[0] for row in conn.execute(
            "SELECT DISTINCT image_sha FROM nodes WHERE id IN (SELECT value FROM json_each(?))", (ids,))]
        # Other people's jobs made from these pictures keep their row (their quota counts it) but lose the
        # person: a group picture's job forgets their name and photo; an edit's words about them go.
        for job_id, payload_text, result in conn.execute(
                "SELECT id, payload, result_node FROM jobs WHERE platform = ? AND user_id != ? AND (kind = 'fuse' "
                "OR result_node IN (SELECT value FROM json_each(?)) "
                "OR json_extract(payload, '$.node') IN (SELECT value FROM json_each(?)))",
                (platform, user_id, ids, ids)).fetchall():
            payload = json.loads(payload_text)
            scrubbed = _without(payload, result, set(doomed))
            if scrubbed != payload:
                conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (json.dumps(scrubbed), job_id))
        conn.execute("DELETE FROM party_members WHERE user_id = ? AND party_id IN "
                     "(SELECT id FROM parties WHERE platform = ?)", (user_id, platform))
        # A party they hosted goes on without them: no host (chat admins can still start it), no name.
        conn.execute("UPDATE parties SET host_id = '', host_name = '' WHERE platform = ? AND host_id = ?",
                     (platform, user_id))
        conn.execute("DELETE FROM nodes WHERE id IN (SELECT value FROM json_each(?))", (ids,))
        conn.execute("DELETE FROM jobs WHERE platform = ? AND user_id = ?", (platform, user_id))
        conn.execute("DELETE FROM preferences WHERE scope = 'person' AND platform = ? AND owner_id = ?",
                     (platform, user_id))
        return shas

    async def purge_older_than(self, cutoff: float) -> list[str]:
        """Delete nodes created before `cutoff`, finished jobs, parties and the personal settings of people
        silent since; returns image hashes no node refers to any more."""
        async with self._db.execute(
            "SELECT DISTINCT image_sha FROM nodes WHERE created_at < ?", (cutoff,)
        ) as cur:
            shas = [r[0] for r in await cur.fetchall()]
        await self._db.execute("DELETE FROM nodes WHERE created_at < ?", (cutoff,))
        await self._db.execute(
            "DELETE FROM jobs WHERE updated_at < ? AND status IN ('delivered', 'failed', 'cancelled')", (cutoff,)
        )
        # Parties (their members go with them) long over, and the settings and personas of people who
        # have had nothing made or asked for since the cutoff: what is left of them is just as old.
        await self._db.execute("DELETE FROM parties WHERE created_at < ? AND (status != 'open' OR deadline < ?)",
                               (cutoff, cutoff))
        await self._db.execute(
            "DELETE FROM preferences WHERE scope = 'person' AND updated_at < ? "
            "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.platform = preferences.platform "
            "                AND n.user_id = preferences.owner_id) "
            "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.platform = preferences.platform "
            "                AND j.user_id = preferences.owner_id)", (cutoff,))
        # Interaction tokens are only ever useful for 15 minutes: whatever has expired goes, whatever the cutoff.
        await self._db.execute("DELETE FROM reply_tokens WHERE expires_at <= ?", (time.time(),))
        await self._db.commit()
        self._preferences.clear()
        self._preferences_changes += 1  # reads under way must not cache what was just deleted
        return await self._unreferenced(shas)

    async def unreferenced(self, shas: list[str]) -> list[str]:
        return await self._unreferenced(shas)

    async def _unreferenced(self, shas: list[str]) -> list[str]:
        orphans = []
        for sha in shas:
            async with self._db.execute("SELECT 1 FROM nodes WHERE image_sha = ? LIMIT 1", (sha,)) as cur:
                if await cur.fetchone() is None:
                    orphans.append(sha)
        if orphans:
            await self._db.executemany("DELETE FROM images WHERE sha = ?", [(s,) for s in orphans])
            await self._db.commit()
        return orphans

    # -- personal settings and persona (people) ---------------------------------------------------

    async def get_preferences(self, scope: PreferenceScope, platform: str, owner_id: str) -> Preferences:
        key = (scope, platform, owner_id)
        cached = self._preferences.get(key)
        if cached is not None:
            self._preferences.move_to_end(key)
            return cached
        changes = self._preferences_changes
        found = await self._read_preferences(scope, platform, owner_id)
        if changes == self._preferences_changes:
            self._remember_preferences(key, found)
        return found

    def _remember_preferences(self, key: tuple[str, str, str], preferences: Preferences) -> None:
        self._preferences[key] = preferences
        self._preferences.move_to_end(key)
        while len(self._preferences) > PREFERENCES_CACHED:
            self._preferences.popitem(last=False)

    async def _read_preferences(self, scope: PreferenceScope, platform: str, owner_id: str) -> Preferences:
        rows = await self._db.execute_fetchall(
            "SELECT model, aspect_ratio, image_size, delivery, persona, language, variants FROM preferences "
            "WHERE scope = ? AND platform = ? AND owner_id = ?", (scope, platform, owner_id))
        row = next(iter(rows), None)
        if row is None:
            return Preferences()
        delivery = row["delivery"] if row["delivery"] in ("photo", "file", "both") else None
        return Preferences(model=row["model"], aspect_ratio=row["aspect_ratio"], image_size=row["image_size"],
                           delivery=delivery, persona=row["persona"] or "", language=row["language"],
                           variants=row["variants"])

    async def set_preferences(self, scope: PreferenceScope, platform: str, owner_id: str,
                              preferences: Preferences) -> None:
        p = preferences
        await self._write(
            "INSERT OR REPLACE INTO preferences (scope, platform, owner_id, model, aspect_ratio, image_size, "
            "delivery, persona, language, updated_at, variants) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (scope, platform, owner_id, p.model, p.aspect_ratio, p.image_size, p.delivery, p.persona,
             p.language, time.time(), p.variants))
        self._forget_preferences((scope, platform, owner_id))

    def _forget_preferences(self, key: tuple[str, str, str]) -> None:
        """After a write: drop the copy, and keep reads that were under way from caching what they saw."""
        self._preferences_changes += 1
        self._preferences.pop(key, None)

    async def recent_results(self, platform: str, chat_id: str, user_id: str, limit: int) -> list[Node]:
        rows = await self._db.execute_fetchall(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE platform = ? AND chat_id = ? AND user_id = ? "
            "AND kind != 'photo' ORDER BY id DESC LIMIT ?", (platform, chat_id, user_id, limit))
        return [_node(row) for row in rows]

    # -- delivered pictures' file references (inline sharing) ---------------------------------------

    async def record_file(self, node: Node, platform: str, file_ref: str) -> None:
        # A node deleted meanwhile (a /forget during the send) leaves nothing: the row needs its node.
        await self._write(
            "INSERT INTO node_files (node_id, platform, file_ref, created_at) "
            "SELECT id, ?, ?, ? FROM nodes WHERE id = ? "
            "ON CONFLICT (node_id, platform) DO UPDATE SET file_ref = excluded.file_ref",
            (platform, file_ref, time.time(), node.id))

    async def shareable_results(self, platform: str, user_id: str, limit: int) -> list[tuple[Node, str]]:
        rows = await self._db.execute_fetchall(
            f"SELECT {', '.join('n.' + c.strip() for c in _NODE_COLUMNS.split(','))}, f.file_ref "
            "FROM nodes n JOIN node_files f ON f.node_id = n.id AND f.platform = n.platform "
            "WHERE n.platform = ? AND n.user_id = ? AND n.kind != 'photo' ORDER BY n.id DESC LIMIT ?",
            (platform, user_id, limit))
        return [(_node(row), row["file_ref"]) for row in rows]

    # -- chats that refuse us --------------------------------------------------------------------

    async def set_chat_blocked(self, platform: str, chat_id: str, blocked: bool) -> None:
        if blocked:
            await self._db.execute("INSERT OR REPLACE INTO blocked_chats VALUES (?, ?, ?)",
                                   (platform, chat_id, time.time()))
        else:
            await self._db.execute("DELETE FROM blocked_chats WHERE platform = ? AND chat_id = ?",
                                   (platform, chat_id))
        await self._db.commit()

    async def is_chat_blocked(self, platform: str, chat_id: str) -> bool:
        async with self._db.execute(
            "SELECT 1 FROM blocked_chats WHERE platform = ? AND chat_id = ?", (platform, chat_id)
        ) as cur:
            return await cur.fetchone() is not None

    # -- updates taken ---------------------------------------------------------------------------

    async def record_update(self, update_id: int, *, pending: bool = False, stale_before: float = 0.0,
                            seen_at: float | None = None) -> bool:
        _, added = await self._write(
            "INSERT INTO telegram_updates (update_id, seen_at, pending) VALUES (?, ?, ?) ON CONFLICT (update_id) "
            "DO UPDATE SET seen_at = excluded.seen_at, pending = excluded.pending "
            "WHERE telegram_updates.pending AND telegram_updates.seen_at < ?",
            (update_id, time.time() if seen_at is None else seen_at, int(pending), stale_before))
        return added > 0

    async def settle_update(self, update_id: int, *, handled: bool, seen_at: float | None = None) -> None:
        if handled:
            await self._write("UPDATE telegram_updates SET pending = 0 WHERE update_id = ?", (update_id,))
        else:
            await self._write("DELETE FROM telegram_updates WHERE update_id = ? AND pending "
                              "AND (? IS NULL OR seen_at = ?)", (update_id, seen_at, seen_at))

    async def update_pending(self, update_id: int) -> bool | None:
        async with self._db.execute("SELECT pending FROM telegram_updates WHERE update_id = ?", (update_id,)) as cur:
            row = await cur.fetchone()
        return None if row is None else bool(row[0])

    async def prune_updates(self, before: float) -> int:
        _, removed = await self._write("DELETE FROM telegram_updates WHERE seen_at < ?", (before,))
        return removed

    # -- reply tokens ------------------------------------------------------------------------------

    async def keep_reply_token(self, token: ReplyToken) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("DELETE FROM reply_tokens WHERE expires_at <= ?", (time.time(),))
                conn.execute(
                    "INSERT INTO reply_tokens (platform, request_id, secret, details, expires_at, delivered) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, request_id) DO UPDATE SET "
                    "secret = excluded.secret, details = excluded.details, expires_at = excluded.expires_at, "
                    "delivered = excluded.delivered",
                    (token.platform, token.request_id, token.secret, json.dumps(dict(token.details)),
                     token.expires_at, int(token.delivered)))
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

        await in_db_thread(self._db, run)

    async def reply_token(self, platform: str, request_id: str, now: float) -> ReplyToken | None:
        async with self._db.execute(
            "SELECT secret, details, expires_at, delivered FROM reply_tokens WHERE platform = ? AND request_id = ?",
            (platform, request_id),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        if row["expires_at"] <= now:
            await self.drop_reply_token(platform, request_id)
            return None
        return ReplyToken(platform=platform, request_id=request_id, secret=row["secret"],
                          expires_at=row["expires_at"], details=json.loads(row["details"]),
                          delivered=bool(row["delivered"]))

    async def mark_reply_token_delivered(self, platform: str, request_id: str) -> None:
        await self._write("UPDATE reply_tokens SET delivered = 1 WHERE platform = ? AND request_id = ?",
                          (platform, request_id))

    async def drop_reply_token(self, platform: str, request_id: str) -> None:
        await self._write("DELETE FROM reply_tokens WHERE platform = ? AND request_id = ?", (platform, request_id))

    # -- send slots: one process keeps them in memory (the send_slots table stays empty) ----------

    async def reserve_send(self, rules: Sequence[SendRule]) -> float:
        return await self._slots.reserve_send(rules)

    async def push_sends(self, scopes: Sequence[str], seconds: float) -> None:
        await self._slots.push_sends(scopes, seconds)


def _hold_lock(lock_path: Path, path: Path | str) -> IO[str]:
    """An exclusive advisory lock for as long as the returned file stays open (released by the kernel
    when the process dies, so a crash never leaves it behind). Raises StoreInUse if another process
    holds it."""
    handle = lock_path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()[:20]
        handle.close()
        raise StoreInUse(path, holder) from None
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _free_used(conn: sqlite3.Connection, platform: str, user_id: str, since: float) -> int:
    (used,) = conn.execute(
        "SELECT COUNT(*) FROM credit_holds WHERE platform = ? AND user_id = ? AND charge_id IS NULL "
        "AND status != 'returned' AND held_at >= ?", (platform, user_id, since)).fetchone()
    return int(used)


def _credits_left(conn: sqlite3.Connection, platform: str, user_id: str) -> int:
    (left,) = conn.execute(
        "SELECT COALESCE(SUM(remaining), 0) FROM payments WHERE platform = ? AND user_id = ? AND refunded_at IS NULL",
        (platform, user_id)).fetchone()
    return int(left)


def _return_hold(conn: sqlite3.Connection, job_id: int, now: float) -> bool:
    """Inside a transaction: the job's units still held come back (credits to their payments, unless refunded)."""
    rows = conn.execute("SELECT charge_id FROM credit_holds WHERE job_id = ? AND status = 'held'", (job_id,)).fetchall()
    if not rows:
        return False
    conn.execute("UPDATE credit_holds SET status = 'returned', settled_at = ? WHERE job_id = ? AND status = 'held'",
                 (now, job_id))
    for (charge_id,) in rows:
        if charge_id is not None:
            conn.execute("UPDATE payments SET remaining = remaining + 1 WHERE charge_id = ? AND refunded_at IS NULL",
                         (charge_id,))
    return True


def storage_error(exc: sqlite3.OperationalError) -> Exception:
    """SQLite's own words for a full disk or a lock, as the core's error types; anything else as it was."""
    text = str(exc).lower()
    if "full" in text:
        return StorageFull(f"sqlite: {exc}")
    if "locked" in text or "busy" in text:
        return StorageBusy(f"sqlite: {exc}")
    return exc


def _speaking_core_errors(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            translated = storage_error(exc)
            if translated is exc:
                raise
            raise translated from exc

    return wrapper


# Every public coroutine of the store speaks the core's error types, so use cases never read SQLite's words.
for _name, _method in list(vars(SqliteStore).items()):
    if not _name.startswith("_") and inspect.iscoroutinefunction(_method):
        setattr(SqliteStore, _name, _speaking_core_errors(_method))
