"""The picture use cases: style a photo, edit a result, undo, again, restyle, fuse, cancel.

Each resolves what to work on (a new photo, or the edit-tree node behind a replied-to message or a button),
passes admission, and leaves a persisted job for the worker; nothing is drawn here.
"""

from __future__ import annotations

from core import texts
from core.admission import Admission
from core.gate import Gate
from core.jobs import JobRunner
from core.parties import parse_party_args
from core.ports import History, ImageStore, Node
from core.replies import Replies
from core.requests import Context, ImageReply, PhotoRef
from core.styles import STYLES, Style, get_style
from core.submission import Submission

MAX_INSTRUCTION_CHARS = 1000
MIN_FUSE, MAX_FUSE = 2, 8  # photos in one fusion (an album holds up to 10)


class Rendering:
    """Requests for pictures, by message or by button; buttons on a result carry its node id, so they work
    after restarts and without a reply."""

    def __init__(self, *, history: History, images: ImageStore, replies: Replies, gate: Gate, admission: Admission,
                 submission: Submission, jobs: JobRunner) -> None:
        self.history = history
        self.images = images
        self.replies = replies
        self.gate = gate
        self.admission = admission
        self.submission = submission
        self.jobs = jobs

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
            if style is None or await self.admission.refuse_over_limit(ctx):
                return
            source = await self._source_for(ctx, style, photo, replied_message_id)
            if source is not None:
                await self.submission.submit(ctx, "style", {"style": style.id, "node": source.id})

    async def edit(self, ctx: Context, instruction: str, replied_message_id: str,
                   photo: PhotoRef | None = None) -> None:
        """Apply a free-text instruction to the result the person replied to, or to `photo`: the
        person's own photo they replied to (stored first if no style has been picked for it yet)."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self.history.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is None and photo is not None:
                node = await self.submission.ingest(ctx, photo)
                if node is None:  # refused or lost: ingest has said why
                    return
            if node is None:
                await self.replies.say(ctx, texts.REPLY_TO_RESULT)
            else:
                await self._submit_edit(ctx, node, instruction)

    async def undo(self, ctx: Context, replied_message_id: str | None) -> None:
        """Re-send the step before the replied-to result, so it can be replied to again."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = None
            if replied_message_id is not None:
                node = await self.history.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            if node is None or node.kind == "photo":
                await self.replies.say(ctx, texts.UNDO_HOW)
                return
            await self._resend_step_before(ctx, node)

    async def fuse(self, ctx: Context, photos: list[PhotoRef], args: str = "") -> None:
        """Fuse 2–8 photos the person sent (an album) into one picture: `/fuse [style] [what to make]`."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if not MIN_FUSE <= len(photos) <= MAX_FUSE:
                await self.replies.say(ctx, texts.fuse_count(MIN_FUSE, MAX_FUSE, len(photos)))
                return
            if await self.admission.refuse_over_limit(ctx):
                return
            nodes = []
            for photo in photos:
                node = await self.submission.ingest(ctx, photo)
                if node is None:  # the refusal has been said; fuse nothing rather than fewer
                    return
                nodes.append(node)
            style, theme = parse_party_args(args)
            await self.submission.submit(ctx, "fuse", {
                "style": style.id, "theme": theme, "name_people": False,
                "portraits": [[f"Person {i + 1}", n.id] for i, n in enumerate(nodes)]})

    async def cancel(self, ctx: Context) -> None:
        """Stop the person's waiting and running jobs in this chat."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            cancelled = await self.jobs.cancel_for(ctx.chat.platform, ctx.person.id, ctx.chat.id)
            await self.replies.say(ctx, texts.cancelled(len(cancelled)))

    # -- acting on a node (buttons) ----------------------------------------------------------------

    async def node_here(self, ctx: Context, node_id: int) -> Node | None:
        """The node behind a button, if it belongs to this chat; otherwise say the button expired. Buttons sit
        under pictures the bot made: a photo's id only comes from a forged one, and is honoured for its sender
        alone (a guessed id must not restyle or show a selfie sent before the presser joined)."""
        node = await self.history.get_node(node_id)
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
            parent = await self.history.get_node(node.parent_id) if node.parent_id else None
            if parent is None or node.kind not in ("style", "edit"):
                await self.replies.say(ctx, texts.NOTHING_TO_REPEAT)
            elif not await self.admission.refuse_over_limit(ctx):
                if node.kind == "style":
                    await self.submission.submit(ctx, "style", {"style": node.style, "node": parent.id})
                else:
                    await self.submission.submit(ctx, "edit", {"node": parent.id,
                                                               "instruction": node.instruction or ""})

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
            if node is None or await self.admission.refuse_over_limit(ctx):
                return
            await self.submission.submit(ctx, "style", {"style": style.id, "node": (await self._original_of(node)).id})

    # -- resolving what to work on ----------------------------------------------------------------

    async def _submit_edit(self, ctx: Context, node: Node, instruction: str) -> None:
        instruction = instruction.strip()
        if not instruction:
            await self.replies.say(ctx, texts.EMPTY_INSTRUCTION)
        elif len(instruction) > MAX_INSTRUCTION_CHARS:
            await self.replies.say(ctx, texts.instruction_too_long(MAX_INSTRUCTION_CHARS))
        elif not await self.admission.refuse_over_limit(ctx):
            await self.submission.submit(ctx, "edit", {"node": node.id, "instruction": instruction})

    async def _resend_step_before(self, ctx: Context, node: Node) -> None:
        """Send the step `node` was made from, linked so replies and buttons continue from it."""
        parent = await self.history.get_node(node.parent_id) if node.parent_id else None
        if node.kind == "photo" or parent is None or parent.kind == "photo":
            await self.replies.say(ctx, texts.UNDO_FIRST_STEP)
            return
        reply = ImageReply(parent.id, await self.images.get(parent.image_sha), parent.mime,
                           texts.undo_caption(parent.depth, parent.commentary))
        message_id = await self.replies.to(ctx).send_image(self.replies.target(ctx), reply)
        await self.history.link_message(parent, message_id)

    async def _source_for(self, ctx: Context, style: Style, photo: PhotoRef | None,
                          replied_message_id: str | None) -> Node | None:
        if photo is not None:
            return await self.submission.ingest(ctx, photo)
        if replied_message_id is not None:
            node = await self.history.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
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
        root = await self.history.get_node(node.root_id) if node.root_id else None
        return root or node
