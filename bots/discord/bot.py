"""Discord adapter: discord.py interactions and messages -> core calls, core's replies -> Discord.

It only translates. Slash commands come from core's command table (`bots/discord/commands.py`) and go
through `Commands.dispatch`; the "Pix Me" message menu, result buttons, the edit modal and replies to the
bot's pictures become studio calls; the studio answers through `DiscordMessenger`. Components carry core
actions in their `custom_id` (`bots/discord/components.py`), so they keep working after a restart.
Results of slash commands are interaction follow-ups while the interaction token lives (15 minutes);
after that, or after a restart, they are channel messages replying to the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import discord
from discord import app_commands

from bots.discord import shim
from bots.discord.commands import slash_commands, typed_of
from bots.discord.components import (
    DYNAMIC_ITEMS,
    EDIT_FIELD,
    PickStyle,
    Restyle,
    components_view,
    edit_modal,
    edit_prompt_of,
    settings_view,
)
from bots.discord.convert import (
    PLATFORM,
    attachment_photo,
    avatar_photo,
    caption,
    chat_of,
    declared_problem,
    first_image,
    interaction_context,
    person_of,
)
from bots.discord.messenger import TOKEN_LIFETIME_S, DiscordMessenger
from core import i18n, texts
from core.actions import VariantPick, encode
from core.commands import CommandInfo, Commands
from core.config import DiscordSettings
from core.i18n import _
from core.intake import IntakeError
from core.requests import Context, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import get_style

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_API = "https://discord.com/api/v10"
DEFAULT_GATEWAY = "wss://gateway.discord.gg/"
DEFAULT_CDN = "https://cdn.discordapp.com"
MENU_NAME = "Pix Me"
_MENTION = re.compile(r"<@!?(\d+)>")


# -- the bot -------------------------------------------------------------------------------------------

class _Client(discord.Client):
    def __init__(self, adapter: DiscordBot, *, intents: discord.Intents, guild_ready_timeout: float) -> None:
        super().__init__(intents=intents, guild_ready_timeout=guild_ready_timeout,
                         allowed_mentions=discord.AllowedMentions.none())
        self.adapter = adapter
        self.tree: app_commands.CommandTree[_Client] = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        await self.tree.set_translator(_Translator())
        await self.adapter.after_login(self)


class _Translator(app_commands.Translator):
    """Command and option descriptions and style names in each Discord locale we have a catalog for."""

    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        code = i18n.negotiate(locale.value)
        if code is None or code == i18n.DEFAULT:
            return None
        if context.location is app_commands.TranslationContextLocation.choice_name and isinstance(
                context.data, app_commands.Choice) and (style := get_style(str(context.data.value))) is not None:
            with i18n.speaking(code):
                return f"{style.emoji} {style.name} — {style.blurb}"[:100]
        if context.location not in _TRANSLATED:
            return None  # command and option names stay as typed: /avatar, style:, photo:
        with i18n.speaking(code):
            translated = _(string.message)
        return translated[:100] if translated != string.message else None


_TRANSLATED = (app_commands.TranslationContextLocation.command_description,
               app_commands.TranslationContextLocation.group_description,
               app_commands.TranslationContextLocation.parameter_description)


_WEBHOOK_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/|['\"]token['\"]:\s*['\"])[^/\s?'\"]+")


class _InteractionTokenFilter(logging.Filter):
    """Interaction tokens travel in webhook URLs and gateway events, which discord.py logs at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _WEBHOOK_TOKEN.sub(r"\1[redacted]", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _hide_interaction_tokens() -> None:
    for name in ("discord.http", "discord.webhook.async_", "discord.interactions", "discord.gateway"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _InteractionTokenFilter) for f in logger.filters):
            logger.addFilter(_InteractionTokenFilter())


def configure_endpoints(settings: DiscordSettings) -> None:
    """Point discord.py at Discord or at a Discord-compatible server (`[discord] api_url`).

    discord.py builds every REST URL from `Route.BASE` and opens the gateway at
    `DiscordWebSocket.DEFAULT_GATEWAY`; both are process-wide, like the one bot we run.
    """
    api = settings.api_url.rstrip("/")
    if api and not re.search(r"/api/v\d+$", api):
        api += "/api/v10"
    shim.point_at(api or DEFAULT_API, settings.gateway_url or DEFAULT_GATEWAY)
    shim.point_cdn_at(settings.cdn_url or DEFAULT_CDN)


