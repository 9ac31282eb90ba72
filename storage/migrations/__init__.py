"""One numbered schema history for both databases.

Each step is `NNNN_name.sql`, written in SQLite's dialect. Where PostgreSQL needs other words (identity
columns, DOUBLE PRECISION for times, ON CONFLICT instead of INSERT OR IGNORE) the same step also has
`NNNN_name.postgres.sql`, which PostgreSQL runs instead; a step that ports as written has one file, which both
run. (`NNNN_name.sqlite.sql` is allowed too, for a step written portably first that SQLite needs otherwise.)
SQLite records the version reached in `PRAGMA user_version`, PostgreSQL in the `schema_migrations` table;
tests/test_migrations.py checks that both end at the same version with the same tables, columns and indexes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Literal

Dialect = Literal["sqlite", "postgres"]
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")


class MigrationError(ValueError):
    """The migrations folder is inconsistent (a file named outside the scheme, a step missing a dialect)."""


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    script: str


def migrations(dialect: Dialect, folder: Traversable | None = None) -> list[Migration]:
    """Every step, in order, as `dialect` runs it (from this package, or `folder`)."""
    files: dict[tuple[int, str], tuple[str, str]] = {}  # (number, "" for both or the one dialect) -> (name, script)
    for entry in (folder or resources.files(__name__)).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration {entry.name}: name it NNNN_name.sql or NNNN_name.postgres.sql")
        key = (int(match.group(1)), match.group(3) or "")
        if key in files:
            raise MigrationError(f"migration {entry.name}: step {key[0]:04d} has two such files")
        files[key] = (match.group(2), entry.read_text(encoding="utf-8"))
    numbers = sorted({number for number, _ in files})
    steps = []
    for number in numbers:
        chosen = files.get((number, dialect)) or files.get((number, ""))
        if chosen is None:
            raise MigrationError(f"migration step {number:04d} has a variant for another database but no "
                                 f"NNNN_name.sql that {dialect} could run")
        steps.append(Migration(number, *chosen))
    if [m.number for m in steps] != list(range(1, len(steps) + 1)):
        raise MigrationError(f"migration steps must be numbered 1, 2, 3, … without gaps: {[m.number for m in steps]}")
    return steps


def latest() -> int:
    """The version every database ends at."""
    return max((m.number for m in migrations("sqlite")), default=0)
