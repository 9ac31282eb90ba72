"""The worker: runs a queued job to the end. The engine draws it (with the person's choices), the result is
stamped and saved as a node of its edit tree, and delivered with retries, recorded exactly once.

Outages put the job back in line (the circuit breaker spaces the tries); a full disk keeps the paid picture
in memory until it can be saved; a chat that refuses us for good is marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core import i18n, texts
from core.admission import Budget
from core.breaker import CircuitBreaker
from core.clock import Clock
from core.engines.base import Busy, EngineError, EngineResult, ImageEngine, Portrait, RenderOptions
from core.errors import StorageBusy, StorageFull
from core.exports import stamp_async
from core.jobs import Requeue
from core.likeness_review import LikenessReview, Member, Verdict
from core.metrics import NO_OBSERVER, JobObserver
from core.ports import (
    Delivery,
    History,
    ImageStore,
    Job,
    JobStore,
    NewNode,
    Node,
    NodeKind,
    Preferences,
    Privacy,
    SourceGone,
)
from core.queue_notes import QueueNotes
from core.replies import Replies
from core.requests import Button, DeliveryRefused, ImageReply, Messenger, ReplyTarget
from core.routing import OFFLINE, EngineRouter
from core.styles import get_style

log = logging.getLogger(__name__)

WORKING_REFRESH_S = 4.5  # Telegram shows a chat action for 5 seconds
DELIVERY_RETRY_DELAYS_S = (1.0, 3.0, 10.0)
MAX_BUSY_ATTEMPTS = 8  # a job that met an outage this often is told to try later
RECORD_RETRY_S = 0.5  # a delivery's records wait out a database restart this often
FULL_DISK_RETRY_S = 30.0  # a result that found the disk full is saved again this often, until it fits

PARALLEL_CALLS = 4  # engine calls one job makes at once (a style pack makes up to 10 pictures)

_Send = Callable[[], Awaitable[str]]
# The buttons a result offers beyond the messenger's own (a group picture: "Set as group photo").
Offers = Callable[[Messenger, ReplyTarget, Node], Awaitable[tuple[Button, ...]]]


async def _no_offers(_messenger: Messenger, _target: ReplyTarget, _node: Node) -> tuple[Button, ...]:
    return ()


class WorkStore(History, JobStore, Privacy, Protocol):
    """What the worker reads and records: nodes, jobs, and which files a failed save left unreferenced."""


class JobEnds(Protocol):
    """Told how each job ended (credits: a delivered picture spends what it held, any other end gives it back)."""

    async def settle(self, job: Job, pictures: int) -> None:
        """`pictures` of what the job held were delivered; the rest (candidates that failed) go back."""
        ...

    async def give_back(self, job: Job) -> None: ...


class ChatBlocking(Protocol):
    async def chat_blocked(self, platform: str, chat_id: str) -> None:
        """The platform refuses our messages to this chat for good."""


@dataclass
class Made:
    """An engine's picture and what it was made from, until it is saved; kept in memory while the disk is full,
    so the paid picture is not made again."""

    result: EngineResult
    parent: Node | None  # the picture it continues from (None for a group picture)
    portraits: list[tuple[str, Node]]  # a group picture's people, as drawn
    node: Node | None = None  # once saved
    told: bool = False  # the person has heard that it waits for space
    style: str | None = None  # the style it was drawn in (each picture of a style pack has its own)
    # The same picture asked for again with a stronger identity instruction (a model's picture that lost the face).
    retry: Callable[[], Awaitable[EngineResult]] | None = None
    verdict: Verdict = None  # its likeness, once scored (core.likeness_review)
    extra_calls: int = 0  # engine calls beyond the one picture (a likeness retry): priced, not counted

    @property
    def members(self) -> list[Member]:
        return [Member(name, node) for name, node in self.portraits]


class Worker:
    """Runs one job at a time per call of `run` (the queue decides which and how many)."""

    def __init__(self, *, store: WorkStore, images: ImageStore, replies: Replies, router: EngineRouter,
                 budget: Budget, breaker: CircuitBreaker, notes: QueueNotes, blocking: ChatBlocking, clock: Clock,
                 delivery_retry_delays: tuple[float, ...] = DELIVERY_RETRY_DELAYS_S,
                 full_disk_retry_s: float = FULL_DISK_RETRY_S, offers: Offers | None = None,
                 likeness: LikenessReview | None = None,
                 ends: JobEnds | None = None, observer: JobObserver = NO_OBSERVER) -> None:
        self.store = store
        self.images = images
        self.replies = replies
        self.router = router
        self.budget = budget
        self.breaker = breaker
        self.notes = notes
        self.blocking = blocking
        self.clock = clock  # delivery retries and the "working…" refresh wait on it
        self.delivery_retry_delays = delivery_retry_delays
        self.full_disk_retry_s = full_disk_retry_s
        self.offers: Offers = offers or _no_offers  # buttons a result offers beyond the messenger's own
        self.likeness = likeness  # scores each result against the selfie (None: results go unscored)
        self.ends = ends
        self.observer = observer  # told of engine errors and of the pictures engines made
        self._deliveries: set[asyncio.Future[None]] = set()
        self._unsaved: dict[int, list[Made]] = {}  # job id -> its results, waiting for disk space

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the sends already under way (shielded from cancellation) to finish and be recorded."""
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=timeout)

    async def discard(self, job: Job) -> None:
        """A cancelled job: a result it keeps for disk space is dropped, and its place-in-line note goes."""
        self._unsaved.pop(job.id, None)
        await self.notes.clear(job)
        if self.ends is not None:
            await self.ends.give_back(job)

    async def run(self, job: Job) -> None:
        messenger = self.replies.get(job.platform)
        if messenger is None:  # its adapter isn't running now; the job waits for the next start
            return
        results = await self._saved_results(job)
        made: list[Made] | None = None
        prefs = await self.router.effective(job.platform, job.chat_id, job.user_id)
        i18n.set_language(prefs.language or job.payload.get("lang"))  # a /language choice wins
        if not results:
            refusal = None if job.id in self._unsaved else await self.budget.refusal(prefs)
            if refusal is not None:  # the limit was reached, or the quota ran out, while it waited
                await self._finish_with_text(messenger, job, refusal, "Refused")
                return
            made = self._unsaved.pop(job.id, None)  # made before the disk filled up: not paid for twice
            if made is None:
                await self.notes.working(messenger, job)
                await self.store.update_job(job.id, status="running", attempt=True)
                try:
                    async with self._working(messenger, job.target):
                        made = await self._call_engine(job, prefs)
                        await self._review(job, made)
                except Busy as outage:
                    self.observer.engine_failed(type(outage).__name__)
                    await self._after_outage(messenger, job, outage)
                    return
                except EngineError as failure:
                    self.observer.engine_failed(type(failure).__name__)
                    self.breaker.record_success()  # the service answered; it is up
                    log.info("job %s: %s (%s)", job.id, type(failure).__name__, failure.detail)
                    await self._finish_with_text(messenger, job, texts.engine_failure(failure),
                                                 type(failure).__name__)
                    return
                self.breaker.record_success()
                for each in made:
                    self.observer.picture_made(each.result.model, each.result.image_size)
            kept = await self._keep(messenger, job, made)
            if kept is None:
                return
            results = kept
        else:
            results = await self._score_late(results)
        lines = self._likeness_lines(job, results, made or [])
        warnings = self.router.warnings(prefs)
        # Handed to the platform before, but never recorded as delivered (the worker was killed, or the bot stopped,
        # in between): the person may have it already. Said in the caption, which a platform that deduplicates by
        # `delivery_key` (Discord) never shows, since it answers with the message it made the first time.
        in_doubt = job.delivering_at is not None
        if in_doubt:
            log.info("job %s: its delivery was cut off before it was recorded; sending again", job.id)
        replies = [ImageReply(node.id, await self.images.get(node.image_sha), node.mime,
                              _caption(job, node, i, len(results), warnings, lines.get(node.id), again=in_doubt),
                              buttons=await self.offers(messenger, job.target, node) if len(results) == 1 else (),
                              delivery_key=f"pixme{job.id}.{i}")
                   for i, node in enumerate(results)]
        sent: list[str] = []

        async def send() -> str:
            if len(replies) == 1:
                sent[:] = await send_result(messenger, job.target, replies[0], prefs.delivery)
            else:  # pictures made together go out together, each replyable, with a way to pick one
                sent[:] = await messenger.send_album(job.target, replies)
            return sent[0]

        async def deliver_and_record() -> None:
            # The intent first: if this process dies between the platform taking the picture and the record below,
            # whoever resumes the job knows it is in doubt.
            await self.store.update_job(job.id, delivering=True)
            message_id = await self._deliver(job, send)
            if message_id is not None:
                # Sent: from here on every record waits out a database that is away (a restart), since a job
                # not recorded as delivered would be run again and its picture sent twice.
                # One picture: every message showing it (photo, file). Several: each message its own picture.
                pairs = list(zip(results, sent, strict=True)) if len(results) > 1 else [(results[0], m) for m in sent]
                # The links and the job's end, together.
                await self._recorded(job, functools.partial(self.store.finish_delivery, job.id, pairs, message_id))
                if self.ends is not None:
                    await self._recorded(job, functools.partial(self.ends.settle, job, len(results)))
                await self._recorded(job, functools.partial(self.notes.clear, job))

        # Shielded: a shutdown that cancels the job must not cut a send off between the platform
        # accepting the picture and our record of it, or the restart would send it a second time.
        delivery = self.replies.linking(deliver_and_record())
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        await asyncio.shield(delivery)

    async def _recorded(self, job: Job, record: Callable[[], Awaitable[None]]) -> None:
        """`record()`, again every `RECORD_RETRY_S` for as long as the database is out of reach."""
        while True:
            try:
                await record()
                return
            except StorageBusy as exc:
                log.warning("job %s: sent, but the database is out of reach (%s); recording it once it answers",
                            job.id, exc)
                await self.clock.sleep(RECORD_RETRY_S)

    async def _saved_results(self, job: Job) -> list[Node]:
        """What the job made and saved before (a restart between saving and delivering), in order."""
        ids = job.result_nodes or ((job.result_node,) if job.result_node else ())
        found = [await self.store.get_node(node_id) for node_id in ids]
        return [node for node in found if node is not None]

    async def _keep(self, messenger: Messenger, job: Job, made: list[Made]) -> list[Node] | None:
        """Save the results and record them on the job. On a full disk the pictures stay in memory, the person
        hears once that they wait for space, and the job goes back in line (pausing the line: every save would
        fail) to be saved and delivered when there is room. None if they must not be kept (their source went)."""
        try:
            for each in made:
                if each.node is None:
                    each.node = await self._save_result(job, each)
                    if self.likeness is not None:
                        each.node = await self.likeness.record(each.node, each.verdict, each.members)
            nodes = [each.node for each in made if each.node is not None]
            # Fewer pictures than asked (some could not be made) count as what was made; a likeness retry is
            # priced (extra_calls) but is not a picture.
            extra = sum(each.extra_calls for each in made)
            await self.store.update_job(job.id, status="done", result_node=nodes[0].id,
                                        result_nodes=tuple(n.id for n in nodes) if len(nodes) > 1 else None,
                                        pictures=len(nodes) if len(nodes) != job.pictures else None,
                                        extra_calls=extra or None)
            return nodes
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
        if not made[0].told:
            made[0].told = True
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
        if self.ends is not None:
            await self.ends.give_back(job)
        await self.notes.clear(job)

    async def _call_engine(self, job: Job, prefs: Preferences | None = None) -> list[Made]:
        """Run the job's engine calls with the person's choices (model, ratio, size, persona): one picture, or
        several at once (variants, a style pack), each with its own seed."""
        prefs = prefs or Preferences()
        engine, options = self.router.engine_for(prefs), self.router.options(prefs)
        if job.kind == "fuse":
            return [await self._call_fuse(job, engine, options)]
        node = await self.store.get_node(int(job.payload["node"]))
        if node is None:
            raise EngineError(texts.SOURCE_GONE)
        image = await self.images.get(node.image_sha)
        if job.kind in ("style", "pack"):
            names = [str(n) for n in job.payload["styles"]] if job.kind == "pack" \
                else [str(job.payload["style"])] * max(1, int(job.payload.get("variants", 1)))
            styles = [get_style(name) for name in names]
            missing = next((name for name, style in zip(names, styles, strict=True) if style is None), None)
            if missing is not None:
                raise EngineError(texts.unknown_style(missing))
            drawn = [s for s in styles if s is not None]
            calls = [functools.partial(engine.stylize, image, style,
                                       options=dataclasses.replace(options, seed=_seed(job, i)))
                     for i, style in enumerate(drawn)]
            return [Made(result, node, [], style=names[i],
                         retry=functools.partial(engine.stylize, image, drawn[i], options=dataclasses.replace(
                             options, seed=_seed(job, i), stronger_identity=True)))
                    for i, result in await _all(calls)]
        # The identity reference: the original selfie, or for a group picture the picture itself.
        root = await self.store.get_node(node.root_id) if node.root_id else (node if node.kind == "fuse" else None)
        identity = await self.images.get(root.image_sha) if root else None
        options = dataclasses.replace(options, seed=_seed(job, 0))
        instruction = job.payload["instruction"]
        return [Made(await engine.edit(image, instruction, identity=identity, options=options), node, [],
                     retry=functools.partial(engine.edit, image, instruction, identity=identity,
                                             options=dataclasses.replace(options, stronger_identity=True)))]

    async def _call_fuse(self, job: Job, engine: ImageEngine, options: RenderOptions) -> Made:
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
        return Made(result, None, found)

    async def _review(self, job: Job, made: list[Made]) -> None:
        """Score each picture against the selfie (a group picture: each member against their face in it); a
        model's picture under `[likeness] retry_below` is drawn once more with a stronger identity instruction
        and the better of the two kept. A retry that fails leaves the first picture."""
        review = self.likeness
        if review is None:
            return
        if job.kind == "fuse":
            for each in made:
                each.verdict = await review.match(each.result.image, each.members)
            return

        calls = asyncio.Semaphore(PARALLEL_CALLS)  # retries keep to the engine calls a job makes at once

        async def one(each: Made) -> None:
            anchor = await review.anchor(each.parent) if each.parent is not None else None
            each.verdict = await review.score(each.result.image, anchor)
            if each.retry is None or each.result.model == OFFLINE or not review.wants_retry(each.verdict):
                return
            log.info("job %s: likeness %s under %d%%; one more try with a stronger identity instruction", job.id,
                     getattr(each.verdict, "percent", "no face"), review.settings.retry_below)
            try:
                async with calls:
                    again = await each.retry()
            except EngineError as failure:
                log.info("job %s: the likeness retry failed (%s); keeping the first picture", job.id,
                         type(failure).__name__)
                return
            each.extra_calls += 1
            verdict = await review.score(again.image, anchor)
            if review.better(verdict, each.verdict):
                each.result, each.verdict = again, verdict

        await asyncio.gather(*(one(each) for each in made))

    async def _score_late(self, nodes: list[Node]) -> list[Node]:
        """Results saved before a restart but never scored (it came between saving and scoring): scored now."""
        review = self.likeness
        if review is None:
            return nodes
        scored = []
        for node in nodes:
            if node.likeness_status is None and node.kind != "fuse":
                verdict = await review.score(await self.images.get(node.image_sha), await review.anchor(node))
                node = await review.record(node, verdict)
            scored.append(node)
        return scored

    def _likeness_lines(self, job: Job, nodes: list[Node], made: list[Made]) -> dict[int, str]:
        """Each result's likeness line for its caption (none when `[likeness] show` is off or it has none)."""
        review = self.likeness
        if review is None:
            return {}
        by_node = {each.node.id: each for each in made if each.node is not None}
        lines = {}
        for node in nodes:
            each = by_node.get(node.id)
            line = review.line(node, each.verdict if each else None, each.members if each else (),
                               name_people=bool(job.payload.get("name_people", True)))
            if line:
                lines[node.id] = line
        return lines

    async def _save_result(self, job: Job, made: Made) -> Node:
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
        kind: NodeKind = "fuse" if job.kind == "fuse" else "style" if job.kind in ("style", "pack") else "edit"
        try:
            return await self.store.add_node(NewNode(
                job.platform, job.chat_id, job.user_id, kind, sha, mime, parent=made.parent,
                style=made.style or job.payload.get("style"),
                instruction=job.payload.get("instruction") or job.payload.get("theme"),
                engine=OFFLINE if result.model == OFFLINE else self.router.engine.name, model=result.model,
                commentary=commentary, image_size=result.image_size,
                inputs=tuple(node for _, node in made.portraits),
            ))
        except SourceGone:
            for orphan in await self.store.unreferenced([sha]):
                await self.images.delete(orphan)
            raise

    async def _deliver(self, job: Job, send: _Send) -> str | None:
        """Send with retries; a chat that refuses us for good is marked and not retried."""
        for delay in (*self.delivery_retry_delays, None):
            try:
                return await send()
            except asyncio.CancelledError:
                raise
            except DeliveryRefused:
                log.info("job %s: %s:%s refuses messages; marked", job.id, job.platform, job.chat_id)
                await self.blocking.chat_blocked(job.platform, job.chat_id)
                await self.store.update_job(job.id, status="failed", error="chat_blocked")
                if self.ends is not None:
                    await self.ends.give_back(job)
                return None
            except Exception as exc:
                if delay is None:
                    log.error("job %s: delivery failed for good (%s); will retry at next start",
                              job.id, type(exc).__name__)
                    return None
                log.warning("job %s: delivery failed (%s), retrying in %.0fs", job.id, type(exc).__name__, delay)
                await self.clock.sleep(delay)
        return None

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


