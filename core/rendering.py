"""The picture use cases: style a photo, edit a result, undo, again, restyle, fuse, cancel.

Each resolves what to work on (a new photo, or the edit-tree node behind a replied-to message or a button),
passes admission, and leaves a persisted job for the worker; nothing is drawn here.
"""

from __future__ import annotations

from core import texts
from core.actions import Outcome
from core.admission import Admission
from core.config import MAX_VARIANTS
from core.gate import Gate
from core.jobs import Queue
from core.parties import parse_party_args
from core.ports import History, ImageStore, Node
from core.replies import Replies
from core.requests import Context, ImageReply, PhotoRef
from core.routing import EngineRouter
from core.styles import STYLES, Style, get_style
from core.submission import Submission

MAX_INSTRUCTION_CHARS = 1000
MIN_FUSE, MAX_FUSE = 2, 8  # photos in one fusion (an album holds up to 10)
PACK_DEFAULT, PACK_MAX = 6, 10  # styles in one /pack (a Telegram album holds 10)
# A pack of n shows the first n: the looks most unlike each other first (colour, line, pixels, paint, mood).
PACK_ORDER = ("comic", "anime", "zombie", "pixel", "watercolor", "noir", "cyberpunk", "popart", "sketch", "manga")


class Rendering:
    """Requests for pictures, by message or by button; buttons on a result carry its node id, so they work
    after restarts and without a reply."""

    def __init__(self, *, history: History, images: ImageStore, replies: Replies, gate: Gate, admission: Admission,
                 submission: Submission, jobs: Queue, router: EngineRouter | None = None,
                 variants: int = 1) -> None:
        self.router = router  # the person's choices (how many variants); None: always the operator's
        self.variants = variants  # `[gemini] variants`: candidates a request makes unless the person chose
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
            if style is None:
                return
            count = await self.variants_for(ctx)
            if await self.admission.refuse_over_limit(ctx, count):
                return
            source = await self._source_for(ctx, style, photo, replied_message_id)
            if source is not None:
                await self._submit_style(ctx, style.id, source, count)

    async def edit(self, ctx: Context, instruction: str, replied_message_id: str,
                   photo: PhotoRef | None = None) -> None:
        """Apply a free-text instruction to the result the person replied to, or to `photo`: the
        person's own photo they replied to (stored first if no style has been picked for it yet)."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self._replied_node(ctx, replied_message_id)
            if node is None and photo is not None:
                node = await self.submission.ingest(ctx, photo)
                if node is None:  # refused or lost: ingest has said why
                    return
            if node is None:
                await self.replies.say(ctx, texts.REPLY_TO_RESULT)
            else:
                await self._submit_edit(ctx, node, instruction)

    async def _replied_node(self, ctx: Context, message_id: str) -> Node | None:
        """The picture a message shows; if none yet, again once the sends under way (here or elsewhere) are
        recorded."""
        # A picture that has just arrived may beat the record of its message by a moment.
        return await self.replies.found(
            lambda: self.history.node_for_message(ctx.chat.platform, ctx.chat.id, message_id))

    async def undo(self, ctx: Context, replied_message_id: str | None) -> None:
        """Re-send the step before the replied-to result, so it can be replied to again."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = None
            if replied_message_id is not None:
                node = await self._replied_node(ctx, replied_message_id)
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
            elif node.kind == "style":
                count = await self.variants_for(ctx)
                if not await self.admission.refuse_over_limit(ctx, count):
                    await self._submit_style(ctx, node.style or "", parent, count, again=True)
            elif not await self.admission.refuse_over_limit(ctx):
                # "again": a new take even where the engine would draw the same picture for the same input.
                await self.submission.submit(ctx, "edit", {"node": parent.id, "instruction": node.instruction or "",
                                                           "again": True})

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
            if node is None:
                return
            count = await self.variants_for(ctx)
            if not await self.admission.refuse_over_limit(ctx, count):
                await self._submit_style(ctx, style.id, await self._original_of(node), count)

    async def pack(self, ctx: Context, args: str, photo: PhotoRef | None, replied_message_id: str | None) -> None:
        """`/pack [n]` with a selfie (or replying to one, or to a result): the selfie in n styles (PACK_ORDER's
        first n), made at once and delivered as one album, each picture replyable; n pictures' worth, refused
        up front when the person's limits can't cover them all."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            wanted = args.split()[0] if args.split() else ""
            count = int(wanted) if wanted.isdigit() else PACK_DEFAULT if not wanted else 0
            if not 1 <= count <= PACK_MAX:
                await self.replies.say(ctx, texts.pack_count(PACK_MAX, wanted[:20]))
                return
            if photo is None and replied_message_id is None:
                await self.replies.say(ctx, texts.pack_how(ctx.chat.platform, PACK_DEFAULT, PACK_MAX))
                return
            if await self.admission.refuse_over_limit(ctx, count):
                return
            source = None
            if photo is not None:
                source = await self.submission.ingest(ctx, photo)
                if source is None:  # refused or lost: ingest has said why
                    return
            elif replied_message_id is not None:
                node = await self._replied_node(ctx, replied_message_id)
                source = await self._original_of(node) if node is not None else None
            if source is None:
                await self.replies.say(ctx, texts.pack_how(ctx.chat.platform, PACK_DEFAULT, PACK_MAX))
                return
            styles = [s for s in PACK_ORDER if get_style(s) is not None][:count]
            await self.submission.submit(ctx, "pack", {"styles": styles, "node": source.id}, pictures=len(styles))

    async def pick(self, ctx: Context, node_id: int) -> Outcome:
        """One of the pictures made together, chosen to continue from: sent again as a result of its own (with
        its buttons), replying to the message it was picked on, so replies and buttons continue from it."""
        node = await self.history.get_node(node_id)
        if node is None or node.kind == "photo" or (node.platform, node.chat_id) != (ctx.chat.platform, ctx.chat.id):
            return Outcome.refused(texts.UNKNOWN_BUTTON)
        reply = ImageReply(node.id, await self.images.get(node.image_sha), node.mime,
                           node.commentary or texts.DEFAULT_CAPTION)
        await self.replies.linking(self._send_linked(ctx, node, reply))
        return Outcome.ok(texts.VARIANT_PICKED)

    async def _send_linked(self, ctx: Context, node: Node, reply: ImageReply) -> None:
        """Send `node` in answer to the request and record that its message shows it."""
        await self.history.link_message(node, await self.replies.to(ctx).send_image(self.replies.target(ctx), reply))

    async def variants_for(self, ctx: Context) -> int:
        """How many candidates one request of this person's makes here: their choice (or their group's), else
        the operator's `[gemini] variants`. Each is a picture: admission counts, and prices, every one."""
        chosen = None
        if self.router is not None:
            chosen = (await self.router.effective(ctx.chat.platform, ctx.chat.id, ctx.person.id)).variants
        return min(max(chosen or self.variants, 1), MAX_VARIANTS)

    # -- resolving what to work on ----------------------------------------------------------------

    async def _submit_style(self, ctx: Context, style_id: str, source: Node, count: int, *,
                            again: bool = False) -> None:
        """A style job making `count` candidates of `source` (admitted for `count` pictures already)."""
        payload: dict[str, object] = {"style": style_id, "node": source.id}
        if count > 1:
            payload["variants"] = count
        if again:
            payload["again"] = True
        await self.submission.submit(ctx, "style", payload, pictures=count)

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
        await self.replies.linking(self._send_linked(ctx, parent, reply))

    async def _source_for(self, ctx: Context, style: Style, photo: PhotoRef | None,
                          replied_message_id: str | None) -> Node | None:
        if photo is not None:
            return await self.submission.ingest(ctx, photo)
        if replied_message_id is not None:
            node = await self._replied_node(ctx, replied_message_id)
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
