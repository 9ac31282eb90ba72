"""The engine contract: what the studio asks of an image engine, and the typed ways it can fail.

Engines take and return encoded images (bytes). Inputs have already been through `core.intake`,
so they are RGB JPEGs no larger than the model's input size. An engine either returns an
`EngineResult` or raises one of the `EngineError` subclasses below; the studio turns each of
those into a one-line message for the person. Nothing else may escape an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from core.errors import PixmeError
from core.styles import Style


@dataclass(frozen=True)
class EngineResult:
    """One generated image plus the model's short commentary about it."""

    image: bytes
    mime: str  # "image/png" or "image/jpeg"
    commentary: str
    model: str  # the model id (or "offline") that made it
    image_size: str | None = None  # the output size asked of the model, which sets its price


@dataclass(frozen=True)
class RenderOptions:
    """A person's choices for one picture; None leaves the engine's own default.

    Engines honour what their model can do: `core.engines.models.model_info` says which ratios and
    sizes that is, and the studio tells people about choices their model cannot honour.
    """

    model: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    persona: str = ""  # who the person is, in their own words; fits the picture, never the face
    language: str = "en"  # the language the person reads; the model's one-line commentary is written in it
    # Varies the picture: each candidate of a request, and each Again, gets its own (the offline engine draws a
    # visibly different one per seed; a model varies by itself). None: the engine's own choice.
    seed: int | None = None
    # A second try at a picture whose face came out unrecognisable (`[likeness] retry_below`): the engine insists
    # harder on keeping the person's face.
    stronger_identity: bool = False


@dataclass(frozen=True)
class Portrait:
    """One person's selfie for a fusion request, with the name to call them by."""

    name: str
    image: bytes


class EngineError(PixmeError):
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


class QuotaExhausted(EngineError):
    """The model's quota for the day is used up: no call is made until `until` (a UNIX time)."""

    def __init__(self, message: str, *, until: float, model: str, detail: str = "") -> None:
        super().__init__(message, detail=detail)
        self.until = until
        self.model = model


class Busy(EngineError):
    """Rate limited, overloaded or unreachable even after retries; trying later may work."""

    retryable = True


class BadRequest(EngineError):
    """The service refused the request itself (4xx other than 429)."""


class Unsupported(EngineError):
    """This engine cannot do what was asked (e.g. a free-form edit on the offline engine)."""


@dataclass(frozen=True)
class EngineNotice:
    """One thing an operator should know about the engine; /stats shows it, the log said it once."""

    kind: Literal["switched", "deprecated", "quota"]
    model: str
    other: str = ""  # switched: the replacement; deprecated: the successor
    why: str = ""  # switched: what happened to `model`; deprecated: its shutdown date
    until: float = 0.0  # quota: when calls resume (UNIX time)


ModelStatus = Literal["current", "deprecated", "shut_down"]


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
    # Price by output size where it differs from `usd_per_image` (the 1K price).
    usd_by_size: tuple[tuple[str, float], ...] = ()
    status: ModelStatus = "current"
    successor: str = ""  # the model Google names as its replacement
    retires: str = ""  # the announced shutdown date, when there is one
    max_people: int = 3  # people the model keeps consistent in one picture; more go on contact sheets

    def price(self, image_size: str | None) -> float:
        """Estimated cost of one picture at `image_size` (None or unknown: the standard price)."""
        return dict(self.usd_by_size).get(image_size or "", self.usd_per_image)


@runtime_checkable
class ModelRouter(Protocol):
    """An engine that picks among several models as they come and go (Gemini); the studio asks it
    which model really draws, whether a call would be refused now, and what admins should know."""

    def resolve(self, model: str) -> str:
        """The model that will draw when `model` is asked for (its successor once it is gone)."""
        ...

    def unavailable(self, model: str | None) -> EngineError | None:
        """The refusal a call to `model` (None: the default) would meet right now, without calling."""
        ...

    def notices(self) -> list[EngineNotice]:
        """What an operator should know: models switched or deprecated, quotas used up."""
        ...


@runtime_checkable
class ImageEngine(Protocol):
    """An image engine. `name` is "gemini" or "offline"; `model` is what results are credited to."""

    name: str
    model: str

    async def stylize(self, selfie: bytes, style: Style, *, options: RenderOptions | None = None) -> EngineResult:
        """Turn a selfie into an avatar in `style`, keeping the person recognisable."""
        ...

    async def edit(self, image: bytes, instruction: str, *, identity: bytes | None = None,
                   options: RenderOptions | None = None) -> EngineResult:
        """Apply a free-text `instruction` to `image`; `identity` is the original selfie to stay faithful to."""
        ...

    async def fuse(self, portraits: list[Portrait], style: Style, theme: str = "", *,
                   options: RenderOptions | None = None) -> EngineResult:
        """Make one group picture in `style` where every portrait's person is recognisable."""
        ...

    async def check(self) -> str | None:
        """Start-up check; returns a warning for the operator, or None when all is well."""
        ...

    async def aclose(self) -> None:
        """Release network clients and thread pools."""
        ...
