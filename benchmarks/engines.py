"""Engines and a messenger for benchmarks: they cost (almost) nothing, so what is measured is ours."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from core.engines.base import EngineResult, Portrait, RenderOptions
from core.requests import Button, ImageReply, ReplyTarget
from core.styles import Style


class FixedEngine:
    """Answers every request with the same small image after `delay` seconds (0: at once)."""

    name = "bench"
    model = "bench-model"

    def __init__(self, result: bytes, delay: float = 0.0) -> None:
        self.result = result
        self.delay = delay
        self.calls = 0

    async def _answer(self) -> EngineResult:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return EngineResult(self.result, "image/jpeg", "Here you are.", self.model)

    async def stylize(self, selfie: bytes, style: Style, *, options: RenderOptions | None = None) -> EngineResult:
        return await self._answer()

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None,
                   options: RenderOptions | None = None) -> EngineResult:
        return await self._answer()

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        return await self._answer()

    async def check(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


class TimingMessenger:
    """Implements core's Messenger in memory and notes when each chat saw what."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}  # chat id -> first "working…" indicator
        self.delivered: dict[str, float] = {}  # chat id -> result image sent
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.sends = 0
        self.edits = 0
        self._next = 0
        self._all_delivered = asyncio.Event()
        self.expected = 0

    def _id(self) -> str:
        self._next += 1
        self.sends += 1
        return str(self._next)

    def _deliver(self, target: ReplyTarget) -> str:
        self.delivered.setdefault(target.chat_id, time.perf_counter())
        if self.expected and len(self.delivered) >= self.expected:
            self._all_delivered.set()
        return self._id()

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str:
        return self._deliver(target)

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        return [self._deliver(target) for _reply in replies]

    async def send_album(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        return [self._deliver(target) for _reply in replies]

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        self.texts[target.chat_id].append(text)
        return self._id()

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        return self._deliver(target)

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        return self._deliver(target)

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        return self._id()

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str:
        return self._id()

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        self.edits += 1

    async def delete(self, target: ReplyTarget, message_id: str) -> None:
        return None

    async def show_working(self, target: ReplyTarget) -> None:
        self.started.setdefault(target.chat_id, time.perf_counter())

    async def wait_all_delivered(self, expected: int, timeout: float) -> None:
        self.expected = expected
        if len(self.delivered) >= expected:
            return
        async with asyncio.timeout(timeout):
            await self._all_delivered.wait()
