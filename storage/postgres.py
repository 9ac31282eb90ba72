"""PostgreSQL persistence (asyncpg, a connection pool): everything `storage/sqlite.py` keeps, images included.

Chosen with `[storage] url = "postgresql://…"`. The schema is the same numbered history as SQLite's
(`storage/migrations/`, PostgreSQL's own words where they differ), applied under an advisory lock so that
processes starting together migrate once; the version reached is a row in `schema_migrations`.

Unlike SQLite, this database may have other writers (more pixme processes), so nothing read is kept in memory
except image bytes, which never change under their name. Every statement that must see a consistent edit tree
runs in one transaction: node inserts take a shared advisory lock, /forget and the retention purge an exclusive
one, so a picture is never added under a parent that a /forget is deleting (SQLite gets the same from having
one writer). Job statements touch one row by id, so a `FOR UPDATE SKIP LOCKED` claim can be added beside them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

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
    QueueCounts,
    ReplyToken,
    SourceGone,
)
from core.requests import ReplyTarget
from core.send_slots import SendRule, Slot, plan
from storage.migrations import Migration, latest, migrations
from storage.rows import JOB_COLUMNS, NODE_COLUMNS, PARTY_COLUMNS, job_from_row, node_from_row, without_pictures

log = logging.getLogger(__name__)

# Advisory lock keys (any 64-bit numbers, the same in every pixme process).
MIGRATION_LOCK = 0x706978_6D65_0001  # "pixme" 1: one process migrates at a time
NODES_LOCK = 0x706978_6D65_0002  # shared by node inserts, exclusive for /forget and the retention purge
REAP_EVERY_S = 0.5  # how often a claiming process frees the jobs whose leases ran out
LISTEN_RETRY_S = 0.5  # how often a cut LISTEN connection is made again
JOBS_CHANNEL = "pixme_jobs"  # NOTIFY'd when jobs are added: idle workers claim at once, not at their next poll
UNFINISHED_SQL = "status IN ('queued', 'running', 'done')"
# A new job's turn (round) in the fair queue, in its INSERT ($1 platform, $3 user id): after the person's own
# unfinished jobs, and not before the round being served now (the latest claimed), as core.jobs.JobRunner does.
_TURN = (f"GREATEST(COALESCE((SELECT MAX(turn) + 1 FROM jobs WHERE platform = $1 AND user_id = $3 "
         f"AND {UNFINISHED_SQL}), 0), "
         f"COALESCE((SELECT MAX(turn) FROM jobs WHERE claimed_by IS NOT NULL AND {UNFINISHED_SQL}), 0))")
_JOB_COLUMNS_OF_JOBS = ", ".join("jobs." + c.strip() for c in JOB_COLUMNS.split(","))

VERSION_TABLE = "schema_migrations"

# Up to $5 jobs for one worker in one statement: the earliest turns (rounds), then the oldest, of people with
# nothing claimed anywhere; rows other workers are claiming are skipped, not waited for. Of one person's jobs in
# the window only the first is taken (the others stay for their turn), so the unique index on claims sees at most
# one per person from here; a race with another worker for the same person ends in a unique violation, retried.
_CLAIM = (
    "WITH candidates AS (SELECT j.id, j.platform, j.user_id, j.turn FROM jobs j "
    f"WHERE j.claimed_by IS NULL AND j.{UNFINISHED_SQL} AND j.platform = ANY($4::text[]) "
    "AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.platform = j.platform "
    "AND r.user_id = j.user_id AND r.claimed_by IS NOT NULL) "
    "ORDER BY j.turn, j.id LIMIT $5 FOR UPDATE OF j SKIP LOCKED), "
    "firsts AS (SELECT DISTINCT ON (platform, user_id) id FROM candidates ORDER BY platform, user_id, turn, id), "
    "claimed AS (UPDATE jobs SET claimed_by = $2, lease_until = $1::float8 + $3::float8, claimed_at = $1 "
    f"FROM firsts WHERE jobs.id = firsts.id RETURNING {_JOB_COLUMNS_OF_JOBS}, jobs.turn) "
    f"SELECT {JOB_COLUMNS} FROM claimed ORDER BY turn, id")


class SchemaBehind(StorageError):
    """The database has not been migrated to what this version of pixme needs."""


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _Resets:
    """What a connection given back to the pool needs before its next use.

    asyncpg's default resets every one with a round trip of its own (advisory locks released, cursors closed,
    UNLISTEN, RESET ALL): as many round trips again as there are one-statement calls, which most of ours are (a
    claim, a job's end). Those leave nothing on the session, and asyncpg itself rolls back a transaction left
    open; the places that hold a session-level advisory lock or change a setting (`migrate`, `run_alone`) mark
    their connection, and only a marked one gets the full reset."""

    def __init__(self) -> None:
        self._marked: set[int] = set()  # server process ids

    def mark(self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
        self._marked.add(conn.get_server_pid())

    async def __call__(self, conn: asyncpg.Connection) -> None:
        pid = conn.get_server_pid()
        if pid in self._marked:
            self._marked.discard(pid)
            await conn.execute(conn.get_reset_query())


class PostgresStore:
    """Implements `core.ports.Store` on a PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool, url: str, resets: _Resets | None = None) -> None:
        self._pool = pool
        self._resets = resets or _Resets()
        self._url = url  # LISTEN needs a connection of its own
        self._reaped_at = 0.0  # when this process last freed the jobs of lapsed leases
        self._slots_pruned_at = 0.0  # when this process last deleted send slots nobody needs (database clock)
        self.where = redacted(url)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, busy_timeout_ms: int = 5000,
                   pool_size: int = 10) -> PostgresStore:
        """Connect a pool to `url` and migrate (or, with `migrate=False`, check that someone has).

        A statement waits up to `busy_timeout_ms` for a lock before it fails with `StorageBusy`, as SQLite's
        busy timeout does."""
        store = await cls.connect(url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size)
        try:
            if migrate:
                await store.migrate()
            else:
                await store.check_version()
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def connect(cls, url: str, *, busy_timeout_ms: int = 5000, pool_size: int = 10) -> PostgresStore:
        """The pool alone, neither migrating nor checking the schema (`pixme migrate` then calls `migrate`)."""
        resets = _Resets()
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, command_timeout=60, reset=resets,
                server_settings={"lock_timeout": str(int(busy_timeout_ms)), "application_name": "pixme"})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageBusy(f"postgres: cannot connect to {redacted(url)}: {exc}") from exc
        return cls(pool, url, resets)

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._pool.close(), timeout=10)
        self._pool.terminate()

    async def ping(self, wait_s: float = 0.9) -> None:
        """Answer if the database could record a job now: a connection from the pool and a round trip to the
        server, within `wait_s`. Raises StorageBusy when the server is out of reach or too slow."""
        try:
            async with asyncio.timeout(wait_s):
                await self._pool.fetchval("SELECT 1")
        except TimeoutError as exc:
            raise StorageBusy(f"postgres: no answer within {wait_s:.1f} s") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    # -- schema ----------------------------------------------------------------------------------

    async def migrate(self) -> list[Migration]:
        """Apply the steps this database has not had, each in its own transaction, while holding the
        migration lock (a second process starting meanwhile waits, then finds nothing left to do)."""
        applied = []
        async with self._pool.acquire() as conn:
            self._resets.mark(conn)
            # Migration steps may take longer than a request would wait for a lock.
            await conn.execute("SET lock_timeout = 0")
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, "
                                   "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                version = await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")
                for step in migrations("postgres"):
                    if step.number > version:
                        async with conn.transaction():
                            await conn.execute(step.script)
                            await conn.execute(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES ($1, $2)",
                                               step.number, step.name)
                        log.info("postgres: migrated %s to %04d_%s", self.where, step.number, step.name)
                        applied.append(step)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
                await conn.execute("RESET lock_timeout")
        return applied

    async def schema_version(self) -> int:
        async with self._pool.acquire() as conn:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", VERSION_TABLE)
            if not exists:
                return 0
            return int(await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}"))

    async def check_version(self) -> None:
        have, need = await self.schema_version(), latest()
        if have < need:
            raise SchemaBehind(f"postgres: {self.where} is at schema version {have}, this pixme needs {need}: "
                               "run `pixme migrate`")

    # -- images (the bytes themselves; PostgresImageStore is the ImageStore) -----------------------

    async def put_image(self, sha: str, data: bytes) -> None:
        """Store the bytes under `sha` once; storing them again only makes them recent (the orphan sweep then
        leaves them alone, as a file's refreshed time does)."""
        await self._pool.execute(
            "INSERT INTO images (sha, size, created_at, data) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (sha) DO UPDATE SET created_at = excluded.created_at", sha, len(data), time.time(), data)

    async def image_bytes(self, sha: str) -> bytes | None:
        data: bytes | None = await self._pool.fetchval("SELECT data FROM images WHERE sha = $1", sha)
        return data

    async def delete_image(self, sha: str) -> None:
        await self._pool.execute("DELETE FROM images WHERE sha = $1", sha)

    async def sweep_images(self, cutoff: float) -> list[str]:
        """Delete images stored (or stored again) before `cutoff` that no node refers to; their hashes."""
        rows = await self._pool.fetch(
            "DELETE FROM images i WHERE created_at < $1 AND NOT EXISTS "
            "(SELECT 1 FROM nodes n WHERE n.image_sha = i.sha) RETURNING sha", cutoff)
        return [row["sha"] for row in rows]

    # -- edit tree -----------------------------------------------------------------------------

    async def add_node(self, node: NewNode) -> Node:
        """Insert a node; raises SourceGone if its parent or one of its input photos no longer exists (checked
        in the insert's transaction, which a /forget cannot run beside)."""
        parent = node.parent
        root_id = None if parent is None else (parent.root_id or parent.id)
        depth = 0 if parent is None else parent.depth + 1
        now = time.time()
        needed = sorted({n.id for n in (*([parent] if parent else []), *node.inputs)})
        from_photos = [*node.inputs, *([parent] if parent is not None and parent.kind == "photo" else [])]
        pictured = sorted({n.owner for n in from_photos})
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", NODES_LOCK)
            if needed:
                found = await conn.fetchval("SELECT COUNT(*) FROM nodes WHERE id = ANY($1::bigint[])", needed)
                if found != len(needed):
                    raise SourceGone(f"node {needed} is gone")
            node_id: int = await conn.fetchval(
                "INSERT INTO nodes (platform, chat_id, user_id, parent_id, root_id, kind, image_sha, mime, style, "
                "instruction, engine, model, commentary, depth, created_at, owner_id, image_size) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
                node.platform, node.chat_id, node.user_id, parent.id if parent else None, root_id, node.kind,
                node.image_sha, node.mime, node.style, node.instruction, node.engine, node.model, node.commentary,
                depth, now, node.owner_id, node.image_size)
            if pictured:
                await conn.execute("INSERT INTO pictured (node_id, platform, user_id) "
                                   "SELECT $1, $2, who FROM unnest($3::text[]) who ON CONFLICT DO NOTHING",
                                   node_id, node.platform, pictured)
            if parent is not None:
                await conn.execute("INSERT INTO pictured (node_id, platform, user_id) "
                                   "SELECT $1, platform, user_id FROM pictured WHERE node_id = $2 "
                                   "ON CONFLICT DO NOTHING", node_id, parent.id)
        return Node(id=node_id, platform=node.platform, chat_id=node.chat_id, user_id=node.user_id,
                    parent_id=parent.id if parent else None, root_id=root_id, kind=node.kind,
                    image_sha=node.image_sha, mime=node.mime, style=node.style, instruction=node.instruction,
                    engine=node.engine, model=node.model, commentary=node.commentary, depth=depth,
                    created_at=now, image_size=node.image_size, owner_id=node.owner_id)

    async def get_node(self, node_id: int) -> Node | None:
        row = await self._pool.fetchrow(f"SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1", node_id)
        return node_from_row(row) if row is not None else None

    async def node_for_message(self, platform: str, chat_id: str, message_id: str) -> Node | None:
        row = await self._pool.fetchrow(
            f"SELECT {', '.join('n.' + c.strip() for c in NODE_COLUMNS.split(','))} FROM node_messages m "
            "JOIN nodes n ON n.id = m.node_id WHERE m.platform = $1 AND m.chat_id = $2 AND m.message_id = $3",
            platform, chat_id, message_id)
        return node_from_row(row) if row is not None else None

    async def link_message(self, node: Node, message_id: str) -> None:
        await self._pool.execute(
            "INSERT INTO node_messages (platform, chat_id, message_id, node_id) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (platform, chat_id, message_id) DO UPDATE SET node_id = excluded.node_id",
            node.platform, node.chat_id, message_id, node.id)

    async def latest_photo(self, platform: str, chat_id: str, user_id: str) -> Node | None:
        row = await self._pool.fetchrow(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE platform = $1 AND chat_id = $2 AND owner_id = $3 "
            "AND kind = 'photo' ORDER BY id DESC LIMIT 1", platform, chat_id, user_id)
        return node_from_row(row) if row is not None else None

    # -- jobs ----------------------------------------------------------------------------------

    async def add_job(self, platform: str, chat_id: str, user_id: str, kind: str,
                      payload: dict[str, Any], target: ReplyTarget, *, pictures: int = 1) -> Job:
        now = time.time()
        job_id: int = await self._pool.fetchval(
            "INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, created_at, updated_at,"
            f" pictures, turn) VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $8, {_TURN}) RETURNING id",
            platform, chat_id, user_id, kind, json.dumps(payload), json.dumps(target.to_json()), now, pictures)
        return Job(id=job_id, platform=platform, chat_id=chat_id, user_id=user_id, kind=kind,
                   payload=payload, target=target, status="queued", created_at=now, pictures=pictures)

    async def get_job(self, job_id: int) -> Job | None:
        row = await self._pool.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
        return job_from_row(row) if row is not None else None

    async def update_job(self, job_id: int, *, status: JobStatus | None = None,
                         result_node: int | None = None, delivered_message: str | None = None,
                         error: str | None = None, attempt: bool = False,
                         result_nodes: tuple[int, ...] | None = None, pictures: int | None = None,
                         extra_calls: int | None = None, delivering: bool = False) -> None:
        args: list[object] = [job_id, time.time()]
        sets = ["updated_at = $2"]
        if delivering:
            sets.append("delivering_at = $2")
        results = ",".join(str(n) for n in result_nodes) if result_nodes is not None else None
        for column, value in (("status", status), ("result_node", result_node),
                              ("delivered_message", delivered_message), ("error", error),
                              ("result_nodes", results), ("pictures", pictures), ("extra_calls", extra_calls)):
            if value is not None:
                args.append(value)
                sets.append(f"{column} = ${len(args)}")
        if attempt:
            sets.append("attempts = attempts + 1")
        if status in ("delivered", "failed", "cancelled"):  # the job ends and gives up its claim in one statement
            sets.append("claimed_by = NULL, lease_until = NULL")
        await self._pool.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = $1", *args)

    async def finish_delivery(self, job_id: int, links: Sequence[tuple[Node, str]], message_id: str) -> None:
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO node_messages (platform, chat_id, message_id, node_id) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (platform, chat_id, message_id) DO UPDATE SET node_id = excluded.node_id",
                [(node.platform, node.chat_id, each, node.id) for node, each in links])
            # The job ends and gives up its claim in the same statement.
            await conn.execute(
                "UPDATE jobs SET status = 'delivered', delivered_message = $2, updated_at = $3, claimed_by = NULL, "
                "lease_until = NULL WHERE id = $1", job_id, message_id, time.time())

    async def unfinished_jobs(self) -> list[Job]:
        rows = await self._pool.fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running', 'done') ORDER BY id")
        return [job_from_row(r) for r in rows]

    # -- jobs shared by many processes: claims under leases ---------------------------------------

    async def claim_jobs(self, owner: str, lease_s: float, platforms: Sequence[str], limit: int) -> list[Job]:
        now = time.time()
        if now - self._reaped_at >= REAP_EVERY_S:
            # Leases that ran out (their worker died or stalled): those jobs are claimable again.
            self._reaped_at = now
            await self._pool.execute("UPDATE jobs SET claimed_by = NULL, lease_until = NULL "
                                     "WHERE claimed_by IS NOT NULL AND lease_until < $1", now)
        for _ in range(5):  # lost a race for the same person (the unique index refused a claim): go again
            try:
                rows = await self._pool.fetch(_CLAIM, now, owner, lease_s, list(platforms), limit)
            except asyncpg.UniqueViolationError:
                continue
            return [job_from_row(row) for row in rows]
        return []

    async def queue_positions(self, job_ids: Sequence[int]) -> dict[int, int]:
        rows = await self._pool.fetch(
            f"WITH waiting AS (SELECT id, row_number() OVER (ORDER BY turn, id) AS place FROM jobs "
            f"WHERE claimed_by IS NULL AND {UNFINISHED_SQL}) "
            f"SELECT j.id, COALESCE(w.place, 0) AS place FROM jobs j LEFT JOIN waiting w ON w.id = j.id "
            f"WHERE j.id = ANY($1::bigint[]) AND j.{UNFINISHED_SQL}", list(job_ids))
        return {int(r["id"]): int(r["place"]) for r in rows}

    async def renew_leases(self, owner: str, job_ids: Sequence[int], lease_s: float) -> set[int]:
        rows = await self._pool.fetch(
            f"UPDATE jobs SET lease_until = $3 WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND {UNFINISHED_SQL} "
            "RETURNING id", list(job_ids), owner, time.time() + lease_s)
        return {int(r["id"]) for r in rows}

    async def release_job(self, job_id: int, owner: str) -> Job | None:
        # One round trip for both: the SELECT sees the row as it was before the release, which changes no column
        # a Job has.
        row = await self._pool.fetchrow(
            "WITH released AS (UPDATE jobs SET claimed_by = NULL, lease_until = NULL "
            f"WHERE id = $1 AND claimed_by = $2) SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1", job_id, owner)
        return job_from_row(row) if row is not None else None

    async def cancel_jobs(self, platform: str, user_id: str, chat_id: str | None) -> list[Job]:
        # A claim stays with its worker until that worker has stopped (its heartbeat finds the job over).
        rows = await self._pool.fetch(
            "UPDATE jobs SET status = 'cancelled', updated_at = $4 WHERE platform = $1 AND user_id = $2 "
            f"AND ($3::text IS NULL OR chat_id = $3) AND {UNFINISHED_SQL} RETURNING {JOB_COLUMNS}",
            platform, user_id, chat_id, time.time())
        return sorted((job_from_row(r) for r in rows), key=lambda j: j.id)

    async def queue_counts(self, platform: str, chat_id: str, user_id: str) -> QueueCounts:
        row = await self._pool.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE platform = $1 AND user_id = $3) AS person_jobs, "
            "COALESCE(SUM(GREATEST(pictures, 1)), 0) AS pictures, "
            "COALESCE(SUM(GREATEST(pictures, 1)) FILTER (WHERE platform = $1 AND user_id = $3), 0) AS person, "
            "COALESCE(SUM(GREATEST(pictures, 1)) FILTER (WHERE platform = $1 AND chat_id = $2), 0) AS chat "
            f"FROM jobs WHERE {UNFINISHED_SQL}", platform, chat_id, user_id)
        return QueueCounts(int(row["person_jobs"]), int(row["pictures"]), int(row["person"]), int(row["chat"]))

    async def queue_sizes(self) -> tuple[int, int]:
        row = await self._pool.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE claimed_by IS NULL) AS waiting, "
            f"COUNT(*) FILTER (WHERE claimed_by IS NOT NULL) AS claimed FROM jobs WHERE {UNFINISHED_SQL}")
        return int(row["waiting"]), int(row["claimed"])

    async def announce_jobs(self) -> None:
        await self._pool.execute("SELECT pg_notify($1, '')", JOBS_CHANNEL)

    async def listen_jobs(self, wake: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """LISTEN on a connection of its own. When the server cuts it (a restart), `wake` is called (what was
        announced meanwhile was missed: look now) and it is connected again, every `LISTEN_RETRY_S`, until the
        returned `stop`."""
        lost = asyncio.Event()

        def heard(*_: object) -> None:
            wake()

        def cut(*_: object) -> None:
            lost.set()
            wake()

        async def listening() -> asyncpg.Connection:
            conn = await asyncpg.connect(self._url, server_settings={"application_name": "pixme-listen"})
            conn.add_termination_listener(cut)
            await conn.add_listener(JOBS_CHANNEL, heard)
            return conn

        current = [await listening()]

        async def keep_listening() -> None:
            while True:
                await lost.wait()
                lost.clear()
                current[0].terminate()
                while True:
                    await asyncio.sleep(LISTEN_RETRY_S)
                    try:
                        current[0] = await listening()
                    except Exception as exc:  # the server is not back yet
                        log.debug("postgres: cannot listen again yet: %s", type(exc).__name__)
                        continue
                    log.info("postgres: listening for new jobs again")
                    wake()  # announced while the connection was away: look now
                    break

        keeper = asyncio.get_running_loop().create_task(keep_listening(), name="listen-jobs")

        async def stop() -> None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            conn = current[0]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
            conn.terminate()

        return stop

    async def run_alone(self, chore: str, every_s: float, run: Callable[[], Awaitable[object]]) -> bool:
        async with self._pool.acquire() as conn:
            self._resets.mark(conn)
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"chore:{chore}"):
                return False  # another process is at it
            try:
                last = await conn.fetchval("SELECT last_run FROM chores WHERE name = $1", chore)
                now = time.time()
                if last is not None and now - float(last) < every_s:
                    return False
                await run()
                await conn.execute("INSERT INTO chores (name, last_run) VALUES ($1, $2) "
                                   "ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run", chore, now)
                return True
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"chore:{chore}")

    # -- credits ---------------------------------------------------------------------------------

    async def balance(self, platform: str, user_id: str, since: float) -> Balance:
        async with self._pool.acquire() as conn:
            return Balance(await _free_used(conn, platform, user_id, since),
                           await _credits_left(conn, platform, user_id))

    async def add_job_holding(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, Any],
                              target: ReplyTarget, *, free_daily: int, since: float, pictures: int = 1) -> Job | None:
        now = time.time()
        async with self._transaction() as conn:
            # One person's holds are taken one request at a time, across every process sharing the database.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"credits:{platform}:{user_id}")
            free = max(0, free_daily - await _free_used(conn, platform, user_id, since))
            units: list[str | None] = [None] * min(free, pictures)
            taken: list[tuple[str, int]] = []
            if len(units) < pictures:  # the rest from the oldest payments with credits left
                for row in await conn.fetch(
                        "SELECT charge_id, remaining FROM payments WHERE platform = $1 AND user_id = $2 "
                        "AND remaining > 0 AND refunded_at IS NULL ORDER BY paid_at, charge_id FOR UPDATE",
                        platform, user_id):
                    take = min(int(row["remaining"]), pictures - len(units))
                    taken.append((row["charge_id"], take))
                    units += [row["charge_id"]] * take
                    if len(units) == pictures:
                        break
            if len(units) < pictures:
                return None  # nothing written
            for charge_id, take in taken:
                await conn.execute("UPDATE payments SET remaining = remaining - $2 WHERE charge_id = $1",
                                   charge_id, take)
            job_id: int = await conn.fetchval(
                "INSERT INTO jobs (platform, chat_id, user_id, kind, payload, target, status, created_at, updated_at,"
                f" pictures, turn) VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $8, {_TURN}) RETURNING id",
                platform, chat_id, user_id, kind, json.dumps(payload), json.dumps(target.to_json()), now, pictures)
            await conn.executemany(
                "INSERT INTO credit_holds (job_id, unit, platform, user_id, charge_id, status, held_at) "
                "VALUES ($1, $2, $3, $4, $5, 'held', $6)",
                [(job_id, unit, platform, user_id, charge_id, now) for unit, charge_id in enumerate(units)])
        return Job(id=job_id, platform=platform, chat_id=chat_id, user_id=user_id, kind=kind,
                   payload=payload, target=target, status="queued", created_at=now, pictures=pictures)

    async def settle_hold(self, job_id: int, pictures: int) -> bool:
        async with self._transaction() as conn:
            now = time.time()
            spent = await conn.fetch(
                "UPDATE credit_holds SET status = 'spent', settled_at = $3 WHERE job_id = $1 AND status = 'held' "
                "AND unit < $2 RETURNING unit", job_id, pictures, now)
            returned = await _return_hold(conn, job_id, now)  # candidates that failed cost nothing
        return bool(spent) or returned

    async def return_hold(self, job_id: int) -> bool:
        async with self._transaction() as conn:
            return await _return_hold(conn, job_id, time.time())

    async def settle_ended_holds(self) -> tuple[int, int]:
        now = time.time()
        async with self._transaction() as conn:
            spent = await conn.fetch(
                "UPDATE credit_holds h SET status = 'spent', settled_at = $1 FROM jobs j WHERE j.id = h.job_id "
                "AND h.status = 'held' AND j.status = 'delivered' AND h.unit < j.pictures RETURNING h.job_id", now)
            ended = await conn.fetch(
                "SELECT DISTINCT h.job_id FROM credit_holds h LEFT JOIN jobs j ON j.id = h.job_id WHERE h.status = "
                "'held' AND (j.id IS NULL OR j.status IN ('failed', 'cancelled', 'delivered'))")
            returned = 0
            for row in ended:
                returned += await _return_hold(conn, row["job_id"], now)
        return len(spent), returned

    async def record_payment(self, charge_id: str, platform: str, user_id: str, stars: int, images: int,
                             payload: str) -> bool:
        added = await self._pool.fetchval(
            "INSERT INTO payments (charge_id, platform, user_id, stars, images, remaining, payload, paid_at) "
            "VALUES ($1, $2, $3, $4, $5, $5, $6, $7) ON CONFLICT (charge_id) DO NOTHING RETURNING 1",
            charge_id, platform, user_id, stars, images, payload, time.time())
        return added is not None

    async def get_payment(self, charge_id: str) -> Payment | None:
        row = await self._pool.fetchrow(
            "SELECT charge_id, platform, user_id, stars, images, remaining, refunded_at, removed FROM payments "
            "WHERE charge_id = $1", charge_id)
        if row is None:
            return None
        return Payment(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), row[6] is not None,
                       int(row[7]))

    async def refund_payment(self, charge_id: str) -> Payment | None:
        await self._pool.execute(
            "UPDATE payments SET refunded_at = $2, removed = remaining, remaining = 0 "
            "WHERE charge_id = $1 AND refunded_at IS NULL", charge_id, time.time())
        return await self.get_payment(charge_id)

    # -- parties ---------------------------------------------------------------------------------

    async def add_party(self, platform: str, chat_id: str, host: Member, style: str, theme: str,
                        deadline: float, reply_to: str | None) -> Party | None:
        now = time.time()
        try:
            async with self._transaction() as conn:
                party_id: int = await conn.fetchval(
                    "INSERT INTO parties (platform, chat_id, host_id, host_name, style, theme, status, reply_to, "
                    "deadline, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9) RETURNING id",
                    platform, chat_id, host.user_id, host.name, style, theme, reply_to, deadline, now)
                await conn.execute("INSERT INTO party_members (party_id, user_id, name, node_id, joined_at) "
                                   "VALUES ($1, $2, $3, $4, $5)", party_id, host.user_id, host.name, host.node_id, now)
        except asyncpg.UniqueViolationError:  # the chat already has an open party
            return None
        return await self.get_party(party_id)

    async def get_party(self, party_id: int) -> Party | None:
        row = await self._pool.fetchrow(f"SELECT {PARTY_COLUMNS} FROM parties WHERE id = $1", party_id)
        return await self._party(row) if row is not None else None

    async def open_party(self, platform: str, chat_id: str) -> Party | None:
        row = await self._pool.fetchrow(
            f"SELECT {PARTY_COLUMNS} FROM parties WHERE platform = $1 AND chat_id = $2 AND status = 'open'",
            platform, chat_id)
        return await self._party(row) if row is not None else None

    async def party_for_lobby(self, platform: str, chat_id: str, message_id: str) -> Party | None:
        row = await self._pool.fetchrow(
            f"SELECT {PARTY_COLUMNS} FROM parties WHERE platform = $1 AND chat_id = $2 AND lobby_message = $3",
            platform, chat_id, message_id)
        return await self._party(row) if row is not None else None

    async def open_parties(self) -> list[Party]:
        rows = await self._pool.fetch(f"SELECT {PARTY_COLUMNS} FROM parties WHERE status = 'open' ORDER BY id")
        return [await self._party(r) for r in rows]

    async def set_party(self, party_id: int, *, status: PartyStatus | None = None,
                        lobby_message: str | None = None) -> None:
        await self._pool.execute(
            "UPDATE parties SET status = COALESCE($2, status), lobby_message = COALESCE($3, lobby_message) "
            "WHERE id = $1", party_id, status, lobby_message)

    async def move_party(self, party_id: int, status: PartyStatus, *, was: PartyStatus = "open") -> Party | None:
        row = await self._pool.fetchrow(
            f"UPDATE parties SET status = $2 WHERE id = $1 AND status = $3 RETURNING {PARTY_COLUMNS}",
            party_id, status, was)
        return await self._party(row) if row is not None else None

    async def put_member(self, party_id: int, member: Member) -> None:
        """Add a member, or give an existing one a (new) selfie; their place in the roster is kept."""
        await self._pool.execute(
            "INSERT INTO party_members (party_id, user_id, name, node_id, joined_at) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (party_id, user_id) DO UPDATE SET "
            "name = excluded.name, node_id = COALESCE(excluded.node_id, party_members.node_id)",
            party_id, member.user_id, member.name, member.node_id, time.time())

    async def remove_member(self, party_id: int, user_id: str) -> bool:
        status = await self._pool.execute("DELETE FROM party_members WHERE party_id = $1 AND user_id = $2",
                                          party_id, user_id)
        return str(status) != "DELETE 0"

    async def _party(self, row: Any) -> Party:
        members = await self._pool.fetch(
            "SELECT user_id, name, node_id FROM party_members WHERE party_id = $1 ORDER BY joined_at, user_id",
            row["id"])
        return Party(id=row["id"], platform=row["platform"], chat_id=row["chat_id"], host_id=row["host_id"],
                     style=row["style"], theme=row["theme"], status=row["status"],
                     lobby_message=row["lobby_message"], reply_to=row["reply_to"], deadline=row["deadline"],
                     members=tuple(Member(m["user_id"], m["name"], m["node_id"]) for m in members))

    # -- usage and quotas ----------------------------------------------------------------------

    async def count_delivered(self, since: float, *, platform: str | None = None,
                              user_id: str | None = None, chat_id: str | None = None) -> int:
        sql = "SELECT COALESCE(SUM(pictures), 0) FROM jobs WHERE status = 'delivered' AND updated_at >= $1"
        args: list[object] = [since]
        for column, value in (("platform", platform), ("user_id", user_id), ("chat_id", chat_id)):
            if value is not None:
                args.append(value)
                sql += f" AND {column} = ${len(args)}"
        return int(await self._pool.fetchval(sql, *args))

    async def job_counts(self, since: float) -> dict[str, int]:
        """Jobs touched since `since`, by status (failed jobs by their error kind too)."""
        rows = await self._pool.fetch(
            "SELECT status, COALESCE(error, ''), COUNT(*) FROM jobs WHERE updated_at >= $1 GROUP BY 1, 2", since)
        counts: dict[str, int] = {}
        for status, error, n in rows:
            counts[status] = counts.get(status, 0) + n
            if status == "failed" and error:
                counts[f"failed:{error}"] = counts.get(f"failed:{error}", 0) + n
        return counts

    async def delivered_by_model(self, since: float) -> dict[tuple[str, str], int]:
        rows = await self._pool.fetch(
            # A job's pictures share its model and size: its first one speaks for all.
            "SELECT COALESCE(n.model, ''), COALESCE(n.image_size, ''), SUM(j.pictures) FROM jobs j "
            "JOIN nodes n ON n.id = j.result_node WHERE j.status = 'delivered' AND j.updated_at >= $1 GROUP BY 1, 2",
            since)
        return {(model, size): int(n) for model, size, n in rows}

    async def extra_calls_by_model(self, since: float) -> dict[tuple[str, str], int]:
        rows = await self._pool.fetch(
            "SELECT COALESCE(n.model, ''), COALESCE(n.image_size, ''), SUM(j.extra_calls) FROM jobs j "
            "JOIN nodes n ON n.id = j.result_node WHERE j.status = 'delivered' AND j.extra_calls > 0 "
            "AND j.updated_at >= $1 GROUP BY 1, 2",
            since)
        return {(model, size): int(n) for model, size, n in rows}

    # -- likeness --------------------------------------------------------------------------------

    async def set_likeness(self, node_id: int, status: LikenessStatus, percent: float | None = None) -> None:
        await self._pool.execute("UPDATE nodes SET likeness = $1, likeness_status = $2 WHERE id = $3",
                                 percent if status == "scored" else None, status, node_id)

    async def set_member_likeness(self, node_id: int, scores: Mapping[str, float | None]) -> None:
        async with self._transaction() as conn:
            await conn.executemany("UPDATE pictured SET likeness = $1 WHERE node_id = $2 AND user_id = $3",
                                   [(percent, node_id, who) for who, percent in scores.items()])

    async def member_likeness(self, node_id: int) -> dict[str, float | None]:
        rows = await self._pool.fetch(
            "SELECT user_id, likeness FROM pictured WHERE node_id = $1 ORDER BY user_id", node_id)
        return {row["user_id"]: row["likeness"] for row in rows}

    async def likeness_by_style(self, since: float) -> dict[tuple[str, str], tuple[float, int]]:
        rows = await self._pool.fetch(
            "SELECT COALESCE(model, ''), COALESCE(style, ''), AVG(likeness), COUNT(*) FROM nodes "
            "WHERE likeness_status = 'scored' AND created_at >= $1 GROUP BY 1, 2", since)
        return {(model, style): (float(mean), int(n)) for model, style, mean, n in rows}

    # -- forgetting ------------------------------------------------------------------------------

    async def forget_person(self, platform: str, user_id: str) -> list[str]:
        """Delete what the person asked for, their photos and everything made from them (whoever asked), every
        group picture they are in and everything made from it, their jobs, settings and party rows, and their
        name in other people's jobs; returns image hashes no node refers to any more."""
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", NODES_LOCK)
            doomed: list[int] = [row[0] for row in await conn.fetch(
                "WITH RECURSIVE doomed(id) AS ("
                " SELECT id FROM nodes WHERE platform = $1 AND owner_id = $2"
                " UNION SELECT node_id FROM pictured WHERE platform = $1 AND user_id = $2"
                " UNION SELECT n.id FROM nodes n JOIN doomed d ON n.root_id = d.id OR n.parent_id = d.id"
                ") SELECT id FROM doomed UNION SELECT id FROM nodes WHERE platform = $1 AND user_id = $2",
                platform, user_id)]
            shas = [row[0] for row in await conn.fetch(
                "SELECT DISTINCT image_sha FROM nodes WHERE id = ANY($1::bigint[])", doomed)]
            # Other people's jobs made from these pictures keep their row (their quota counts it) but lose the
            # person: a group picture's job forgets their name and photo; an edit's words about them go.
            for job_id, payload_text, result in await conn.fetch(
                    "SELECT id, payload, result_node FROM jobs WHERE platform = $1 AND user_id != $2 AND "
                    "(kind = 'fuse' OR result_node = ANY($3::bigint[]) OR payload::jsonb ->> 'node' = ANY($4::text[]))",
                    platform, user_id, doomed, [str(n) for n in doomed]):
                payload = json.loads(payload_text)
                scrubbed = without_pictures(payload, result, set(doomed))
                if scrubbed != payload:
                    await conn.execute("UPDATE jobs SET payload = $1 WHERE id = $2", json.dumps(scrubbed), job_id)
            await conn.execute("DELETE FROM party_members WHERE user_id = $1 AND party_id IN "
                               "(SELECT id FROM parties WHERE platform = $2)", user_id, platform)
            # A party they hosted goes on without them: no host (chat admins can still start it), no name.
            await conn.execute("UPDATE parties SET host_id = '', host_name = '' WHERE platform = $1 AND host_id = $2",
                               platform, user_id)
            await conn.execute("DELETE FROM nodes WHERE id = ANY($1::bigint[])", doomed)
            await conn.execute("DELETE FROM jobs WHERE platform = $1 AND user_id = $2", platform, user_id)
            await conn.execute("DELETE FROM preferences WHERE scope = 'person' AND platform = $1 AND owner_id = $2",
                               platform, user_id)
        return await self._unreferenced(shas)

    async def purge_older_than(self, cutoff: float) -> list[str]:
        """Delete nodes created before `cutoff`, finished jobs, parties and the personal settings of people
        silent since; returns image hashes no node refers to any more."""
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", NODES_LOCK)
            shas = [r[0] for r in await conn.fetch(
                "SELECT DISTINCT image_sha FROM nodes WHERE created_at < $1", cutoff)]
            await conn.execute("DELETE FROM nodes WHERE created_at < $1", cutoff)
            await conn.execute(
                "DELETE FROM jobs WHERE updated_at < $1 AND status IN ('delivered', 'failed', 'cancelled')", cutoff)
            await conn.execute("DELETE FROM parties WHERE created_at < $1 AND (status != 'open' OR deadline < $1)",
                               cutoff)
            await conn.execute(
                "DELETE FROM preferences WHERE scope = 'person' AND updated_at < $1 "
                "AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.platform = preferences.platform "
                "                AND n.user_id = preferences.owner_id) "
                "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.platform = preferences.platform "
                "                AND j.user_id = preferences.owner_id)", cutoff)
            # Interaction tokens are only ever useful for 15 minutes: whatever has expired goes, whatever the cutoff.
            await conn.execute("DELETE FROM reply_tokens WHERE expires_at <= $1", time.time())
        return await self._unreferenced(shas)

    async def unreferenced(self, shas: list[str]) -> list[str]:
        return await self._unreferenced(shas)

    async def _unreferenced(self, shas: list[str]) -> list[str]:
        """Those of `shas` no node refers to; their image rows (bytes and all) are deleted."""
        if not shas:
            return []
        async with self._transaction() as conn:
            referenced = {row[0] for row in await conn.fetch(
                "SELECT DISTINCT image_sha FROM nodes WHERE image_sha = ANY($1::text[])", shas)}
            orphans = [sha for sha in shas if sha not in referenced]
            await conn.execute("DELETE FROM images WHERE sha = ANY($1::text[])", orphans)
        return orphans

    # -- personal settings and persona (people) ---------------------------------------------------

    async def get_preferences(self, scope: PreferenceScope, platform: str, owner_id: str) -> Preferences:
        # Not kept in memory: another process may change them.
        row = await self._pool.fetchrow(
            "SELECT model, aspect_ratio, image_size, delivery, persona, language, variants FROM preferences "
            "WHERE scope = $1 AND platform = $2 AND owner_id = $3", scope, platform, owner_id)
        if row is None:
            return Preferences()
        delivery = row["delivery"] if row["delivery"] in ("photo", "file", "both") else None
        return Preferences(model=row["model"], aspect_ratio=row["aspect_ratio"], image_size=row["image_size"],
                           delivery=delivery, persona=row["persona"] or "", language=row["language"],
                           variants=row["variants"])

    async def set_preferences(self, scope: PreferenceScope, platform: str, owner_id: str,
                              preferences: Preferences) -> None:
        p = preferences
        await self._pool.execute(
            "INSERT INTO preferences (scope, platform, owner_id, model, aspect_ratio, image_size, delivery, "
            "persona, language, updated_at, variants) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (scope, platform, owner_id) DO UPDATE SET model = excluded.model, "
            "aspect_ratio = excluded.aspect_ratio, image_size = excluded.image_size, delivery = excluded.delivery, "
            "persona = excluded.persona, language = excluded.language, updated_at = excluded.updated_at, "
            "variants = excluded.variants",
            scope, platform, owner_id, p.model, p.aspect_ratio, p.image_size, p.delivery, p.persona, p.language,
            time.time(), p.variants)

    async def recent_results(self, platform: str, chat_id: str, user_id: str, limit: int) -> list[Node]:
        rows = await self._pool.fetch(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE platform = $1 AND chat_id = $2 AND user_id = $3 "
            "AND kind != 'photo' ORDER BY id DESC LIMIT $4", platform, chat_id, user_id, limit)
        return [node_from_row(row) for row in rows]

    # -- delivered pictures' file references (inline sharing) ---------------------------------------

    async def record_file(self, node: Node, platform: str, file_ref: str) -> None:
        # A node deleted meanwhile (a /forget during the send) leaves nothing: the row needs its node.
        await self._pool.execute(
            "INSERT INTO node_files (node_id, platform, file_ref, created_at) "
            "SELECT id, $1, $2, $3 FROM nodes WHERE id = $4 "
            "ON CONFLICT (node_id, platform) DO UPDATE SET file_ref = excluded.file_ref",
            platform, file_ref, time.time(), node.id)

    async def shareable_results(self, platform: str, user_id: str, limit: int) -> list[tuple[Node, str]]:
        rows = await self._pool.fetch(
            f"SELECT {', '.join('n.' + c.strip() for c in NODE_COLUMNS.split(','))}, f.file_ref "
            "FROM nodes n JOIN node_files f ON f.node_id = n.id AND f.platform = n.platform "
            "WHERE n.platform = $1 AND n.user_id = $2 AND n.kind != 'photo' ORDER BY n.id DESC LIMIT $3",
            platform, user_id, limit)
        return [(node_from_row(row), row["file_ref"]) for row in rows]

    # -- chats that refuse us --------------------------------------------------------------------

    async def set_chat_blocked(self, platform: str, chat_id: str, blocked: bool) -> None:
        if blocked:
            await self._pool.execute(
                "INSERT INTO blocked_chats (platform, chat_id, since) VALUES ($1, $2, $3) "
                "ON CONFLICT (platform, chat_id) DO UPDATE SET since = excluded.since", platform, chat_id, time.time())
        else:
            await self._pool.execute("DELETE FROM blocked_chats WHERE platform = $1 AND chat_id = $2",
                                     platform, chat_id)

    async def is_chat_blocked(self, platform: str, chat_id: str) -> bool:
        return bool(await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM blocked_chats WHERE platform = $1 AND chat_id = $2)", platform, chat_id))

    # -- updates taken ---------------------------------------------------------------------------

    async def record_update(self, update_id: int, *, pending: bool = False, stale_before: float = 0.0,
                            seen_at: float | None = None) -> bool:
        added = await self._pool.fetchval(
            "INSERT INTO telegram_updates (update_id, seen_at, pending) VALUES ($1, $2, $3) ON CONFLICT (update_id) "
            "DO UPDATE SET seen_at = excluded.seen_at, pending = excluded.pending "
            "WHERE telegram_updates.pending != 0 AND telegram_updates.seen_at < $4 RETURNING true",
            update_id, time.time() if seen_at is None else seen_at, int(pending), stale_before)
        return bool(added)

    async def settle_update(self, update_id: int, *, handled: bool, seen_at: float | None = None) -> None:
        if handled:
            await self._pool.execute("UPDATE telegram_updates SET pending = 0 WHERE update_id = $1", update_id)
        else:
            await self._pool.execute("DELETE FROM telegram_updates WHERE update_id = $1 AND pending != 0 "
                                     "AND ($2::float8 IS NULL OR seen_at = $2)", update_id, seen_at)

    async def update_pending(self, update_id: int) -> bool | None:
        pending = await self._pool.fetchval("SELECT pending FROM telegram_updates WHERE update_id = $1", update_id)
        return None if pending is None else bool(pending)

    async def prune_updates(self, before: float) -> int:
        status = await self._pool.execute("DELETE FROM telegram_updates WHERE seen_at < $1", before)
        return int(status.split()[-1])

    # -- reply tokens ------------------------------------------------------------------------------

    async def keep_reply_token(self, token: ReplyToken) -> None:
        async with self._transaction() as conn:
            await conn.execute("DELETE FROM reply_tokens WHERE expires_at <= $1", time.time())
            await conn.execute(
                "INSERT INTO reply_tokens (platform, request_id, secret, details, expires_at, delivered) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (platform, request_id) DO UPDATE SET "
                "secret = excluded.secret, details = excluded.details, expires_at = excluded.expires_at, "
                "delivered = excluded.delivered",
                token.platform, token.request_id, token.secret, json.dumps(dict(token.details)), token.expires_at,
                int(token.delivered))

    async def reply_token(self, platform: str, request_id: str, now: float) -> ReplyToken | None:
        row = await self._pool.fetchrow(
            "SELECT secret, details, expires_at, delivered FROM reply_tokens WHERE platform = $1 AND request_id = $2",
            platform, request_id)
        if row is None:
            return None
        if row["expires_at"] <= now:
            await self.drop_reply_token(platform, request_id)
            return None
        return ReplyToken(platform=platform, request_id=request_id, secret=row["secret"],
                          expires_at=row["expires_at"], details=json.loads(row["details"]),
                          delivered=bool(row["delivered"]))

    async def mark_reply_token_delivered(self, platform: str, request_id: str) -> None:
        await self._pool.execute("UPDATE reply_tokens SET delivered = 1 WHERE platform = $1 AND request_id = $2",
                                 platform, request_id)

    async def drop_reply_token(self, platform: str, request_id: str) -> None:
        await self._pool.execute("DELETE FROM reply_tokens WHERE platform = $1 AND request_id = $2",
                                 platform, request_id)

    # -- send slots: a platform's send limits, kept by every process together --------------------

    async def reserve_send(self, rules: Sequence[SendRule]) -> float:
        """Lock the rules' rows (in one order, so two sends never wait on each other), plan the send on the
        database's clock and record it before anyone sends. Missing rows are made first, outside the lock: an
        insert waits for another's uncommitted insert of the same row, which must never hold a lock we hold."""
        if not rules:
            return 0.0
        scopes = sorted({rule.scope for rule in rules})
        async with self._pool.acquire() as conn:
            while True:
                async with conn.transaction():
                    rows = await conn.fetch(_LOCK_SLOTS, scopes)
                    if len(rows) == len(scopes):
                        now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
                        slots = {row["scope"]: Slot.from_row(row["sent"], row["blocked_until"]) for row in rows}
                        at = plan(rules, slots, now)
                        await conn.executemany(
                            "UPDATE send_slots SET sent = $2, idle_after = $3 WHERE scope = $1",
                            [(rule.scope, slots[rule.scope].to_json(), slots[rule.scope].idle_after(rule))
                             for rule in rules])
                        break
                await conn.execute("INSERT INTO send_slots (scope) SELECT unnest($1::text[]) ORDER BY 1 "
                                   "ON CONFLICT (scope) DO NOTHING", scopes)
            if now - self._slots_pruned_at >= SLOTS_PRUNE_EVERY_S:  # holding no lock: it waits on nobody's
                self._slots_pruned_at = now
                await conn.execute("DELETE FROM send_slots WHERE idle_after < $1", now - SLOTS_KEPT_S)
        return max(0.0, at - now)

    async def push_sends(self, scopes: Sequence[str], seconds: float) -> None:
        await self._pool.execute(
            "INSERT INTO send_slots (scope, blocked_until, idle_after) "
            "SELECT s, extract(epoch FROM clock_timestamp()) + $2, extract(epoch FROM clock_timestamp()) + $2 "
            "FROM unnest($1::text[]) AS s ORDER BY 1 "
            "ON CONFLICT (scope) DO UPDATE SET "
            "blocked_until = GREATEST(send_slots.blocked_until, excluded.blocked_until), "
            "idle_after = GREATEST(send_slots.idle_after, excluded.idle_after)", sorted(set(scopes)), seconds)


