"""The use cases, the same on every platform: style a photo, edit a result, undo, cancel, forget, stats.

Adapters call these with a `Context` and whatever the platform gave them; the studio answers through
the adapter's `Messenger`. No method here raises: every failure becomes a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from core import i18n, texts
from core.access import Access
from core.actions import (
    ExportPress,
    ForgetPress,
    LanguagePress,
    Outcome,
    PartyPress,
    SettingPress,
    encode,
    parse,
)
from core.breaker import CircuitBreaker
from core.clock import SYSTEM_CLOCK, Clock
from core.config import AccessSettings, LimitsSettings, PartySettings
from core.engines.base import (
    Busy,
    EngineError,
    EngineResult,
    ImageEngine,
    ModelRouter,
    Portrait,
    RenderOptions,
)
from core.engines.models import model_info
from core.errors import StorageFull
from core.exports import stamp_async
from core.gate import Gate
from core.intake import IntakeError, check_declared_size
from core.intake_pool import Intake
from core.jobs import JobRunner, Requeue
from core.parties import Parties, parse_party_args
from core.people import People
from core.ports import ImageStore, Job, NewNode, Node, NodeKind, Preferences, SourceGone, Store
from core.replies import Replies
from core.requests import Button, Context, DeliveryRefused, ImageReply, Messenger, PhotoRef, ReplyTarget
from core.retention import Retention
from core.styles import STYLES, Style, get_style

log = logging.getLogger(__name__)

MAX_INSTRUCTION_CHARS = 1000
DRAIN_S = 15.0  # at shutdown, how long sends already under way may take to finish
MIN_FUSE, MAX_FUSE = 2, 8  # photos in one fusion (an album holds up to 10)
WORKING_REFRESH_S = 4.5  # Telegram shows a chat action for 5 seconds
DELIVERY_RETRY_DELAYS_S = (1.0, 3.0, 10.0)
MAX_BUSY_ATTEMPTS = 8  # a job that met an outage this often is told to try later
FULL_DISK_RETRY_S = 30.0  # a result that found the disk full is saved again this often, until it fits

_Send = Callable[[], Awaitable[str]]


@dataclass
class _Made:
    """An engine's picture and what it was made from, until it is saved; kept in memory while the disk is full,
    so the paid picture is not made again."""

    result: EngineResult
    parent: Node | None  # the picture it continues from (None for a group picture)
    portraits: list[tuple[str, Node]]  # a group picture's people, as drawn
    node: Node | None = None  # once saved
    told: bool = False  # the person has heard that it waits for space


@dataclass
class _Waiting:
    """The "you're #N in line" message shown for a queued job."""

    message_id: str
    shown: int


class Studio:
    def __init__(self, *, store: Store, images: ImageStore, engine: ImageEngine,
                 limits: LimitsSettings | None = None, access: AccessSettings | None = None,
                 input_max_px: int = 1024, breaker: CircuitBreaker | None = None,
                 party: PartySettings | None = None,
                 delivery_retry_delays: tuple[float, ...] = DELIVERY_RETRY_DELAYS_S,
                 model_choices: list[str] | None = None, sizes: list[str] | None = None,
                 intake: Intake | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock  # every wait of the core (retries, notes, deadlines, pauses) goes through it
        self.images = images
        self.engine = engine
        self.limits = limits or LimitsSettings()
        self.access = Access(access or AccessSettings())
        self.input_max_px = input_max_px
        self.intake = intake or Intake()  # decoding people's files: bounded and killable
        self.breaker = breaker or CircuitBreaker(clock=clock.now)
        self.jobs = JobRunner(store, self._run_job, concurrency=self.limits.concurrency,
                              on_positions=self._show_positions, clock=clock)
        self._delivery_retry_delays = delivery_retry_delays
        self.replies = Replies()
        # Languages live with the people's settings; the gate asks them at every request.
        self.gate = Gate(access=self.access, store=store, replies=self.replies,
                         language_for=lambda ctx: self.people.language_for(ctx))
        self._waiting: dict[int, _Waiting] = {}
        self._positions_lock = asyncio.Lock()  # one notifier at a time, so notes are never doubled
        self._deliveries: set[asyncio.Future[None]] = set()
        self._unsaved: dict[int, _Made] = {}  # job id -> a result waiting for disk space
        self.full_disk_retry_s = FULL_DISK_RETRY_S
        self.parties = Parties(party or PartySettings(), store=store, replies=self.replies, gate=self.gate,
                               access=self.access, host=self, clock=clock)
        self.people = People(store=store, images=images, engine=engine, access=self.access, replies=self.replies,
                             gate=self.gate, node_here=self.node_here, model_choices=model_choices, sizes=sizes)
        self.retention = Retention(store=store, images=images, clock=clock)  # history's age, orphan files

    # -- wiring --------------------------------------------------------------------------------

    def attach(self, platform: str, messenger: Messenger) -> None:
        """Register an adapter's messenger; its unfinished jobs can then be resumed."""
        self.replies.attach(platform, messenger)

    async def resume(self) -> int:
        """Deliver whatever was accepted but not delivered before the last stop; re-arm party deadlines."""
        await self.parties.resume()
        return await self.jobs.resume(self.replies.platforms)

    async def aclose(self) -> None:
        """Stop working; sends already under way finish (up to DRAIN_S) and are recorded."""
        await self.parties.aclose()
        await self.jobs.aclose()
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=DRAIN_S)
        await self.people.aclose()
        await self.intake.aclose()

    # -- use cases -----------------------------------------------------------------------------

    async def offer_styles(self, ctx: Context, photo_message_id: str) -> None:
        """A bare photo: answer with a menu of styles; nothing is downloaded until one is picked."""
        async with self.gate.handling(ctx) as allowed:
            if allowed:
                await self.replies.to(ctx).send_style_menu(
                    self.replies.target(ctx, photo_message_id), texts.PICK_STYLE, list(STYLES))

    async def style(self, ctx: Context, style_name: str, photo: PhotoRef | None,
                    replied_message_id: str | None = None) -> None:
        """Turn `photo` (or the photo behind the replied-to message) into an avatar in a style."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            style = await self._style_or_say(ctx, style_name)
            if style is None or await self.refuse_over_limit(ctx):
                return
            source = await self._source_for(ctx, style, photo, replied_message_id)
            if source is not None:
                await self._submit(ctx, "style", {"style": style.id, "node": source.id})

    async def edit(self, ctx: Context, instruction: str, replied_message_id: str,
                   photo: PhotoRef | None = None) -> None:
        """Apply a free-text instruction to the result the person replied to, or to `photo`: the
        person's own photo they replied to (stored first if no style has been picked for it yet)."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is None and photo is not None:
                node = await self.ingest(ctx, photo)
                if node is None:  # refused or lost: _ingest has said why
                    return
            if node is None:
                await self.replies.say(ctx, texts.REPLY_TO_RESULT)
            else:
                await self._submit_edit(ctx, node, instruction)

    async def _submit_edit(self, ctx: Context, node: Node, instruction: str) -> None:
        instruction = instruction.strip()
        if not instruction:
            await self.replies.say(ctx, texts.EMPTY_INSTRUCTION)
        elif len(instruction) > MAX_INSTRUCTION_CHARS:
            await self.replies.say(ctx, texts.instruction_too_long(MAX_INSTRUCTION_CHARS))
        elif not await self.refuse_over_limit(ctx):
            await self._submit(ctx, "edit", {"node": node.id, "instruction": instruction})

    async def undo(self, ctx: Context, replied_message_id: str | None) -> None:
        """Re-send the step before the replied-to result, so it can be replied to again."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = None
            if replied_message_id is not None:
                node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is None or node.kind == "photo":
                await self.replies.say(ctx, texts.UNDO_HOW)
                return
            await self._resend_step_before(ctx, node)

    async def _resend_step_before(self, ctx: Context, node: Node) -> None:
        """Send the step `node` was made from, linked so replies and buttons continue from it."""
        parent = await self.store.get_node(node.parent_id) if node.parent_id else None
        if node.kind == "photo" or parent is None or parent.kind == "photo":
            await self.replies.say(ctx, texts.UNDO_FIRST_STEP)
            return
        reply = ImageReply(parent.id, await self.images.get(parent.image_sha), parent.mime,
                           texts.undo_caption(parent.depth, parent.commentary))
        message_id = await self.replies.to(ctx).send_image(self.replies.target(ctx), reply)
        await self.store.link_message(parent, message_id)

    async def fuse(self, ctx: Context, photos: list[PhotoRef], args: str = "") -> None:
        """Fuse 2–8 photos the person sent (an album) into one picture: `/fuse [style] [what to make]`."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if not MIN_FUSE <= len(photos) <= MAX_FUSE:
                await self.replies.say(ctx, texts.fuse_count(MIN_FUSE, MAX_FUSE, len(photos)))
                return
            if await self.refuse_over_limit(ctx):
                return
            nodes = []
            for photo in photos:
                node = await self.ingest(ctx, photo)
                if node is None:  # the refusal has been said; fuse nothing rather than fewer
                    return
                nodes.append(node)
            style, theme = parse_party_args(args)
            await self._submit(ctx, "fuse", {"style": style.id, "theme": theme, "name_people": False,
                                             "portraits": [[f"Person {i + 1}", n.id] for i, n in enumerate(nodes)]})

    async def cancel(self, ctx: Context) -> None:
        """Stop the person's waiting and running jobs in this chat."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            cancelled = await self.jobs.cancel_for(ctx.chat.platform, ctx.person.id, ctx.chat.id)
            for job in cancelled:
                self._unsaved.pop(job.id, None)
                await self._clear_waiting(job)
            await self.replies.say(ctx, texts.cancelled(len(cancelled)))

    async def stats(self, ctx: Context) -> None:
        """Today's numbers, for admins."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if not self.access.is_admin(ctx):
                await self.replies.say(ctx, texts.ADMINS_ONLY)
                return
            since = _start_of_day()
            counts = await self.store.job_counts(since)
            spend = {key: (n, n * model_info(key[0]).price(key[1] or None))
                     for key, n in (await self.store.delivered_by_model(since)).items()}
            notices = self.engine.notices() if isinstance(self.engine, ModelRouter) else []
            await self.replies.say(ctx, texts.stats(counts, self.jobs.queue_length, self.jobs.running_count, spend,
                                             self.engine.name, self.engine.model, notices, self.limits.daily_usd))

    async def forget(self, ctx: Context) -> None:
        """Ask the person to confirm deleting everything the bot keeps about them."""
        async with self.gate.handling(ctx) as allowed:
            if allowed:
                await self.replies.to(ctx).send_buttons(self.replies.target(ctx), texts.FORGET_CONFIRM, [
                    Button(texts.FORGET_YES, encode(ForgetPress(True, ctx.person.id))),
                    Button(texts.FORGET_NO, encode(ForgetPress(False, ctx.person.id))),
                ])

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
                case ForgetPress(confirmed, owner):
                    if owner != ctx.person.id:
                        return Outcome.refused(texts.NOT_YOUR_BUTTON)
                    if not confirmed:
                        await self.replies.say(ctx, texts.FORGET_KEPT)
                        return Outcome.settled(texts.FORGET_KEPT)
                    deleted = await self._forget_person(ctx.chat.platform, ctx.person.id)
                    await self.replies.say(ctx, texts.forgotten(deleted))
                    return Outcome.settled(texts.forgotten(deleted))
        return Outcome.settled(texts.UNKNOWN_BUTTON, alert=True)

    async def speak_to(self, ctx: Context) -> None:
        """Answer in the person's language from here on in this task (for what adapters say themselves)."""
        try:
            i18n.set_language(await self.people.language_for(ctx))
        except Exception:  # an unreadable preference costs the language, never the answer
            log.warning("could not read the language of %s:%s", ctx.chat.platform, ctx.person.id, exc_info=True)
            i18n.set_language(ctx.person.language)

    # -- admission -------------------------------------------------------------------------------

    async def refuse_over_limit(self, ctx: Context) -> bool:
        """Queue and daily limits; says which one was hit and when it resets."""
        refusal = await self.over_limit(ctx.chat.platform, ctx.chat.id, ctx.person.id,
                                        private=ctx.chat.is_private, exempt=self.access.is_admin(ctx))
        if refusal is not None:
            await self.replies.say(ctx, refusal)
        return refusal is not None

    async def over_limit(self, platform: str, chat_id: str, person: str, *, private: bool,
                         exempt: bool) -> str | None:
        """The one line refusing another picture for `person` in this chat (the bot's, the person's or the chat's
        limit), or None; `exempt` (a bot admin) skips the person's daily limit."""
        pending = self.jobs.pending_for(platform, person)
        if pending > self.limits.queue_per_user:
            return texts.one_at_a_time(pending)
        limits, since = self.limits, _start_of_day()
        resets = texts.resets_in(_start_of_day() + 86400 - time.time())
        if limits.daily_images:
            used = await self.store.count_delivered(since) + self.jobs.queue_length + self.jobs.running_count
            if used >= limits.daily_images:
                return texts.bot_daily_limit(resets)
        if limits.user_daily and not exempt:
            used = await self.store.count_delivered(since, platform=platform, user_id=person) + pending
            if used >= limits.user_daily:
                return texts.user_daily_limit(limits.user_daily, resets)
        if limits.chat_daily and not private:
            used = await self.store.count_delivered(since, platform=platform, chat_id=chat_id)
            if used + self.jobs.pending_in_chat(platform, chat_id) >= limits.chat_daily:
                return texts.chat_daily_limit(limits.chat_daily, resets)
        return await self._paid_refusal(await self.people.effective(platform, chat_id, person))

    async def _paid_refusal(self, prefs: Preferences) -> str | None:
        """Why a paid picture can't be made now (the day's spend limit, the model's day quota), or None.
        Asked before a request is accepted and again before its engine call, so nobody waits for nothing."""
        model = self.people.model_of(prefs)
        if self.people.engine_for(prefs).name == "offline" or model_info(model).price(prefs.image_size) <= 0:
            return None
        if self.limits.daily_usd and await self.spent_today() >= self.limits.daily_usd:
            return texts.spend_limit(self.limits.daily_usd, texts.resets_in(_start_of_day() + 86400 - time.time()),
                                     "offline" in self.people.choices)
        if isinstance(self.engine, ModelRouter):
            unavailable = self.engine.unavailable(model)
            if unavailable is not None:
                return texts.engine_failure(unavailable)
        return None

    async def spent_today(self) -> float:
        """Today's estimated spend (UTC day): each delivered picture at its model's price for its size."""
        return sum(n * model_info(model).price(size or None)
                   for (model, size), n in (await self.store.delivered_by_model(_start_of_day())).items())

    async def _submit(self, ctx: Context, kind: str, payload: dict[str, object]) -> None:
        await self.submit_job(ctx.chat.platform, ctx.chat.id, ctx.person.id, kind, payload, self.replies.target(ctx))

    async def submit_job(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, object],
                         target: ReplyTarget) -> None:
        """Persist and queue a job; say so at once if the image service is down. (A job that starts
        shows "sending photo…" itself, for as long as it runs.)"""
        # The language the request came in: the answer (even after a restart) is in it too.
        payload = {**payload, "lang": payload.get("lang") or i18n.current()}
        await self.jobs.submit(platform, chat_id, user_id, kind, payload, target)
        messenger = self.replies.get(platform)
        if self.breaker.is_open and messenger is not None:
            await messenger.send_text(target, texts.SERVICE_DOWN_SAVED)

    # -- resolving what to work on ----------------------------------------------------------------

    async def _source_for(self, ctx: Context, style: Style, photo: PhotoRef | None,
                          replied_message_id: str | None) -> Node | None:
        if photo is not None:
            return await self.ingest(ctx, photo)
        if replied_message_id is not None:
            node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is not None:
                return await self._original_of(node)
        await self.replies.say(ctx, texts.style_hint(style, ctx.chat.platform))
        return None

    async def _style_or_say(self, ctx: Context, name: str) -> Style | None:
        """The style called `name`, or None after telling the person it doesn't exist."""
        style = get_style(name)
        if style is None:
            await self.replies.say(ctx, texts.unknown_style(name))
        return style

    async def _original_of(self, node: Node) -> Node:
        """The selfie (or group picture) at the root of `node`'s tree: restyles start again from it,
        because styles stack badly."""
        root = await self.store.get_node(node.root_id) if node.root_id else None
        return root or node

    async def ingest(self, ctx: Context, photo: PhotoRef) -> Node | None:
        """Download, check and store a person's photo as the root of a new edit tree."""
        platform, chat_id = ctx.chat.platform, ctx.chat.id
        if photo.message_id is not None:
            known = await self.store.node_for_message(platform, chat_id, photo.message_id)
            if known is not None and known.kind == "photo":
                return known
        try:
            check_declared_size(photo.size)
            # One download-and-decode at a time per person: a hostile file holds one worker, its sender's.
            async with self.intake.turn((platform, ctx.person.id)):
                try:
                    data = await photo.fetch()
                except IntakeError:
                    raise
                except Exception as exc:
                    log.warning("photo download failed in %s:%s: %s", platform, chat_id, type(exc).__name__)
                    await self.replies.say(ctx, texts.DOWNLOAD_FAILED)
                    return None
                prepared = await self.intake.prepare(bytes(data), max_px=self.input_max_px)
        except IntakeError as refusal:
            await self.replies.say(ctx, refusal.message)
            return None
        sha = await self.images.put(prepared.data)
        node = await self.store.add_node(NewNode(platform, chat_id, ctx.person.id, "photo", sha, "image/jpeg",
                                                 owner_id=photo.owner_id or ctx.person.id))
        if photo.message_id is not None:
            await self.store.link_message(node, photo.message_id)
        return node

    # -- running a job ---------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        messenger = self.replies.get(job.platform)
        if messenger is None:  # its adapter isn't running now; the job waits for the next start
            return
        result_node = await self.store.get_node(job.result_node) if job.result_node else None
        prefs = await self.people.effective(job.platform, job.chat_id, job.user_id)
        i18n.set_language(prefs.language or job.payload.get("lang"))  # a /language choice wins
        if result_node is None:
            refusal = None if job.id in self._unsaved else await self._paid_refusal(prefs)
            if refusal is not None:  # the limit was reached, or the quota ran out, while it waited
                await self._finish_with_text(messenger, job, refusal, "Refused")
                return
            made = self._unsaved.pop(job.id, None)  # made before the disk filled up: not paid for twice
            if made is None:
                await self._mark_working(messenger, job)
                await self.store.update_job(job.id, status="running", attempt=True)
                try:
                    async with self._working(messenger, job.target):
                        made = await self._call_engine(job, prefs)
                except Busy as outage:
                    await self._after_outage(messenger, job, outage)
                    return
                except EngineError as failure:
                    self.breaker.record_success()  # the service answered; it is up
                    log.info("job %s: %s (%s)", job.id, type(failure).__name__, failure.detail)
                    await self._finish_with_text(messenger, job, texts.engine_failure(failure),
                                                 type(failure).__name__)
                    return
                self.breaker.record_success()
            result_node = await self._keep(messenger, job, made)
            if result_node is None:
                return
        caption = "\n\n".join([result_node.commentary or texts.DEFAULT_CAPTION, *self.people.warnings(prefs)])
        reply = ImageReply(result_node.id, await self.images.get(result_node.image_sha), result_node.mime, caption)
        sent: list[str] = []

        async def send() -> str:
            sent[:] = await self.people.deliver(messenger, job.target, reply, prefs.delivery)
            return sent[0]

        async def deliver_and_record() -> None:
            message_id = await self._deliver(job, send)
            if message_id is not None:
                for each in sent:
                    await self.store.link_message(result_node, each)
                await self.store.update_job(job.id, status="delivered", delivered_message=message_id)
                await self._clear_waiting(job)

        # Shielded: a shutdown that cancels the job must not cut a send off between the platform
        # accepting the picture and our record of it, or the restart would send it a second time.
        delivery = asyncio.ensure_future(deliver_and_record())
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        await asyncio.shield(delivery)

    async def _keep(self, messenger: Messenger, job: Job, made: _Made) -> Node | None:
        """Save a result and record it on the job. On a full disk the picture stays in memory, the person hears
        once that it waits for space, and the job goes back in line (pausing the line: every save would fail)
        to be saved and delivered when there is room. None if the picture must not be kept (its source went)."""
        try:
            if made.node is None:
                made.node = await self._save_result(job, made)
            await self.store.update_job(job.id, status="done", result_node=made.node.id)
            return made.node
        except SourceGone:
            # A /forget while it was being made: a picture of that person must not be stored or sent.
            log.info("job %s: its source was deleted while it was being made", job.id)
            await self._finish_with_text(messenger, job, texts.SOURCE_GONE, "SourceGone")
            return None
        except Exception as exc:
            if not isinstance(exc, StorageFull):
                raise
        log.warning("job %s: no space to save its result; trying again in %.0f s", job.id, self.full_disk_retry_s)
        self._unsaved[job.id] = made
        with contextlib.suppress(Exception):  # on a full disk this may fail too: "running" is unfinished as well
            await self.store.update_job(job.id, status="queued")
        if not made.told:
            made.told = True
            await self._deliver(job, lambda: messenger.send_text(job.target, texts.STORAGE_FULL_KEPT))
        raise Requeue(self.full_disk_retry_s)

    async def _after_outage(self, messenger: Messenger, job: Job, outage: Busy) -> None:
        pause = self.breaker.record_failure()
        log.warning("job %s: image service unavailable (%s); attempt %d", job.id, outage.detail, job.attempts + 1)
        if job.attempts + 1 >= MAX_BUSY_ATTEMPTS:
            await self._finish_with_text(messenger, job, texts.engine_failure(outage), "Busy")
            return
        await self.store.update_job(job.id, status="queued")
        if job.attempts == 0:  # say it once per request, not at every retry
            await self._deliver(job, lambda: messenger.send_text(job.target, texts.SERVICE_DOWN_SAVED))
        raise Requeue(pause)

    async def _finish_with_text(self, messenger: Messenger, job: Job, text: str, error: str) -> None:
        await self._deliver(job, lambda: messenger.send_text(job.target, text))
        await self.store.update_job(job.id, status="failed", error=error)
        await self._clear_waiting(job)

    async def _call_engine(self, job: Job, prefs: Preferences | None = None) -> _Made:
        """Run the job's engine call with the person's choices (model, ratio, size, persona)."""
        prefs = prefs or Preferences()
        engine, options = self.people.engine_for(prefs), self.people.options(prefs)
        if job.kind == "fuse":
            return await self._call_fuse(job, engine, options)
        node = await self.store.get_node(int(job.payload["node"]))
        if node is None:
            raise EngineError(texts.SOURCE_GONE)
        image = await self.images.get(node.image_sha)
        if job.kind == "style":
            style = get_style(job.payload["style"])
            if style is None:
                raise EngineError(texts.unknown_style(job.payload["style"]))
            return _Made(await engine.stylize(image, style, options=options), node, [])
        # The identity reference: the original selfie, or for a group picture the picture itself.
        root = await self.store.get_node(node.root_id) if node.root_id else (node if node.kind == "fuse" else None)
        identity = await self.images.get(root.image_sha) if root else None
        return _Made(await engine.edit(image, job.payload["instruction"], identity=identity, options=options), node, [])

    async def _call_fuse(self, job: Job, engine: ImageEngine, options: RenderOptions) -> _Made:
        style = get_style(str(job.payload["style"]))
        if style is None:
            raise EngineError(texts.unknown_style(str(job.payload["style"])))
        found: list[tuple[str, Node]] = []
        for name, node_id in job.payload["portraits"]:
            node = await self.store.get_node(int(node_id))
            if node is not None:  # someone who used /forget meanwhile is left out (and not named)
                found.append((str(name), node))
        if len(found) < 2:
            raise EngineError(texts.SOURCE_GONE)
        portraits = [Portrait(name, await self.images.get(node.image_sha)) for name, node in found]
        # A group picture is everyone's: the requester's persona is theirs alone, so it stays out.
        options = dataclasses.replace(options, persona="")
        result = await engine.fuse(portraits, style, str(job.payload.get("theme") or ""), options=options)
        return _Made(result, None, found)

    async def _save_result(self, job: Job, made: _Made) -> Node:
        """Store the picture and its node; SourceGone if what it was made from was deleted meanwhile."""
        result = made.result
        commentary = result.commentary.strip()
        if job.kind == "fuse" and job.payload.get("name_people", True):
            commentary = texts.group_caption(commentary, [name for name, _ in made.portraits])
        # Every picture the bot hands out says it was made by AI (XMP DigitalSourceType + model name).
        image = await stamp_async(result.image, result.mime, result.model)
        mime = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg" if image.startswith(b"\xff\xd8") \
            else result.mime
        sha = await self.images.put(image)
        kind: NodeKind = "fuse" if job.kind == "fuse" else "style" if job.kind == "style" else "edit"
        try:
            return await self.store.add_node(NewNode(
                job.platform, job.chat_id, job.user_id, kind, sha, mime, parent=made.parent,
                style=job.payload.get("style"), instruction=job.payload.get("instruction") or job.payload.get("theme"),
                engine="offline" if result.model == "offline" else self.engine.name, model=result.model,
                commentary=commentary, image_size=result.image_size,
                inputs=tuple(node for _, node in made.portraits),
            ))
        except SourceGone:
            for orphan in await self.store.unreferenced([sha]):
                await self.images.delete(orphan)
            raise

    async def _deliver(self, job: Job, send: _Send) -> str | None:
        """Send with retries; a chat that refuses us for good is marked and not retried."""
        for delay in (*self._delivery_retry_delays, None):
            try:
                return await send()
            except asyncio.CancelledError:
                raise
            except DeliveryRefused:
                log.info("job %s: %s:%s refuses messages; marked", job.id, job.platform, job.chat_id)
                await self.gate.chat_blocked(job.platform, job.chat_id)
                await self.store.update_job(job.id, status="failed", error="chat_blocked")
                return None
            except Exception as exc:
                if delay is None:
                    log.error("job %s: delivery failed for good (%s); will retry at next start",
                              job.id, type(exc).__name__)
                    return None
                log.warning("job %s: delivery failed (%s), retrying in %.0fs", job.id, type(exc).__name__, delay)
                await self.clock.sleep(delay)
        return None

    # -- queue positions -------------------------------------------------------------------------

    async def _show_positions(self, changes: list[tuple[Job, int]]) -> None:
        if any(job.id not in self._waiting for job, _ in changes):
            # A wait shorter than this needs no note: it would only flash "#1 in line" and vanish.
            await self.clock.sleep(self.limits.queue_note_after_s)
        async with self._positions_lock:
            for job, _ in changes:
                await self._show_position(job)

    async def _show_position(self, job: Job) -> None:
        messenger = self.replies.get(job.platform)
        # The line may have moved while earlier notes were sent: act on where the job is now.
        position = self.jobs.position(job.id)
        # A job back in line after an outage was already told its request is saved.
        if messenger is None or position is None or self.breaker.is_open or job.attempts:
            return
        shown = self._waiting.get(job.id)
        with i18n.speaking(job.payload.get("lang")):  # its owner's language, whoever moved the line
            note = texts.in_line(position)
        if shown is None:
            message_id = await messenger.send_text(job.target, note)
            if self.jobs.position(job.id) is None:  # it started (or finished) meanwhile
                with contextlib.suppress(Exception):
                    await messenger.delete(job.target, message_id)
                return
            self._waiting[job.id] = _Waiting(message_id, position)
        elif position != shown.shown and (position <= 5 or position <= shown.shown * 0.8):
            # Every step near the front; further back, only noticeable moves (chat edit limits).
            shown.shown = position
            with contextlib.suppress(Exception):
                await messenger.edit_text(job.target, shown.message_id, note)

    async def _mark_working(self, messenger: Messenger, job: Job) -> None:
        shown = self._waiting.get(job.id)
        if shown is not None:
            with contextlib.suppress(Exception):
                await messenger.edit_text(job.target, shown.message_id, texts.WORKING)

    async def _clear_waiting(self, job: Job) -> None:
        shown = self._waiting.pop(job.id, None)
        messenger = self.replies.get(job.platform)
        if shown is not None and messenger is not None:
            with contextlib.suppress(Exception):
                await messenger.delete(job.target, shown.message_id)

    # -- privacy -----------------------------------------------------------------------------------

    async def _forget_person(self, platform: str, user_id: str) -> int:
        """Everything about the person, and every picture made from their photos or showing them, whoever
        asked for it; open lobbies they were in are redrawn without them."""
        for job in await self.jobs.cancel_for(platform, user_id):
            self._unsaved.pop(job.id, None)
            await self._clear_waiting(job)
        lobbies = [p.id for p in await self.store.open_parties()
                   if p.platform == platform and (p.member(user_id) is not None or p.host_id == user_id)]
        orphans = await self.store.forget_person(platform, user_id)
        self.people.forget_language(platform, user_id)
        for sha in orphans:
            await self.images.delete(sha)
        for party_id in lobbies:
            await self.parties.refresh_lobby(party_id)
        log.info("forgot %s person: %d image(s) deleted", platform, len(orphans))
        return len(orphans)

    # -- helpers -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _working(self, messenger: Messenger, target: ReplyTarget) -> AsyncIterator[None]:
        """Keep the chat's "sending photo…" indicator alive while the engine works."""

        async def refresh() -> None:
            while True:
                with contextlib.suppress(Exception):
                    await messenger.show_working(target)
                await self.clock.sleep(WORKING_REFRESH_S)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()

    # -- acting on a node (buttons) ----------------------------------------------------------------
    # Buttons on a result carry its node id, so they work after restarts and without a reply.

    async def node_here(self, ctx: Context, node_id: int) -> Node | None:
        """The node behind a button, if it belongs to this chat; otherwise say the button expired. Buttons sit
        under pictures the bot made: a photo's id only comes from a forged one, and is honoured for its sender
        alone (a guessed id must not restyle or show a selfie sent before the presser joined)."""
        node = await self.store.get_node(node_id)
        if node is None or (node.platform, node.chat_id) != (ctx.chat.platform, ctx.chat.id) \
                or (node.kind == "photo" and node.owner != ctx.person.id):
            await self.replies.say(ctx, texts.UNKNOWN_BUTTON)
            return None
        return node

    async def again(self, ctx: Context, node_id: int) -> None:
        """Run the step that made this result once more, from the same parent."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self.node_here(ctx, node_id)
            if node is None:
                return
            parent = await self.store.get_node(node.parent_id) if node.parent_id else None
            if parent is None or node.kind not in ("style", "edit"):
                await self.replies.say(ctx, texts.NOTHING_TO_REPEAT)
            elif not await self.refuse_over_limit(ctx):
                if node.kind == "style":
                    await self._submit(ctx, "style", {"style": node.style, "node": parent.id})
                else:
                    await self._submit(ctx, "edit", {"node": parent.id, "instruction": node.instruction or ""})

    async def edit_node(self, ctx: Context, node_id: int, instruction: str) -> None:
        """Apply a free-text instruction to this result."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self.node_here(ctx, node_id)
            if node is not None:
                await self._submit_edit(ctx, node, instruction)

    async def undo_node(self, ctx: Context, node_id: int) -> None:
        """Re-send the step before this result, so it can be acted on again."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self.node_here(ctx, node_id)
            if node is not None:
                await self._resend_step_before(ctx, node)

    async def restyle(self, ctx: Context, node_id: int, style_name: str) -> None:
        """Restyle the original selfie behind this result."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            style = await self._style_or_say(ctx, style_name)
            if style is None:
                return
            node = await self.node_here(ctx, node_id)
            if node is None or await self.refuse_over_limit(ctx):
                return
            await self._submit(ctx, "style", {"style": style.id, "node": (await self._original_of(node)).id})


def _start_of_day() -> float:
    """Midnight UTC today: daily limits reset then."""
    now = dt.datetime.now(dt.UTC)
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC).timestamp()
