"""The language a person is answered in: their /language choice, else their app's, else English."""

from __future__ import annotations

from core import i18n
from core.ports import PreferenceStore
from core.requests import Context


class Languages:
    """Reads each person's /language choice once and keeps it; the gate asks at every request."""

    def __init__(self, *, store: PreferenceStore, remembers: bool = True) -> None:
        self.store = store
        # False when processes share the database: a choice made through another process must count here at once.
        self.remembers = remembers
        self._chosen: dict[tuple[str, str], str | None] = {}  # (platform, person) -> /language choice

    async def language_for(self, ctx: Context) -> str:
        """The language to answer in: the person's /language choice, else their app's, else English."""
        key = (ctx.chat.platform, ctx.person.id)
        if key in self._chosen:
            chosen = self._chosen[key]
        else:
            prefs = await self.store.get_preferences("person", ctx.chat.platform, ctx.person.id)
            chosen = i18n.negotiate(prefs.language)
            if self.remembers:
                self._chosen[key] = chosen
        return chosen or i18n.negotiate(ctx.person.language) or i18n.DEFAULT

    def remember(self, platform: str, person_id: str, chosen: str | None) -> None:
        """A choice just stored (None: follow the app again)."""
        if self.remembers:
            self._chosen[(platform, person_id)] = chosen

    def forget(self, platform: str, person_id: str) -> None:
        self._chosen.pop((platform, person_id), None)
