"""Avatar parties: a lobby in a group chat that fuses its members' selfies into one picture.

A host opens a party (`/party comic Beach day`); people press Join and reply to the lobby with a
selfie (or reuse one they sent the bot in this chat); the host or a chat admin presses Start, or the
deadline starts it. Everything lives in SQLite, so an open lobby keeps working after a restart:
its buttons carry the party id and deadlines are re-armed by `resume`. Starting or closing a lobby is one
compare-and-set in the database (`move_party`: only from "open"), not the in-process lock alone, so a Start
pressed in one process and the deadline sweep in another never both act: one fused picture, one last word.

A member's selfie is used only for the party they joined, and only they can put it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from core import texts
from core.access import Access
from core.actions import Outcome, PartyPress, encode
from core.clock import SYSTEM_CLOCK, Clock
from core.config import PartySettings
from core.gate import Gate
from core.ports import Member, Node, Party, PartyStatus, Store
from core.replies import LINK_WAIT_S, Replies
from core.requests import Button, Chat, Context, Person, PhotoRef, ReplyTarget
from core.styles import STYLES, Style, get_style


class Limits(Protocol):
    """Admission, as parties need it: the host's limits, at /party and again when the party starts."""

    async def refuse_over_limit(self, ctx: Context) -> bool: ...

    async def over_limit(self, platform: str, chat_id: str, person: str, *, private: bool,
                         exempt: bool) -> str | None: ...


class Submitting(Protocol):
    """Taking a member's selfie in, and queueing the group picture."""

    async def ingest(self, ctx: Context, photo: PhotoRef) -> Node | None: ...

    async def submit_job(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, object],
                         target: ReplyTarget) -> None: ...

log = logging.getLogger(__name__)

DEFAULT_STYLE = "comic"
MAX_THEME_CHARS = 120


def parse_party_args(text: str) -> tuple[Style, str]:
    """`/party noir Heist crew` -> (noir, "Heist crew"); no known style first -> the default style."""
    first, _, rest = text.strip().partition(" ")
    style = get_style(first) if first else None
    if style is None:
        fallback = get_style(DEFAULT_STYLE)
        assert fallback is not None
        return fallback, text.strip()[:MAX_THEME_CHARS]
    return style, rest.strip()[:MAX_THEME_CHARS]


