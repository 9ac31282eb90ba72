"""Admission: whether another picture may be asked for now (the queue, the day's limits, the day's spend).

Asked before a request is accepted; the spend and the model's day quota are asked again before the engine
call (`Budget.refusal`), so nobody waits in line for a picture that cannot be made.
"""

from __future__ import annotations

import datetime as dt
import time

from core import texts
from core.access import Access
from core.config import LimitsSettings
from core.credits import Credits
from core.engines.base import ModelRouter
from core.engines.models import model_info
from core.jobs import Queue
from core.ports import Preferences, Usage
from core.replies import Replies
from core.requests import Context
from core.routing import OFFLINE, EngineRouter


def start_of_day() -> float:
    """Midnight UTC today: daily limits reset then."""
    now = dt.datetime.now(dt.UTC)
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC).timestamp()


def resets_in() -> str:
    """When the day's limits reset, as people read it."""
    return texts.resets_in(start_of_day() + 86400 - time.time())


class Budget:
    """Today's spend (`[limits] daily_usd`) and the model's day quota: may a paid picture be made now?"""

    def __init__(self, *, usage: Usage, router: EngineRouter, limits: LimitsSettings) -> None:
        self.usage = usage
        self.router = router
        self.limits = limits

    async def spent_today(self) -> float:
        """Today's estimated spend (UTC day): each delivered picture, and each likeness retry, at its model's price
        for its size."""
        since = start_of_day()
        calls = [*(await self.usage.delivered_by_model(since)).items(),
                 *(await self.usage.extra_calls_by_model(since)).items()]
        return sum(n * model_info(model).price(size or None) for (model, size), n in calls)

    async def refusal(self, prefs: Preferences) -> str | None:
        """Why a paid picture can't be made now (the day's spend limit, the model's day quota), or None."""
        router = self.router
        model = router.model_of(prefs)
        if router.engine_for(prefs).name == OFFLINE or model_info(model).price(prefs.image_size) <= 0:
            return None
        if self.limits.daily_usd and await self.spent_today() >= self.limits.daily_usd:
            return texts.spend_limit(self.limits.daily_usd, resets_in(), OFFLINE in router.choices)
        if isinstance(router.engine, ModelRouter):
            unavailable = router.engine.unavailable(model)
            if unavailable is not None:
                return texts.engine_failure(unavailable)
        return None


class Admission:
    """The queue's and the day's limits: the bot's, the person's and the chat's, then the budget."""

    def __init__(self, *, jobs: Queue, usage: Usage, router: EngineRouter, budget: Budget,
                 limits: LimitsSettings, access: Access, replies: Replies, credits: Credits | None = None) -> None:
        self.jobs = jobs
        self.usage = usage
        self.router = router
        self.budget = budget
        self.limits = limits
        self.access = access
        self.replies = replies
        self.credits = credits  # the free pictures of the day, then credits ([credits])

    async def refuse_over_limit(self, ctx: Context, pictures: int = 1) -> bool:
        """Queue and daily limits for a request that makes `pictures` pictures (variants, a style pack: each
        counts), then credits; says which one was hit and when it resets (out of credits: with the packs on sale).
        Every picture request passes here with what it costs; the job then holds that many units when it is saved
        (`Submission.submit_job`)."""
        platform, person = ctx.chat.platform, ctx.person.id
        refusal = await self._limits(platform, ctx.chat.id, person, private=ctx.chat.is_private,
                                     exempt=self.access.is_admin(ctx), pictures=pictures)
        if refusal is not None:
            await self.replies.say(ctx, refusal)
            return True
        if self.credits is not None and await self.credits.short(platform, person, pictures):
            await self.credits.offer(self.replies.target(ctx))
            return True
        return False

    async def over_limit(self, platform: str, chat_id: str, person: str, *, private: bool,
                         exempt: bool, pictures: int = 1) -> str | None:
        """The one line refusing `pictures` more pictures for `person` in this chat (the bot's, the person's or the
        chat's limit, or not enough credits), or None; `exempt` (a bot admin) skips the person's daily limit. A
        request for several is refused whole when a limit cannot cover them all (nobody is charged for half an
        album)."""
        refusal = await self._limits(platform, chat_id, person, private=private, exempt=exempt, pictures=pictures)
        if refusal is None and self.credits is not None and await self.credits.short(platform, person, pictures):
            return self.credits.refusal(platform)
        return refusal

    async def _limits(self, platform: str, chat_id: str, person: str, *, private: bool, exempt: bool,
                      pictures: int) -> str | None:
        usage = self.usage
        queued = await self.jobs.counts(platform, chat_id, person)
        pending = queued.person_jobs
        if pending > self.limits.queue_per_user:
            return texts.one_at_a_time(pending)
        limits, since = self.limits, start_of_day()
        resets = resets_in()
        if limits.daily_images:
            used = await usage.count_delivered(since) + queued.pictures
            if used + pictures > limits.daily_images:
                return _too_many(pictures, limits.daily_images - used, resets) or texts.bot_daily_limit(resets)
        if limits.user_daily and not exempt:
            used = await usage.count_delivered(since, platform=platform, user_id=person) \
                + queued.person_pictures
            if used + pictures > limits.user_daily:
                return _too_many(pictures, limits.user_daily - used, resets) \
                    or texts.user_daily_limit(limits.user_daily, resets)
        if limits.chat_daily and not private:
            used = await usage.count_delivered(since, platform=platform, chat_id=chat_id) \
                + queued.chat_pictures
            if used + pictures > limits.chat_daily:
                return _too_many(pictures, limits.chat_daily - used, resets) \
                    or texts.chat_daily_limit(limits.chat_daily, resets)
        return await self.budget.refusal(await self.router.effective(platform, chat_id, person))


def _too_many(pictures: int, left: int, resets: str) -> str | None:
    """For a request of several pictures when some allowance is left but not enough: how many are left."""
    return texts.not_enough_left(pictures, left, resets) if pictures > 1 and left > 0 else None
