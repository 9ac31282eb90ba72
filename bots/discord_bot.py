"""Discord adapter: discord.py interactions and messages -> studio calls, studio replies -> Discord.

It only translates. Slash commands, the "Pix Me" message menu, result buttons, the edit modal and
replies to the bot's pictures become studio calls; the studio answers through `DiscordMessenger`.
Buttons carry the node id in their `custom_id` (`discord.ui.DynamicItem`), so they keep working
after a restart. Results of slash commands are interaction follow-ups while the interaction token
lives (15 minutes); after that, or after a restart, they are channel messages replying to the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import discord
from discord import app_commands
from PIL import Image

from bots import discord_shim
from core import i18n, texts
from core.config import DiscordSettings
from core.i18n import N_, _
from core.intake import IntakeError, check_declared_size
from core.parties import DEFAULT_STYLE, MAX_THEME_CHARS
from core.people import SettingsForm
from core.ports import MAX_PERSONA_CHARS
from core.requests import Button, Chat, Context, DeliveryRefused, ImageReply, Person, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import STYLES, Style, get_style

log = logging.getLogger(__name__)
T = TypeVar("T")

PLATFORM = "discord"
DEFAULT_API = "https://discord.com/api/v10"
DEFAULT_GATEWAY = "wss://gateway.discord.gg/"
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what a server without boosts (and a DM) accepts per file
TOKEN_LIFETIME_S = 14 * 60.0  # interaction tokens last 15 minutes; keep a margin for slow uploads
CONTENT_LIMIT = 2000
GALLERY_LIMIT = 10  # attachments in one message
GALLERY_REQUEST_LIMIT = 25 * 1024 * 1024  # what one message's request may carry in all
PREVIEW_TIMEOUT_S = 600.0  # an unanswered edit modal is forgotten after this
MENU_NAME = "Pix Me"
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".tif", ".tiff", ".bmp")
_MENTION = re.compile(r"<@!?(\d+)>")
# Discord errors meaning a chat will never take our messages: missing access, unknown channel, DMs closed.
_REFUSED_CODES = {50001, 50013, 10003, 50007}
_EXPIRED_TOKEN_CODES = {50027, 10015, 10062}


# -- translating Discord things --------------------------------------------------------------------

def _chat(channel_id: int | None, guild: Any) -> Chat:
    return Chat(PLATFORM, str(channel_id or 0), is_private=guild is None)


def _person(member: discord.abc.User, locale: discord.Locale | None = None) -> Person:
    return Person(str(member.id), member.display_name, locale.value if locale is not None else None)


def _interaction_context(interaction: discord.Interaction, message_id: int | str) -> Context:
    # The presser's resolved permissions arrive with the interaction (its member payload), so asking
    # whether they administer the server costs no request.
    permissions = interaction.permissions

    async def chat_admin() -> bool:
        return interaction.guild_id is not None and (permissions.administrator or permissions.manage_guild)

    return Context(_chat(interaction.channel_id, interaction.guild_id),
                   _person(interaction.user, interaction.locale), str(message_id), chat_admin=chat_admin)


def _attachment_photo(attachment: discord.Attachment, message_id: int | None = None) -> PhotoRef:
    """An attachment as a photo core fetches when it needs it (and checks then)."""
    return PhotoRef(fetch=attachment.read, message_id=str(message_id) if message_id is not None else None,
                    size=attachment.size, mime=attachment.content_type, file_name=attachment.filename)


def is_image(attachment: discord.Attachment) -> bool:
    """Discord reports a content type and dimensions for files it can read as images."""
    if attachment.content_type is not None:
        return attachment.content_type.startswith("image/") and attachment.content_type != "image/svg+xml"
    return attachment.filename.lower().endswith(_IMAGE_EXTENSIONS)


def first_image(message: discord.Message) -> discord.Attachment | None:
    return next((a for a in message.attachments if is_image(a)), None)


def declared_problem(attachment: discord.Attachment) -> str | None:
    """What Discord already tells us is wrong with an attachment, before downloading it."""
    if not is_image(attachment):
        return texts.NOT_AN_IMAGE
    try:
        check_declared_size(attachment.size)
    except IntakeError as refusal:
        return refusal.message
    return None


def fit_upload(image: bytes, mime: str, limit: int) -> tuple[bytes, str]:
    """Re-encode (then downscale) an image until it fits Discord's per-file limit. Blocking."""
    extension = "png" if mime == "image/png" else "webp" if mime == "image/webp" else "jpg"
    if len(image) <= limit:
        return image, extension
    with Image.open(io.BytesIO(image)) as opened:
        picture = opened.convert("RGB")
    scale = 1.0
    while True:
        size = (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
        current = picture if scale == 1.0 else picture.resize(size, Image.Resampling.LANCZOS)
        for quality in (90, 80, 70, 60, 50):
            out = io.BytesIO()
            current.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= limit or min(size) <= 32:
                return out.getvalue(), "jpg"
        scale *= 0.7


def _file_name(reply: ImageReply, extension: str) -> str:
    """An export keeps its own name (`pixme-12-profile.jpg`); the extension is the one actually sent."""
    stem = reply.file_name.rsplit(".", 1)[0] if reply.file_name else "pixme"
    return f"{stem}.{extension}"


def _caption(text: str) -> str:
    return text if len(text) <= CONTENT_LIMIT else text[:CONTENT_LIMIT - 1] + "…"


# -- persistent components -------------------------------------------------------------------------

def _adapter(interaction: discord.Interaction) -> DiscordBot:
    client = interaction.client
    assert isinstance(client, _Client)
    return client.adapter


class NodeButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                 template=r"pixme:(?P<verb>again|undo|edit|styles):(?P<node>\d+)"):
    """Edit / Undo / Again / Style ▾ under a result; the node id travels in the custom_id."""

    LOOKS: ClassVar[dict[str, tuple[str, str, discord.ButtonStyle]]] = {  # labels: texts.<name>
        "edit": ("BUTTON_EDIT", "✏️", discord.ButtonStyle.primary),
        "undo": ("BUTTON_UNDO", "↩️", discord.ButtonStyle.secondary),
        "again": ("BUTTON_AGAIN", "🔁", discord.ButtonStyle.secondary),
        "styles": ("BUTTON_STYLE", "🎨", discord.ButtonStyle.secondary),
    }

    def __init__(self, verb: str, node_id: int) -> None:
        text, emoji, style = self.LOOKS[verb]
        super().__init__(discord.ui.Button(label=getattr(texts, text), emoji=emoji, style=style,
                                           custom_id=f"pixme:{verb}:{node_id}"))
        self.verb = verb
        self.node_id = node_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> NodeButton:
        return cls(match["verb"], int(match["node"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_node_button(interaction, self.verb, self.node_id))


class ExportButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"pixme:export:(?P<kind>sticker|profile|original):(?P<node>\d+)"):
    """Sticker / Profile pic / Original under a result: sent only to the presser."""

    def __init__(self, kind: str, node_id: int, label: str = "") -> None:
        super().__init__(discord.ui.Button(label=label or kind, style=discord.ButtonStyle.secondary, row=1,
                                           custom_id=f"pixme:export:{kind}:{node_id}"))
        self.kind = kind
        self.node_id = node_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ExportButton:
        return cls(match["kind"], int(match["node"]), getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_export(interaction, self.kind, self.node_id))


class SettingSelect(discord.ui.DynamicItem[discord.ui.Select[Any]],
                    template=r"pixme:setting:(?P<key>model|ratio|size|delivery)"):
    """One select menu of the ephemeral /settings message; a choice is saved and the message redrawn."""

    def __init__(self, key: str, title: str = "", options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id=f"pixme:setting:{key}", placeholder=title[:150] or None,
                                           options=options or [discord.SelectOption(label=key)]))
        self.key = key

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> SettingSelect:
        return cls(match["key"])

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_setting(interaction, self.key, self.item.values[0]))


