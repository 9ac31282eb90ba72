"""Housekeeping: what the bot keeps is kept only as long as promised, and nothing it forgot stays on disk."""

from __future__ import annotations

import logging
import time

from core.clock import SYSTEM_CLOCK, Clock
from core.ports import ImageStore, Store

log = logging.getLogger(__name__)

ORPHAN_AGE_S = 3600.0  # an image file nothing refers to after this long was left by a crash


class Retention:
    """Deletes history older than `[storage] retention_days` and image files nothing refers to."""

    def __init__(self, *, store: Store, images: ImageStore, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.images = images
        self.clock = clock

    async def purge_expired(self, retention_days: int) -> int:
        """Delete images and history older than the retention period; returns files deleted."""
        if retention_days <= 0:
            return 0
        orphans = await self.store.purge_older_than(time.time() - retention_days * 86400)
        for sha in orphans:
            await self.images.delete(sha)
        if orphans:
            log.info("retention: deleted %d image(s) older than %d days", len(orphans), retention_days)
        return len(orphans)

    async def sweep_orphans(self) -> int:
        """Delete image files left without a node (by a crash) for over ORPHAN_AGE_S; returns how many."""
        swept = await self.images.sweep_orphans(ORPHAN_AGE_S)
        if swept:
            log.info("housekeeping: deleted %d image file(s) nothing referred to", swept)
        return swept

    async def housekeeping(self, retention_days: int, every_s: float = 3600.0) -> None:
        """Run retention and the orphan sweep forever, once at start and then every `every_s` seconds."""
        while True:
            await self.run_once(retention_days)
            await self.clock.sleep(every_s)

    async def run_once(self, retention_days: int) -> None:
        """Retention, then the orphan sweep; a failure is logged, never raised."""
        try:
            await self.purge_expired(retention_days)
        except Exception:
            log.exception("retention purge failed")
        try:
            await self.sweep_orphans()
        except Exception:
            log.exception("orphan sweep failed")
