"""Content-addressed images: files `<dir>/images/ab/abcdef…` named by SHA-256, written once (with SQLite), or
rows of PostgreSQL's `images` table under the same names (`PostgresImageStore`).

The same bytes sent twice are stored once. Writes go through a temporary file and a rename, so
a crash never leaves half an image under a real name. File work runs in a thread.

The most recently used images also stay in memory (up to `CACHE_BYTES`): a request writes its photo and
reads it back moments later for the engine, and an edit reads the result it continues from; each read
from disk is a trip through a worker thread. Deleting an image drops it from memory too.

A file is written before the node that refers to it, so a crash in between leaves a file nothing refers
to; `sweep_orphans` finds those (and half-written temporaries) once they are old enough that no request
can still be about to refer to them.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

from core.errors import StorageFull
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

CACHE_BYTES = 48 * 1024 * 1024  # ≈ 150 model-ready photos and results
_SHA_NAME = re.compile(r"^[0-9a-f]{64}$")


class RecentImages:
    """The most recently used images in memory, up to `cache_bytes`; both stores below build on it."""

    def __init__(self, cache_bytes: int) -> None:
        self._cache_limit = cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0  # bytes held in `_cache`

    def _recall(self, sha: str) -> bytes | None:
        data = self._cache.get(sha)
        if data is not None:
            self._cache.move_to_end(sha)
        return data

    def _drop(self, sha: str) -> None:
        dropped = self._cache.pop(sha, None)
        if dropped is not None:
            self._cached -= len(dropped)

    def _remember(self, sha: str, data: bytes) -> None:
        if len(data) > self._cache_limit // 4:  # a huge one would push out everything else
            return
        if sha not in self._cache:
            self._cached += len(data)
        self._cache[sha] = data
        self._cache.move_to_end(sha)
        while self._cached > self._cache_limit:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)


class FileImageStore(RecentImages):
    """Implements `core.ports.ImageStore`."""

    def __init__(self, root: Path, db: SqliteStore, *, cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__(cache_bytes)
        self._root = root / "images"
        self._db = db
        # A file the sweep is about to delete may be put again (the same photo sent again): the check that
        # it exists (refreshing its time) and the sweep's last look before deleting never interleave.
        self._files = threading.Lock()

    def path(self, sha: str) -> Path:
        return self._root / sha[:2] / sha

    async def put(self, data: bytes) -> str:
        try:
            sha, created = await asyncio.to_thread(self._write, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"image store: {exc.strerror}") from exc
            raise
        if created:
            await self._db.record_image(sha, len(data))
        self._remember(sha, data)
        return sha

    async def get(self, sha: str) -> bytes:
        data = self._recall(sha)
        if data is not None:
            return data
        data = await asyncio.to_thread(self.path(sha).read_bytes)
        self._remember(sha, data)
        return data

    async def delete(self, sha: str) -> None:
        self._drop(sha)
        await asyncio.to_thread(self.path(sha).unlink, missing_ok=True)

    async def sweep_orphans(self, min_age_s: float) -> int:
        """Delete image files no node refers to, and temporaries a crash left, older than `min_age_s`;
        returns how many files went."""
        cutoff = time.time() - min_age_s
        images, temporaries = await asyncio.to_thread(self._files_before, cutoff)
        referenced = await self._db.referenced_images(list(images))
        orphans = [path for sha, path in images.items() if sha not in referenced]
        deleted = await asyncio.to_thread(self._delete_unless_touched, [*orphans, *temporaries], cutoff)
        shas = [path.name for path in deleted if _SHA_NAME.match(path.name)]
        for sha in shas:
            self._drop(sha)
        await self._db.forget_images(shas)
        return len(deleted)

    def _files_before(self, cutoff: float) -> tuple[dict[str, Path], list[Path]]:
        """Image files and leftover temporaries last written (or put again) before `cutoff`."""
        images: dict[str, Path] = {}
        temporaries: list[Path] = []
        if not self._root.is_dir():
            return images, temporaries
        for folder in self._root.iterdir():
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.iterdir():
                try:
                    if not path.is_file() or path.is_symlink() or path.stat().st_mtime >= cutoff:
                        continue
                except OSError:
                    continue
                if _SHA_NAME.match(path.name):
                    images[path.name] = path
                elif path.name.startswith(".tmp-"):
                    temporaries.append(path)
        return images, temporaries

    def _delete_unless_touched(self, paths: list[Path], cutoff: float) -> list[Path]:
        deleted = []
        for path in paths:
            with self._files:
                try:
                    if path.stat().st_mtime >= cutoff:  # put again since it was listed: in use after all
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue
            deleted.append(path)
        return deleted

    def _write(self, data: bytes) -> tuple[str, bool]:
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        with self._files:
            try:
                os.utime(final)  # already stored: fresh again, so the orphan sweep leaves it be
                return sha, False
            except FileNotFoundError:
                pass
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, True


class PostgresImageStore(RecentImages):
    """Implements `core.ports.ImageStore` in PostgreSQL's `images` table (bytea), named by SHA-256 as files are.

    Every process reads and writes the same rows, so a picture made by one is there for all. A row is written
    before the node that refers to it, as a file is; `sweep_orphans` finds those a crash left."""

    def __init__(self, db: PostgresStore, *, cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__(cache_bytes)
        self._db = db

    async def put(self, data: bytes) -> str:
        sha = await asyncio.to_thread(_sha256, data) if len(data) > _HASH_INLINE else _sha256(data)
        await self._db.put_image(sha, data)
        self._remember(sha, data)
        return sha

    async def get(self, sha: str) -> bytes:
        data = self._recall(sha)
        if data is not None:
            return data
        data = await self._db.image_bytes(sha)
        if data is None:  # as a file store says it: callers treat a missing image alike
            raise FileNotFoundError(f"image {sha} is not stored")
        self._remember(sha, data)
        return data

    async def delete(self, sha: str) -> None:
        self._drop(sha)
        await self._db.delete_image(sha)

    async def sweep_orphans(self, min_age_s: float) -> int:
        """Delete stored images no node refers to, stored (or stored again) more than `min_age_s` ago."""
        shas = await self._db.sweep_images(time.time() - min_age_s)
        for sha in shas:
            self._drop(sha)
        return len(shas)


_HASH_INLINE = 256 * 1024  # hashing more than this goes to a thread (~1 ms)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
