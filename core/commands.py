"""The one command table, and `dispatch`: what a typed command does, the same on every front-end.

A front-end parses its platform's syntax only (the slash, a `@bot` suffix, what was replied to, the
photo that came with it) into a `Typed`, and calls `Commands.dispatch`. The table also feeds the
command menus front-ends publish (Telegram's setMyCommands), so a command exists everywhere or nowhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core import texts
from core.actions import PartyPress, encode
from core.i18n import N_
from core.requests import Context, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import get_style


@dataclass(frozen=True)
class CommandInfo:
    name: str
    description: str  # N_-marked: translated when a menu is published in a language
    menu: bool = True  # listed in the platform's command menu (admin-only ones are not)


COMMANDS: dict[str, CommandInfo] = {c.name: c for c in (
    CommandInfo("start", N_("What this bot does")),
    CommandInfo("help", N_("How to use it")),
    CommandInfo("styles", N_("List every style")),
    CommandInfo("undo", N_("Reply to a result with this to go back a step")),
    CommandInfo("cancel", N_("Stop what you asked for")),
    CommandInfo("forget", N_("Delete everything the bot keeps about you")),
    CommandInfo("party", N_("Groups: start an avatar party (/party [style] [theme])")),
    CommandInfo("join", N_("Reply to a party with this (and your selfie) to join it"), menu=False),
    CommandInfo("fuse", N_("Caption an album of 2-8 photos with this to blend them")),
    CommandInfo("settings", N_("Model, aspect ratio, size and delivery (groups: admins set defaults)")),
    CommandInfo("model", N_("Choose the image model")),
    CommandInfo("persona", N_("Tell me about you (/persona <text>, /persona clear)")),
    CommandInfo("history", N_("Your last 10 pictures here, to continue from")),
    CommandInfo("export", N_("Reply to a result: /export sticker | profile | original")),
    CommandInfo("language", N_("The language I speak with you (/language es)")),
    CommandInfo("stats", N_("Today's numbers (the bot's admins)"), menu=False),
)}


@dataclass(frozen=True)
class Typed:
    """A command as a person typed it, with what came along; every field is already platform-neutral."""

    name: str  # lower-case, without the slash or a @bot suffix
    args: str = ""
    replied_to: str | None = None  # the message it replies to, whoever sent it
    replied_to_ours: bool = False  # that message is one of the bot's (a result, a lobby)
    photo: PhotoRef | None = None  # the photo that came with it: attached, or the replied-to photo
    addressed: bool = True  # clearly meant for this bot: an unknown command gets an answer
    personal_settings: bool = False  # /settings and /model act on the person's own choices here


class Commands:
    """Runs a typed command through the studio's use cases."""

    def __init__(self, studio: Studio, *, engine_name: str) -> None:
        self.studio = studio
        self.engine_name = engine_name

    async def dispatch(self, ctx: Context, typed: Typed) -> None:
        studio, people = self.studio, self.studio.people
        name, args = typed.name, typed.args
        # Groups see who asked; a private chat needs no quote.
        info = ReplyTarget(ctx.chat.platform, ctx.chat.id, None if ctx.chat.is_private else ctx.message_id)
        settings_ctx = _personal(ctx) if typed.personal_settings else ctx
        ours = typed.replied_to if typed.replied_to_ours else None
        if name in ("start", "help"):
            await studio.replies.to(ctx).send_text(info, texts.help_for(ctx.chat.platform, self.engine_name))
        elif name == "styles":
            await studio.replies.to(ctx).send_text(info, texts.styles_list())
        elif name == "undo":
            await studio.undo(ctx, typed.replied_to)
        elif name == "cancel":
            await studio.cancel(ctx)
        elif name == "stats":
            await studio.stats(ctx)
        elif name == "forget":
            await studio.forget(ctx)
        elif name == "settings":
            await people.show_settings(settings_ctx)
        elif name == "model":
            await people.set_model(settings_ctx, args)
        elif name == "persona":
            await people.persona(ctx, args)
        elif name == "history":
            await people.history(ctx)
        elif name == "language":
            await people.language(ctx, args)
        elif name == "export":
            await people.export(ctx, args, ours)
        elif name == "party":
            await studio.parties.open(ctx, args)
        elif name == "join":
            await self._join(ctx, typed)
        elif name == "fuse":
            # One photo (or none) outside an album: it explains how many it needs.
            await studio.fuse(ctx, [typed.photo] if typed.photo is not None else [], args)
        elif get_style(name) is not None:
            # A reply to one of our results restyles the selfie behind it, found through the studio.
            await studio.style(ctx, name, typed.photo, typed.replied_to)
        elif typed.addressed:
            await studio.replies.say(ctx, texts.unknown_style(name))

    async def _join(self, ctx: Context, typed: Typed) -> None:
        """`/join` replying to a lobby: with a selfie it joins; without one it is the Join button."""
        parties = self.studio.parties
        if ctx.chat.is_private:
            await self.studio.replies.say(ctx, texts.PARTY_GROUPS_ONLY)
            return
        if typed.replied_to_ours and typed.replied_to is not None:
            if typed.photo is not None:
                if await parties.join_with_photo(ctx, typed.replied_to, typed.photo):
                    return
            else:
                party = await parties.party_for_lobby(ctx.chat.platform, ctx.chat.id, typed.replied_to)
                if party is not None:
                    outcome = await self.studio.press(ctx, encode(PartyPress("join", party.id)))
                    await self.studio.replies.say(ctx, outcome.text)
                    return
        await self.studio.replies.say(ctx, texts.PARTY_JOIN_HOW)


def _personal(ctx: Context) -> Context:
    """The same request, acting on the person's own settings (as in their private chat with the bot)."""
    return dataclasses.replace(ctx, chat=dataclasses.replace(ctx.chat, is_private=True))
