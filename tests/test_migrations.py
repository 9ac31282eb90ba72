"""One schema history for both databases: SQLite and PostgreSQL end at the same version with the same tables,
columns (of matching kinds), keys and indexes; and the folder's naming scheme is kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.migrations import MigrationError, latest, migrations
from storage.postgres import VERSION_TABLE, PostgresStore
from storage.sqlite import SqliteStore
from tests.backends import Backend

# How each database spells a column's kind, as one vocabulary. PostgreSQL's REAL is 4 bytes (times would lose
# minutes): a SQLite REAL column needs DOUBLE PRECISION there, so `real` (float4) matches nothing.
_SQLITE_KINDS = {"INTEGER": "integer", "TEXT": "text", "REAL": "float", "BLOB": "bytes"}
_POSTGRES_KINDS = {"integer": "integer", "bigint": "integer", "smallint": "integer", "text": "text",
                   "double precision": "float", "bytea": "bytes", "real": "float4 (use DOUBLE PRECISION)"}
# Where the backends differ on purpose: PostgreSQL keeps the images' bytes in their table (SQLite in files).
POSTGRES_ONLY = {("images", "data")}

Column = tuple[str, str, str, bool, bool]  # table, column, kind, not null, primary key


def sqlite_schema(path: Path) -> tuple[int, set[Column], set[str]]:
    with sqlite3.connect(path) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = set()
        for table in tables:
            for _cid, name, kind, notnull, _default, pk in db.execute(f"PRAGMA table_info({table})"):
                columns.add((table, name, _SQLITE_KINDS.get(kind.upper(), kind), bool(notnull or pk), bool(pk)))
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    return version, columns, indexes


def without_rowid(path: Path) -> set[str]:
    """SQLite tables whose integer primary key is only a key, not the row number SQLite assigns."""
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                if "WITHOUT ROWID" in (r[1] or "").upper()}


async def postgres_schema(url: str) -> tuple[int, set[Column], set[str], set[str]]:
    store = await PostgresStore.open(url)
    try:
        pool = store._pool
        rows = await pool.fetch(
            "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'NO' AS notnull, "
            "EXISTS (SELECT 1 FROM information_schema.key_column_usage k JOIN information_schema.table_constraints t "
            "        ON t.constraint_name = k.constraint_name AND t.constraint_type = 'PRIMARY KEY' "
            "        WHERE k.table_name = c.table_name AND k.column_name = c.column_name) AS pk, "
            "c.is_identity = 'YES' AS identity "
            "FROM information_schema.columns c WHERE c.table_schema = 'public' AND c.table_name != $1", VERSION_TABLE)
        columns = {(r["table_name"], r["column_name"], _POSTGRES_KINDS.get(r["data_type"], r["data_type"]),
                    r["notnull"], r["pk"]) for r in rows}
        generated = {f"{r['table_name']}.{r['column_name']}" for r in rows if r["identity"]}
        indexes = {r[0] for r in await pool.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'")}
        return await store.schema_version(), columns, indexes, generated
    finally:
        await store.close()


async def test_both_databases_end_at_the_same_schema(tmp_path: Path, postgres: Backend) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    await store.close()
    version, columns, indexes = sqlite_schema(tmp_path / "db.sqlite3")
    async with postgres.empty_database() as url:
        pg_version, pg_columns, pg_indexes, generated = await postgres_schema(url)
    assert version == pg_version == latest()
    assert len(columns) > 60 and len(indexes) >= 14
    assert {c for c in pg_columns if c[:2] not in POSTGRES_ONLY} == columns, \
        "a step's .postgres.sql differs from its .sql (add or fix NNNN_name.postgres.sql)"
    assert pg_indexes == indexes
    # SQLite numbers `INTEGER PRIMARY KEY` rows itself (unless the table is WITHOUT ROWID); PostgreSQL needs an
    # identity column for it.
    numbered = {f"{table}.{name}" for table, name, kind, _nn, pk in columns
                if pk and kind == "integer" and sum(1 for c in columns if c[0] == table and c[4]) == 1
                and table not in without_rowid(tmp_path / "db.sqlite3")}
    assert numbered == generated


def write(folder: Path, **files: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_a_step_in_one_file_serves_both_and_a_postgres_file_replaces_it_there(tmp_path: Path) -> None:
    folder = write(tmp_path / "m", **{"0001_a.sql": "sqlite words", "0001_a.postgres.sql": "postgres words",
                                      "0002_b.sql": "portable words"})
    assert [m.script for m in migrations("sqlite", folder)] == ["sqlite words", "portable words"]
    assert [m.script for m in migrations("postgres", folder)] == ["postgres words", "portable words"]
    assert [(m.number, m.name) for m in migrations("postgres", folder)] == [(1, "a"), (2, "b")]


@pytest.mark.parametrize(("files", "complaint"), [
    ({"0001_a.sql": "", "0003_c.sql": ""}, "without gaps"),
    ({"0001_a.sql": "", "0002_b.postgres.sql": ""}, "no NNNN_name.sql that sqlite could run"),
    ({"0001_a.sql": "", "0001_b.sql": ""}, "two such files"),
    ({"0001_a.postgresql.sql": ""}, "name it NNNN_name.sql"),
])
def test_a_folder_outside_the_scheme_is_refused(tmp_path: Path, files: dict[str, str], complaint: str) -> None:
    folder = write(tmp_path / "m", **files)
    with pytest.raises(MigrationError, match=complaint):
        migrations("sqlite", folder)
        migrations("postgres", folder)