def settings_view(form: SettingsForm) -> discord.ui.View:
    """The settings as select menus, the current choice of each selected (price notes as descriptions)."""
    view = _components()
    for key, (title, choices) in form.menus.items():
        options = [discord.SelectOption(label=c.label[:100], value=c.value, description=c.note[:100] or None,
                                        default=c.current) for c in choices[:25]]
        view.add_item(SettingSelect(key, title, options))
    return view


def _style_options() -> list[discord.SelectOption]:
    return [discord.SelectOption(label=s.name, value=s.id, emoji=s.emoji, description=s.blurb[:100])
            for s in STYLES]


class PickStyle(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"pixme:pick:(?P<message>\d+)"):
    """The style menu for a photo message (the "Pix Me" menu, or a bare photo in a DM)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(discord.ui.Select(custom_id=f"pixme:pick:{message_id}", options=_style_options(),
                                           placeholder=texts.PICK_A_STYLE))
        self.message_id = message_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PickStyle:
        return cls(int(match["message"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_pick(interaction, self.message_id, self.item.values[0]))


class Restyle(discord.ui.DynamicItem[discord.ui.Select[Any]],
              template=r"pixme:restyle:(?P<node>\d+):(?P<message>\d+)"):
    """Style ▾: a new style for the original selfie behind a result (the result message is replied to)."""

    def __init__(self, node_id: int, message_id: int) -> None:
        super().__init__(discord.ui.Select(custom_id=f"pixme:restyle:{node_id}:{message_id}",
                                           options=_style_options(), placeholder=texts.PICK_A_STYLE))
        self.node_id = node_id
        self.message_id = message_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> Restyle:
        return cls(int(match["node"]), int(match["message"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_restyle(interaction, self.node_id, self.message_id,
                                                              self.item.values[0]))


class StepPick(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"pixme:step"):
    """The menu under a /history gallery: the chosen step comes out as a result of its own."""

    def __init__(self, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id="pixme:step", placeholder=texts.DISCORD_HISTORY_PICK,
                                           options=options or [discord.SelectOption(label="step")]))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> StepPick:
        return cls()

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        value = self.item.values[0] if self.item.values else ""
        await adapter.guarded(interaction, adapter.on_step(interaction, int(value) if value.isdigit() else 0))


class PressButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"pixme:press:(?P<action>.+)"):
    """A button from `Messenger.send_buttons`; its action goes back to `Studio.press`."""

    def __init__(self, label: str, action: str) -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=f"pixme:press:{action}"[:100]))
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PressButton:
        return cls(getattr(item, "label", None) or "", match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_press(interaction, self.action))


EDIT_MODAL_PREFIX = "pixme:editmodal:"
EDIT_FIELD = "instruction"


def _components() -> discord.ui.View:
    """A view used only to lay out components. It is stopped at once, so discord.py keeps no copy per
    message: every press is routed by its custom_id through the dynamic items, the same before and
    after a restart."""
    view = discord.ui.View(timeout=None)
    view.stop()
    return view


def _press_view(buttons: list[Button]) -> discord.ui.View:
    view = _components()
    for button in buttons:
        view.add_item(PressButton(button.label, button.action))
    return view


def result_view(node_id: int) -> discord.ui.View:
    view = _components()
    for verb in ("edit", "undo", "again", "styles"):
        view.add_item(NodeButton(verb, node_id))
    for label, kind in texts.export_buttons():
        view.add_item(ExportButton(kind, node_id, label))
    return view


def edit_modal(node_id: int) -> discord.ui.Modal:
    modal = discord.ui.Modal(title=texts.EDIT_PROMPT_TITLE, custom_id=f"{EDIT_MODAL_PREFIX}{node_id}",
                             timeout=PREVIEW_TIMEOUT_S)
    modal.add_item(discord.ui.TextInput(label=texts.EDIT_PROMPT_LABEL, custom_id=EDIT_FIELD,
                                        placeholder=texts.EDIT_PROMPT_PLACEHOLDER, max_length=1000))
    return modal


# -- sending ------------------------------------------------------------------------------------------

@dataclass
class _Token:
    """A live interaction whose follow-ups carry a request's answers."""

    application_id: int
    token: str
    expires: float  # time.monotonic()
    upload_limit: int
    ephemeral: bool = False  # answers only the person who asked can see
    answered: bool = False
    delivered: bool = False  # the result is out; later work on that picture replies in the channel


