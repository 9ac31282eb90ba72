"""Which database the test at hand runs on, and its stores opened on it.

The `backend` fixture (tests/conftest.py) runs a test once on SQLite and once on PostgreSQL (its own fresh
database, copied from a migrated template); harnesses call `open_stores` / `storage_settings` where they used to
open SQLite, so one test body checks both. Tests that do not ask for `backend` run on SQLite, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ports import ImageStore, Store
from storage.images import FileImageStore, PostgresImageStore
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.postgres_cluster import PostgresCluster


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" | "postgres"
    url: str = ""  # the test's own PostgreSQL database
    cluster: PostgresCluster | None = None

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    @contextlib.asynccontextmanager
    async def empty_database(self) -> AsyncIterator[str]:
        """The url of another database on the test's server with nothing in it, not even migrations."""
        assert self.cluster is not None, "PostgreSQL only"
        name = await asyncio.to_thread(self.cluster.create_database, "template0")
        try:
            yield self.cluster.url(name)
        finally:
            await asyncio.to_thread(self.cluster.drop_database, name)


SQLITE = Backend("sqlite")
_current = [SQLITE]


def current() -> Backend:
    return _current[-1]


def use(backend: Backend) -> None:
    _current.append(backend)


def done(backend: Backend) -> None:
    _current.remove(backend)


async def open_store(path: Path, **options: Any) -> SqliteStore | PostgresStore:
    """The test's store: the SQLite file at `path`, or its PostgreSQL database (`options` go to `open`)."""
    backend = current()
    if backend.is_postgres:
        pg_options = {k: v for k, v in options.items() if k == "busy_timeout_ms"}
        return await PostgresStore.open(backend.url, **pg_options)
    return await SqliteStore.open(path, **options)


def image_store(store: SqliteStore | PostgresStore, data_dir: Path) -> ImageStore:
    if isinstance(store, PostgresStore):
        return PostgresImageStore(store)
    return FileImageStore(data_dir, store)


async def open_stores(path: Path, **options: Any) -> tuple[Store, ImageStore]:
    """The store and the image store a running pixme would use: SQLite at `path` with image files beside it,
    or the test's PostgreSQL database for both."""
    store = await open_store(path, **options)
    return store, image_store(store, path.parent)


def storage_settings(data_dir: Path, **more: Any) -> dict[str, Any]:
    """`[storage]` settings for `load_settings`: the folder, and the test's database url on PostgreSQL."""
    return {"dir": data_dir, **({"url": current().url} if current().is_postgres else {}), **more}


async def sql(store: Store, query: str, *args: object) -> list[tuple[Any, ...]]:
    """Run `query` (SQLite's `?` placeholders) straight on the test's database, behind the store's back, as an
    operator or the clock would change it; committed at once. Returns the rows."""
    if isinstance(store, PostgresStore):
        parts = query.split("?")
        numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
        return [tuple(r) for r in await store._pool.fetch(numbered, *args)]
    assert isinstance(store, SqliteStore)
    rows = await store._db.execute_fetchall(query, args)
    await store._db.commit()
    return [tuple(r) for r in rows]


async def stored_images(store: Store, data_dir: Path) -> set[str]:
    """The hashes of every image kept: files under `data_dir` on SQLite, rows on PostgreSQL."""
    if isinstance(store, PostgresStore):
        return {r[0] for r in await store._pool.fetch("SELECT sha FROM images")}
    return {p.name for p in (data_dir / "images").rglob("*") if p.is_file()}
