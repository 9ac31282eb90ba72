"""/stats: today's numbers for the bot's admins: jobs by status, the line, pictures and spend by model (likeness
retries priced apart), and how much of people's faces each model and style kept."""

from __future__ import annotations

from core import texts
from core.access import Access
from core.admission import start_of_day
from core.engines.base import ImageEngine, ModelRouter
from core.engines.models import model_info
from core.gate import Gate
from core.jobs import Queue
from core.ports import LikenessStore, Usage
from core.replies import Replies
from core.requests import Context


class DailyStats:
    """Counts from the store and the queue, priced by the model table."""

    def __init__(self, *, usage: Usage, jobs: Queue, engine: ImageEngine, daily_usd: float, access: Access,
                 replies: Replies, gate: Gate, likeness: LikenessStore | None = None) -> None:
        self.usage = usage
        self.likeness = likeness
        self.jobs = jobs
        self.engine = engine
        self.daily_usd = daily_usd
        self.access = access
        self.replies = replies
        self.gate = gate

    async def show(self, ctx: Context) -> None:
        """Today's numbers, for admins."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if not self.access.is_admin(ctx):
                await self.replies.say(ctx, texts.ADMINS_ONLY)
                return
            since = start_of_day()
            counts = await self.usage.job_counts(since)
            spend = {key: (n, n * model_info(key[0]).price(key[1] or None))
                     for key, n in (await self.usage.delivered_by_model(since)).items()}
            retries = {key: (n, n * model_info(key[0]).price(key[1] or None))
                       for key, n in (await self.usage.extra_calls_by_model(since)).items()}
            kept = await self.likeness.likeness_by_style(since) if self.likeness is not None else {}
            notices = self.engine.notices() if isinstance(self.engine, ModelRouter) else []
            await self.replies.say(ctx, texts.stats(counts, self.jobs.queue_length, self.jobs.running_count, spend,
                                                    self.engine.name, self.engine.model, notices, self.daily_usd,
                                                    retries=retries, likeness=kept))