class DiscordBot:
    """Builds and runs the discord.py client around a studio."""

    def __init__(self, settings: DiscordSettings, studio: Studio, *, engine_name: str,
                 message_content: bool = True, guild_ready_timeout: float = 2.0,
                 token_lifetime_s: float = TOKEN_LIFETIME_S) -> None:
        self.settings = settings
        self.studio = studio
        self.engine_name = engine_name
        self.commands = Commands(studio, engine_name=engine_name)
        self.guild_ready_timeout = guild_ready_timeout
        self._ready = asyncio.Event()
        self.client = self._build_client(message_content)
        self.messenger = DiscordMessenger(self.client, token_lifetime_s)
        _hide_interaction_tokens()
        studio.attach(PLATFORM, self.messenger)
        self._task: asyncio.Task[None] | None = None

    def _build_client(self, message_content: bool) -> _Client:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = message_content
        client = _Client(self, intents=intents, guild_ready_timeout=self.guild_ready_timeout)
        client.add_dynamic_items(*DYNAMIC_ITEMS)
        self._add_commands(client.tree)
        client.event(self.on_message)
        client.event(self.on_interaction)
        client.event(self.on_ready)
        return client

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in (which syncs the commands), then run the gateway connection in the background."""
        configure_endpoints(self.settings)
        await self.client.login(self.settings.token.get_secret_value())
        self._task = asyncio.create_task(self._connect(), name="discord-gateway")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the gateway's READY (on whichever client is current after an intent fallback)."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def _connect(self) -> None:
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            log.warning("discord: the Message Content intent is not enabled for this bot in the Developer "
                        "Portal; running without it (replies to results must mention the bot)")
            await self.client.close()
            self.client = self._build_client(message_content=False)
            self.messenger.client = self.client
            await self.client.login(self.settings.token.get_secret_value())
            await self.client.connect(reconnect=True)
        except Exception:
            log.exception("discord: the gateway connection ended")

    @property
    def connected(self) -> bool:
        """The gateway session is up (readiness, bots/ops.py)."""
        return self.client.is_ready() and not self.client.is_closed()

    async def stop(self) -> None:
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def after_login(self, client: _Client) -> None:
        """After login: find the gateway of a Discord-compatible server, and sync the commands."""
        if self.settings.api_url and not self.settings.gateway_url:
            _shards, url, _limits = await client.http.get_bot_gateway()
            shim.point_at(shim.api_base(), url)
        try:
            await client.tree.sync()
            for guild_id in self.settings.guild_ids:  # guild commands appear at once; global ones can lag
                guild = discord.Object(guild_id)
                client.tree.copy_global_to(guild=guild)
                await client.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.warning("discord: could not sync commands: %s", exc)

    # -- commands --------------------------------------------------------------------------------

    def _add_commands(self, tree: app_commands.CommandTree[_Client]) -> None:
        """The slash commands of core's table, and the "Pix Me" message menu (not a command: a message's)."""
        for command in slash_commands(self.run_command, self.commands.offered):
            tree.add_command(command)

        async def pix_me(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.guarded(interaction, self.on_pix_me(interaction, message))

        tree.add_command(app_commands.ContextMenu(name=MENU_NAME, callback=pix_me))

    async def run_command(self, interaction: discord.Interaction, info: CommandInfo, values: dict[str, Any]) -> None:
        """A slash command: what Discord typed into a `Typed`, the interaction into a `Context`, then core's
        `Commands.dispatch`. The answers go through the interaction (see `DiscordMessenger.remember`)."""
        await self.guarded(interaction, self._run_command(interaction, info, values))

    async def _run_command(self, interaction: discord.Interaction, info: CommandInfo, values: dict[str, Any]) -> None:
        slash = info.slash
        assert slash is not None
        attachments = [v for o in slash.options if o.kind == "photo" and isinstance(v := values.get(o.name),
                                                                                      discord.Attachment)]
        # What Discord already says about the files, and which lobby a command means, is answered privately
        # before anyone sees "thinking…".
        refusal, lobby = await self._before_answering(interaction, info, attachments)
        if refusal is not None:
            if refusal:
                await interaction.response.send_message(refusal, ephemeral=True)
            return
        request_id = str(interaction.id)
        if slash.deferred:
            answer = await interaction.response.defer(ephemeral=slash.private, thinking=True)
            request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        photos = [attachment_photo(a) for a in attachments]
        if info.name == "avatar" and attachments:
            checked = await self._checked_photo(interaction, attachments[0])
            if checked is None:
                return
            photos = [checked]
        self.messenger.remember(request_id, interaction, ephemeral=slash.private, responded=slash.deferred)
        ctx = interaction_context(interaction, request_id)
        typed = typed_of(info, values, photos, lobby)
        if info.name == "me":  # the person's avatar as the selfie: asking for it is the consent
            typed = dataclasses.replace(typed, profile_photo=avatar_photo(interaction.user))
        try:
            await self.commands.dispatch(ctx, typed)
        finally:
            if info.name == "party":  # the lobby is out: what replies to it later goes to the channel
                self.messenger.settle(request_id)
        if slash.deferred and not self.messenger.answered(request_id):
            await self._nothing_said(interaction, info, ctx)

    async def _before_answering(self, interaction: discord.Interaction, info: CommandInfo,
                                attachments: list[discord.Attachment]) -> tuple[str | None, str | None]:
        """A private refusal ("" when already said; None to go on), and the lobby message the command stands
        for a reply to: `/party join` means this channel's open party, as replying to its lobby does."""
        if info.name == "avatar" and await self._refuse_if_not_allowed(interaction):
            return "", None  # a refused person hears it before anything is downloaded
        problem = next((p for p in map(declared_problem, attachments) if p is not None), None)
        if problem is not None:
            return problem, None
        if info.name not in ("party", "join"):
            return None, None
        party = await self.studio.parties.open_in(PLATFORM, str(interaction.channel_id))
        lobby = party.lobby_message if party is not None else None
        if info.name == "join":
            return (None, lobby) if lobby is not None else (texts.DISCORD_PARTY_NONE, None)
        # A second /party open points privately to the open lobby instead of opening another.
        return (texts.discord_party_already_open(self._jump_url(interaction, lobby)) if lobby is not None else None,
                None)

    async def _nothing_said(self, interaction: discord.Interaction, info: CommandInfo, ctx: Context) -> None:
        """The command's use case answered nothing through the interaction: the thinking message goes (a party
        someone else opened a moment ago), or says what happened (a selfie in the party)."""
        if info.name == "join":
            party = await self.studio.parties.open_in(PLATFORM, ctx.chat.id)
            member = party.member(ctx.person.id) if party is not None else None
            if member is not None and member.node_id is not None:
                await interaction.followup.send(texts.DISCORD_PARTY_JOINED, ephemeral=True)
                return
        if info.name in ("party", "join"):
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()

    async def _checked_photo(self, interaction: discord.Interaction, attachment: discord.Attachment) -> PhotoRef | None:
        """The photo downloaded and through intake's checks, so a bad file is refused privately before anything
        is queued; None once refused."""
        try:
            data = await self._checked_download(interaction, attachment)
        except IntakeError as refusal:
            await self._refuse_privately(interaction, refusal.message)
            return None
        except (discord.HTTPException, OSError):
            await self._refuse_privately(interaction, texts.DOWNLOAD_FAILED)
            return None

        async def fetch() -> bytes:
            return data

        return PhotoRef(fetch=fetch, size=attachment.size, mime=attachment.content_type, file_name=attachment.filename)

    async def guarded(self, interaction: discord.Interaction, work: Coroutine[Any, Any, Any]) -> None:
        """Every interaction: speak the person's language, and let nothing escape into discord.py (the
        studio has already told the person what it could)."""
        try:
            await self.studio.speak_to(interaction_context(interaction, interaction.id))
            await work
        except Exception:
            log.exception("discord: handling an interaction failed")
        finally:
            work.close()  # never awaited if speaking failed; closing a finished coroutine is a no-op

    async def _checked_download(self, interaction: discord.Interaction, attachment: discord.Attachment) -> bytes:
        """Download and run the intake checks, so a bad file is refused before anything is queued (one at a
        time per person, like every download and decode)."""
        async with self.studio.intake.turn((PLATFORM, str(interaction.user.id))):
            data = await attachment.read()
            await self.studio.intake.prepare(data, max_px=self.studio.input_max_px)
        return data

    async def _refuse_if_not_allowed(self, interaction: discord.Interaction) -> bool:
        """Access before any download: a refused person hears it privately and nothing is fetched."""
        if self.studio.access.allows(interaction_context(interaction, interaction.id)):
            return False
        await interaction.response.send_message(texts.NOT_ALLOWED, ephemeral=True)
        return True

    async def _refuse_privately(self, interaction: discord.Interaction, text: str) -> None:
        """Replace a public "thinking…" with a note only the person sees."""
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)

    # -- parties and fusion ------------------------------------------------------------------------

    def _jump_url(self, interaction: discord.Interaction, message_id: str) -> str:
        channel = self.client.get_partial_messageable(interaction.channel_id or 0, guild_id=interaction.guild_id)
        return channel.get_partial_message(int(message_id)).jump_url

    async def on_pix_me(self, interaction: discord.Interaction, message: discord.Message) -> None:
        attachment = first_image(message)
        if attachment is None:
            await interaction.response.send_message(texts.NO_PICTURE_IN_MESSAGE, ephemeral=True)
            return
        view = components_view()
        view.add_item(PickStyle(message.id))
        await interaction.response.send_message(texts.PICK_STYLE, view=view, ephemeral=True)

    async def on_pick(self, interaction: discord.Interaction, message_id: int, style_id: str) -> None:
        if await self._refuse_if_not_allowed(interaction):
            return
        style = get_style(style_id)
        channel = self.client.get_partial_messageable(interaction.channel_id or 0)
        try:
            message = await channel.fetch_message(message_id)
        except discord.HTTPException:
            await interaction.response.edit_message(content=texts.SOURCE_GONE, view=None)
            return
        attachment = first_image(message)
        problem = texts.NO_PICTURE_IN_MESSAGE if attachment is None else declared_problem(attachment)
        if style is None or attachment is None or problem is not None:
            await interaction.response.edit_message(content=problem or texts.UNKNOWN_BUTTON, view=None)
            return
        await interaction.response.edit_message(content=texts.style_coming(style.label), view=None)
        try:
            data = await self._checked_download(interaction, attachment)
        except IntakeError as refusal:
            await interaction.edit_original_response(content=refusal.message)
            return
        except (discord.HTTPException, OSError):
            await interaction.edit_original_response(content=texts.DOWNLOAD_FAILED)
            return

        async def fetch() -> bytes:
            return data

        ref = PhotoRef(fetch=fetch, message_id=str(message.id), size=attachment.size,
                       mime=attachment.content_type, file_name=attachment.filename, owner_id=str(message.author.id))
        await self.studio.style(interaction_context(interaction, message.id), style.id, ref)

    async def on_node_button(self, interaction: discord.Interaction, verb: str, node_id: int) -> None:
        pressed = interaction.message.id if interaction.message is not None else interaction.id
        ctx = interaction_context(interaction, pressed)
        if verb == "edit":
            await interaction.response.send_modal(edit_modal(node_id))
        elif verb == "styles":
            view = components_view()
            view.add_item(Restyle(node_id, pressed))
            await interaction.response.send_message(texts.RESTYLE_PROMPT, view=view, ephemeral=True)
        elif verb == "undo":
            await interaction.response.defer()
            await self.studio.undo_node(ctx, node_id)
        else:
            await interaction.response.defer()
            await self.studio.again(ctx, node_id)

    async def on_restyle(self, interaction: discord.Interaction, node_id: int, message_id: int,
                         style_id: str) -> None:
        style = get_style(style_id)
        label = style.label if style else style_id
        await interaction.response.edit_message(content=texts.style_coming(label), view=None)
        await self.studio.restyle(interaction_context(interaction, message_id), node_id, style_id)

    async def on_press(self, interaction: discord.Interaction, action: str) -> None:
        outcome = await self._privately(interaction, lambda ctx: self.studio.press(ctx, action))
        if outcome is None:
            return
        if outcome.kind == "settled" and interaction.message is not None:
            with contextlib.suppress(discord.HTTPException):  # a used (or moot) offer loses its buttons
                await interaction.message.edit(view=None)
        if outcome.text:
            await interaction.followup.send(outcome.text, ephemeral=True)

    # -- settings, history, exports ------------------------------------------------------------------

    async def on_setting(self, interaction: discord.Interaction, key: str, value: str) -> None:
        """A choice in a /settings menu: saved (admins only for a server's defaults), then the message redrawn."""
        ctx = interaction_context(interaction, interaction.id)
        answer = await self.studio.people.choose(ctx, key, value)
        form = await self.studio.people.form(ctx)
        text = form.text if answer.kind == "ok" else f"{answer.text}\n\n{form.text}"
        await interaction.response.edit_message(content=caption(text), view=settings_view(form))

    async def on_step(self, interaction: discord.Interaction, node_id: int) -> None:
        """A step picked under a /history gallery: posted on its own, with its buttons, to reply to."""
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction)
        await self.studio.people.show_step(interaction_context(interaction, request_id), node_id)

    async def on_variant(self, interaction: discord.Interaction, node_id: int) -> None:
        """A picture picked under pictures made together: posted on its own, with its buttons, to continue from."""
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction)
        ctx = interaction_context(interaction, request_id)
        outcome = await self.studio.press(ctx, encode(VariantPick(node_id)))
        if outcome.kind != "ok":
            await self.messenger.send_text(ReplyTarget(ctx.chat.platform, ctx.chat.id, request_id), outcome.text)

    async def on_export(self, interaction: discord.Interaction, kind: str, node_id: int) -> None:
        """An export button: the sticker, profile picture or original, for the presser's eyes only."""
        pressed = str(interaction.message.id) if interaction.message is not None else None
        outcome = await self._privately(
            interaction, lambda ctx: self.studio.people.export_node(ctx, kind, node_id, pressed))
        if outcome is not None and outcome.text:
            await interaction.followup.send(outcome.text, ephemeral=True)

    async def _privately(self, interaction: discord.Interaction,
                         use_case: Callable[[Context], Awaitable[T]]) -> T | None:
        """Run a use case whose answers only the person should see; returns its result if unsaid."""
        answer = await interaction.response.defer(ephemeral=True, thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction, ephemeral=True)
        result = await use_case(interaction_context(interaction, request_id))
        return None if self.messenger.answered(request_id) else result

    # -- raw events ------------------------------------------------------------------------------

    async def on_ready(self) -> None:
        self._ready.set()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Edit-modal submissions (modals are not persistent views, so they are routed here)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        prompt = edit_prompt_of(str(data.get("custom_id", "")))
        if prompt is None:
            return
        try:
            node_id = prompt.node_id
            instruction = _modal_value(data, EDIT_FIELD)
            pressed = interaction.message.id if interaction.message is not None else interaction.id
            ctx = interaction_context(interaction, pressed)
            await self.studio.speak_to(ctx)
            await interaction.response.defer()
            await self.studio.edit_node(ctx, node_id, instruction)
        except Exception:
            log.exception("discord: edit modal failed")

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.client.user is None:
            return
        try:
            await self._route(message)
        except Exception:
            log.exception("discord: message %s failed", message.id)

    async def _route(self, message: discord.Message) -> None:
        me = self.client.user
        assert me is not None
        private = message.guild is None
        ctx = Context(chat_of(message.channel.id, message.guild), person_of(message.author), str(message.id))
        await self.studio.speak_to(ctx)  # messages carry no locale: the person's choice or their last one seen
        replied = await self._replied_message(message)
        text = _MENTION.sub(lambda m: "" if int(m[1]) == me.id else m[0], message.content).strip()
        if replied is not None and replied.author.id == me.id:
            attachment = first_image(message)
            if attachment is not None and await self.studio.parties.join_with_photo(
                    ctx, str(replied.id), attachment_photo(attachment, message.id)):
                return  # a selfie replying to a party lobby joins its sender to the party
            if text:
                await self.studio.edit(ctx, text, str(replied.id))
            return
        addressed = private or me.mentioned_in(message)
        if addressed and first_image(message) is not None:
            await self.studio.offer_styles(ctx, str(message.id))
        elif addressed:
            await message.reply(texts.discord_help(self.engine_name), mention_author=False)
        # In servers, anything not addressed to the bot is none of its business.

    async def _replied_message(self, message: discord.Message) -> discord.Message | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        if isinstance(ref.resolved, discord.Message):
            return ref.resolved
        cached = ref.cached_message
        if cached is not None:
            return cached
        with contextlib.suppress(discord.HTTPException):
            return await message.channel.fetch_message(ref.message_id)
        return None


def _modal_value(data: Any, custom_id: str) -> str:
    for row in data.get("components", []):
        inner = row.get("components") or [row.get("component", {})]
        for component in inner:
            if component.get("custom_id") == custom_id:
                return str(component.get("value") or "")
    return ""
