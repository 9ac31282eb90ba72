"""The playground's `Messenger`: what core says in a chat becomes an event pushed to the open pages.

Each chat ("room") keeps its messages in memory so a reloaded page shows the conversation again,
and fans events out to every page watching it. Images live in a bounded in-memory cache and are
served by an unguessable token, so the page can only ever fetch pictures the core produced.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from core import texts
from core.actions import ExportPress, VariantPick, encode
from core.requests import Button, ImageReply, Person, ReplyTarget
from core.styles import Style

Event = dict[str, Any]

MAX_MESSAGES_PER_ROOM = 400
MAX_ROOMS = 64
IMAGE_CACHE_BYTES = 256 * 1024 * 1024
SERVED_MIMES = {"image/png", "image/jpeg", "image/webp", "image/gif"}
FILE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class ImageCache:
    """Bytes by token, oldest dropped first once `max_bytes` is exceeded."""

    def __init__(self, max_bytes: int = IMAGE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0

    def put(self, data: bytes, mime: str, token: str | None = None) -> str:
        token = token or secrets.token_urlsafe(18)
        self._items[token] = (data, mime)
        self._size += len(data)
        while self._size > self.max_bytes and len(self._items) > 1:
            _, (old, _) = self._items.popitem(last=False)
            self._size -= len(old)
        return token

    def get(self, token: str) -> tuple[bytes, str] | None:
        item = self._items.get(token)
        if item is not None:
            self._items.move_to_end(token)
        return item


@dataclass
class Room:
    """One playground chat: its messages (current state, in order) and the pages watching it."""

    id: str
    messages: OrderedDict[str, Event] = field(default_factory=OrderedDict)
    listeners: set[asyncio.Queue[Event]] = field(default_factory=set)

    def publish(self, event: Event) -> None:
        for queue in self.listeners:
            queue.put_nowait(event)


class PlaygroundMessenger:
    """Implements `core.requests.Messenger` by publishing events to the rooms' pages."""

    def __init__(self, boot: str | None = None) -> None:
        # Message ids must never repeat across restarts: SQLite links them to edit-tree nodes.
        self.boot = boot or f"{int(time.time()):x}{secrets.token_hex(2)}"
        self._counter = itertools.count(1)
        self.rooms: OrderedDict[str, Room] = OrderedDict()
        self.images = ImageCache()

    # -- rooms -----------------------------------------------------------------------------------

    def new_room(self) -> Room:
        return self.room(f"{self.boot}-{secrets.token_hex(4)}")

    def room(self, chat_id: str) -> Room:
        """The room for `chat_id`, made if needed (a job resumed after a restart may name an old one)."""
        room = self.rooms.get(chat_id)
        if room is None:
            room = self.rooms[chat_id] = Room(chat_id)
            for old_id in list(self.rooms)[: max(0, len(self.rooms) - MAX_ROOMS)]:
                if not self.rooms[old_id].listeners:
                    del self.rooms[old_id]
        self.rooms.move_to_end(chat_id)
        return room

    def is_current(self, chat_id: str) -> bool:
        """A room made since this start (older ones may have stale parties in the database)."""
        return chat_id.startswith(f"{self.boot}-") and chat_id in self.rooms

    def history(self, chat_id: str) -> list[Event]:
        return list(self.room(chat_id).messages.values())

    # -- posting ---------------------------------------------------------------------------------

    def _post(self, chat_id: str, message: Event) -> str:
        room = self.room(chat_id)
        message_id = f"{self.boot}-{next(self._counter)}"
        message = {"id": message_id, "at": time.time(), **message}
        room.messages[message_id] = message
        while len(room.messages) > MAX_MESSAGES_PER_ROOM:
            room.messages.popitem(last=False)
        room.publish({"type": "message", "message": message})
        return message_id

    def post_from_person(self, chat_id: str, person: Person, *, text: str = "", reply_to: str | None = None,
                         photo: tuple[bytes, str] | None = None, kind: str = "text",
                         file_name: str | None = None) -> str:
        """Someone on the page said something (text, or a photo with its preview); returns its id.

        `file_name` is what an upload was called, shown when there is no preview (a refused file)."""
        image = f"/images/{self.images.put(*photo)}" if photo else None
        message: Event = {"kind": kind, "from": {"id": person.id, "name": person.name}, "text": text,
                          "reply_to": reply_to, "image": image}
        if file_name:
            message["file_name"] = file_name
        return self._post(chat_id, message)

    def toast(self, queue: asyncio.Queue[Event], text: str) -> None:
        if text:  # switching a settings menu answers nothing
            queue.put_nowait({"type": "toast", "text": text})

    # -- the Messenger protocol ------------------------------------------------------------------

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str:
        """A result (or a history step): the picture, its caption, and the export buttons under it."""
        return self._post(target.chat_id, self._image(target, reply))

    def _image(self, target: ReplyTarget, reply: ImageReply) -> Event:
        mime = _served_mime(reply.mime)
        token = self.images.put(reply.image, mime)
        return {"kind": "image", "from": None, "text": reply.caption.strip(), "reply_to": target.reply_to,
                "image": f"/images/{token}", "mime": mime, "node": reply.node_id,
                "exports": _export_buttons(reply.node_id)}

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        """The picture as a file: shown, and downloadable byte for byte (metadata kept) under its own name."""
        mime = _served_mime(reply.mime)
        token = self.images.put(reply.image, mime)
        name = reply.file_name or (f"pixme-{reply.node_id}.{FILE_EXTENSIONS.get(mime, 'bin')}" if reply.node_id > 0
                                   else f"pixme.{FILE_EXTENSIONS.get(mime, 'bin')}")
        return self._post(target.chat_id, {
            "kind": "file", "from": None, "text": reply.caption.strip(), "reply_to": target.reply_to,
            "image": f"/images/{token}", "mime": mime, "node": reply.node_id,
            "file": {"url": f"/images/{token}", "name": name, "size": len(reply.image)}})

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """One message each, so each picture keeps its buttons and can be replied to."""
        return [await self.send_image(target, reply) for reply in replies]

    async def send_album(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """Pictures made together, as a grid: each its own message (with its buttons, replyable) sharing an
        `album` the page lays out side by side, each with a button to continue from it."""
        album = f"{self.boot}-album-{next(self._counter)}"
        return [self._post(target.chat_id, {
            **self._image(target, reply), "album": album,
            "pick": {"label": texts.variant_label(number), "action": encode(VariantPick(reply.node_id))}})
            for number, reply in enumerate(replies, start=1)]

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        """A sticker: the 512 px WebP on its own, no bubble, with a link to save it."""
        token = self.images.put(image, "image/webp")
        return self._post(target.chat_id, {
            "kind": "sticker", "from": None, "text": "", "reply_to": target.reply_to,
            "image": f"/images/{token}", "mime": "image/webp",
            "file": {"url": f"/images/{token}", "name": "pixme-sticker.webp", "size": len(image)}})

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        return self._post(target.chat_id, {"kind": "text", "from": None, "text": text,
                                           "reply_to": target.reply_to})

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        return self._post(target.chat_id, {
            "kind": "menu", "from": None, "text": text, "reply_to": target.reply_to,
            "styles": [{"id": s.id, "label": s.label, "description": s.description} for s in styles]})

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str:
        return self._post(target.chat_id, {"kind": "buttons", "from": None, "text": text,
                                           "reply_to": target.reply_to, "buttons": _buttons(buttons)})

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        room = self.room(target.chat_id)
        message = room.messages.get(message_id)
        if message is None:
            return
        message["text"] = text
        message["buttons"] = _buttons(buttons or [])
        room.publish({"type": "edit", "message": message})

    async def remove_buttons(self, chat_id: str, message_id: str) -> None:
        """A settled question (forget, reuse my selfie) loses its buttons."""
        message = self.room(chat_id).messages.get(message_id)
        if message is not None and message.get("buttons"):
            message["buttons"] = []
            self.room(chat_id).publish({"type": "edit", "message": message})

    async def delete(self, target: ReplyTarget, message_id: str) -> None:
        room = self.room(target.chat_id)
        if room.messages.pop(message_id, None) is not None:
            room.publish({"type": "delete", "id": message_id})

    async def show_working(self, target: ReplyTarget) -> None:
        self.room(target.chat_id).publish({"type": "working", "reply_to": target.reply_to})

    def message(self, chat_id: str, message_id: str) -> Event | None:
        return self.room(chat_id).messages.get(message_id)


def _buttons(buttons: list[Button]) -> list[dict[str, str]]:
    return [{"label": b.label, "action": b.action} for b in buttons]


def _export_buttons(node_id: int) -> list[dict[str, str]]:
    """Sticker / profile picture / original under a result, labelled in the language of whoever it is for."""
    if node_id <= 0:
        return []
    return [{"label": label, "action": encode(ExportPress(kind, node_id))} for label, kind in texts.export_buttons()]


def _served_mime(mime: str) -> str:
    return mime if mime in SERVED_MIMES else "application/octet-stream"
