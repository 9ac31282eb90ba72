"""`DiscordMessenger`: core's Messenger protocol with Discord REST calls (interaction follow-ups while
the interaction token lives, channel messages replying to the request after that)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
from PIL import Image

from bots.discord import shim
from bots.discord.components import (
    PickStyle,
    StepSelect,
    VariantSelect,
    components_view,
    press_view,
    result_view,
    settings_view,
)
from bots.discord.convert import PLATFORM, caption
from core import texts
from core.people import SettingsForm
from core.ports import ReplyToken, ReplyTokens
from core.requests import Button, DeliveryRefused, ImageReply, ReplyTarget
from core.styles import Style

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what a server without boosts (and a DM) accepts per file
TOKEN_LIFETIME_S = 14 * 60.0  # interaction tokens last 15 minutes; keep a margin for slow uploads
GALLERY_LIMIT = 10  # attachments in one message
GALLERY_REQUEST_LIMIT = 25 * 1024 * 1024  # what one message's request may carry in all
# Discord errors meaning a chat will never take our messages: missing access, unknown channel, DMs closed.
_REFUSED_CODES = {50001, 50013, 10003, 50007}
_EXPIRED_TOKEN_CODES = {50027, 10015, 10062}
NONCE_LIMIT = 25  # characters Discord accepts in a message's nonce


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


@dataclass
class _Token:
    """A live interaction whose follow-ups carry a request's answers."""

    application_id: int
    token: str
    expires: float  # unix time: the token is kept in the database for other processes (and the next start)
    upload_limit: int
    ephemeral: bool = False  # answers only the person who asked can see
    unanswered: discord.Interaction | None = None  # not yet responded to: the first answer is the response
    answered: bool = False
    delivered: bool = False  # the result is out; later work on that picture replies in the channel


