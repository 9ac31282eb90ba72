"""Content-addressed image files: `<dir>/images/ab/abcdef…` named by SHA-256, written once.

The same bytes sent twice are stored once. Writes go through a temporary file and a rename, so
a crash never leaves half an image under a real name. File work runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from storage.sqlite import SqliteStore


class FileImageStore:
    """Implements `core.ports.ImageStore`."""

    def __init__(self, root: Path, db: SqliteStore) -> None:
        self._root = root / "images"
        self._db = db

    def path(self, sha: str) -> Path:
        return self._root / sha[:2] / sha

    async def put(self, data: bytes) -> str:
        sha, created = await asyncio.to_thread(self._write, data)
        if created:
            await self._db.record_image(sha, len(data))
        return sha

    async def get(self, sha: str) -> bytes:
        return await asyncio.to_thread(self.path(sha).read_bytes)

    async def delete(self, sha: str) -> None:
        await asyncio.to_thread(self.path(sha).unlink, missing_ok=True)

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