_LOCK_SLOTS = ("SELECT scope, sent, blocked_until FROM send_slots WHERE scope = ANY($1::text[]) ORDER BY scope "
               "FOR UPDATE")
SLOTS_PRUNE_EVERY_S = 60.0  # how often a process deletes the send slots of chats gone quiet
SLOTS_KEPT_S = 60.0  # a slot idle this long is deleted (it is made again by the next send)

# SQLSTATE classes and codes that mean "try again in a moment": lock and serialization trouble, a server
# shutting down or refusing connections, a lost connection.
_BUSY_CLASSES = ("08", "40", "57P")
_BUSY_CODES = {"55P03", "55006", "57014", "53300", "53400"}  # lock_not_available, object_in_use, query_canceled
#                                                               (lock_timeout), too_many_connections, config limit


async def _free_used(conn: asyncpg.Connection, platform: str, user_id: str, since: float) -> int:
    used = await conn.fetchval(
        "SELECT COUNT(*) FROM credit_holds WHERE platform = $1 AND user_id = $2 AND charge_id IS NULL "
        "AND status != 'returned' AND held_at >= $3", platform, user_id, since)
    return int(used)


async def _credits_left(conn: asyncpg.Connection, platform: str, user_id: str) -> int:
    left = await conn.fetchval(
        "SELECT COALESCE(SUM(remaining), 0) FROM payments WHERE platform = $1 AND user_id = $2 "
        "AND refunded_at IS NULL", platform, user_id)
    return int(left)


