"""Sharing pictures: a person's recent results offered in any chat (Telegram's inline mode, `@bot zombie`), a
person's profile picture taken as the selfie (`/me`), and a group picture made the group's photo.

What a platform can do is asked of its messenger through the small protocol below; a front-end that cannot
(no chat photos, no inline mode) simply doesn't implement it, and core never offers what it can't do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core import i18n, texts
from core.access import Access
from core.actions import ChatPhotoPress, Outcome, encode
from core.exports import export_async
from core.i18n import _
from core.intake import IntakeError
from core.ports import ImageStore, Node, Store
from core.replies import Replies
from core.requests import Button, Context, Messenger, ReplyTarget
from core.styles import STYLES, Style, get_style

log = logging.getLogger(__name__)

PAGE_SIZE = 20  # inline results a page (Telegram takes at most 50)
SCANNED = 200  # the person's newest pictures looked through for a filter
MIN_FILTER_CHARS = 2  # "z" would match too much to be a choice


class NoProfilePhoto(IntakeError):
    """`/me`: the person has no profile picture the bot can see (none set, or hidden by their privacy)."""

    def __init__(self) -> None:
        super().__init__(texts.ME_NO_PROFILE_PHOTO)


@runtime_checkable
class ChatPhotoMessenger(Protocol):
    """A messenger that can make a picture a group chat's photo (Telegram's setChatPhoto)."""

    async def can_set_chat_photo(self, target: ReplyTarget) -> bool:
        """Whether the bot may change this chat's photo now (asked before the button is offered)."""
        ...

    async def set_chat_photo(self, target: ReplyTarget, image: bytes) -> bool:
        """Make `image` (a square JPEG) the chat's photo; False when the platform says the bot may not."""
        ...


@dataclass(frozen=True)
class Shared:
    """One picture offered for sharing: the platform's reference to it as delivered, and how it is listed."""

    node_id: int
    file_ref: str
    title: str
    description: str


@dataclass(frozen=True)
class SharedPage:
    pictures: list[Shared]
    next_offset: str  # "" when this is the last page
    empty_hint: str  # with no pictures: what the button that opens the bot says ("" for a refused person)


def styles_named(query: str) -> list[Style]:
    """The styles a query names: by id or by title in any language, the start of a word is enough."""
    wanted = query.strip().casefold()
    if len(wanted) < MIN_FILTER_CHARS:
        return []
    found = []
    for style in STYLES:
        names = {style.id, style.title}
        for code in i18n.LANGUAGES:
            with i18n.speaking(code):
                names.add(style.name)
        if any(name.casefold().startswith(wanted) for name in names):
            found.append(style)
    return found


def step_title(node: Node) -> str:
    """How a picture is listed: its style, or what was changed, or a group picture."""
    if node.kind == "fuse":
        return _("🎉 group picture")
    if node.kind == "edit":
        what = node.instruction or _("edit")
        return f"✏️ {what}"[:64]
    style = get_style(node.style or "")
    return style.label if style is not None else (node.style or _("style"))


class Sharing:
    """The sharing use cases; the studio owns one (`studio.sharing`)."""

    def __init__(self, *, store: Store, images: ImageStore, replies: Replies, access: Access,
                 language_for: Callable[[Context], Awaitable[str]]) -> None:
        self.store = store
        self.images = images
        self.replies = replies
        self.access = access
        self._language_for = language_for

    # -- inline sharing ------------------------------------------------------------------------------

    async def remember_file(self, platform: str, node_id: int, file_ref: str) -> None:
        """A front-end delivered picture `node_id` and can show it again by `file_ref` (Telegram's file_id)."""
        node = await self.store.get_node(node_id)
        if node is not None:
            await self.store.record_file(node, platform, file_ref)

    async def shareable(self, ctx: Context, query: str, offset: str = "") -> SharedPage:
        """The person's delivered pictures from any of their chats on this platform, newest first, filtered by
        a style (its id or title, in any language) or words of an edit; one page from `offset`. Nothing for a
        person the bot's access lists refuse. What /forget or retention deleted is gone from here too."""
        if not self.access.allows(ctx):
            return SharedPage([], "", "")
        i18n.set_language(await self._language_for(ctx))
        words = " ".join(query.split())
        styles = styles_named(words)
        found = await self.store.shareable_results(ctx.chat.platform, ctx.person.id, SCANNED)
        if words:
            ids = {s.id for s in styles}
            wanted = words.casefold()
            found = [(node, ref) for node, ref in found
                     if node.style in ids or wanted in (node.instruction or "").casefold()]
        start = int(offset) if offset.isdigit() else 0
        page = found[start:start + PAGE_SIZE]
        more = str(start + PAGE_SIZE) if len(found) > start + PAGE_SIZE else ""
        pictures = [Shared(node.id, ref, step_title(node), node.commentary[:200]) for node, ref in page]
        hint = "" if pictures else texts.inline_none_for(styles[0].name) if len(styles) == 1 else texts.INLINE_NONE
        return SharedPage(pictures, more, hint)

    # -- the group photo -----------------------------------------------------------------------------

    async def group_photo_offer(self, messenger: Messenger, target: ReplyTarget, node: Node) -> tuple[Button, ...]:
        """The "Set as group photo" button under a group picture, where the bot may change the chat's photo."""
        if node.kind != "fuse" or not isinstance(messenger, ChatPhotoMessenger):
            return ()
        try:
            allowed = await messenger.can_set_chat_photo(target)
        except Exception as exc:  # not knowing costs the button, never the picture
            log.info("could not ask whether the bot may change %s:%s's photo: %s", target.platform,
                     target.chat_id, type(exc).__name__)
            return ()
        return (Button(texts.GROUP_PHOTO_BUTTON, encode(ChatPhotoPress(node.id))),) if allowed else ()

    async def set_chat_photo(self, ctx: Context, press: ChatPhotoPress, pressed_message_id: str | None) -> Outcome:
        """The button: the picture its own message shows becomes the chat's photo, if the presser is one of
        the chat's admins and the bot may still change it."""
        pressed = pressed_message_id or ctx.message_id
        node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, pressed)
        messenger = self.replies.to(ctx)
        if ctx.chat.is_private or node is None or node.id != press.node_id \
                or not isinstance(messenger, ChatPhotoMessenger):
            return Outcome.refused(texts.UNKNOWN_BUTTON)
        if not await ctx.is_chat_admin():
            return Outcome.refused(texts.GROUP_PHOTO_ADMINS_ONLY)
        data = await self.images.get(node.image_sha)
        square = await export_async(data, "profile", node.model or node.engine or "unknown", f"pixme-{node.id}")
        if not await messenger.set_chat_photo(ReplyTarget(ctx.chat.platform, ctx.chat.id), square.data):
            return Outcome.refused(texts.GROUP_PHOTO_NO_RIGHT)
        return Outcome.ok(texts.GROUP_PHOTO_SET)
