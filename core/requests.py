"""Platform-neutral request and reply types: what adapters hand the studio and what they send back.

Ids are strings everywhere in core (Telegram uses integers, Discord snowflakes); adapters convert.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.errors import PixmeError
from core.styles import Style


@dataclass(frozen=True)
class Chat:
    platform: str  # "telegram", "discord", "playground", "cli"
    id: str
    is_private: bool


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    language: str | None = None


@dataclass(frozen=True)
class Context:
    """Who asked, where, and with which message."""

    chat: Chat
    person: Person
    message_id: str  # the message that carries the request; results reply to it
    # Asks the platform whether the person administers this chat (asked only when it matters).
    chat_admin: Callable[[], Awaitable[bool]] | None = field(default=None, compare=False, repr=False)

    async def is_chat_admin(self) -> bool:
        return bool(self.chat_admin is not None and await self.chat_admin())


@dataclass(frozen=True)
class PhotoRef:
    """A photo in a chat, fetched only when needed. `size` is what the platform declared, if anything."""

    fetch: Callable[[], Awaitable[bytes]]
    message_id: str | None = None  # the message that shows the photo, so replies to it resolve
    size: int | None = None
    mime: str | None = None
    file_name: str | None = None
    owner_id: str | None = None  # who sent it, when that is not the person asking (a reply to someone's photo)


@dataclass(frozen=True)
class ReplyTarget:
    """Where a reply goes. JSON-serialisable so it survives in the job table across restarts."""

    platform: str
    chat_id: str
    reply_to: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # platform-specific (thread id, interaction token…)

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "chat_id": self.chat_id, "reply_to": self.reply_to,
                "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplyTarget:
        return cls(data["platform"], data["chat_id"], data.get("reply_to"), data.get("extra") or {})


@dataclass(frozen=True)
class ImageReply:
    """A result to show. `node_id` lets the adapter offer buttons that come back to this node."""

    node_id: int
    image: bytes
    mime: str
    caption: str
    file_name: str | None = None  # what a file is called when saved (exports name their kind)
    buttons: tuple[Button, ...] = ()  # more the picture offers, after the messenger's own ("Set as group photo")
    # The same for every sending of one job's picture (its id and place): a platform that deduplicates sends by a
    # key of the sender's (Discord's nonce) shows a re-sent picture once.
    delivery_key: str | None = None


@dataclass(frozen=True)
class Button:
    label: str
    action: str  # short, e.g. "forget:yes"; comes back to `Studio.press`


class DeliveryRefused(PixmeError):
    """The platform will never accept messages to this chat (e.g. the person blocked the bot)."""


class Messenger(Protocol):
    """What each adapter implements so core can speak in its chats, now or after a restart.

    Each send returns the platform message id of what it posted; a send raises `DeliveryRefused`
    when the chat will never accept it, and anything else for a fault worth retrying.
    """

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str: ...

    async def send_text(self, target: ReplyTarget, text: str) -> str: ...

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        """The picture as a file (full resolution, metadata kept), captioned; for "file" delivery and exports."""
        ...

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        """A 512 px WebP as a sticker where the platform has them (elsewhere: as an image)."""
        ...

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """Pictures shown together (a Telegram album, a Discord gallery), oldest first; a caption's first line
        names its step. Returns the message id showing each, in order: pictures that share a message share
        an id, and the core links them in order, so a reply to such a message means its newest."""
        ...

    async def send_album(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """Pictures one request made together (variants, a style pack), each captioned with its number: shown
        together (a Telegram album, one Discord message, a grid), each replyable where the platform allows, with
        a way to pick one to continue from (`core.actions.VariantPick`: buttons 1…N, a select). Returns the
        message id showing each, in order, as `send_gallery` does."""
        ...

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str: ...

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str: ...

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        """Make the message show exactly `text` with `buttons` (None: no buttons)."""
        ...

    async def delete(self, target: ReplyTarget, message_id: str) -> None: ...

    async def show_working(self, target: ReplyTarget) -> None: ...