class DiscordMessenger:
    """Implements `core.requests.Messenger` with Discord REST calls.

    A request made by slash command is remembered with its interaction token, keyed by the message that shows
    the request: in memory, and in the database (`ReplyTokens`) once the interaction is acknowledged, so a job
    delivered by another process (a worker, or this bot after a restart) still answers as a follow-up while
    the token lives (15 minutes; expired ones are deleted).
    """

    def __init__(self, client: discord.Client, kept: ReplyTokens,
                 token_lifetime_s: float = TOKEN_LIFETIME_S) -> None:
        self.client = client
        self.kept = kept
        self.token_lifetime_s = token_lifetime_s
        self._tokens: dict[str, _Token] = {}

    async def remember(self, message_id: str, interaction: discord.Interaction, *, ephemeral: bool = False,
                       responded: bool = True) -> None:
        """Answers to `message_id` go through this interaction; `responded=False`: it has not been responded
        to (nor deferred), so the first answer is its response, at once (and only this process can give it)."""
        now = time.time()
        self._tokens = {k: v for k, v in self._tokens.items() if v.expires > now}
        token = _Token(interaction.application_id, interaction.token, now + self.token_lifetime_s,
                       interaction.filesize_limit, ephemeral, None if responded else interaction)
        self._tokens[message_id] = token
        if responded:
            await self._keep(message_id, token)

    async def settle(self, message_id: str) -> None:
        """What the interaction had to show is out (e.g. a party lobby): later posts replying to that
        message go to the channel as replies, not as follow-ups in the requester's name."""
        token = self._tokens.get(message_id)
        if token is not None:
            token.delivered = True
        await self._in_database("mark delivered", lambda kept: kept.mark_reply_token_delivered(PLATFORM, message_id))

    async def _keep(self, message_id: str, token: _Token) -> None:
        kept = ReplyToken(platform=PLATFORM, request_id=message_id, secret=token.token, expires_at=token.expires,
                          details={"application_id": token.application_id, "upload_limit": token.upload_limit,
                                   "ephemeral": token.ephemeral}, delivered=token.delivered)
        await self._in_database("keep", lambda store: store.keep_reply_token(kept))

    async def _in_database(self, what: str, action: Callable[[ReplyTokens], Awaitable[T]]) -> T | None:
        """The database's copy is for other processes: if it cannot be written or read, this process still
        answers with what it holds (or in the channel), so a storage error is logged, not raised."""
        try:
            return await action(self.kept)
        except Exception as exc:
            log.warning("discord: could not %s an interaction token in the database: %s", what, type(exc).__name__)
            return None

    def answered(self, message_id: str) -> bool:
        """Whether anything was sent through the interaction remembered under `message_id`."""
        token = self._tokens.get(message_id)
        return token is None or token.answered

    async def _live_token(self, target: ReplyTarget, *, posting: bool = True) -> _Token | None:
        """The interaction answering this target, while its token lives (for new posts: until the result):
        the one this process received, or else the one another process kept in the database."""
        if target.reply_to is None:
            return None
        token = self._tokens.get(target.reply_to)
        if token is None:
            token = await self._kept_token(target.reply_to)
        if token is not None and token.expires <= time.time():
            self._tokens.pop(target.reply_to, None)
            return None
        if token is not None and posting and token.delivered:
            return None
        return token

    async def _kept_token(self, message_id: str) -> _Token | None:
        kept = await self._in_database("read", lambda store: store.reply_token(PLATFORM, message_id, time.time()))
        if kept is None:
            return None
        details = kept.details
        token = _Token(int(details["application_id"]), kept.secret, kept.expires_at, int(details["upload_limit"]),
                       bool(details.get("ephemeral")), answered=True, delivered=kept.delivered)
        self._tokens[message_id] = token
        return token

    async def _delivering(self, target: ReplyTarget) -> _Token | None:
        """The result is about to go out through the live token (if any): other processes are told first, so
        nothing stands between the picture showing and the worker recording which message shows it (a reply
        to it a moment later must find it). This process keeps using the token until the result is out."""
        token = await self._live_token(target)
        if token is not None:
            await self._in_database("mark delivered",
                                    lambda kept: kept.mark_reply_token_delivered(PLATFORM, target.reply_to or ""))
        return token

    def _webhook(self, token: _Token) -> discord.Webhook:
        return discord.Webhook.from_state(data={"id": token.application_id, "type": 3, "token": token.token},
                                          state=shim.connection_state(self.client))

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
                    view: discord.ui.View | None = None, nonce: str | None = None) -> str:
        """Follow up on the live interaction if there is one, otherwise post in the channel as a reply.
        `file` makes the attachment(s) afresh for each attempt (a sent discord.File is spent). `nonce`: the same
        for every sending of one picture, so Discord answers a second one (a delivery resumed after a crash) with
        the message it made the first time instead of posting it twice; follow-ups have no nonce."""
        token = await self._live_token(target)
        extra: dict[str, Any] = {}
        if view is not None:
            extra["view"] = view

        def attach() -> dict[str, Any]:
            made = file() if file else None
            return {} if made is None else {"files": made} if isinstance(made, list) else {"file": made}

        if token is not None and token.unanswered is not None:
            interaction, token.unanswered = token.unanswered, None
            answer = await interaction.response.send_message(content, ephemeral=token.ephemeral, **attach(), **extra)
            token.answered = True
            await self._keep(target.reply_to or "", token)  # acknowledged: follow-ups may come from anywhere now
            return str(answer.message_id or interaction.id)
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
                await self._in_database("drop", lambda kept: kept.drop_reply_token(PLATFORM, target.reply_to or ""))
        reference = self._reference(target)
        if reference is not None:
            extra["reference"] = reference
        if nonce is not None:
            extra["nonce"] = nonce[:NONCE_LIMIT]  # discord.py sends it with enforce_nonce
        try:
            message = await self._channel(target).send(content, **attach(), **extra)
        except discord.HTTPException as exc:
            if exc.code in _REFUSED_CODES:
                raise DeliveryRefused(str(exc.code)) from exc
            raise
        return str(message.id)

    async def send_image(self, target: ReplyTarget, reply: ImageReply, *, part: str = "") -> str:
        token = await self._delivering(target)
        data, extension = await asyncio.to_thread(fit_upload, reply.image, reply.mime,
                                                  self._upload_limit(target, token))
        sent = await self._post(target, caption(reply.caption) or None,
                                file=lambda: discord.File(io.BytesIO(data), filename=_file_name(reply, extension)),
                                view=result_view(reply.node_id),
                                nonce=reply.delivery_key + part if reply.delivery_key else None)
        if token is not None:
            token.delivered = True
        return sent

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        """Discord never recompresses uploads, so a file is the picture itself, metadata and all, under its
        own name (only a file over the upload limit is re-encoded to fit)."""
        return await self.send_image(target, reply, part="f")  # a message of its own beside the photo

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        """Bots cannot send custom stickers outside their servers' own: the 512 px WebP comes as a file."""
        return await self._post(target, texts.STICKER_CAPTION_DISCORD,
                                file=lambda: discord.File(io.BytesIO(image), filename="pixme-sticker.webp"))

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        return await self._post(target, caption(text))

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """One message per 10 pictures, which Discord lays out as a gallery, with a menu of the steps under
        it: picking one brings that picture out as a result of its own, to reply to or export. A message
        has one id, returned once per picture in it; a reply to the gallery itself continues from the
        newest step in it (the last one linked)."""
        sent: list[str] = []
        for start in range(0, len(replies), GALLERY_LIMIT):
            chunk = replies[start:start + GALLERY_LIMIT]
            steps = [r.caption.split("\n", 1)[0] for r in chunk]  # a caption's first line names its step
            content = "\n".join([*(f"{start + i + 1}. {step}" for i, step in enumerate(steps)),
                                  "", texts.DISCORD_HISTORY_HINT])
            view = components_view()
            view.add_item(StepSelect([discord.SelectOption(label=f"{start + i + 1}. {step}"[:100],
                                                         value=str(r.node_id))
                                    for i, (r, step) in enumerate(zip(chunk, steps, strict=True))]))
            sent += await self._post_pictures(target, chunk, content, view)
        return sent

    async def send_album(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """Pictures made together: one message with every picture (Discord lays them out as a gallery), their
        numbered captions, and a menu choosing the one to continue from, which comes out as a result of its
        own with its buttons."""
        token = await self._delivering(target)
        sent: list[str] = []
        for start in range(0, len(replies), GALLERY_LIMIT):
            chunk = replies[start:start + GALLERY_LIMIT]
            content = "\n".join([*(r.caption for r in chunk), "", texts.VARIANTS_PICK])
            view = components_view()
            view.add_item(VariantSelect([discord.SelectOption(label=texts.variant_label(start + i + 1)[:100],
                                                            value=str(r.node_id))
                                         for i, r in enumerate(chunk)]))
            sent += await self._post_pictures(target, chunk, content, view)
        if token is not None:
            token.delivered = True
        return sent

    async def _post_pictures(self, target: ReplyTarget, chunk: list[ImageReply], content: str,
                             view: discord.ui.View) -> list[str]:
        """Up to 10 pictures in one message (each fitted into the request's share of the upload limit); the
        message's id once per picture."""
        per_file = min(self._upload_limit(target, await self._live_token(target)),
                       GALLERY_REQUEST_LIMIT // len(chunk))
        fitted = await asyncio.gather(*(asyncio.to_thread(fit_upload, r.image, r.mime, per_file) for r in chunk))

        def files() -> list[discord.File]:
            return [discord.File(io.BytesIO(data), filename=f"pixme-{r.node_id}.{extension}")
                    for r, (data, extension) in zip(chunk, fitted, strict=True)]

        message_id = await self._post(target, caption(content), file=files, view=view,
                                      nonce=chunk[0].delivery_key)
        return [message_id] * len(chunk)

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        view = components_view()
        view.add_item(PickStyle(int(target.reply_to or 0)))
        return await self._post(target, text, view=view)

    async def send_settings_form(self, target: ReplyTarget, form: SettingsForm) -> str:
        """The settings as select menus (`core.commands.FormMessenger`): one choice saves and redraws them."""
        return await self._post(target, caption(form.text), view=settings_view(form))

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str:
        return await self._post(target, caption(text), view=press_view(buttons))

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        view = press_view(buttons) if buttons else None
        token = await self._live_token(target, posting=False)
        if token is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._webhook(token).edit_message(int(message_id), content=caption(text), view=view)
                return
        await self._channel(target).get_partial_message(int(message_id)).edit(content=caption(text), view=view)

    async def delete(self, target: ReplyTarget, message_id: str) -> None:
        token = await self._live_token(target, posting=False)
        if token is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._webhook(token).delete_message(int(message_id))
                return
        await self._channel(target).get_partial_message(int(message_id)).delete()

    async def show_working(self, target: ReplyTarget) -> None:
        if await self._live_token(target) is None:  # a deferred interaction already shows "thinking…"
            await self._channel(target).typing()

