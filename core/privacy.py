"""/forget: everything the bot keeps about a person, deleted once they confirm. (History's age and files
nothing refers to are core/retention.py's.)"""

from __future__ import annotations

import logging
from typing import Protocol

from core import texts
from core.actions import ForgetPress, Outcome, encode
from core.gate import Gate
from core.jobs import Queue
from core.languages import Languages
from core.ports import ImageStore, PartyStore, Privacy
from core.replies import Replies
from core.requests import Button, Context

log = logging.getLogger(__name__)


class ForgetStore(Privacy, PartyStore, Protocol):
    """Deleting a person, and finding the open lobbies they were in."""


class Lobbies(Protocol):
    async def refresh_lobby(self, party_id: int) -> None:
        """Redraw a lobby from what is stored now."""


class Forgetting:
    """Asks, then deletes: the person's jobs, photos, pictures, settings and lobby places."""

    def __init__(self, *, store: ForgetStore, images: ImageStore, jobs: Queue, languages: Languages,
                 lobbies: Lobbies, replies: Replies, gate: Gate) -> None:
        self.store = store
        self.images = images
        self.jobs = jobs
        self.languages = languages
        self.lobbies = lobbies
        self.replies = replies
        self.gate = gate

    async def ask(self, ctx: Context) -> None:
        """Ask the person to confirm deleting everything the bot keeps about them."""
        async with self.gate.handling(ctx) as allowed:
            if allowed:
                await self.replies.to(ctx).send_buttons(self.replies.target(ctx), texts.FORGET_CONFIRM, [
                    Button(texts.FORGET_YES, encode(ForgetPress(True, ctx.person.id))),
                    Button(texts.FORGET_NO, encode(ForgetPress(False, ctx.person.id))),
                ])

    async def answer(self, ctx: Context, press: ForgetPress) -> Outcome:
        """The person's yes or no (only theirs counts)."""
        if press.owner != ctx.person.id:
            return Outcome.refused(texts.NOT_YOUR_BUTTON)
        if not press.confirmed:
            await self.replies.say(ctx, texts.FORGET_KEPT)
            return Outcome.settled(texts.FORGET_KEPT)
        deleted = await self.forget_person(ctx.chat.platform, ctx.person.id)
        await self.replies.say(ctx, texts.forgotten(deleted))
        return Outcome.settled(texts.forgotten(deleted))

    async def forget_person(self, platform: str, user_id: str) -> int:
        """Everything about the person, and every picture made from their photos or showing them, whoever
        asked for it; open lobbies they were in are redrawn without them. Returns image files deleted."""
        await self.jobs.cancel_for(platform, user_id)
        lobbies = [p.id for p in await self.store.open_parties()
                   if p.platform == platform and (p.member(user_id) is not None or p.host_id == user_id)]
        orphans = await self.store.forget_person(platform, user_id)
        self.languages.forget(platform, user_id)
        for sha in orphans:
            await self.images.delete(sha)
        for party_id in lobbies:
            await self.lobbies.refresh_lobby(party_id)
        log.info("forgot %s person: %d image(s) deleted", platform, len(orphans))
        return len(orphans)
