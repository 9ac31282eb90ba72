"""Which engine and model draw a person's picture, and with which options.

A person's choices apply under their chat's defaults; a model the operator does not offer gives way to the
default one; choosing "offline" draws with the offline engine (started on first use). Not to be confused
with the engine's own `ModelRouter`, which replaces a retired model by its successor.
"""

from __future__ import annotations

from core import i18n, texts
from core.engines.base import ImageEngine, ModelRouter, RenderOptions
from core.engines.models import model_info
from core.i18n import _
from core.ports import Preferences, PreferenceStore

OFFLINE = "offline"
SIZE_CHOICES = ("512", "1K", "2K", "4K")


class EngineRouter:
    """The engine, model and options for a person's picture, from their preferences and what is offered."""

    def __init__(self, *, store: PreferenceStore, engine: ImageEngine, model_choices: list[str] | None = None,
                 sizes: list[str] | None = None) -> None:
        self.store = store
        self.engine = engine  # the operator's engine; its model is the default
        chosen = model_choices if model_choices else ([] if engine.name == OFFLINE else [engine.model])
        self._offered: list[str] = list(dict.fromkeys([*chosen, OFFLINE]))
        # The sizes the operator lets people pick (4K costs several times 1K, so only when listed).
        self.sizes: tuple[str, ...] = tuple(s for s in SIZE_CHOICES if s in (sizes or SIZE_CHOICES))
        self._offline: ImageEngine | None = None

    async def aclose(self) -> None:
        if self._offline is not None:
            await self._offline.aclose()

    async def effective(self, platform: str, chat_id: str, user_id: str) -> Preferences:
        """The person's choices, under the chat's defaults (groups only have those)."""
        own = await self.store.get_preferences("person", platform, user_id)
        # Only groups have defaults: /settings in a private chat always edits the person's own.
        chat = await self.store.get_preferences("chat", platform, chat_id)
        return chat.over(own)

    @property
    def choices(self) -> list[str]:
        """The models people may choose among; a retired one shows as the model that replaced it."""
        return list(dict.fromkeys(self.drawing(m) for m in self._offered))

    def drawing(self, model: str) -> str:
        """A model as it draws today: a retired one's successor (the offline engine never retires)."""
        engine = self.engine
        return engine.resolve(model) if model != OFFLINE and isinstance(engine, ModelRouter) else model

    def model_of(self, prefs: Preferences) -> str:
        """The model that will draw: the chosen one if the operator offers it, else the default."""
        chosen = self.drawing(prefs.model) if prefs.model else None
        return chosen if chosen is not None and chosen in self.choices else self.engine.model

    def engine_for(self, prefs: Preferences) -> ImageEngine:
        engine = self.engine
        if self.model_of(prefs) == OFFLINE and engine.name != OFFLINE:
            if self._offline is None:
                from core.engines.offline import OfflineEngine

                self._offline = OfflineEngine()
            return self._offline
        return engine

    def options(self, prefs: Preferences) -> RenderOptions:
        model = self.model_of(prefs)
        size = prefs.image_size if prefs.image_size in self.sizes else None
        return RenderOptions(model=None if model in (OFFLINE, self.engine.model) else model,
                             aspect_ratio=prefs.aspect_ratio, image_size=size, persona=prefs.persona,
                             language=i18n.current())

    def warnings(self, prefs: Preferences) -> list[str]:
        """One line per choice the model cannot honour."""
        model = self.model_of(prefs)
        info = model_info(model)
        found = []
        if prefs.model and self.drawing(prefs.model) not in self.choices:
            found.append(texts.setting_unsupported(model, _("the model"), prefs.model, self.choices))
        if prefs.aspect_ratio and prefs.aspect_ratio not in info.aspect_ratios:
            found.append(texts.setting_unsupported(model, _("aspect ratio"), prefs.aspect_ratio,
                                                   list(info.aspect_ratios)))
        if prefs.image_size and prefs.image_size not in self.sizes:
            found.append(texts.setting_unsupported(model, _("size"), prefs.image_size,
                                                   [s for s in self.sizes if s in info.image_sizes]))
        elif prefs.image_size and prefs.image_size not in info.image_sizes:
            found.append(texts.setting_unsupported(model, _("size"), prefs.image_size, list(info.image_sizes)))
        return found
