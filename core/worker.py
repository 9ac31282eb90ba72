"""The worker: runs a queued job to the end. The engine draws it (with the person's choices), the result is
stamped and saved as a node of its edit tree, and delivered with retries, recorded exactly once.

Outages put the job back in line (the circuit breaker spaces the tries); a full disk keeps the paid picture
in memory until it can be saved; a chat that refuses us for good is marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from core import i18n, texts
from core.admission import Budget
from core.breaker import CircuitBreaker
from core.clock import Clock
from core.engines.base import Busy, EngineError, EngineResult, ImageEngine, Portrait, RenderOptions
from core.errors import StorageFull
from core.exports import stamp_async
from core.jobs import Requeue
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
from core.requests import DeliveryRefused, ImageReply, Messenger, ReplyTarget
from core.routing import OFFLINE, EngineRouter
from core.styles import get_style

log = logging.getLogger(__name__)

WORKING_REFRESH_S = 4.5  # Telegram shows a chat action for 5 seconds
DELIVERY_RETRY_DELAYS_S = (1.0, 3.0, 10.0)
MAX_BUSY_ATTEMPTS = 8  # a job that met an outage this often is told to try later
FULL_DISK_RETRY_S = 30.0  # a result that found the disk full is saved again this often, until it fits

_Send = Callable[[], Awaitable[str]]


class WorkStore(History, JobStore, Privacy, Protocol):
    """What the worker reads and records: nodes, jobs, and which files a failed save left unreferenced."""


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


class Worker:
    """Runs one job at a time per call of `run` (the queue decides which and how many)."""

    def __init__(self, *, store: WorkStore, images: ImageStore, replies: Replies, router: EngineRouter,
                 budget: Budget, breaker: CircuitBreaker, notes: QueueNotes, blocking: ChatBlocking, clock: Clock,
                 delivery_retry_delays: tuple[float, ...] = DELIVERY_RETRY_DELAYS_S,
                 full_disk_retry_s: float = FULL_DISK_RETRY_S, observer: JobObserver = NO_OBSERVER) -> None:
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
        self.observer = observer  # told of engine errors and of the pictures engines made
        self._deliveries: set[asyncio.Future[None]] = set()
        self._unsaved: dict[int, Made] = {}  # job id -> a result waiting for disk space

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the sends already under way (shielded from cancellation) to finish and be recorded."""
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=timeout)

    async def discard(self, job: Job) -> None:
        """A cancelled job: a result it keeps for disk space is dropped, and its place-in-line note goes."""
        self._unsaved.pop(job.id, None)
        await self.notes.clear(job)

    async def run(self, job: Job) -> None:
        messenger = self.replies.get(job.platform)
        if messenger is None:  # its adapter isn't running now; the job waits for the next start
            return
        result_node = await self.store.get_node(job.result_node) if job.result_node else None
        prefs = await self.router.effective(job.platform, job.chat_id, job.user_id)
        i18n.set_language(prefs.language or job.payload.get("lang"))  # a /language choice wins
        if result_node is None:
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
                self.observer.picture_made(made.result.model, made.result.image_size)
            result_node = await self._keep(messenger, job, made)
            if result_node is None:
                return
        caption = "\n\n".join([result_node.commentary or texts.DEFAULT_CAPTION, *self.router.warnings(prefs)])
        reply = ImageReply(result_node.id, await self.images.get(result_node.image_sha), result_node.mime, caption)
        sent: list[str] = []

        async def send() -> str:
            sent[:] = await send_result(messenger, job.target, reply, prefs.delivery)
            return sent[0]

        async def deliver_and_record() -> None:
            message_id = await self._deliver(job, send)
            if message_id is not None:
                for each in sent:
                    await self.store.link_message(result_node, each)
                await self.store.update_job(job.id, status="delivered", delivered_message=message_id)
                await self.notes.clear(job)

        # Shielded: a shutdown that cancels the job must not cut a send off between the platform
        # accepting the picture and our record of it, or the restart would send it a second time.
        delivery = asyncio.ensure_future(deliver_and_record())
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        await asyncio.shield(delivery)

    async def _keep(self, messenger: Messenger, job: Job, made: Made) -> Node | None:
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
        await self.notes.clear(job)

    async def _call_engine(self, job: Job, prefs: Preferences | None = None) -> Made:
        """Run the job's engine call with the person's choices (model, ratio, size, persona)."""
        prefs = prefs or Preferences()
        engine, options = self.router.engine_for(prefs), self.router.options(prefs)
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
            return Made(await engine.stylize(image, style, options=options), node, [])
        # The identity reference: the original selfie, or for a group picture the picture itself.
        root = await self.store.get_node(node.root_id) if node.root_id else (node if node.kind == "fuse" else None)
        identity = await self.images.get(root.image_sha) if root else None
        return Made(await engine.edit(image, job.payload["instruction"], identity=identity, options=options), node, [])

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
        kind: NodeKind = "fuse" if job.kind == "fuse" else "style" if job.kind == "style" else "edit"
        try:
            return await self.store.add_node(NewNode(
                job.platform, job.chat_id, job.user_id, kind, sha, mime, parent=made.parent,
                style=job.payload.get("style"), instruction=job.payload.get("instruction") or job.payload.get("theme"),
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


async def send_result(messenger: Messenger, target: ReplyTarget, reply: ImageReply,
                      delivery: Delivery | None) -> list[str]:
    """Send a result as a photo, a file, or both; returns every message id (each is replyable)."""
    if delivery == "file":
        return [await messenger.send_file(target, reply)]
    sent = [await messenger.send_image(target, reply)]
    if delivery == "both":
        sent.append(await messenger.send_file(target, reply))
    return sent
