"""The engine contract: what the studio asks of an image engine, and the typed ways it can fail.

Engines take and return encoded images (bytes). Inputs have already been through `core.intake`,
so they are RGB JPEGs no larger than the model's input size. An engine either returns an
`EngineResult` or raises one of the `EngineError` subclasses below; the studio turns each of
those into a one-line message for the person. Nothing else may escape an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.styles import Style


@dataclass(frozen=True)
class EngineResult:
    """One generated image plus the model's short commentary about it."""

    image: bytes
    mime: str  # "image/png" or "image/jpeg"
    commentary: str
    model: str  # the model id (or "offline") that made it


@dataclass(frozen=True)
class Portrait:
    """One person's selfie for a fusion request, with the name to call them by."""

    name: str
    image: bytes


class EngineError(Exception):
    """Base class: the engine could not produce an image. `message` is for the person."""

    retryable = False

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # for logs only; never shown to people


class Blocked(EngineError):
    """The prompt or the output was blocked by the model's safety filters."""


class NoImage(EngineError):
    """The model answered, but with text only. `text` is what it said."""

    def __init__(self, message: str, *, text: str = "", detail: str = "") -> None:
        super().__init__(message, detail=detail)
        self.text = text


class Busy(EngineError):
    """Rate limited, overloaded or unreachable even after retries; trying later may work."""

    retryable = True


class BadRequest(EngineError):
    """The service refused the request itself (4xx other than 429)."""


class Unsupported(EngineError):
    """This engine cannot do what was asked (e.g. a free-form edit on the offline engine)."""


@dataclass(frozen=True)
class ModelInfo:
    """What one image model can take and give; the per-model capability table holds these."""

    id: str
    max_input_images: int
    aspect_ratios: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
    image_sizes: tuple[str, ...] = ("1K",)
    usd_per_image: float = 0.04
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class ImageEngine(Protocol):
    """An image engine. `name` is "gemini" or "offline"; `model` is what results are credited to."""

    name: str
    model: str

    async def stylize(self, selfie: bytes, style: Style) -> EngineResult:
        """Turn a selfie into an avatar in `style`, keeping the person recognisable."""
        ...

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None) -> EngineResult:
        """Apply a free-text `instruction` to `image`; `identity` is the original selfie to stay faithful to."""
        ...

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "") -> EngineResult:
        """Make one group picture in `style` where every portrait's person is recognisable."""
        ...

    async def check(self) -> str | None:
        """Start-up check; returns a warning for the operator, or None when all is well."""
        ...

    async def aclose(self) -> None:
        """Release network clients and thread pools."""
        ...