def _seed(job: Job, index: int) -> int | None:
    """The seed of a job's `index`th picture: the first of a request is the engine's own picture (None), every
    other candidate and every Again a new take (the job id keeps it the same after a restart)."""
    if index == 0 and not job.payload.get("again"):
        return None
    return job.id * 16 + index


async def _all(calls: Sequence[Callable[[], Awaitable[EngineResult]]]) -> list[tuple[int, EngineResult]]:
    """Run the calls, PARALLEL_CALLS at a time; the pictures made, with their places. Some failing leaves the
    others (the person gets fewer); all failing raises the first failure."""
    if len(calls) == 1:
        return [(0, await calls[0]())]
    gate = asyncio.Semaphore(PARALLEL_CALLS)

    async def one(call: Callable[[], Awaitable[EngineResult]]) -> EngineResult:
        async with gate:
            return await call()

    outcomes = await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, EngineError):
            raise outcome  # a bug, or a cancellation: not a picture that could not be made
    made = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, EngineResult)]
    if not made:
        first = next(o for o in outcomes if isinstance(o, EngineError))
        raise first
    if len(made) < len(calls):
        log.info("%d of %d pictures could not be made: %s", len(calls) - len(made), len(calls),
                 ", ".join(type(o).__name__ for o in outcomes if isinstance(o, EngineError)))
    return made


