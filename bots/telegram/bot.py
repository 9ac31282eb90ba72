"""Telegram adapter: python-telegram-bot updates -> studio calls, studio replies -> Bot API calls.

It only translates. Who is addressed, which photo a message carries and which message it replies
to are Telegram questions answered here; everything else is the studio's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import (
    BotCommand,
    Document,
    InlineQueryResultCachedPhoto,
    InlineQueryResultsButton,
    Message,
    Update,
)
from telegram import Chat as TgChat
from telegram import User as TgUser
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    InlineQueryHandler,
    MessageHandler,
    PreCheckoutQueryHandler,
    TypeHandler,
    filters,
)

from bots.telegram.http import AiohttpRequest
from bots.telegram.limits import SharedRateLimiter
from bots.telegram.messenger import TelegramMessenger, may_change_info
from bots.telegram.webhook import WebhookServer
from core import i18n, texts
from core.actions import StyleChoice, parse
from core.commands import COMMANDS, Commands, Typed
from core.config import TelegramSettings
from core.gate import give_back, redeliverable
from core.i18n import _
from core.ports import SendSlots, UpdateLog
from core.requests import Chat, Context, Person, PhotoRef, ReplyTarget
from core.sharing import NoProfilePhoto
from core.studio import Studio
from core.styles import STYLES, get_style

log = logging.getLogger(__name__)

PLATFORM = "telegram"
CALLBACK_ANSWER_LIMIT = 200
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".tif", ".tiff", ".bmp")
_ADMIN_STATUSES = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
INLINE_CACHE_S = 30  # Telegram may show an inline answer again for this long (it is personal: not to others)
INLINE_START = "share"  # what /start carries when the empty inline list's button opens the bot
ALLOWED_UPDATES = ["message", "callback_query", "inline_query", "my_chat_member", "pre_checkout_query"]
UPDATES_KEPT_S = 24 * 3600  # update ids remembered this long (Telegram gives up redelivering far sooner)
PRUNE_EVERY_S = 3600.0
PENDING_WAIT_S = 10.0  # a webhook update another gateway is handling is waited for this long, then answered 500
PENDING_POLL_S = 0.1
PENDING_STALE_S = 120.0  # a pending record this old is taken over (its gateway died while handling it)
FORGET_RETRY_S = 0.5


class UpdatePending(Exception):
    """A webhook update is still being handled by another gateway: Telegram is asked to deliver it later."""


AnyApplication = Application[Any, Any, Any, Any, Any, Any]


@dataclass(frozen=True)
class ParsedCommand:
    name: str  # lowercase, without the slash or @botname
    rest: str  # the text after the command


def parse_command(text: str | None, bot_username: str) -> ParsedCommand | None:
    """`/zombie@MyBot add a crown` -> ("zombie", "add a crown"); None if not a command for this bot."""
    if not text or not text.startswith("/"):
        return None
    # The command ends at the first whitespace of any kind: "/zombie\nmake it spooky" is common.
    head, *tail = text.split(maxsplit=1)
    rest = tail[0] if tail else ""
    name, _at, addressee = head[1:].partition("@")
    if not name or (addressee and addressee.lower() != bot_username.lower()):
        return None
    return ParsedCommand(name.lower(), rest.strip())


def is_command_for_another_bot(text: str | None, bot_username: str) -> bool:
    """`/zombie@OtherBot`: a command, but not ours."""
    if not text or not text.startswith("/"):
        return False
    head = text.split(None, 1)[0]
    _name, _at, addressee = head.partition("@")
    return bool(addressee) and addressee.lower() != bot_username.lower()


def _is_image_document(doc: Document) -> bool:
    mime = (doc.mime_type or "").lower()
    name = (doc.file_name or "").lower()
    return mime.startswith("image/") or name.endswith(IMAGE_EXTENSIONS)


def photo_of(message: Message | None, *, images_only: bool = False) -> PhotoRef | None:
    """The image a message carries (the largest photo size, or a file), fetched lazily.

    Any file counts unless `images_only`: intake gives a clear reason for files it cannot read,
    which beats pretending a PDF sent with /zombie was not there.
    """
    if message is None:
        return None
    name: str | None = None
    mime: str | None
    if message.photo:
        largest = max(message.photo, key=lambda p: p.width * p.height)
        file_id, size, mime = largest.file_id, largest.file_size, "image/jpeg"
    elif message.document is not None and (not images_only or _is_image_document(message.document)):
        doc = message.document
        file_id, size, mime, name = doc.file_id, doc.file_size, doc.mime_type, doc.file_name
    elif message.sticker is not None and not (images_only or message.sticker.is_animated
                                              or message.sticker.is_video):
        file_id, size, mime = message.sticker.file_id, message.sticker.file_size, "image/webp"
    else:
        return None
    bot = message.get_bot()

    async def fetch() -> bytes:
        file = await bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())

    sender = str(message.from_user.id) if message.from_user is not None else None  # whose photo it is
    return PhotoRef(fetch=fetch, message_id=str(message.message_id), size=size, mime=mime, file_name=name,
                    owner_id=sender)


def _person(user: TgUser | None) -> Person:
    if user is None:
        return Person("0", "someone")
    return Person(str(user.id), user.full_name, user.language_code)


def _chat(chat: TgChat) -> Chat:
    return Chat(PLATFORM, str(chat.id), chat.type == TgChat.PRIVATE)


def _context(message: Message, user: TgUser | None = None) -> Context:
    return Context(_chat(message.chat), _person(user or message.from_user), str(message.message_id))


@dataclass
class _Album:
    """The messages of one media group seen so far; `arrived` is set by each new one."""

    messages: list[Message] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)



def build_application(settings: TelegramSettings, *, concurrency: int,
                      slots: SendSlots | None = None) -> AnyApplication:
    """The PTB application: pooled HTTP sized for bursts, Telegram's send limits kept with every other process
    through `slots` (the store; None: this process alone), concurrent updates."""
    request = AiohttpRequest(connection_pool_size=settings.connections, pool_timeout=30.0, read_timeout=30.0,
                             write_timeout=30.0, media_write_timeout=60.0)
    builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
        Application.builder()
        .token(settings.token.get_secret_value())
        .base_url(settings.api_url)
        .base_file_url(settings.file_url)
        .request(request)
        .get_updates_request(AiohttpRequest(connection_pool_size=2, read_timeout=40.0))
        # Every message waits for its slot under Telegram's limits; a 429 is waited out by every process, retried.
        .rate_limiter(SharedRateLimiter(settings, slots))
        # Handlers only accept and queue work, but downloads and refusals still take a moment:
        # many people are answered at once rather than one after another.
        .concurrent_updates(concurrency)
    )
    return builder.build()


class TelegramBot:
    """Builds and runs the python-telegram-bot Application around a studio."""

    def __init__(self, settings: TelegramSettings, studio: Studio, *, engine_name: str,
                 concurrency: int = 64) -> None:
        self.studio = studio
        self.engine_name = engine_name
        self.commands = Commands(studio, engine_name=engine_name)
        self.album_wait_s = settings.album_wait_s
        self._albums: dict[tuple[int, str], _Album] = {}
        self.application = build_application(settings, concurrency=concurrency, slots=studio.store)
        self.application.add_handler(CallbackQueryHandler(self._on_button))
        self.application.add_handler(PreCheckoutQueryHandler(self._on_pre_checkout))
        self.application.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        self.application.add_handler(InlineQueryHandler(self._on_inline_query))
        self.application.add_handler(ChatMemberHandler(self._on_my_member, ChatMemberHandler.MY_CHAT_MEMBER))
        self.application.add_error_handler(self._on_error)
        # Before every other handler: an update already taken (by another gateway, or before a restart) stops here.
        self.application.add_handler(TypeHandler(Update, self._first_time), group=-1)
        self.settings = settings
        self.updates: UpdateLog = studio.store
        self._pruned_at = float("-inf")
        self._background: set[asyncio.Task[None]] = set()  # housekeeping kept off the update's path
        self.webhook: WebhookServer | None = None
        if settings.webhook_url:
            self.webhook = WebhookServer(listen=settings.webhook_listen, port=settings.webhook_port,
                                         path=settings.webhook_path,
                                         secret=settings.webhook_secret.get_secret_value(), take=self.take_update)
        self.messenger = TelegramMessenger(lambda: self.application.bot, on_photo=self._photo_delivered)
        studio.attach(PLATFORM, self.messenger)

    async def start(self) -> None:
        """Connect, announce commands, then take updates: from the webhook server when `webhook_url` is set,
        otherwise by long polling (the caller resumes unfinished jobs)."""
        await self.application.initialize()
        await self.set_commands()
        if self.studio.credits.enabled:
            await self.recover_payments()
        await self._prune_updates()
        await self.application.start()
        if self.webhook is not None:
            await self.webhook.start()
            # Every gateway sets the same webhook at start: Telegram keeps one, and pending updates stay.
            await self.application.bot.set_webhook(
                self.settings.webhook_url, secret_token=self.settings.webhook_secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False)
            log.info("telegram: webhook for @%s at %s, served on %s:%d", self.application.bot.username,
                     self.settings.webhook_url, self.webhook.listen, self.webhook.port)
            return
        assert self.application.updater is not None
        # PTB deletes any webhook first (Telegram refuses getUpdates while one is set): going back to polling
        # is just leaving webhook_url empty.
        await self.application.updater.start_polling(
            allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False,
            error_callback=self._on_polling_error,
        )
        log.info("telegram: polling as @%s", self.application.bot.username)

    @property
    def connected(self) -> bool:
        """Taking updates: polling, or serving the webhook (readiness, bots/ops.py)."""
        if not self.application.running:
            return False
        if self.webhook is not None:
            return self.webhook.running
        return self.application.updater is not None and self.application.updater.running

    async def stop_taking_updates(self) -> None:
        """Stop polling (what was not fetched stays with Telegram for the next start) or serving the webhook (the
        proxy turns to the other gateways; the webhook stays set for them); sending still works."""
        if self.webhook is not None:
            await self.webhook.stop()
        if self.application.updater is not None and self.application.updater.running:
            await self.application.updater.stop()

    async def stop(self) -> None:
        """Stop taking updates, let running handlers finish, close the HTTP pools."""
        await self.stop_taking_updates()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()
        await self.messenger.recorded()
        # After a failed start the Application never counted as initialized, so its shutdown skips the
        # bot, whose HTTP sessions were opened before getMe failed; closing them again is a no-op.
        await self.application.bot.shutdown()

    async def set_commands(self) -> None:
        """The command menu: the basics, then every style; one menu per language (English is the default)."""
        for code in i18n.LANGUAGES:
            with i18n.speaking(code):
                commands = [BotCommand(c.name, _(c.description)) for c in COMMANDS.values()
                            if c.menu and self.commands.offered(c)]
                commands += [BotCommand(s.id, f"{s.emoji} {s.blurb}"[:256]) for s in STYLES]
            try:
                await self.application.bot.set_my_commands(commands,
                                                           language_code=None if code == i18n.DEFAULT else code)
            except TelegramError as exc:
                log.warning("telegram: could not set the %s command menu: %s", code, exc.message)

    async def recover_payments(self) -> None:
        """Payments whose update was lost (the offset confirmed, then a crash before they were recorded): found in
        the bot's Star transactions and credited now; the rest were recorded before and count once."""
        try:
            recovered = await self.studio.credits.recover(PLATFORM, await self.messenger.star_payments())
        except TelegramError as exc:
            log.warning("telegram: could not read the Star transactions: %s", exc.message)
            return
        if recovered:
            log.info("telegram: %d payment(s) recorded from the Star transactions", recovered)

    # -- updates ---------------------------------------------------------------------------------

    async def take_update(self, data: dict[str, Any]) -> None:
        """A webhook update: recorded as pending, handled, then recorded as handled, unless it was taken before
        (by this gateway or another; one being handled elsewhere is waited for). Raises ValueError when `data` is
        not an update, and whatever the database raises: then Telegram is answered 500 and delivers it again,
        which is also what happens when the database went away before the update had any effect."""
        try:
            update = Update.de_json(data, self.application.bot)
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"not an update: {type(exc).__name__}") from None
        update_id = update.update_id
        seen_at = await self._take_pending(update_id)
        if seen_at is None:
            return
        with redeliverable() as redelivery:
            try:
                await self.application.process_update(update)
            except asyncio.CancelledError:  # a shutdown cut it short: its next delivery goes to another gateway
                if redelivery.settled:
                    with contextlib.suppress(Exception):
                        await self.updates.settle_update(update_id, handled=True)
                else:  # nothing came of it yet: handled in full next time, not waited for as pending
                    await self._forget_update(update_id, seen_at)
                raise
            finally:
                redelivery.settled = True  # what it started and still runs answers for itself from here on
        if redelivery.given_back is not None:
            await self._forget_update(update_id, seen_at)
            raise redelivery.given_back
        try:
            await self.updates.settle_update(update_id, handled=True)
        except Exception as exc:  # handled all the same: Telegram gets its 200 and will not send it again
            log.warning("telegram: could not record update %s as handled: %s", update_id, type(exc).__name__)

    async def _take_pending(self, update_id: int) -> float | None:
        """Record the update as being handled here: the time it was recorded at, or None when it was handled
        before. One being handled by another gateway is waited for (Telegram sent it twice): if that gateway
        gives it back, it is taken here."""
        deadline = time.monotonic() + PENDING_WAIT_S
        while True:
            seen_at = time.time()
            try:
                first = await self._record(update_id, pending=True, seen_at=seen_at)
            except Exception:  # the record may have been written before the connection went: not left pending
                await self._forget_update(update_id, seen_at)
                raise
            if first:
                return seen_at
            pending = await self.updates.update_pending(update_id)
            if pending is False:
                log.info("telegram: update %s was taken before; skipped", update_id)
                return None
            if pending and time.monotonic() >= deadline:
                raise UpdatePending(f"update {update_id} is still being handled elsewhere")
            await asyncio.sleep(PENDING_POLL_S)

    async def _forget_update(self, update_id: int, seen_at: float) -> None:
        """Forget the pending record made at `seen_at` (an update given back), so that the redelivery is
        handled; while the database is out of reach, keep trying in the background (a redelivery waits)."""
        try:
            await self.updates.settle_update(update_id, handled=False, seen_at=seen_at)
        except Exception:
            self._in_background(self._forget_later(update_id, seen_at))

    async def _forget_later(self, update_id: int, seen_at: float) -> None:
        deadline = time.monotonic() + PENDING_STALE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(FORGET_RETRY_S)
            try:
                await self.updates.settle_update(update_id, handled=False, seen_at=seen_at)
                return
            except Exception:  # still out of reach; past the deadline the record is stale and taken over anyway
                continue

    async def _first_time(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Polling: record each update before handling it, and stop there if it was taken before (a restart
        before the offset was confirmed fetches it again). Webhook updates were recorded at the door."""
        if self.webhook is not None:
            return
        try:
            first = await self._record(update.update_id)
        except Exception as exc:  # the database is down: handle it rather than lose it
            log.warning("telegram: could not record update %s (%s); handling it anyway", update.update_id,
                        type(exc).__name__)
            return
        if not first:
            raise ApplicationHandlerStop

    async def _record(self, update_id: int, *, pending: bool = False, seen_at: float | None = None) -> bool:
        stale_before = time.time() - PENDING_STALE_S
        first = await self.updates.record_update(update_id, pending=pending, stale_before=stale_before,
                                                 seen_at=seen_at)
        if not first and not pending:
            log.info("telegram: update %s was taken before; skipped", update_id)
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            self._in_background(self._prune_updates())  # Telegram is not kept waiting for it
        return first

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prune_updates(self) -> None:
        self._pruned_at = time.monotonic()
        try:
            await self.updates.prune_updates(time.time() - UPDATES_KEPT_S)
        except Exception as exc:  # only housekeeping: the next one tries again
            log.warning("telegram: could not prune the updates taken: %s", type(exc).__name__)

    async def _on_message(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        if message.via_bot is not None and message.via_bot.id == self.application.bot.id:
            return  # a picture someone shared through inline mode: theirs to show, not a request
        if message.successful_payment is not None:
            await self._on_paid(message)
            return
        if message.refunded_payment is not None:  # Telegram tells the person itself
            return
        if message.media_group_id is not None:
            self._collect_album(message)
            return
        try:
            await self._route(message)
        except Exception as exc:  # nothing may escape into PTB; the studio already told the person if it could
            if give_back(exc):  # before anything came of it: Telegram delivers it again
                log.warning("telegram: message %s in %s: %s; left for Telegram to deliver again",
                            message.message_id, message.chat_id, exc)
            else:
                log.exception("telegram: message %s in %s failed", message.message_id, message.chat_id)

    async def _route(self, message: Message) -> None:
        bot = self.application.bot
        private = message.chat.type == TgChat.PRIVATE
        ctx = self._context(message)
        await self.studio.speak_to(ctx)
        replied = message.reply_to_message
        replied_to_bot = self._is_ours(replied)
        body = message.text or message.caption
        if is_command_for_another_bot(body, bot.username):
            return
        command = parse_command(body, bot.username)

        if command is not None:
            await self._command(message, ctx, command, private)
            return

        text = (message.text or "").strip()
        photo = photo_of(message, images_only=True)
        if replied_to_bot and photo is not None and not private:
            # A selfie replying to a party lobby joins the party (privacy mode lets replies to us through).
            assert replied is not None
            if await self.studio.parties.join_with_photo(ctx, str(replied.message_id), photo):
                return
        if replied_to_bot and text:
            assert replied is not None
            if private or replied.photo or replied.document:
                await self.studio.edit(ctx, text, str(replied.message_id))
        elif private and photo is not None:
            await self.studio.offer_styles(ctx, str(message.message_id))
        elif private:
            await self.messenger.send_text(ReplyTarget(PLATFORM, ctx.chat.id), texts.SEND_A_PHOTO)
        # In groups, anything not addressed to the bot is none of its business.

    async def _command(self, message: Message, ctx: Context, command: ParsedCommand, private: bool) -> None:
        """Platform syntax into a `Typed`; the core's command table does the rest."""
        replied = message.reply_to_message
        ours = self._is_ours(replied)
        # /fuse and /join take photos only; a style also takes an image sent as a file.
        images_only = command.name in ("fuse", "join")
        photo = photo_of(message, images_only=images_only) or (
            None if ours or command.name == "join" else photo_of(replied, images_only=images_only))
        profile = self._profile_photo(message.from_user) if command.name == "me" else None
        await self.commands.dispatch(ctx, Typed(
            command.name, command.rest, replied_to=str(replied.message_id) if replied is not None else None,
            replied_to_ours=ours, photo=photo, addressed=private, profile_photo=profile))

    def _profile_photo(self, user: TgUser | None) -> PhotoRef | None:
        """`/me`: the person's current profile picture (its largest size), fetched only when core takes it in."""
        if user is None:
            return None
        bot, user_id = self.application.bot, user.id

        async def fetch() -> bytes:
            found = await bot.get_user_profile_photos(user_id, limit=1)
            if not found.photos or not found.photos[0]:  # none set, or hidden by their privacy settings
                raise NoProfilePhoto()
            largest = max(found.photos[0], key=lambda p: p.width * p.height)
            file = await bot.get_file(largest.file_id)
            return bytes(await file.download_as_bytearray())

        return PhotoRef(fetch=fetch, owner_id=str(user_id))

    # -- inline sharing and the bot's rights ----------------------------------------------------

    async def _on_inline_query(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """`@bot [style]` in any chat: the person's recent pictures as cached photos, personal to them; nothing
        yet shows a button that opens the bot."""
        query = update.inline_query
        if query is None:
            return
        try:
            ctx = Context(Chat(PLATFORM, str(query.from_user.id), True), _person(query.from_user), query.id)
            page = await self.studio.sharing.shareable(ctx, query.query, query.offset)
            results = [InlineQueryResultCachedPhoto(id=str(p.node_id), photo_file_id=p.file_ref, title=p.title,
                                                    description=p.description or None) for p in page.pictures]
            button = None
            if page.empty_hint and not query.offset:
                button = InlineQueryResultsButton(text=page.empty_hint[:64], start_parameter=INLINE_START)
            await query.answer(results, cache_time=INLINE_CACHE_S, is_personal=True,
                               next_offset=page.next_offset or None, button=button)
        except TelegramError as exc:  # an expired query (people type fast) loses nothing
            log.info("telegram: could not answer an inline query: %s", exc.message)
        except Exception:
            log.exception("telegram: inline query failed")

    async def _on_my_member(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot's own rights in a chat changed: whether it may change the chat's photo is known at once."""
        changed = update.my_chat_member
        if changed is not None:
            self.messenger.note_rights(changed.chat.id, may_change_info(changed.new_chat_member))

    async def _photo_delivered(self, node_id: int, file_id: str) -> None:
        await self.studio.sharing.remember_file(PLATFORM, node_id, file_id)

    # -- albums ----------------------------------------------------------------------------------
    # Telegram delivers an album as one message per photo sharing a media_group_id, with the caption
    # on one of them. They are gathered until none has arrived for `album_wait_s`, then handled once.

    def _collect_album(self, message: Message) -> None:
        assert message.media_group_id is not None
        key = (message.chat_id, message.media_group_id)
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = _Album()
            # PTB awaits its tasks when it stops, so an album still gathering is handled, not lost.
            self.application.create_task(self._finish_album(key), name=f"album-{message.media_group_id}")
        album.messages.append(message)
        album.arrived.set()

    async def _finish_album(self, key: tuple[int, str]) -> None:
        album = self._albums[key]
        while True:
            album.arrived.clear()
            try:
                await asyncio.wait_for(album.arrived.wait(), self.album_wait_s)
            except TimeoutError:
                break
        del self._albums[key]  # no await since the last check: nothing can join it any more
        messages = sorted(album.messages, key=lambda m: m.message_id)
        try:
            await self._route_album(messages)
        except Exception:
            log.exception("telegram: album in %s failed", messages[0].chat_id)

    async def _route_album(self, messages: list[Message]) -> None:
        """`/fuse` on an album blends its photos; otherwise it is one message, not one per photo."""
        bot = self.application.bot
        captioned = next((m for m in messages if m.caption), None)
        command = parse_command(captioned.caption, bot.username) if captioned is not None else None
        if captioned is not None and command is not None and command.name == "fuse":
            photos = [p for p in (photo_of(m, images_only=True) for m in messages) if p is not None]
            ctx = self._context(captioned)
            await self.studio.speak_to(ctx)
            await self.studio.fuse(ctx, photos, command.rest)
        elif captioned is not None and (command is not None
                                        or is_command_for_another_bot(captioned.caption, bot.username)):
            await self._route(captioned)  # e.g. /zombie on an album styles the photo it captions
        else:
            await self._route(messages[0])  # a bare album: one style menu, for its first photo

    # -- helpers ---------------------------------------------------------------------------------

    def _context(self, message: Message, user: TgUser | None = None) -> Context:
        """The studio's context; in groups it can ask Telegram whether the person is a chat admin."""
        ctx = _context(message, user)
        presser = user or message.from_user
        if ctx.chat.is_private or presser is None:
            return ctx
        chat_id, user_id = message.chat_id, presser.id

        async def is_chat_admin() -> bool:
            try:
                member = await self.application.bot.get_chat_member(chat_id, user_id)
            except TelegramError as exc:
                log.info("telegram: could not check chat admin status: %s", exc.message)
                return False
            return member.status in _ADMIN_STATUSES

        return dataclasses.replace(ctx, chat_admin=is_chat_admin)

    def _is_ours(self, message: Message | None) -> bool:
        return message is not None and message.from_user is not None \
            and message.from_user.id == self.application.bot.id

    async def _on_button(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        try:
            data = query.data or ""
            menu = query.message if isinstance(query.message, Message) else None
            if menu is not None:
                await self.studio.speak_to(self._context(menu, query.from_user))
            choice = parse(data)
            if isinstance(choice, StyleChoice):  # a style under a photo (its menu replies to the photo)
                await self._style_button(query.answer, choice.style_id, menu, query.from_user)
                return
            action = self.messenger.action_of(data)
            if action is None or menu is None:
                await query.answer(texts.UNKNOWN_BUTTON)
                return
            outcome = await self.studio.press(self._context(menu, query.from_user), action)
            # Refusals and bad news pop up so the presser notices; a settled question loses its buttons
            # (menus the studio redraws in place, lobbies and results keep theirs: their outcome isn't settled).
            await query.answer(outcome.text[:CALLBACK_ANSWER_LIMIT] or None, show_alert=outcome.alert)
            if outcome.kind == "settled":
                try:
                    await menu.edit_reply_markup(reply_markup=None)
                except TelegramError as exc:
                    log.debug("telegram: could not remove buttons: %s", exc.message)
        except Exception:
            log.exception("telegram: button press failed")

    async def _style_button(self, answer: Callable[..., Awaitable[bool]], style_id: str,
                            menu: Message | None, presser: TgUser) -> None:
        style = get_style(style_id)
        photo_message = menu.reply_to_message if menu is not None else None
        photo = photo_of(photo_message)
        if style is None or photo is None or photo_message is None:
            await answer(texts.DOWNLOAD_FAILED, show_alert=True)
            return
        try:
            await answer(texts.style_coming(style.label))
        except TelegramError as exc:  # an expired query only loses its toast, not the picture
            log.info("telegram: could not answer a button press: %s", exc.message)
        await self.studio.style(self._context(photo_message, presser), style.id, photo)

    # -- payments --------------------------------------------------------------------------------

    async def _on_pre_checkout(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answered at once (Telegram waits 10 s): go ahead, or one line when the pack is no longer sold."""
        query = update.pre_checkout_query
        if query is None:
            return
        try:
            ctx = Context(Chat(PLATFORM, str(query.from_user.id), True), _person(query.from_user), "")
            await self.studio.speak_to(ctx)
            refusal = self.studio.credits.checkout_refusal(query.invoice_payload, query.currency,
                                                           query.total_amount)
            await query.answer(ok=refusal is None, error_message=refusal)
        except Exception:
            log.exception("telegram: a pre-checkout query failed")

    async def _on_paid(self, message: Message) -> None:
        payment = message.successful_payment
        assert payment is not None
        ctx = self._context(message)
        try:
            await self.studio.speak_to(ctx)
            await self.studio.credits.paid(ctx, payment.telegram_payment_charge_id, payment.invoice_payload,
                                           payment.total_amount)
        except Exception:  # the Star transactions still list it: the next start records it
            log.exception("telegram: a payment could not be recorded now")

    @staticmethod
    def _on_polling_error(exc: TelegramError) -> None:
        log.warning("telegram: polling error: %s", type(exc).__name__)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: unhandled %s", type(context.error).__name__, exc_info=context.error)