class DiscordMessenger:
    """Implements `core.requests.Messenger` with Discord REST calls.

    A request made by slash command is remembered with its interaction token (in memory only: tokens
    are secrets and die in 15 minutes anyway), keyed by the message that shows the request.
    """

    def __init__(self, client: discord.Client, token_lifetime_s: float = TOKEN_LIFETIME_S) -> None:
        self.client = client
        self.token_lifetime_s = token_lifetime_s
        self._tokens: dict[str, _Token] = {}

    def remember(self, message_id: str, interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
        now = time.monotonic()
        self._tokens = {k: v for k, v in self._tokens.items() if v.expires > now}
        self._tokens[message_id] = _Token(interaction.application_id, interaction.token,
                                          now + self.token_lifetime_s, interaction.filesize_limit, ephemeral)

    def settle(self, message_id: str) -> None:
        """What the interaction had to show is out (e.g. a party lobby): later posts replying to that
        message go to the channel as replies, not as follow-ups in the requester's name."""
        token = self._tokens.get(message_id)
        if token is not None:
            token.delivered = True

    def answered(self, message_id: str) -> bool:
        """Whether anything was sent through the interaction remembered under `message_id`."""
        token = self._tokens.get(message_id)
        return token is None or token.answered

    def _live_token(self, target: ReplyTarget, *, posting: bool = True) -> _Token | None:
        """The interaction answering this target, while its token lives (for new posts: until the result)."""
        token = self._tokens.get(target.reply_to or "")
        if token is not None and token.expires <= time.monotonic():
            self._tokens.pop(target.reply_to or "", None)
            return None
        if token is not None and posting and token.delivered:
            return None
        return token

    def _webhook(self, token: _Token) -> discord.Webhook:
        return discord.Webhook.from_state(data={"id": token.application_id, "type": 3, "token": token.token},
                                          state=discord_shim.connection_state(self.client))

    def _channel(self, target: ReplyTarget) -> discord.PartialMessageable:
        return self.client.get_partial_messageable(int(target.chat_id))

    def _upload_limit(self, target: ReplyTarget, token: _Token | None) -> int:
        if token is not None:
            return token.upload_limit
        channel = self.client.get_channel(int(target.chat_id))
        guild = getattr(channel, "guild", None)
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    @staticmethod
    def _reference(target: ReplyTarget) -> discord.MessageReference | None:
        if target.reply_to is None:
            return None
        return discord.MessageReference(message_id=int(target.reply_to), channel_id=int(target.chat_id),
                                        fail_if_not_exists=False)

    async def _post(self, target: ReplyTarget, content: str | None, *,
                    file: Callable[[], discord.File | list[discord.File]] | None = None,
                    view: discord.ui.View | None = None) -> str:
        """Follow up on the live interaction if there is one, otherwise post in the channel as a reply.
        `file` makes the attachment(s) afresh for each attempt (a sent discord.File is spent)."""
        token = self._live_token(target)
        extra: dict[str, Any] = {}
        if view is not None:
            extra["view"] = view

        def attach() -> dict[str, Any]:
            made = file() if file else None
            return {} if made is None else {"files": made} if isinstance(made, list) else {"file": made}

        if token is not None:
            try:
                sent = await self._webhook(token).send(content or discord.utils.MISSING, wait=True,
                                                       ephemeral=token.ephemeral, **attach(), **extra)
                token.answered = True
                return str(sent.id)
            except discord.HTTPException as exc:
                if exc.code not in _EXPIRED_TOKEN_CODES and exc.status not in (401, 404):
                    raise
                log.info("discord: interaction token expired; replying in the channel instead")
                self._tokens.pop(target.reply_to or "", None)
        reference = self._reference(target)
        if reference is not None:
            extra["reference"] = reference
        try:
            message = await self._channel(target).send(content, **attach(), **extra)
        except discord.HTTPException as exc:
            if exc.code in _REFUSED_CODES:
                raise DeliveryRefused(str(exc.code)) from exc
            raise
        return str(message.id)

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str:
        limit = self._upload_limit(target, self._live_token(target))
        data, extension = await asyncio.to_thread(fit_upload, reply.image, reply.mime, limit)
        sent = await self._post(target, _caption(reply.caption) or None,
                                file=lambda: discord.File(io.BytesIO(data), filename=_file_name(reply, extension)),
                                view=result_view(reply.node_id))
        token = self._tokens.get(target.reply_to or "")
        if token is not None:
            token.delivered = True
        return sent

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        """Discord never recompresses uploads, so a file is the picture itself, metadata and all, under its
        own name (only a file over the upload limit is re-encoded to fit)."""
        return await self.send_image(target, reply)

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        """Bots cannot send custom stickers outside their servers' own: the 512 px WebP comes as a file."""
        return await self._post(target, texts.STICKER_CAPTION_DISCORD,
                                file=lambda: discord.File(io.BytesIO(image), filename="pixme-sticker.webp"))

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        return await self._post(target, _caption(text))

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """One message per 10 pictures, which Discord lays out as a gallery, with a menu of the steps under
        it: picking one brings that picture out as a result of its own, to reply to or export. A message
        has one id, returned once per picture in it; a reply to the gallery itself continues from the
        newest step in it (the last one linked)."""
        sent: list[str] = []
        for start in range(0, len(replies), GALLERY_LIMIT):
            chunk = replies[start:start + GALLERY_LIMIT]
            per_file = min(self._upload_limit(target, self._live_token(target)),
                           GALLERY_REQUEST_LIMIT // len(chunk))
            fitted = await asyncio.gather(*(asyncio.to_thread(fit_upload, r.image, r.mime, per_file)
                                            for r in chunk))
            steps = [r.caption.split("\n", 1)[0] for r in chunk]  # a caption's first line names its step
            content = "\n".join([*(f"{start + i + 1}. {step}" for i, step in enumerate(steps)),
                                  "", texts.DISCORD_HISTORY_HINT])
            view = _components()
            view.add_item(StepPick([discord.SelectOption(label=f"{start + i + 1}. {step}"[:100],
                                                         value=str(r.node_id))
                                    for i, (r, step) in enumerate(zip(chunk, steps, strict=True))]))

            def files(chunk: list[ImageReply] = chunk,
                      fitted: list[tuple[bytes, str]] = fitted) -> list[discord.File]:
                return [discord.File(io.BytesIO(data), filename=f"pixme-{r.node_id}.{extension}")
                        for r, (data, extension) in zip(chunk, fitted, strict=True)]

            message_id = await self._post(target, _caption(content), file=files, view=view)
            sent += [message_id] * len(chunk)
        return sent

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        view = _components()
        view.add_item(PickStyle(int(target.reply_to or 0)))
        return await self._post(target, text, view=view)

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str:
        return await self._post(target, _caption(text), view=_press_view(buttons))

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        view = _press_view(buttons) if buttons else None
        token = self._live_token(target, posting=False)
        if token is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._webhook(token).edit_message(int(message_id), content=_caption(text), view=view)
                return
        await self._channel(target).get_partial_message(int(message_id)).edit(content=_caption(text), view=view)

    async def delete(self, target: ReplyTarget, message_id: str) -> None:
        token = self._live_token(target, posting=False)
        if token is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._webhook(token).delete_message(int(message_id))
                return
        await self._channel(target).get_partial_message(int(message_id)).delete()

    async def show_working(self, target: ReplyTarget) -> None:
        if self._live_token(target) is None:  # a deferred interaction already shows "thinking…"
            await self._channel(target).typing()


# -- the bot -------------------------------------------------------------------------------------------

class _Client(discord.Client):
    def __init__(self, adapter: DiscordBot, *, intents: discord.Intents, guild_ready_timeout: float) -> None:
        super().__init__(intents=intents, guild_ready_timeout=guild_ready_timeout,
                         allowed_mentions=discord.AllowedMentions.none())
        self.adapter = adapter
        self.tree: app_commands.CommandTree[_Client] = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        await self.tree.set_translator(_Translator())
        await self.adapter._setup(self)


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
    discord_shim.point_at(api or DEFAULT_API, settings.gateway_url or DEFAULT_GATEWAY)


class DiscordBot:
    """Builds and runs the discord.py client around a studio."""

    def __init__(self, settings: DiscordSettings, studio: Studio, *, engine_name: str,
                 message_content: bool = True, guild_ready_timeout: float = 2.0,
                 token_lifetime_s: float = TOKEN_LIFETIME_S) -> None:
        self.settings = settings
        self.studio = studio
        self.engine_name = engine_name
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
        client.add_dynamic_items(NodeButton, PickStyle, Restyle, PressButton, ExportButton, SettingSelect,
                                 StepPick)
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

    async def _setup(self, client: _Client) -> None:
        """After login: find the gateway of a Discord-compatible server, and sync the commands."""
        if self.settings.api_url and not self.settings.gateway_url:
            _shards, url, _limits = await client.http.get_bot_gateway()
            discord_shim.point_at(discord_shim.api_base(), url)
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
        # Descriptions and choice names are English here and translated per Discord locale by _Translator.
        choices = [app_commands.Choice(name=f"{s.emoji} {s.title} — {s.description}"[:100], value=s.id)
                   for s in STYLES]
        photo_about = N_("A selfie (JPEG, PNG, WebP, GIF, HEIC)")

        @app_commands.command(name="avatar", description=N_("Turn a selfie into an avatar in a style"))
        @app_commands.describe(style=N_("The look you want"), photo=photo_about)
        @app_commands.choices(style=choices)
        async def avatar(interaction: discord.Interaction, style: app_commands.Choice[str],
                         photo: discord.Attachment) -> None:
            await self.guarded(interaction, self.on_avatar(interaction, style.value, photo))

        @app_commands.command(name="styles", description=N_("List every style"))
        async def styles(interaction: discord.Interaction) -> None:
            await self.guarded(interaction, self._tell(interaction, lambda: texts.styles_list(prefix="")))

        @app_commands.command(name="cancel", description=N_("Stop your waiting and running requests here"))
        async def cancel(interaction: discord.Interaction) -> None:
            await self.guarded(interaction, self._privately(interaction, self.studio.cancel))

        @app_commands.command(name="forget", description=N_("Delete everything Pix Me! keeps about you"))
        async def forget(interaction: discord.Interaction) -> None:
            await self.guarded(interaction, self._privately(interaction, self.studio.forget))

        @app_commands.command(name="help", description=N_("How Pix Me! works"))
        async def help_(interaction: discord.Interaction) -> None:
            await self.guarded(interaction, self._tell(interaction, lambda: texts.discord_help(self.engine_name)))

        @app_commands.command(name="settings", description=N_("Your model, aspect ratio, size and delivery "
                                                                 "(in a server: its defaults, for admins)"))
        async def settings(interaction: discord.Interaction) -> None:
            await self.guarded(interaction, self.on_settings(interaction))

        @app_commands.command(name="persona", description=N_("A few words about you that every picture should suit"))
        @app_commands.describe(about=N_("e.g. “a DJ from Lagos who loves neon and gold” — or “clear”"))
        async def persona(interaction: discord.Interaction,
                          about: app_commands.Range[str, None, MAX_PERSONA_CHARS] | None = None) -> None:
            await self.guarded(interaction, self._privately(
                interaction, lambda ctx: self.studio.people.persona(ctx, about or "")))

        @app_commands.command(name="history", description=N_("Your last 10 pictures here, to continue from"))
        async def history(interaction: discord.Interaction) -> None:
            await self.guarded(interaction, self.on_history(interaction))

        @app_commands.command(name="language", description=N_("The language Pix Me! speaks with you"))
        @app_commands.describe(language=N_("Leave empty to follow your Discord language"))
        @app_commands.choices(language=[app_commands.Choice(name=name, value=code)
                                        for code, name in i18n.LANGUAGES.items()])
        async def language(interaction: discord.Interaction,
                           language: app_commands.Choice[str] | None = None) -> None:
            await self.guarded(interaction, self._privately(
                interaction, lambda ctx: self.studio.people.language(ctx, language.value if language else "auto")))

        async def pix_me(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.guarded(interaction, self.on_pix_me(interaction, message))

        party = app_commands.Group(name="party", description=N_("Avatar parties: everyone's selfies in one picture"),
                                   guild_only=True)

        @party.command(name="open", description=N_("Open a party lobby in this channel"))
        @app_commands.describe(style=N_("The look of the group picture"), theme=N_("What the picture is about"))
        @app_commands.choices(style=choices)
        async def party_open(interaction: discord.Interaction, style: app_commands.Choice[str] | None = None,
                             theme: app_commands.Range[str, None, MAX_THEME_CHARS] | None = None) -> None:
            await self.guarded(interaction, self.on_party_open(interaction, style.value if style else DEFAULT_STYLE,
                                                               theme or ""))

        @party.command(name="join", description=N_("Join this channel's party with your selfie"))
        @app_commands.describe(photo=photo_about)
        async def party_join(interaction: discord.Interaction, photo: discord.Attachment) -> None:
            await self.guarded(interaction, self.on_party_join(interaction, photo))

        @app_commands.command(name="fuse", description=N_("Blend 2–8 photos into one picture"))
        @app_commands.describe(instruction=N_("What to make of them, e.g. “best friends at the fair”"),
                               style=N_("The look of the picture"))
        @app_commands.choices(style=choices)
        async def fuse(interaction: discord.Interaction, photo1: discord.Attachment, photo2: discord.Attachment,
                       photo3: discord.Attachment | None = None, photo4: discord.Attachment | None = None,
                       photo5: discord.Attachment | None = None, photo6: discord.Attachment | None = None,
                       photo7: discord.Attachment | None = None, photo8: discord.Attachment | None = None,
                       instruction: app_commands.Range[str, None, MAX_THEME_CHARS] | None = None,
                       style: app_commands.Choice[str] | None = None) -> None:
            photos = [p for p in (photo1, photo2, photo3, photo4, photo5, photo6, photo7, photo8) if p is not None]
            await self.guarded(interaction, self.on_fuse(interaction, photos, style.value if style else DEFAULT_STYLE,
                                                         instruction or ""))

        commands: list[app_commands.Command[Any, Any, Any] | app_commands.Group] = [
            avatar, party, fuse, styles, help_, cancel, forget, settings, persona, history, language]
        for command in commands:
            tree.add_command(command)
        tree.add_command(app_commands.ContextMenu(name=MENU_NAME, callback=pix_me))

    async def guarded(self, interaction: discord.Interaction, work: Coroutine[Any, Any, Any]) -> None:
        """Every interaction: speak the person's language, and let nothing escape into discord.py (the
        studio has already told the person what it could)."""
        try:
            await self.studio.speak_to(_interaction_context(interaction, interaction.id))
            await work
        except Exception:
            log.exception("discord: handling an interaction failed")
        finally:
            work.close()  # never awaited if speaking failed; closing a finished coroutine is a no-op

    @staticmethod
    async def _tell(interaction: discord.Interaction, text: Callable[[], str]) -> None:
        """A private answer made in the person's language."""
        await interaction.response.send_message(text(), ephemeral=True)

    async def _checked_download(self, interaction: discord.Interaction, attachment: discord.Attachment) -> bytes:
        """Download and run the intake checks, so a bad file is refused before anything is queued (one at a
        time per person, like every download and decode)."""
        async with self.studio.intake.turn((PLATFORM, str(interaction.user.id))):
            data = await attachment.read()
            await self.studio.intake.prepare(data, max_px=self.studio.input_max_px)
        return data

    async def _refuse_if_not_allowed(self, interaction: discord.Interaction) -> bool:
        """Access before any download: a refused person hears it privately and nothing is fetched."""
        if self.studio.access.allows(_interaction_context(interaction, interaction.id)):
            return False
        await interaction.response.send_message(texts.NOT_ALLOWED, ephemeral=True)
        return True

    async def _refuse_privately(self, interaction: discord.Interaction, text: str) -> None:
        """Replace a public "thinking…" with a note only the person sees."""
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)

    async def on_avatar(self, interaction: discord.Interaction, style_id: str, photo: discord.Attachment) -> None:
        if await self._refuse_if_not_allowed(interaction):
            return
        problem = declared_problem(photo)
        if problem is not None:
            await interaction.response.send_message(problem, ephemeral=True)
            return
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        try:
            data = await self._checked_download(interaction, photo)
        except IntakeError as refusal:
            await self._refuse_privately(interaction, refusal.message)
            return
        except (discord.HTTPException, OSError):
            await self._refuse_privately(interaction, texts.DOWNLOAD_FAILED)
            return
        self.messenger.remember(request_id, interaction)

        async def fetch() -> bytes:
            return data

        ref = PhotoRef(fetch=fetch, size=photo.size, mime=photo.content_type, file_name=photo.filename)
        await self.studio.style(_interaction_context(interaction, request_id), style_id, ref)

    # -- parties and fusion ------------------------------------------------------------------------

    def _jump_url(self, interaction: discord.Interaction, message_id: str) -> str:
        channel = self.client.get_partial_messageable(interaction.channel_id or 0, guild_id=interaction.guild_id)
        return channel.get_partial_message(int(message_id)).jump_url

    async def on_party_open(self, interaction: discord.Interaction, style_id: str, theme: str) -> None:
        """The lobby is the command's own answer; everything later replies to it in the channel."""
        existing = await self.studio.parties.open_in(PLATFORM, str(interaction.channel_id))
        if existing is not None and existing.lobby_message is not None:
            await interaction.response.send_message(
                texts.discord_party_already_open(self._jump_url(interaction, existing.lobby_message)), ephemeral=True)
            return
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction)
        try:
            await self.studio.parties.open(_interaction_context(interaction, request_id), f"{style_id} {theme}")
        finally:
            self.messenger.settle(request_id)
        if not self.messenger.answered(request_id):  # someone else opened one a moment ago
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()

    async def on_party_join(self, interaction: discord.Interaction, photo: discord.Attachment) -> None:
        """`/party join photo:` — the selfie joins this channel's open party, in its sender's name only."""
        problem = declared_problem(photo)
        if problem is not None:
            await interaction.response.send_message(problem, ephemeral=True)
            return
        party = await self.studio.parties.open_in(PLATFORM, str(interaction.channel_id))
        if party is None or party.lobby_message is None:
            await interaction.response.send_message(texts.DISCORD_PARTY_NONE, ephemeral=True)
            return
        answer = await interaction.response.defer(ephemeral=True, thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction, ephemeral=True)
        ctx = _interaction_context(interaction, request_id)
        await self.studio.parties.join_with_photo(ctx, party.lobby_message, _attachment_photo(photo))
        if self.messenger.answered(request_id):  # a refusal (full, closed, a bad file) was said
            return
        now = await self.studio.parties.get(party.id)
        member = now.member(ctx.person.id) if now is not None else None
        if member is not None and member.node_id is not None:
            await interaction.followup.send(texts.DISCORD_PARTY_JOINED, ephemeral=True)
        else:
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()

    async def on_fuse(self, interaction: discord.Interaction, photos: list[discord.Attachment], style_id: str,
                      instruction: str) -> None:
        problem = next((p for p in map(declared_problem, photos) if p is not None), None)
        if problem is not None:
            await interaction.response.send_message(problem, ephemeral=True)
            return
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction)
        await self.studio.fuse(_interaction_context(interaction, request_id),
                               [_attachment_photo(p) for p in photos], f"{style_id} {instruction}")

    async def on_pix_me(self, interaction: discord.Interaction, message: discord.Message) -> None:
        attachment = first_image(message)
        if attachment is None:
            await interaction.response.send_message(texts.NO_PICTURE_IN_MESSAGE, ephemeral=True)
            return
        view = _components()
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
        await self.studio.style(_interaction_context(interaction, message.id), style.id, ref)

    async def on_node_button(self, interaction: discord.Interaction, verb: str, node_id: int) -> None:
        pressed = interaction.message.id if interaction.message is not None else interaction.id
        ctx = _interaction_context(interaction, pressed)
        if verb == "edit":
            await interaction.response.send_modal(edit_modal(node_id))
        elif verb == "styles":
            view = _components()
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
        await self.studio.restyle(_interaction_context(interaction, message_id), node_id, style_id)

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

    async def on_settings(self, interaction: discord.Interaction) -> None:
        """`/settings`: an ephemeral message with one select menu per setting."""
        ctx = _interaction_context(interaction, interaction.id)
        form = await self.studio.people.form(ctx)
        await interaction.response.send_message(_caption(form.text), view=settings_view(form), ephemeral=True)

    async def on_setting(self, interaction: discord.Interaction, key: str, value: str) -> None:
        """A choice in a /settings menu: saved (admins only for a server's defaults), then the message redrawn."""
        ctx = _interaction_context(interaction, interaction.id)
        answer = await self.studio.people.choose(ctx, key, value)
        form = await self.studio.people.form(ctx)
        text = form.text if answer.kind == "ok" else f"{answer.text}\n\n{form.text}"
        await interaction.response.edit_message(content=_caption(text), view=settings_view(form))

    async def on_history(self, interaction: discord.Interaction) -> None:
        """`/history`: the pictures as a gallery, with a menu to bring any step out and continue from it."""
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction)
        await self.studio.people.history(_interaction_context(interaction, request_id))

    async def on_step(self, interaction: discord.Interaction, node_id: int) -> None:
        """A step picked under a /history gallery: posted on its own, with its buttons, to reply to."""
        answer = await interaction.response.defer(thinking=True)
        request_id = str((answer.message_id if answer is not None else None) or interaction.id)
        self.messenger.remember(request_id, interaction)
        await self.studio.people.show_step(_interaction_context(interaction, request_id), node_id)

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
        result = await use_case(_interaction_context(interaction, request_id))
        return None if self.messenger.answered(request_id) else result

    # -- raw events ------------------------------------------------------------------------------

    async def on_ready(self) -> None:
        self._ready.set()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Edit-modal submissions (modals are not persistent views, so they are routed here)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if not custom_id.startswith(EDIT_MODAL_PREFIX):
            return
        try:
            node_id = int(custom_id.removeprefix(EDIT_MODAL_PREFIX))
            instruction = _modal_value(data, EDIT_FIELD)
            pressed = interaction.message.id if interaction.message is not None else interaction.id
            ctx = _interaction_context(interaction, pressed)
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
        ctx = Context(_chat(message.channel.id, message.guild), _person(message.author), str(message.id))
        await self.studio.speak_to(ctx)  # messages carry no locale: the person's choice or their last one seen
        replied = await self._replied_message(message)
        text = _MENTION.sub(lambda m: "" if int(m[1]) == me.id else m[0], message.content).strip()
        if replied is not None and replied.author.id == me.id:
            attachment = first_image(message)
            if attachment is not None and await self.studio.parties.join_with_photo(
                    ctx, str(replied.id), _attachment_photo(attachment, message.id)):
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
