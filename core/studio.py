"""The studio: the core's composition object. It builds the services once, each given only what it uses, and
exposes them; the thin methods below keep the use cases where front-ends call them (`studio.style(...)`).

Adapters call the use cases with a `Context` and whatever the platform gave them; answers go through the
adapter's `Messenger`. No use case raises: every failure becomes a one-line message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field

from core import i18n, texts
from core.access import Access
from core.actions import (
    ChatPhotoPress,
    ExportPress,
    ForgetPress,
    LanguagePress,
    Outcome,
    PartyPress,
    SettingPress,
    VariantPick,
    parse,
)
from core.admission import Admission, Budget
from core.breaker import CircuitBreaker
from core.clock import SYSTEM_CLOCK, Clock
from core.config import AccessSettings, CreditsSettings, LikenessSettings, LimitsSettings, PartySettings
from core.credits import Credits
from core.engines.base import ImageEngine
from core.gate import Gate
from core.intake_pool import Intake
from core.jobs import JobRunner, Queue
from core.languages import Languages
from core.likeness_review import LikenessReview
from core.metrics import NO_OBSERVER, JobObserver
from core.parties import Parties
from core.people import People
from core.ports import ImageStore, LeaseStore, ReplyTokens, Store
from core.privacy import Forgetting
from core.queue_notes import QueueNotes
from core.rendering import Rendering
from core.replies import Replies
from core.requests import Context, Messenger
from core.retention import Retention
from core.routing import EngineRouter
from core.shared_jobs import Leases, SharedJobRunner
from core.sharing import Sharing
from core.stats import DailyStats
from core.submission import Submission
from core.worker import DELIVERY_RETRY_DELAYS_S, FULL_DISK_RETRY_S, Worker

log = logging.getLogger(__name__)

DRAIN_S = 15.0  # at shutdown, how long sends already under way may take to finish
STORE_ANSWER_S = 1.0  # readiness: the database must show it could record a job within this
CHORES_EVERY_S = 5.0  # with a shared database: how often a process offers to run the chores (one runs each)
HOUSEKEEPING_EVERY_S = 3600.0


@dataclass(frozen=True)
class Shared:
    """Processes sharing one database (PostgreSQL): jobs are claimed from `store` under leases, as `owner`; a
    process with `works=False` (a gateway) only persists them. Chores run in one process at a time."""

    store: LeaseStore
    owner: str
    works: bool = True
    leases: Leases = field(default_factory=Leases)


class Studio:
    def __init__(self, *, store: Store, images: ImageStore, engine: ImageEngine,
                 limits: LimitsSettings | None = None, access: AccessSettings | None = None,
                 input_max_px: int = 1024, breaker: CircuitBreaker | None = None,
                 party: PartySettings | None = None,
                 delivery_retry_delays: tuple[float, ...] = DELIVERY_RETRY_DELAYS_S,
                 full_disk_retry_s: float = FULL_DISK_RETRY_S,
                 model_choices: list[str] | None = None, sizes: list[str] | None = None,
                 intake: Intake | None = None, clock: Clock = SYSTEM_CLOCK, variants: int = 1,
                 likeness: LikenessSettings | None = None,
                 credits: CreditsSettings | None = None, observer: JobObserver = NO_OBSERVER,
                 shared: Shared | None = None) -> None:
        self.store = store
        self.images = images
        self.engine = engine
        self.clock = clock  # every wait of the core (retries, notes, deadlines, pauses) goes through it
        self.limits = limits = limits or LimitsSettings()
        self.access = Access(access or AccessSettings())
        self.input_max_px = input_max_px
        self.intake = intake or Intake()  # decoding people's files: bounded and killable
        # `[likeness]`: each result scored in the image-work pool (None, or `enabled = false`: not scored).
        self.likeness = likeness = likeness if likeness is not None and likeness.enabled else None
        self.breaker = breaker = breaker or CircuitBreaker(clock=clock.now)
        self.replies = replies = Replies(sent_elsewhere=shared is not None)  # workers elsewhere send pictures too
        # Processes sharing the database keep no per-person state another could change: read it each time.
        self.languages = Languages(store=store, remembers=shared is None)
        self.gate = gate = Gate(access=self.access, store=store, replies=replies,
                                language_for=self.languages.language_for, remembers=shared is None)
        self.router = router = EngineRouter(store=store, engine=engine, model_choices=model_choices, sizes=sizes)
        self.budget = budget = Budget(usage=store, router=router, limits=limits)
        self.credits = credits_ = Credits(store=store, clock=clock, settings=credits or CreditsSettings(),
                                          access=self.access, replies=replies, gate=gate)

        # The queue and its notes ask each other: the queue reports moves, a note asks where its job is now.
        self.shared = shared
        jobs: Queue | None = None

        def position(job_id: int) -> int | None:
            return jobs.position(job_id) if jobs is not None else None

        self.notes = notes = QueueNotes(replies=replies, breaker=breaker, clock=clock,
                                        after_s=limits.queue_note_after_s, position=position)
        # Sharing (inline results, the group photo) before the worker: a group picture's button comes from it.
        self.sharing = sharing = Sharing(store=store, images=images, replies=replies, access=self.access,
                                         language_for=self.languages.language_for)
        self.worker = worker = Worker(store=store, images=images, replies=replies, router=router, budget=budget,
                                      breaker=breaker, notes=notes, blocking=gate, clock=clock,
                                      delivery_retry_delays=delivery_retry_delays,
                                      full_disk_retry_s=full_disk_retry_s, offers=sharing.group_photo_offer,
                                      likeness=LikenessReview(scorer=self.intake, store=store, images=images,
                                                              settings=likeness) if likeness else None,
                                      ends=credits_, observer=observer)
        if shared is None:
            jobs = JobRunner(store, worker.run, concurrency=limits.concurrency, on_positions=notes.show,
                             on_cancelled=worker.discard, on_crashed=credits_.give_back, clock=clock,
                             observer=observer)
        else:
            jobs = SharedJobRunner(shared.store, worker.run, concurrency=limits.concurrency, owner=shared.owner,
                                   works=shared.works, leases=shared.leases, on_cancelled=worker.discard,
                                   on_crashed=credits_.give_back, clock=clock, observer=observer, notes=notes)
        self.jobs = jobs
        observer.watch_queue(jobs)  # the line's length, read whenever it is asked for

        self.admission = admission = Admission(jobs=jobs, usage=store, router=router, budget=budget, limits=limits,
                                               access=self.access, replies=replies, credits=credits_)
        self.submission = submission = Submission(history=store, images=images, intake=self.intake, jobs=jobs,
                                                  breaker=breaker, replies=replies, input_max_px=input_max_px,
                                                  credits=credits_)
        self.rendering = rendering = Rendering(history=store, images=images, replies=replies, gate=gate,
                                               admission=admission, submission=submission, jobs=jobs,
                                               router=router, variants=variants)
        self.parties = parties = Parties(party or PartySettings(), store=store, replies=replies, gate=gate,
                                         access=self.access, limits=admission, submission=submission, clock=clock,
                                         timers=shared is None)
        self.people = People(store=store, images=images, router=router, languages=self.languages,
                             access=self.access, replies=replies, gate=gate, node_here=rendering.node_here,
                             variants=variants, show_likeness=likeness is not None and likeness.show)
        self.forgetting = Forgetting(store=store, images=images, jobs=jobs, languages=self.languages,
                                     lobbies=parties, replies=replies, gate=gate)
        self.daily_stats = DailyStats(usage=store, jobs=jobs, engine=engine, daily_usd=limits.daily_usd,
                                      access=self.access, replies=replies, gate=gate, likeness=store)
        self.retention = Retention(store=store, images=images, clock=clock)  # history's age, orphan files
        # Platforms' credentials for answering a request in place (Discord's interaction tokens), kept in the
        # database so the process that delivers a job can use the one the process that took it received.
        self.reply_tokens: ReplyTokens = store
        self._closed = False

        # The use cases, where front-ends call them.
        self.offer_styles = rendering.offer_styles
        self.style = rendering.style
        self.edit = rendering.edit
        self.undo = rendering.undo
        self.fuse = rendering.fuse
        self.cancel = rendering.cancel
        self.again = rendering.again
        self.edit_node = rendering.edit_node
        self.undo_node = rendering.undo_node
        self.restyle = rendering.restyle
        self.pack = rendering.pack
        self.stats = self.daily_stats.show
        self.forget = self.forgetting.ask

    # -- wiring --------------------------------------------------------------------------------

    def attach(self, platform: str, messenger: Messenger) -> None:
        """Register an adapter's messenger; its unfinished jobs can then be resumed."""
        self.replies.attach(platform, messenger)

    async def resume(self) -> int:
        """Deliver whatever was accepted but not delivered before the last stop; re-arm party deadlines."""
        await self.parties.resume()
        await self.credits.settle_ended()  # holds of jobs that ended just before the last stop
        return await self.jobs.resume(self.replies.platforms)

    async def aclose(self, *, grace_s: float = 0.0, drain_s: float = DRAIN_S) -> None:
        """Stop working: no new job starts; running ones get `grace_s` to finish, then are handed back (they stay
        queued in the database for the next start); sends already under way finish (up to `drain_s`) and are
        recorded. Once: a second call (the composition root's safety net) returns at once."""
        if self._closed:
            return
        self._closed = True
        await self.parties.aclose()
        await self.jobs.aclose(grace_s)
        await self.worker.drain(drain_s)
        await self.jobs.release_held()  # sends under way are recorded: another worker may resume the rest now
        await self.router.aclose()
        await self.intake.aclose()

    async def chores(self, retention_days: int) -> None:
        """Housekeeping forever: retention and the orphan sweep (hourly) and, when processes share the database,
        party deadlines; each run by one process at a time."""
        if self.shared is None:
            await self.retention.housekeeping(retention_days, HOUSEKEEPING_EVERY_S)
            return
        store = self.shared.store
        while True:
            for name, every_s, chore in (
                    ("party_deadlines", 0.0, self.parties.sweep_deadlines),
                    ("retention", HOUSEKEEPING_EVERY_S, functools.partial(self.retention.run_once, retention_days))):
                try:
                    await store.run_alone(name, every_s, chore)
                except Exception:
                    log.warning("chore %s failed", name, exc_info=True)
            await self.clock.sleep(CHORES_EVERY_S)

    async def store_problem(self, timeout_s: float = STORE_ANSWER_S) -> str | None:
        """Why the database could not record a job right now, in one line; None when it could (readiness)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.store.ping()
        except TimeoutError:
            return f"database: no answer within {timeout_s:g} s"
        except Exception as exc:
            return f"database: {type(exc).__name__}: {exc}".splitlines()[0][:200]
        return None

    # -- what every front-end routes here -------------------------------------------------------

    async def press(self, ctx: Context, data: str, pressed_message_id: str | None = None) -> Outcome:
        """A button from `send_buttons` was pressed (`data` is what it carried, see core.actions); the outcome
        says what to tell the presser and whether the question behind the buttons is settled."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return Outcome.refused(texts.NOT_ALLOWED)
            match parse(data):
                case PartyPress() as press:
                    return await self.parties.press(ctx, press)
                case SettingPress() as press:
                    return await self.people.press(ctx, press)
                case LanguagePress(code):
                    return await self.people.press_language(ctx, code)
                case ExportPress(kind, node_id):
                    return await self.people.export_node(ctx, kind, node_id, pressed_message_id)
                case ForgetPress() as press:
                    return await self.forgetting.answer(ctx, press)
                case VariantPick(node_id):
                    return await self.rendering.pick(ctx, node_id)
                case ChatPhotoPress() as press:
                    return await self.sharing.set_chat_photo(ctx, press, pressed_message_id)
        return Outcome.settled(texts.UNKNOWN_BUTTON, alert=True)

    async def speak_to(self, ctx: Context) -> None:
        """Answer in the person's language from here on in this task (for what adapters say themselves)."""
        try:
            i18n.set_language(await self.languages.language_for(ctx))
        except Exception:  # an unreadable preference costs the language, never the answer
            log.warning("could not read the language of %s:%s", ctx.chat.platform, ctx.person.id, exc_info=True)
            i18n.set_language(ctx.person.language)