async def _return_hold(conn: asyncpg.Connection, job_id: int, now: float) -> bool:
    """Inside a transaction: the job's units still held come back (credits to their payments, unless refunded)."""
    rows = await conn.fetch(
        "UPDATE credit_holds SET status = 'returned', settled_at = $2 WHERE job_id = $1 AND status = 'held' "
        "RETURNING charge_id", job_id, now)
    units = collections.Counter(row["charge_id"] for row in rows if row["charge_id"] is not None)
    if units:  # one statement for all of them, however many pictures the job held
        await conn.executemany(
            "UPDATE payments SET remaining = remaining + $2 WHERE charge_id = $1 AND refunded_at IS NULL",
            list(units.items()))
    return bool(rows)


def storage_error(exc: BaseException) -> BaseException:
    """PostgreSQL's words for a full disk, a lock or a lost connection, as the core's error types; anything else
    as it was."""
    if isinstance(exc, asyncpg.PostgresError):
        code = exc.sqlstate or ""
        if code == "53100":  # disk_full
            return StorageFull(f"postgres: {exc}")
        if code.startswith(_BUSY_CLASSES) or code in _BUSY_CODES:
            return StorageBusy(f"postgres: {exc}")
    elif isinstance(exc, asyncpg.InternalClientError | ConnectionError | TimeoutError) or _closed_under_us(exc):
        # InternalClientError: the server's notice that it cut the connection arrived as a query began.
        return StorageBusy(f"postgres: {type(exc).__name__}: {exc}")
    return exc


