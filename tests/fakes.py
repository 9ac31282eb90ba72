"""In-memory stand-ins for core's own collaborators (engine, messenger), for core unit tests.

End-to-end tests use the loopback protocol stand-ins in tests/standins instead.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from core.engines.base import EngineError, EngineResult, Portrait, RenderOptions
from core.requests import Button, ImageReply, ReplyTarget
from core.styles import Style


def invert(image: bytes) -> bytes:
    out = io.BytesIO()
    # compress_level 1: a test engine's output needs to be a real PNG, not a small one (level 6 took ~90 ms)
    ImageOps.invert(Image.open(io.BytesIO(image)).convert("RGB")).save(out, "PNG", compress_level=1)
    return out.getvalue()


@dataclass
class FakeEngine:
    """Inverts the image; can be told to fail or to take a while."""

    name: str = "fake"
    model: str = "fake-model"
    delay: float = 0.0
    fail_with: EngineError | None = None
    calls: list[tuple[str, bytes, str, bytes | None]] = field(default_factory=list)
    fused: list[list[Portrait]] = field(default_factory=list)
    options: list[RenderOptions | None] = field(default_factory=list)  # what each call was asked for

    async def _answer(self, kind: str, image: bytes, what: str, identity: bytes | None = None) -> EngineResult:
        self.calls.append((kind, image, what, identity))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return EngineResult(invert(image), "image/png", f"{kind}: {what}", self.model)

    async def stylize(self, selfie: bytes, style: Style, *, options: RenderOptions | None = None) -> EngineResult:
        self.options.append(options)
        return await self._answer("style", selfie, style.id)

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None,
                   options: RenderOptions | None = None) -> EngineResult:
        self.options.append(options)
        return await self._answer("edit", image, instruction, identity)

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        self.options.append(options)
        self.fused.append(portraits)
        return await self._answer("fuse", portraits[0].image, f"{style.id}|{theme}")

    async def check(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Sent:
    kind: str  # "image" | "file" | "sticker" | "text" | "menu" | "buttons"
    target: ReplyTarget
    text: str
    message_id: str
    image: bytes | None = None
    node_id: int | None = None
    buttons: list[Button] = field(default_factory=list)


class FakeMessenger:
    """Records what core sends; message ids count up from 1000."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.working: list[ReplyTarget] = []
        self.edits: list[tuple[str, str]] = []
        self.deleted: list[str] = []
        self.buttons: list[Button] = []
        self._next = 1000
        self._arrived = asyncio.Event()

    def _record(self, sent: Sent) -> str:
        self.sent.append(sent)
        self._arrived.set()
        return sent.message_id

    def _id(self) -> str:
        self._next += 1
        return str(self._next)

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str:
        return self._record(Sent("image", target, reply.caption, self._id(), reply.image, reply.node_id))

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        return self._record(Sent("text", target, text, self._id()))

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        return [await self.send_image(target, reply) for reply in replies]

    async def send_album(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        return [await self.send_image(target, reply) for reply in replies]

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        return self._record(Sent("file", target, reply.caption, self._id(), reply.image, reply.node_id))

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        return self._record(Sent("sticker", target, "", self._id(), image))

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        return self._record(Sent("menu", target, text + " " + ",".join(s.id for s in styles), self._id()))

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str:
        self.buttons = buttons
        return self._record(Sent("buttons", target, text, self._id(), buttons=buttons))

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        self.edits.append((message_id, text))
        for sent in self.sent:
            if sent.message_id == message_id:
                sent.text, sent.buttons = text, list(buttons or [])

    async def delete(self, target: ReplyTarget, message_id: str) -> None:
        self.deleted.append(message_id)

    async def show_working(self, target: ReplyTarget) -> None:
        self.working.append(target)

    def texts(self) -> list[str]:
        return [s.text for s in self.sent if s.kind == "text"]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Sent]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.sent