def _caption(job: Job, node: Node, index: int, count: int, warnings: list[str], likeness: str | None = None, *,
             again: bool = False) -> str:
    """A result's caption: its commentary (and what the model could not honour), ending with how much of the face
    it kept; several are numbered, to pick one by its number, and a style pack's name their style. `again`: it is
    sent a second time (the first sending may have arrived), which the first picture's caption says."""
    caption = _plain_caption(job, node, index, count, warnings, likeness)
    return f"{caption}\n{texts.SENT_AGAIN}" if again and index == 0 else caption


def _plain_caption(job: Job, node: Node, index: int, count: int, warnings: list[str],
                   likeness: str | None = None) -> str:
    commentary = node.commentary or texts.DEFAULT_CAPTION
    kept = [likeness] if likeness else []
    if count == 1:  # the likeness right under the rest: one short line, not a paragraph of its own
        return "\n".join(["\n\n".join([commentary, *warnings]), *kept])
    style = get_style(node.style or "") if job.kind == "pack" else None
    line = texts.album_caption(index + 1, style.label if style else "", commentary)
    if index == 0 and warnings:
        return "\n\n".join([line, *warnings, *kept])
    return " · ".join([line, *kept])


async def send_result(messenger: Messenger, target: ReplyTarget, reply: ImageReply,
                      delivery: Delivery | None) -> list[str]:
    """Send a result as a photo, a file, or both; returns every message id (each is replyable)."""
    if delivery == "file":
        return [await messenger.send_file(target, reply)]
    sent = [await messenger.send_image(target, reply)]
    if delivery == "both":
        sent.append(await messenger.send_file(target, reply))
    return sent