def _closed_under_us(exc: BaseException) -> bool:
    """asyncpg's own words for a connection the server closed in the middle of a transaction or statement (not
    for a mistake in the call, which stays as it is)."""
    return isinstance(exc, asyncpg.InterfaceError) and ("closed" in str(exc) or "in progress" in str(exc))


def _connection_lost(exc: BaseException) -> bool:
    """The server went away (a restart, a failover): every idle connection of the pool is dead as well."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "").startswith(("08", "57P"))
    return isinstance(exc, asyncpg.InternalClientError | ConnectionError) or _closed_under_us(exc)


def _speaking_core_errors(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except (asyncpg.PostgresError, asyncpg.InternalClientError, asyncpg.InterfaceError, OSError) as exc:
            if _connection_lost(exc):
                # Found dead one at a time, each idle connection would fail one more call after the server is back
                # (a delivery's record retried ten times): all are replaced at their next use instead.
                pool = getattr(args[0], "_pool", None) if args else None
                if isinstance(pool, asyncpg.Pool):
                    with contextlib.suppress(Exception):
                        await pool.expire_connections()
            translated = storage_error(exc)
            if translated is exc:
                raise
            raise translated from exc

    return wrapper


# Every public coroutine of the store speaks the core's error types, so use cases never read PostgreSQL's words.
for _name, _method in list(vars(PostgresStore).items()):
    if not _name.startswith("_") and inspect.iscoroutinefunction(_method):
        setattr(PostgresStore, _name, _speaking_core_errors(_method))

