"""From a request to a saved job: a person's photo taken in (bounded, killable decoding) as the root of an edit
tree, and the job persisted and queued before any work starts."""

from __future__ import annotations

import logging

from core import i18n, texts
from core.breaker import CircuitBreaker
from core.credits import Credits
from core.gate import settle
from core.intake import IntakeError, check_declared_size
from core.intake_pool import Intake
from core.jobs import Queue
from core.ports import History, ImageStore, NewNode, Node
from core.replies import Replies
from core.requests import Context, PhotoRef, ReplyTarget

log = logging.getLogger(__name__)


class Submission:
    """Photos in, jobs queued."""

    def __init__(self, *, history: History, images: ImageStore, intake: Intake, jobs: Queue,
                 breaker: CircuitBreaker, replies: Replies, input_max_px: int, credits: Credits | None = None) -> None:
        self.history = history
        self.images = images
        self.intake = intake
        self.jobs = jobs
        self.breaker = breaker
        self.replies = replies
        self.input_max_px = input_max_px
        self.credits = credits  # a picture holds a free picture of the day or a credit, saved with its job

    async def ingest(self, ctx: Context, photo: PhotoRef) -> Node | None:
        """Download, check and store a person's photo as the root of a new edit tree; None after saying why not."""
        platform, chat_id = ctx.chat.platform, ctx.chat.id
        if photo.message_id is not None:
            known = await self.history.node_for_message(platform, chat_id, photo.message_id)
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
        node = await self.history.add_node(NewNode(platform, chat_id, ctx.person.id, "photo", sha, "image/jpeg",
                                                   owner_id=photo.owner_id or ctx.person.id))
        if photo.message_id is not None:
            await self.history.link_message(node, photo.message_id)
        return node

    async def submit(self, ctx: Context, kind: str, payload: dict[str, object], *, pictures: int = 1) -> None:
        """A job answering `ctx`, in its chat, making `pictures` pictures (as admitted)."""
        await self.submit_job(ctx.chat.platform, ctx.chat.id, ctx.person.id, kind, payload, self.replies.target(ctx),
                              pictures=pictures)

    async def submit_job(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, object],
                         target: ReplyTarget, *, pictures: int = 1) -> None:
        """Persist and queue a job; say so at once if the image service is down. (A job that starts
        shows "sending photo…" itself, for as long as it runs.)"""
        # The language the request came in: the answer (even after a restart) is in it too.
        payload = {**payload, "lang": payload.get("lang") or i18n.current()}
        if self.credits is not None and self.credits.applies_to(platform, user_id):
            job = await self.credits.persist_job(platform, chat_id, user_id, kind, payload, target, pictures)
            if job is None:  # the last ones went to another request since admission asked
                await self.credits.offer(target)
                return
            settle()
            self.jobs.enqueue(job)
        else:
            await self.jobs.submit(platform, chat_id, user_id, kind, payload, target, pictures=pictures)
        settle()  # the job is in the database: a redelivery of this request would ask for it twice
        messenger = self.replies.get(platform)
        if self.breaker.is_open and messenger is not None:
            await messenger.send_text(target, texts.SERVICE_DOWN_SAVED)
