"""Telegram adapter: python-telegram-bot updates -> studio calls, studio replies -> Bot API calls.

It only translates. Who is addressed, which photo a message carries and which message it replies
to are Telegram questions answered here; everything else is the studio's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyParameters,
    Update,
)
from telegram import Chat as TgChat
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest

from core import texts
from core.config import TelegramSettings
from core.requests import Chat, Context, ImageReply, Person, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import STYLES, Style, get_style

log = logging.getLogger(__name__)

PLATFORM = "telegram"
CAPTION_LIMIT = 1024
STYLE_BUTTON_PREFIX = "style:"
BASIC_COMMANDS = {
    "start": "What this bot does",
    "help": "How to use it",
    "styles": "List every style",
    "undo": "Reply to a result to go back a step",
}


@dataclass(frozen=True)
class ParsedCommand:
    name: str  # lowercase, without the slash or @botname
    rest: str  # the text after the command


def parse_command(text: str | None, bot_username: str) -> ParsedCommand | None:
    """`/zombie@MyBot add a crown` -> ("zombie", "add a crown"); None if not a command for this bot."""
    if not text or not text.startswith("/"):
        return None
    head, _, rest = text.partition(" ")
    name, _, addressee = head[1:].partition("@")
    if not name or (addressee and addressee.lower() != bot_username.lower()):
        return None
    return ParsedCommand(name.lower(), rest.strip())


def photo_of(message: Message | None) -> PhotoRef | None:
    """The image a message carries (the largest photo size, or an image file), fetched lazily."""
    if message is None:
        return None
    if message.photo:
        largest = max(message.photo, key=lambda p: p.width * p.height)
        file_id, size, mime, name = largest.file_id, largest.file_size, "image/jpeg", None
    elif message.document is not None:
        doc = message.document
        file_id, size, mime, name = doc.file_id, doc.file_size, doc.mime_type, doc.file_name
    elif message.sticker is not None and not (message.sticker.is_animated or message.sticker.is_video):
        file_id, size, mime, name = message.sticker.file_id, message.sticker.file_size, "image/webp", None
    else:
        return None
    bot = message.get_bot()

    async def fetch() -> bytes:
        file = await bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())

    return PhotoRef(fetch=fetch, message_id=str(message.message_id), size=size, mime=mime, file_name=name)


def _context(message: Message, user_message_id: int | None = None) -> Context:
    chat, user = message.chat, message.from_user
    person = Person(str(user.id), user.full_name, user.language_code) if user else Person("0", "someone")
    return Context(
        Chat(PLATFORM, str(chat.id), chat.type == TgChat.PRIVATE),
        person,
        str(user_message_id if user_message_id is not None else message.message_id),
    )


class TelegramMessenger:
    """Implements `core.requests.Messenger` with Bot API calls."""

    def __init__(self, application: Application) -> None:  # type: ignore[type-arg]
        self._app = application

    @property
    def _bot(self):  # type: ignore[no-untyped-def]
        return self._app.bot

    @staticmethod
    def _reply(target: ReplyTarget) -> ReplyParameters | None:
        if target.reply_to is None:
            return None
        return ReplyParameters(message_id=int(target.reply_to), allow_sending_without_reply=True)

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str:
        caption = reply.caption if len(reply.caption) <= CAPTION_LIMIT else None
        extension = "png" if reply.mime == "image/png" else "jpg"
        sent = await self._bot.send_photo(
            chat_id=int(target.chat_id), photo=InputFile(reply.image, filename=f"pixme.{extension}"),
            caption=caption, reply_parameters=self._reply(target),
        )
        if caption is None and reply.caption:
            # Commentary longer than a caption may be goes underneath, replying to the picture.
            await self._bot.send_message(
                chat_id=int(target.chat_id), text=reply.caption[:4096],
                reply_parameters=ReplyParameters(message_id=sent.message_id, allow_sending_without_reply=True),
            )
        return str(sent.message_id)

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        sent = await self._bot.send_message(chat_id=int(target.chat_id), text=text[:4096],
                                            reply_parameters=self._reply(target))
        return str(sent.message_id)

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        buttons = [InlineKeyboardButton(s.label, callback_data=f"{STYLE_BUTTON_PREFIX}{s.id}") for s in styles]
        rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
        sent = await self._bot.send_message(chat_id=int(target.chat_id), text=text,
                                            reply_markup=InlineKeyboardMarkup(rows),
                                            reply_parameters=self._reply(target))
        return str(sent.message_id)

    async def show_working(self, target: ReplyTarget) -> None:
        await self._bot.send_chat_action(chat_id=int(target.chat_id), action=ChatAction.UPLOAD_PHOTO)


class TelegramBot:
    """Builds and runs the python-telegram-bot Application around a studio."""

    def __init__(self, settings: TelegramSettings, studio: Studio, *, engine_name: str,
                 concurrency: int = 64) -> None:
        self.studio = studio
        self.engine_name = engine_name
        connections = settings.connections
        request = HTTPXRequest(connection_pool_size=connections, pool_timeout=30.0, read_timeout=30.0,
                               media_write_timeout=60.0)
        self.application = (
            Application.builder()
            .token(settings.token.get_secret_value())
            .base_url(settings.api_url)
            .base_file_url(settings.file_url)
            .request(request)
            .get_updates_request(HTTPXRequest(connection_pool_size=2, read_timeout=40.0))
            .rate_limiter(AIORateLimiter(max_retries=3))
            # Handlers only accept and queue work, but downloads and refusals still take a moment:
            # let many people be answered at once rather than one after another.
            .concurrent_updates(concurrency)
            .post_init(self._post_init)
            .build()
        )
        self.application.add_handler(CallbackQueryHandler(self._on_button))
        self.application.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        self.application.add_error_handler(self._on_error)
        self.messenger = TelegramMessenger(self.application)
        studio.attach(PLATFORM, self.messenger)

    async def start(self) -> None:
        """Connect, announce commands, resume unfinished jobs and start polling."""
        await self.application.initialize()
        await self.application.start()
        assert self.application.updater is not None
        await self.application.updater.start_polling(
            allowed_updates=["message", "callback_query"], drop_pending_updates=False,
            error_callback=lambda exc: log.warning("telegram polling error: %s", type(exc).__name__),
        )
        log.info("telegram: polling as @%s", self.application.bot.username)

    async def stop(self) -> None:
        if self.application.updater is not None and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def _post_init(self, application: Application) -> None:  # type: ignore[type-arg]
        commands = [BotCommand(name, description) for name, description in BASIC_COMMANDS.items()]
        commands += [BotCommand(s.id, f"{s.emoji} {s.description}"[:256]) for s in STYLES]
        try:
            await application.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("telegram: could not set the command menu: %s", exc)

    # -- updates ---------------------------------------------------------------------------------

    async def _on_message(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        try:
            await self._route(message)
        except Exception:  # nothing may escape into PTB; the studio already told the person if it could
            log.exception("telegram: message %s in %s failed", message.message_id, message.chat_id)

    async def _route(self, message: Message) -> None:
        bot = self.application.bot
        private = message.chat.type == TgChat.PRIVATE
        ctx = _context(message)
        replied = message.reply_to_message
        replied_to_bot = replied is not None and replied.from_user is not None and replied.from_user.id == bot.id
        command = parse_command(message.text or message.caption, bot.username)

        if command is not None:
            if command.name in ("start", "help"):
                await message.reply_text(texts.help_text(self.engine_name), do_quote=not private)
            elif command.name == "styles":
                await message.reply_text(texts.styles_list(), do_quote=not private)
            elif command.name == "undo":
                await self.studio.undo(ctx, str(replied.message_id) if replied else None)
            elif get_style(command.name) is not None:
                photo = photo_of(message) or (None if replied_to_bot else photo_of(replied))
                replied_id = str(replied.message_id) if replied else None
                await self.studio.style(ctx, command.name, photo, replied_id)
            elif private:
                await message.reply_text(texts.unknown_style(command.name))
            return

        text = (message.text or "").strip()
        if replied_to_bot and text:
            assert replied is not None
            await self.studio.edit(ctx, text, str(replied.message_id))
        elif private and photo_of(message) is not None:
            await self.studio.offer_styles(ctx, str(message.message_id))
        elif private:
            await message.reply_text(texts.SEND_A_PHOTO)
        # In groups, anything not addressed to the bot is none of its business.

    async def _on_button(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        try:
            data = query.data or ""
            style = get_style(data.removeprefix(STYLE_BUTTON_PREFIX)) if data.startswith(STYLE_BUTTON_PREFIX) else None
            menu = query.message if isinstance(query.message, Message) else None
            photo_message = menu.reply_to_message if menu is not None else None
            photo = photo_of(photo_message)
            if style is None or photo is None or photo_message is None:
                await query.answer(texts.DOWNLOAD_FAILED, show_alert=True)
                return
            await query.answer(f"{style.emoji} {style.title} coming up…")
            ctx = _context(photo_message)
            ctx = Context(ctx.chat, Person(str(query.from_user.id), query.from_user.full_name,
                                           query.from_user.language_code), ctx.message_id)
            await self.studio.style(ctx, style.id, photo)
        except Exception:
            log.exception("telegram: button press failed")

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: unhandled %s", type(context.error).__name__, exc_info=context.error)
