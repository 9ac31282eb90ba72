"""The storage `[storage]` asks for, opened: SQLite and image files in `dir`, or PostgreSQL for both at `url`."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import StorageSettings
from core.ports import ImageStore
from storage.files import keep_private
from storage.images import FileImageStore, PostgresImageStore
from storage.postgres import PostgresStore, redacted
from storage.sqlite import SqliteStore

SQLITE_FILE = "pixme.sqlite3"


@dataclass
class Storage:
    store: SqliteStore | PostgresStore
    images: ImageStore

    async def close(self) -> None:
        await self.store.close()


async def open_storage(settings: StorageSettings) -> Storage:
    """Open (and migrate) the database and its image store. On PostgreSQL, processes starting together
    migrate one at a time under an advisory lock."""
    url = settings.url.get_secret_value()
    if url:
        pg = await PostgresStore.open(url)
        return Storage(pg, PostgresImageStore(pg))
    keep_private(settings.dir, settings.dir / SQLITE_FILE)
    sqlite = await SqliteStore.open(settings.dir / SQLITE_FILE)
    return Storage(sqlite, FileImageStore(settings.dir, sqlite))


async def migrate(settings: StorageSettings) -> str:
    """Bring the database to this version's schema; a line saying where, and what was done."""
    url = settings.url.get_secret_value()
    if url:
        pg = await PostgresStore.connect(url)
        try:
            applied = await pg.migrate()
            version = await pg.schema_version()
        finally:
            await pg.close()
        done = f"applied {', '.join(f'{m.number:04d}_{m.name}' for m in applied)}" if applied else "nothing to do"
        return f"{redacted(url)}: schema version {version} ({done})"
    keep_private(settings.dir, settings.dir / SQLITE_FILE)
    sqlite = await SqliteStore.open(settings.dir / SQLITE_FILE)  # opening migrates
    try:
        version = await sqlite.schema_version()
    finally:
        await sqlite.close()
    return f"{settings.dir / SQLITE_FILE}: schema version {version}"
