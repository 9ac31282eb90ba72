"""Shared fixtures: the real face photo, and small builders used across test modules."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from storage.postgres import PostgresStore
from tests.backends import SQLITE, Backend, done, use
from tests.postgres_cluster import TEMPLATE, PostgresCluster
from tests.postgres_cluster import unavailable as postgres_unavailable
from tests.standins.telegram_api import FakeTelegram

FIXTURES = Path(__file__).parent / "fixtures"


def jpeg_bytes(image: Image.Image, quality: int = 92, **save: object) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, **save)
    return out.getvalue()


@pytest.fixture(scope="session")
def face_image() -> Image.Image:
    """The public-domain astronaut portrait (Eileen Collins) shipped with scikit-image."""
    return Image.open(FIXTURES / "astronaut.png").convert("RGB")


@pytest.fixture(scope="session")
def selfie(face_image: Image.Image) -> bytes:
    return jpeg_bytes(face_image)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """`pixme` commands configure logging onto the test's captured stderr; take that back afterwards,
    or later tests log into a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """A fresh loopback Telegram Bot API for one test."""
    async with FakeTelegram() as fake:
        yield fake


# Modules about the storage itself: their PostgreSQL variants stay in `manage.py test --fast`. Elsewhere (the
# studio, the parties, the Telegram and Discord journeys) a journey's PostgreSQL run is `slow`: the full run
# (`python3 manage.py test`, CI) has both backends, the quick loop the journeys on SQLite.
STORAGE_MODULES = {"test_storage", "test_storage_faults", "test_migrations", "test_credits_ledger"}


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects: the marks added here count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `sqlite_only` in a module that runs on both backends is not collected for PostgreSQL; a
    journey's PostgreSQL variant is marked `slow`."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") == "postgres"
        if on_postgres and item.module is not None and item.module.__name__.split(".")[-1] not in STORAGE_MODULES:
            item.add_marker(pytest.mark.slow)
        (dropped if on_postgres and item.get_closest_marker("sqlite_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL server for the session (per xdist worker), started on first use, with a migrated
    template database; skipped, with the reason, where PostgreSQL is not installed."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = PostgresCluster()
    try:
        cluster.start()
        _in_own_loop(_migrate(cluster.url(TEMPLATE)))
        yield cluster
    finally:
        cluster.stop()


async def _migrate(url: str) -> None:
    store = await PostgresStore.open(url)
    await store.close()


def _in_own_loop(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` to the end on a loop of its own, in a thread, away from the tests' loops."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


@contextlib.contextmanager
def _on_postgres(request: pytest.FixtureRequest) -> Iterator[Backend]:
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    database = cluster.create_database()
    chosen = Backend("postgres", cluster.url(database), cluster)
    use(chosen)
    try:
        yield chosen
    finally:
        done(chosen)
        cluster.drop_database(database)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Runs the test on SQLite and again on PostgreSQL (a fresh database of its own); see tests/backends.py."""
    if request.param == "sqlite":
        yield SQLITE
        return
    with _on_postgres(request) as chosen:
        yield chosen


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The test runs on PostgreSQL only (a fresh database of its own)."""
    with _on_postgres(request) as chosen:
        yield chosen