class Parties:
    """The party use cases; the studio owns one and routes `party:` button actions here."""

    def __init__(self, settings: PartySettings, *, store: Store, replies: Replies, gate: Gate, access: Access,
                 limits: Limits, submission: Submitting, clock: Clock = SYSTEM_CLOCK, timers: bool = True) -> None:
        self.settings = settings
        self.clock = clock  # lobby deadlines
        self._store = store
        self.replies = replies
        self.gate = gate
        self.access = access
        self.limits = limits
        self.submission = submission
        # False when processes share the database: one of them sweeps for deadlines (`sweep_deadlines`) instead.
        self.timers = timers
        self._timers: dict[int, asyncio.Task[None]] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    # -- queries for adapters ----------------------------------------------------------------------

    async def open_in(self, platform: str, chat_id: str) -> Party | None:
        """The chat's open party, if any (for adapters whose join command names no lobby message)."""
        return await self._store.open_party(platform, chat_id)

    async def party_for_lobby(self, platform: str, chat_id: str, lobby_message_id: str) -> Party | None:
        """The party whose lobby is this message, if any."""
        party = await self._store.party_for_lobby(platform, chat_id, lobby_message_id)
        if party is None:  # a lobby that has just been sent may beat the record of its message by a moment
            await self.replies.links_settled(LINK_WAIT_S)
            party = await self._store.party_for_lobby(platform, chat_id, lobby_message_id)
        return party

    async def get(self, party_id: int) -> Party | None:
        return await self._store.get_party(party_id)

    def deadlines(self) -> list[asyncio.Task[None]]:
        """The lobby deadlines armed now, one task each (it ends once its deadline is handled)."""
        return list(self._timers.values())

    # -- use cases ---------------------------------------------------------------------------------

    async def open(self, ctx: Context, args: str) -> None:
        """Open a lobby in a group chat, or point to the one already open."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if ctx.chat.is_private:
                await self.replies.say(ctx, texts.PARTY_GROUPS_ONLY)
                return
            existing = await self._store.open_party(ctx.chat.platform, ctx.chat.id)
            if existing is not None:
                await self._point_to(ctx, existing)
                return
            if await self.limits.refuse_over_limit(ctx):  # the picture would be the host's: their limits
                return
            style, theme = parse_party_args(args)
            deadline = self.clock.now() + self.settings.deadline_minutes * 60
            host = Member(ctx.person.id, ctx.person.name)
            party = await self._store.add_party(ctx.chat.platform, ctx.chat.id, host, style.id, theme,
                                                deadline, ctx.message_id)
            if party is None:  # opened by someone else a moment ago
                raced = await self._store.open_party(ctx.chat.platform, ctx.chat.id)
                if raced is not None:
                    await self._point_to(ctx, raced)
                return
            target = ReplyTarget(ctx.chat.platform, ctx.chat.id, ctx.message_id)
            await self.replies.linking(self._send_lobby(ctx, target, party))
            self._arm(party.id, deadline)

    async def _send_lobby(self, ctx: Context, target: ReplyTarget, party: Party) -> None:
        """The lobby, and the record of which message it is (a press or a reply may come right after)."""
        lobby = await self.replies.to(ctx).send_buttons(target, self._lobby_text(party), self._lobby_buttons(party))
        await self._store.set_party(party.id, lobby_message=lobby)

    async def join_with_photo(self, ctx: Context, lobby_message_id: str, photo: PhotoRef) -> bool:
        """A selfie sent as a reply to a lobby: its sender joins with it. False if not a lobby."""
        party = await self._store.party_for_lobby(ctx.chat.platform, ctx.chat.id, lobby_message_id)
        if party is None:
            return False
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return True
            async with self._lock(party.id):
                party = await self._store.get_party(party.id)
                if party is None or party.status != "open":
                    await self.replies.say(ctx, texts.PARTY_NOT_OPEN)
                    return True
                if party.member(ctx.person.id) is None and len(party.members) >= self.settings.max_members:
                    await self.replies.say(ctx, texts.party_full(self.settings.max_members))
                    return True
                node = await self.submission.ingest(ctx, photo)  # refusals (bad files) are said there
                if node is None:
                    return True
                await self._store.put_member(party.id, Member(ctx.person.id, ctx.person.name, node.id))
                await self.refresh_lobby(party.id)
        return True

    async def press(self, ctx: Context, press: PartyPress) -> Outcome:
        """A lobby button (join, leave, start, cancel) or a personal one (reuse)."""
        async with self._lock(press.party_id):
            party = await self._store.get_party(press.party_id)
            if party is None or (party.platform, party.chat_id) != (ctx.chat.platform, ctx.chat.id):
                return Outcome.settled(texts.UNKNOWN_BUTTON, alert=True)
            if party.status != "open":
                return Outcome.settled(texts.PARTY_NOT_OPEN, alert=True)
            if press.verb == "join":
                return await self._join(ctx, party)
            if press.verb == "reuse":
                return await self._reuse(ctx, party, press.owner)
            if press.verb == "leave":
                if not await self._store.remove_member(party.id, ctx.person.id):
                    return Outcome.refused(texts.PARTY_NOT_IN)
                await self.refresh_lobby(party.id)
                return Outcome.ok(texts.PARTY_LEFT)
            if ctx.person.id != party.host_id and not await ctx.is_chat_admin() \
                    and not self.access.is_admin(ctx):
                return Outcome.refused(texts.PARTY_HOST_ONLY)
            if press.verb == "cancel":
                if not await self._close(party, "cancelled", texts.party_cancelled(ctx.person.name)):
                    return Outcome.settled(texts.PARTY_NOT_OPEN, alert=True)
                return Outcome.ok(texts.PARTY_CANCELLED_TOAST)
            return await self._start(party, by=ctx)

    async def resume(self) -> int:
        """Re-arm the deadlines of lobbies that were open when the bot stopped."""
        parties = await self._store.open_parties()
        for party in parties:
            self._arm(party.id, party.deadline)
        return len(parties)

    async def sweep_deadlines(self) -> int:
        """Start or close every open lobby whose deadline has passed (the one process holding the chore runs
        this, when processes share the database); how many."""
        due = [p for p in await self._store.open_parties() if p.deadline <= self.clock.now()]
        for party in due:
            try:
                await self._on_deadline(party.id, party.deadline)
            except Exception:
                log.exception("party %s: deadline handling failed", party.id)
        return len(due)

    async def aclose(self) -> None:
        for task in self._timers.values():
            task.cancel()
        await asyncio.gather(*self._timers.values(), return_exceptions=True)
        self._timers.clear()

    # -- steps -------------------------------------------------------------------------------------

    async def _join(self, ctx: Context, party: Party) -> Outcome:
        if party.lobby_message is None:  # pressed the moment the lobby arrived: its message is being recorded
            await self.replies.links_settled(LINK_WAIT_S)
            party = await self._store.get_party(party.id) or party
        member = party.member(ctx.person.id)
        if member is not None and member.node_id is not None:
            return Outcome.ok(texts.PARTY_ALREADY_IN)
        if member is None and len(party.members) >= self.settings.max_members:
            return Outcome.refused(texts.party_full(self.settings.max_members))
        await self._store.put_member(party.id, Member(ctx.person.id, ctx.person.name))
        await self.refresh_lobby(party.id)
        earlier = await self._store.latest_photo(ctx.chat.platform, ctx.chat.id, ctx.person.id)
        if earlier is not None:
            # Only the person it belongs to can press this one: nobody adds someone else's photo.
            target = ReplyTarget(ctx.chat.platform, ctx.chat.id, party.lobby_message)
            await self.replies.to(ctx).send_buttons(
                target, texts.party_reuse_offer(ctx.person.name),
                [Button(texts.PARTY_REUSE, encode(PartyPress("reuse", party.id, ctx.person.id)))])
        return Outcome.ok(texts.party_send_selfie(ctx.chat.platform))

    async def _reuse(self, ctx: Context, party: Party, owner: str) -> Outcome:
        if owner != ctx.person.id:
            return Outcome.refused(texts.NOT_YOUR_BUTTON)
        earlier = await self._store.latest_photo(ctx.chat.platform, ctx.chat.id, ctx.person.id)
        if earlier is None:
            return Outcome.ok(texts.party_send_selfie(ctx.chat.platform))
        if party.member(ctx.person.id) is None and len(party.members) >= self.settings.max_members:
            return Outcome.refused(texts.party_full(self.settings.max_members))
        await self._store.put_member(party.id, Member(ctx.person.id, ctx.person.name, earlier.id))
        await self.refresh_lobby(party.id)
        return Outcome.settled(texts.PARTY_REUSED)

    async def _start(self, party: Party, by: Context | None = None) -> Outcome:
        """Start the lobby (pressed Start `by` someone, or its deadline). It is taken first, in one statement (open
        -> starting), so that of a press here and the deadline sweep or a press in another process only one
        starts or closes it; the checks then read the members as they were taken."""
        if len(party.ready) < self.settings.min_members:
            return Outcome.refused(texts.party_need_more(self.settings.min_members, len(party.ready)))
        taken = await self._store.move_party(party.id, "starting")
        if taken is None:  # started or closed a moment ago, elsewhere
            return Outcome.settled(texts.PARTY_NOT_OPEN, alert=True)
        try:
            ready = taken.ready
            refusal = texts.party_need_more(self.settings.min_members, len(ready)) \
                if len(ready) < self.settings.min_members else await self._over_limit(taken)
        except BaseException:
            await self._store.move_party(party.id, "open", was="starting")
            raise
        if refusal is not None:  # the lobby stays open for a press after the reset; a deadline closes it
            if by is None:
                await self._close(taken, "closed", refusal, was="starting")
            else:
                await self._store.move_party(party.id, "open", was="starting")
            return Outcome.refused(refusal)
        if not await self._close(taken, "started", texts.party_started([m.name for m in ready]), was="starting"):
            return Outcome.settled(texts.PARTY_NOT_OPEN, alert=True)
        payload = {"style": taken.style, "theme": taken.theme, "party": taken.id,
                   "portraits": [[m.name, m.node_id] for m in ready]}
        target = ReplyTarget(taken.platform, taken.chat_id, taken.lobby_message or taken.reply_to)
        await self.submission.submit_job(taken.platform, taken.chat_id, taken.host_id, "fuse", payload, target)
        return Outcome.ok(texts.PARTY_STARTING)

    async def _over_limit(self, party: Party) -> str | None:
        """The bot's, the chat's or the host's limit, as at /party: checked again, since a day's pictures may
        have run out while the lobby was open."""
        host = Context(Chat(party.platform, party.chat_id, False), Person(party.host_id, ""), "")
        return await self.limits.over_limit(party.platform, party.chat_id, party.host_id, private=False,
                                            exempt=self.access.is_admin(host))

    async def _close(self, party: Party, status: PartyStatus, text: str, *, was: PartyStatus = "open") -> bool:
        """Move the lobby from `was` to `status` and say `text` in it; False (nothing said) when it no longer had
        status `was`: another press or process moved it first, and its words are the lobby's."""
        if await self._store.move_party(party.id, status, was=was) is None:
            return False
        timer = self._timers.pop(party.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        messenger = self.replies.get(party.platform)
        if messenger is not None and party.lobby_message is not None:
            with contextlib.suppress(Exception):
                await messenger.edit_text(self._target(party), party.lobby_message, text)
        return True

    async def _on_deadline(self, party_id: int, deadline: float) -> None:
        await self.clock.sleep(max(0.0, deadline - self.clock.now()))
        async with self._lock(party_id):
            party = await self._store.get_party(party_id)
            if party is None or party.status != "open":
                return
            if len(party.ready) >= self.settings.min_members:
                await self._start(party)
            else:
                await self._close(party, "closed", texts.party_expired(self.settings.min_members))

    # -- the lobby ---------------------------------------------------------------------------------

    def _arm(self, party_id: int, deadline: float) -> None:
        if not self.timers:
            return

        async def run() -> None:
            try:
                await self._on_deadline(party_id, deadline)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("party %s: deadline handling failed", party_id)
            finally:
                if self._timers.get(party_id) is asyncio.current_task():
                    del self._timers[party_id]

        old = self._timers.pop(party_id, None)
        if old is not None:
            old.cancel()
        self._timers[party_id] = asyncio.create_task(run(), name=f"party-{party_id}-deadline")

    def _lock(self, party_id: int) -> asyncio.Lock:
        return self._locks.setdefault(party_id, asyncio.Lock())

    async def refresh_lobby(self, party_id: int) -> None:
        party = await self._store.get_party(party_id)
        messenger = self.replies.get(party.platform) if party else None
        if party is None or messenger is None or party.lobby_message is None or party.status != "open":
            return  # a lobby started or closed (here or in another process) keeps the words it ended with
        with contextlib.suppress(Exception):  # an edit that fails changes nothing that matters
            await messenger.edit_text(self._target(party), party.lobby_message, self._lobby_text(party),
                                      self._lobby_buttons(party))

    async def _point_to(self, ctx: Context, party: Party) -> None:
        target = ReplyTarget(ctx.chat.platform, ctx.chat.id, party.lobby_message or ctx.message_id)
        await self.replies.to(ctx).send_text(target, texts.PARTY_ALREADY_OPEN)

    @staticmethod
    def _target(party: Party) -> ReplyTarget:
        return ReplyTarget(party.platform, party.chat_id, None)

    def _lobby_text(self, party: Party) -> str:
        style = get_style(party.style) or STYLES[0]
        roster = [(m.name, m.node_id is not None, m.user_id == party.host_id) for m in party.members]
        return texts.party_lobby(style, party.theme, roster, party.deadline, self.settings.min_members,
                                 self.settings.max_members)

    @staticmethod
    def _lobby_buttons(party: Party) -> list[Button]:
        return [Button(label, encode(PartyPress(verb, party.id))) for verb, label in texts.party_buttons()]
