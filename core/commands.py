"""The one command table, and `dispatch`: what a typed command does, the same on every front-end.

A front-end parses its platform's syntax only (the slash, a `@bot` suffix, what was replied to, the
photo that came with it) into a `Typed`, and calls `Commands.dispatch`. The table also feeds the
command menus front-ends publish (Telegram's setMyCommands) and the slash commands with typed parameters
(Discord's application commands, `CommandInfo.slash`), so no front-end keeps a command list of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from core import texts
from core.actions import PartyPress, encode
from core.i18n import N_
from core.parties import DEFAULT_STYLE, MAX_THEME_CHARS
from core.people import SettingsForm
from core.ports import MAX_PERSONA_CHARS
from core.requests import Context, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import get_style

OptionKind = Literal["text", "photo", "style", "language"]


@dataclass(frozen=True)
class Option:
    """A typed parameter of a slash command. `photo`s become `Typed.photo`/`photos`, a `style` becomes
    `Typed.style`, and `text`/`language` ones become `Typed.args`, in order (`default` where left out)."""

    name: str
    description: str = ""  # N_-marked
    kind: OptionKind = "text"
    required: bool = False
    max_length: int | None = None
    default: str = ""


@dataclass(frozen=True)
class Slash:
    """How a command is offered where commands declare typed parameters (Discord's slash commands)."""

    description: str  # N_-marked; that platform's own wording
    options: tuple[Option, ...] = ()
    group: str = ""  # offered as a subcommand of this group (`/party open`), see SLASH_GROUPS
    name: str = ""  # its name there, when not the command's own
    private: bool = True  # answered so that only the asker sees it
    deferred: bool = True  # "thinking…" at once, answers follow; False: answered at once (quick ones)

    def name_for(self, command: str) -> str:
        return self.name or command


@dataclass(frozen=True)
class SlashGroup:
    description: str  # N_-marked
    groups_only: bool = False  # offered in group chats (servers) only


@dataclass(frozen=True)
class CommandInfo:
    name: str
    description: str  # N_-marked: translated when a menu is published in a language
    menu: bool = True  # listed in the platform's command menu (admin-only ones are not)
    slash: Slash | None = None  # offered as a slash command with typed parameters (Discord)
    typed: bool = True  # can be typed as text, `/name args` (False: only where parameters are typed in a form)
    credits: bool = False  # about credits: offered in menus only while `[credits]` is on


_PHOTO = N_("A selfie (JPEG, PNG, WebP, GIF, HEIC)")

COMMANDS: dict[str, CommandInfo] = {c.name: c for c in (
    CommandInfo("start", N_("What this bot does")),
    CommandInfo("help", N_("How to use it"), slash=Slash(N_("How Pix Me! works"), deferred=False)),
    CommandInfo("styles", N_("List every style"), slash=Slash(N_("List every style"), deferred=False)),
    CommandInfo("undo", N_("Reply to a result with this to go back a step")),
    CommandInfo("cancel", N_("Stop what you asked for"),
                slash=Slash(N_("Stop your waiting and running requests here"))),
    CommandInfo("forget", N_("Delete everything the bot keeps about you"),
                slash=Slash(N_("Delete everything Pix Me! keeps about you"))),
    CommandInfo("party", N_("Groups: start an avatar party (/party [style] [theme])"), slash=Slash(
        N_("Open a party lobby in this channel"), (
            Option("style", N_("The look of the group picture"), "style"),
            Option("theme", N_("What the picture is about"), max_length=MAX_THEME_CHARS)),
        group="party", name="open", private=False)),
    CommandInfo("join", N_("Reply to a party with this (and your selfie) to join it"), menu=False, slash=Slash(
        N_("Join this channel's party with your selfie"), (Option("photo", _PHOTO, "photo", required=True),),
        group="party")),
    CommandInfo("fuse", N_("Caption an album of 2-8 photos with this to blend them"), slash=Slash(
        N_("Blend 2–8 photos into one picture"), (
            *(Option(f"photo{n}", kind="photo", required=n <= 2) for n in range(1, 9)),
            Option("instruction", N_("What to make of them, e.g. “best friends at the fair”"),
                   max_length=MAX_THEME_CHARS),
            Option("style", N_("The look of the picture"), "style")),
        private=False)),
    CommandInfo("pack", N_("A selfie in 6 styles at once (/pack [n] with a selfie, at most 10)"), slash=Slash(
        N_("The same selfie in several styles at once, as one album"), (
            Option("photo", _PHOTO, "photo", required=True),
            Option("count", N_("How many styles (6 if left out, at most 10)"), max_length=2)),
        private=False)),
    CommandInfo("settings", N_("Model, aspect ratio, size and delivery (groups: admins set defaults)"),
                slash=Slash(N_("Your model, aspect ratio, size and delivery (in a server: its defaults, for admins)"),
                            deferred=False)),
    CommandInfo("model", N_("Choose the image model")),
    CommandInfo("persona", N_("Tell me about you (/persona <text>, /persona clear)"), slash=Slash(
        N_("A few words about you that every picture should suit"),
        (Option("about", N_("e.g. “a DJ from Lagos who loves neon and gold” — or “clear”"),
                max_length=MAX_PERSONA_CHARS),))),
    CommandInfo("history", N_("Your last 10 pictures here, to continue from"),
                slash=Slash(N_("Your last 10 pictures here, to continue from"), private=False)),
    CommandInfo("export", N_("Reply to a result: /export sticker | profile | original")),
    CommandInfo("language", N_("The language I speak with you (/language es)"), slash=Slash(
        N_("The language Pix Me! speaks with you"),
        (Option("language", N_("Leave empty to follow your Discord language"), "language", default="auto"),))),
    CommandInfo("stats", N_("Today's numbers (the bot's admins)"), menu=False),
    CommandInfo("balance", N_("Free pictures left today, and your credits"), credits=True,
                slash=Slash(N_("Your free pictures left today, and your credits"), deferred=False)),
    CommandInfo("paysupport", N_("Help with a payment"), credits=True),
    CommandInfo("refund", N_("Refund a payment: /refund <charge id> (the bot's admins)"), menu=False, credits=True),
    # Where a style is a parameter rather than a command of its own (/zombie), it is one command.
    CommandInfo("avatar", N_("Turn a selfie into an avatar in a style"), menu=False, typed=False, slash=Slash(
        N_("Turn a selfie into an avatar in a style"), (
            Option("style", N_("The look you want"), "style", required=True),
            Option("photo", _PHOTO, "photo", required=True)),
        private=False)),
)}

# -- /me: the person's profile picture as the selfie (part 12) ---------------------------------------------
COMMANDS["me"] = CommandInfo("me", N_("Your profile picture as the selfie (/me [style])"), slash=Slash(
    N_("Your profile picture as the selfie, in a style"),
    (Option("style", N_("The look you want (empty: comic)"), "style"),), private=False))

SLASH_GROUPS: dict[str, SlashGroup] = {
    "party": SlashGroup(N_("Avatar parties: everyone's selfies in one picture"), groups_only=True),
}


@runtime_checkable
class FormMessenger(Protocol):
    """A messenger that shows the settings as one form of menus (Discord's selects), not as keyboards."""

    async def send_settings_form(self, target: ReplyTarget, form: SettingsForm) -> str: ...


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
    style: str | None = None  # a style given as a parameter of its own (Discord); "": left out, the default
    photos: tuple[PhotoRef, ...] = ()  # several photos given as parameters (/fuse on Discord)
    answer_the_request: bool = False  # every answer replies to the request, even in a private chat
    # The person's own profile picture, where the platform has them (`/me`); fetching it is asking for it.
    profile_photo: PhotoRef | None = None


class Commands:
    """Runs a typed command through the studio's use cases."""

    def __init__(self, studio: Studio, *, engine_name: str) -> None:
        self.studio = studio
        self.engine_name = engine_name

    def offered(self, info: CommandInfo) -> bool:
        """Whether menus and slash commands offer it here (credit commands only while credits are on)."""
        return not info.credits or self.studio.credits.enabled

    async def dispatch(self, ctx: Context, typed: Typed) -> None:
        studio, people = self.studio, self.studio.people
        name, args = typed.name, typed.args
        # Groups see who asked; a private chat needs no quote.
        quote = typed.answer_the_request or not ctx.chat.is_private
        info = ReplyTarget(ctx.chat.platform, ctx.chat.id, ctx.message_id if quote else None)
        settings_ctx = _personal(ctx) if typed.personal_settings else ctx
        ours = typed.replied_to if typed.replied_to_ours else None
        if name in ("start", "help"):
            await studio.replies.to(ctx).send_text(info, texts.help_for(ctx.chat.platform, self.engine_name))
        elif name == "styles":
            await studio.replies.to(ctx).send_text(info, texts.styles_for(ctx.chat.platform))
        elif name == "undo":
            await studio.undo(ctx, typed.replied_to)
        elif name == "cancel":
            await studio.cancel(ctx)
        elif name == "stats":
            await studio.stats(ctx)
        elif name == "forget":
            await studio.forget(ctx)
        elif name == "balance":
            await studio.credits.show_balance(ctx)
        elif name == "paysupport":
            await studio.credits.pay_support(ctx)
        elif name == "refund":
            await studio.credits.refund(ctx, args)
        elif name == "settings":
            messenger = studio.replies.to(ctx)
            if isinstance(messenger, FormMessenger):
                await messenger.send_settings_form(info, await people.form(settings_ctx))
            else:
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
            await studio.parties.open(ctx, _styled(typed))
        elif name == "join":
            await self._join(ctx, typed)
        elif name == "fuse":
            # One photo (or none) outside an album: it explains how many it needs.
            photos = list(typed.photos) or ([typed.photo] if typed.photo is not None else [])
            await studio.fuse(ctx, photos, _styled(typed))
        elif name == "pack":
            await studio.pack(ctx, args, typed.photo, typed.replied_to)
        elif name == "me":
            await self._me(ctx, typed)
        elif name == "avatar" and typed.style is not None:
            await studio.style(ctx, typed.style, typed.photo, typed.replied_to)
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


    async def _me(self, ctx: Context, typed: Typed) -> None:
        """`/me [style]`: the person's current profile picture as the selfie; asking is the consent. A platform
        without profile pictures (the playground) says so in one line."""
        wanted = typed.style if typed.style is not None else typed.args.split(" ")[0]
        if typed.profile_photo is None:
            await self.studio.replies.say(ctx, texts.ME_NOT_HERE)
            return
        await self.studio.style(ctx, wanted or DEFAULT_STYLE, typed.profile_photo)


def _styled(typed: Typed) -> str:
    """The arguments with a style given as a parameter in front, where commands read it (`noir Heist crew`)."""
    return typed.args if typed.style is None else f"{typed.style or DEFAULT_STYLE} {typed.args}"


def _personal(ctx: Context) -> Context:
    """The same request, acting on the person's own settings (as in their private chat with the bot)."""
    return dataclasses.replace(ctx, chat=dataclasses.replace(ctx.chat, is_private=True))
