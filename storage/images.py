"""Content-addressed image files: `<dir>/images/ab/abcdef…` named by SHA-256, written once.

The same bytes sent twice are stored once. Writes go through a temporary file and a rename, so
a crash never leaves half an image under a real name. File work runs in a thread.

The most recently used images also stay in memory (up to `CACHE_BYTES`): a request writes its photo and
reads it back moments later for the engine, and an edit reads the result it continues from; each read
from disk is a trip through a worker thread. Deleting an image drops it from memory too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

from storage.sqlite import SqliteStore

CACHE_BYTES = 48 * 1024 * 1024  # ≈ 150 model-ready photos and results


class FileImageStore:
    """Implements `core.ports.ImageStore`."""

    def __init__(self, root: Path, db: SqliteStore, *, cache_bytes: int = CACHE_BYTES) -> None:
        self._root = root / "images"
        self._db = db
        self._cache_limit = cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0  # bytes held in `_cache`

    def path(self, sha: str) -> Path:
        return self._root / sha[:2] / sha

    async def put(self, data: bytes) -> str:
        sha, created = await asyncio.to_thread(self._write, data)
        if created:
            await self._db.record_image(sha, len(data))
        self._remember(sha, data)
        return sha

    async def get(self, sha: str) -> bytes:
        data = self._cache.get(sha)
        if data is not None:
            self._cache.move_to_end(sha)
            return data
        data = await asyncio.to_thread(self.path(sha).read_bytes)
        self._remember(sha, data)
        return data

    async def delete(self, sha: str) -> None:
        dropped = self._cache.pop(sha, None)
        if dropped is not None:
            self._cached -= len(dropped)
        await asyncio.to_thread(self.path(sha).unlink, missing_ok=True)

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

    def _write(self, data: bytes) -> tuple[str, bool]:
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if final.exists():
            return sha, False
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
