"""The use cases, the same on every platform: style a photo, edit a result, undo, offer styles.

Adapters call these with a `Context` and whatever the platform gave them; the studio answers through
the adapter's `Messenger`. No method here raises: every failure becomes a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from core import texts
from core.engines.base import EngineError, EngineResult, ImageEngine
from core.intake import IntakeError, check_declared_size, prepare
from core.jobs import JobRunner
from core.ports import ImageStore, Job, NewNode, Node, Store
from core.requests import Context, ImageReply, Messenger, PhotoRef, ReplyTarget
from core.styles import STYLES, Style, get_style

log = logging.getLogger(__name__)

MAX_INSTRUCTION_CHARS = 1000
WORKING_REFRESH_S = 4.5  # Telegram shows a chat action for 5 seconds
DELIVERY_RETRY_DELAYS_S = (1.0, 3.0, 10.0)

_Send = Callable[[], Awaitable[str]]


class Studio:
    def __init__(self, *, store: Store, images: ImageStore, engine: ImageEngine,
                 concurrency: int = 8, input_max_px: int = 1024) -> None:
        self.store = store
        self.images = images
        self.engine = engine
        self.input_max_px = input_max_px
        self.jobs = JobRunner(store, self._run_job, concurrency=concurrency)
        self._messengers: dict[str, Messenger] = {}

    # -- wiring --------------------------------------------------------------------------------

    def attach(self, platform: str, messenger: Messenger) -> None:
        """Register an adapter's messenger; its unfinished jobs can then be resumed."""
        self._messengers[platform] = messenger

    async def resume(self) -> int:
        """Deliver whatever was accepted but not delivered before the last stop."""
        return await self.jobs.resume(set(self._messengers))

    async def aclose(self) -> None:
        await self.jobs.aclose()

    # -- use cases -----------------------------------------------------------------------------

    async def offer_styles(self, ctx: Context, photo_message_id: str) -> None:
        """A bare photo: answer with a menu of styles; nothing is downloaded until one is picked."""
        async with self._handling(ctx):
            await self._messenger(ctx).send_style_menu(
                self._target(ctx, photo_message_id), texts.PICK_STYLE, list(STYLES))

    async def style(self, ctx: Context, style_name: str, photo: PhotoRef | None,
                    replied_message_id: str | None = None) -> None:
        """Turn `photo` (or the photo behind the replied-to message) into an avatar in a style."""
        async with self._handling(ctx):
            style = get_style(style_name)
            if style is None:
                await self._say(ctx, texts.unknown_style(style_name))
                return
            source = await self._source_for(ctx, style, photo, replied_message_id)
            if source is None:
                return
            await self.jobs.submit(ctx.chat.platform, ctx.chat.id, ctx.person.id, "style",
                                   {"style": style.id, "node": source.id}, self._target(ctx))
            await self._messenger(ctx).show_working(self._target(ctx))

    async def edit(self, ctx: Context, instruction: str, replied_message_id: str) -> None:
        """Apply a free-text instruction to the result the person replied to."""
        async with self._handling(ctx):
            instruction = instruction.strip()
            node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is None:
                await self._say(ctx, texts.REPLY_TO_RESULT)
                return
            if not instruction:
                await self._say(ctx, texts.EMPTY_INSTRUCTION)
                return
            if len(instruction) > MAX_INSTRUCTION_CHARS:
                await self._say(ctx, texts.instruction_too_long(MAX_INSTRUCTION_CHARS))
                return
            await self.jobs.submit(ctx.chat.platform, ctx.chat.id, ctx.person.id, "edit",
                                   {"node": node.id, "instruction": instruction}, self._target(ctx))
            await self._messenger(ctx).show_working(self._target(ctx))

    async def undo(self, ctx: Context, replied_message_id: str | None) -> None:
        """Re-send the step before the replied-to result, so it can be replied to again."""
        async with self._handling(ctx):
            node = None
            if replied_message_id is not None:
                node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is None or node.kind == "photo":
                await self._say(ctx, texts.UNDO_HOW)
                return
            parent = await self.store.get_node(node.parent_id) if node.parent_id else None
            if parent is None or parent.kind == "photo":
                await self._say(ctx, texts.UNDO_FIRST_STEP)
                return
            reply = ImageReply(parent.id, await self.images.get(parent.image_sha), parent.mime,
                               texts.undo_caption(parent.depth, parent.commentary))
            message_id = await self._messenger(ctx).send_image(self._target(ctx), reply)
            await self.store.link_message(parent, message_id)

    # -- resolving what to work on ----------------------------------------------------------------

    async def _source_for(self, ctx: Context, style: Style, photo: PhotoRef | None,
                          replied_message_id: str | None) -> Node | None:
        if photo is not None:
            return await self._ingest(ctx, photo)
        if replied_message_id is not None:
            node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is not None:
                # Restyling a result starts again from the original selfie: styles stack badly.
                root = await self.store.get_node(node.root_id) if node.root_id else node
                return root or node
        await self._say(ctx, texts.style_hint(style))
        return None

    async def _ingest(self, ctx: Context, photo: PhotoRef) -> Node | None:
        """Download, check and store a person's photo as the root of a new edit tree."""
        platform, chat_id = ctx.chat.platform, ctx.chat.id
        if photo.message_id is not None:
            known = await self.store.node_for_message(platform, chat_id, photo.message_id)
            if known is not None and known.kind == "photo":
                return known
        try:
            check_declared_size(photo.size)
            try:
                data = await photo.fetch()
            except IntakeError:
                raise
            except Exception as exc:
                log.warning("photo download failed in %s:%s: %s", platform, chat_id, type(exc).__name__)
                await self._say(ctx, texts.DOWNLOAD_FAILED)
                return None
            prepared = await asyncio.to_thread(prepare, bytes(data), max_px=self.input_max_px)
        except IntakeError as refusal:
            await self._say(ctx, refusal.message)
            return None
        sha = await self.images.put(prepared.data)
        node = await self.store.add_node(NewNode(platform, chat_id, ctx.person.id, "photo", sha, "image/jpeg"))
        if photo.message_id is not None:
            await self.store.link_message(node, photo.message_id)
        return node

    # -- running a job ---------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        messenger = self._messengers.get(job.platform)
        if messenger is None:  # its adapter isn't running now; the job waits for the next start
            return
        result_node = await self.store.get_node(job.result_node) if job.result_node else None
        if result_node is None:
            await self.store.update_job(job.id, status="running", attempt=True)
            try:
                async with self._working(messenger, job.target):
                    result = await self._call_engine(job)
            except EngineError as failure:
                log.info("job %s: %s (%s)", job.id, type(failure).__name__, failure.detail)
                await self._deliver_text(messenger, job, texts.engine_failure(failure))
                await self.store.update_job(job.id, status="failed", error=type(failure).__name__)
                return
            result_node = await self._save_result(job, result)
            await self.store.update_job(job.id, status="done", result_node=result_node.id)
        reply = ImageReply(result_node.id, await self.images.get(result_node.image_sha), result_node.mime,
                           result_node.commentary or texts.DEFAULT_CAPTION)
        message_id = await self._with_delivery_retries(job, lambda: messenger.send_image(job.target, reply))
        if message_id is not None:
            await self.store.link_message(result_node, message_id)
            await self.store.update_job(job.id, status="delivered", delivered_message=message_id)

    async def _call_engine(self, job: Job) -> EngineResult:
        node = await self.store.get_node(int(job.payload["node"]))
        if node is None:
            raise EngineError(texts.SOURCE_GONE)
        image = await self.images.get(node.image_sha)
        if job.kind == "style":
            style = get_style(job.payload["style"])
            if style is None:
                raise EngineError(texts.unknown_style(job.payload["style"]))
            return await self.engine.stylize(image, style)
        root = await self.store.get_node(node.root_id) if node.root_id else None
        identity = await self.images.get(root.image_sha) if root else None
        return await self.engine.edit(image, job.payload["instruction"], identity=identity)

    async def _save_result(self, job: Job, result: EngineResult) -> Node:
        parent = await self.store.get_node(int(job.payload["node"]))
        sha = await self.images.put(result.image)
        return await self.store.add_node(NewNode(
            job.platform, job.chat_id, job.user_id, "style" if job.kind == "style" else "edit", sha,
            result.mime, parent=parent, style=job.payload.get("style"), instruction=job.payload.get("instruction"),
            engine=self.engine.name, model=result.model, commentary=result.commentary.strip(),
        ))

    async def _deliver_text(self, messenger: Messenger, job: Job, text: str) -> None:
        await self._with_delivery_retries(job, lambda: messenger.send_text(job.target, text))

    async def _with_delivery_retries(self, job: Job, send: _Send) -> str | None:
        for delay in (*DELIVERY_RETRY_DELAYS_S, None):
            try:
                return await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if delay is None:
                    log.error("job %s: delivery failed for good (%s); will retry at next start",
                              job.id, type(exc).__name__)
                    return None
                log.warning("job %s: delivery failed (%s), retrying in %.0fs", job.id, type(exc).__name__, delay)
                await asyncio.sleep(delay)
        return None

    @contextlib.asynccontextmanager
    async def _working(self, messenger: Messenger, target: ReplyTarget) -> AsyncIterator[None]:
        """Keep the chat's "sending photo…" indicator alive while the engine works."""

        async def refresh() -> None:
            while True:
                await asyncio.sleep(WORKING_REFRESH_S)
                with contextlib.suppress(Exception):
                    await messenger.show_working(target)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()

    # -- helpers -------------------------------------------------------------------------------

    def _messenger(self, ctx: Context) -> Messenger:
        return self._messengers[ctx.chat.platform]

    @staticmethod
    def _target(ctx: Context, reply_to: str | None = None) -> ReplyTarget:
        return ReplyTarget(ctx.chat.platform, ctx.chat.id, reply_to or ctx.message_id)

    async def _say(self, ctx: Context, text: str) -> None:
        await self._messenger(ctx).send_text(self._target(ctx), text)

    @contextlib.asynccontextmanager
    async def _handling(self, ctx: Context) -> AsyncIterator[None]:
        """Nothing escapes a use case: log it and tell the person, once."""
        try:
            yield
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request %s:%s failed", ctx.chat.platform, ctx.message_id)
            with contextlib.suppress(Exception):
                await self._say(ctx, texts.INTERNAL_ERROR)

