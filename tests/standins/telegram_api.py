"""A loopback stand-in of the Telegram Bot API that the real python-telegram-bot client talks to.

It speaks the Bot API wire protocol on 127.0.0.1 (``/bot<TOKEN>/<method>``, form/JSON/multipart
requests, ``{"ok": ..., "result": ...}`` answers, Telegram's error bodies) and keeps a tiny model of
chats, messages and files so tests can act as people and assert on what the bot did::

    async with FakeTelegram() as tg:
        app = Application.builder().token(tg.token).base_url(tg.api_url).base_file_url(tg.file_url)...
        tg.send_photo(chat, user, jpeg, caption="/zombie")
        reply = await tg.wait_for_message(chat_id=chat.id)

The token is never logged or printed (the access log is off; errors are logged by method name).

Inline mode: a person types `@bot query` (`send_inline_query`), the bot's answerInlineQuery is recorded
(`wait_for_inline_answer`) and choosing a result posts it `via_bot` (`choose_inline_result`); profile photos
(`set_profile_photos`, getUserProfilePhotos); the bot's own rights in a group (`set_bot_rights`, a
my_chat_member update, getChatMember) and setChatPhoto, refused without can_change_info.

Payments are Telegram Stars only (currency XTR, no provider): ``sendInvoice``, ``pay`` (the person's
pre_checkout_query, the bot's answer within 10 s, then the successful_payment message), ``replay_payment``,
``refundStarPayment`` and ``getStarTransactions``.

Webhooks: setWebhook (https URL, secret_token), deleteWebhook, getWebhookInfo; getUpdates is refused with 409
while a webhook is set, as on Telegram. The stand-in cannot speak TLS to the proxy a real deployment has, so
updates are POSTed (with the secret header, up to `max_connections` at once, retried until answered 200) to
`webhook_target`, which a test sets (say nginx on loopback http); while it is None they wait in the queue
(`take_pending` hands the oldest one to the test). `post_update` POSTs one update to any URL.

Limitations: no channels, chosen_inline_result feedback, topics, card payments or external (cross-chat) replies;
Markdown parse modes are not validated (HTML is, roughly); text limits count code points; general group
commands always reach the bot in privacy mode (Telegram's "last bot to speak" rule is not modelled);
flood control only when asked (``FakeTelegram(limits=FloodLimits(...))``: messages sent or edited, at most so
many in any window, for the bot and per chat; otherwise use ``fail_next``); callback queries never expire.
Harness methods must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import itertools
import json
import logging
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses bigger files
UPLOAD_LIMIT = 50 * 1024 * 1024  # multipart uploads; nginx answers 413 above this
PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
CALLBACK_ANSWER_LIMIT = 200
INLINE_RESULTS_LIMIT = 50
INLINE_CACHE_DEFAULT = 300  # what Telegram keeps an inline answer for when cache_time is left out
PHOTO_SIDES = (90, 320, 800, 1280)  # thumbnails Telegram derives (long side), smaller than the original
PHOTO_MAX_SIDE = 2560  # Telegram stores bot photos at most this big
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
})
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_RETRY_S = 0.2  # Telegram waits longer before it tries an unanswered update again
_COMMAND = re.compile(r"(?<![^\s])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{4,32}\b")
_NGINX = ("<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n<center><h1>{code} {phrase}"
          "</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n")

# Form fields whose value is text even when it happens to look like JSON ("42", "true", "null").
_STRING_FIELDS = frozenset({
    "text", "caption", "data", "callback_query_id", "file_id", "action", "parse_mode", "emoji", "title",
    "description", "short_description", "name", "url", "query", "inline_message_id", "language_code",
    "photo", "document", "sticker", "secret_token", "message_effect_id", "business_connection_id",
    "inline_query_id", "next_offset", "photo_file_id", "start_parameter",
    "payload", "provider_token", "currency", "pre_checkout_query_id", "error_message",
    "telegram_payment_charge_id",
})
# Fields that hold JSON even inside a JSON body when given as a string.
_JSON_FIELDS = frozenset({
    "reply_markup", "reply_parameters", "entities", "caption_entities", "media", "commands", "scope",
    "allowed_updates", "link_preview_options", "message_ids", "results", "button", "prices",
})

_METHODS = [
    "getMe", "logOut", "close", "getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo",
    "sendMessage", "sendPhoto", "sendDocument", "sendSticker", "sendMediaGroup", "sendChatAction",
    "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "editMessageMedia",
    "deleteMessage", "deleteMessages", "answerCallbackQuery", "getFile", "getChat", "getChatMember",
    "setMyCommands", "getMyCommands", "deleteMyCommands", "setMyDescription", "setMyShortDescription",
    "setMyName", "setChatMenuButton", "getChatMenuButton",
    "answerInlineQuery", "getUserProfilePhotos", "setChatPhoto",
    "sendInvoice", "answerPreCheckoutQuery", "refundStarPayment", "getStarTransactions",
]
_CANONICAL = {name.lower(): name for name in _METHODS}


# What Telegram's flood control counts: messages sent or edited in a chat (not chat actions, answers, getFile).
_COUNTED = re.compile(r"^(send(?!ChatAction)|edit|copyMessage|forwardMessage)", re.IGNORECASE)


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's send limits as its Bots FAQ states them: at most `n` messages in any `window_s` seconds, for the
    whole bot, in one group (negative chat id), in one private chat. None: not enforced (a private chat's "about
    one a second" allows short bursts, so it is off unless a test asks). A message over a limit is refused with
    429 and `parameters.retry_after` (whole seconds until the window has room), as Telegram does."""

    bot: tuple[int, float] | None = (30, 1.0)
    group: tuple[int, float] | None = (20, 60.0)
    chat: tuple[int, float] | None = None


@dataclass
class User:
    """A person (or another bot) on Telegram."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False
    last_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass
class Chat:
    """A chat; a private chat's id must equal its person's user id, as on Telegram."""

    id: int
    type: str = "private"  # "private" | "group" | "supergroup"
    title: str | None = None


@dataclass
class Upload:
    """One multipart file part the bot sent."""

    filename: str | None
    content_type: str | None
    data: bytes

    def __repr__(self) -> str:
        return f"Upload({self.filename!r}, {self.content_type!r}, {len(self.data)} bytes)"


@dataclass
class SentMessage:
    """One message the bot sent (kept up to date by its later edits)."""

    message_id: int
    chat_id: int
    method: str
    text: str | None = None
    caption: str | None = None
    photo: bytes | None = None  # the bytes the bot uploaded (or re-sent by file_id)
    document: bytes | None = None
    sticker: bytes | None = None
    file_name: str | None = None
    reply_to_message_id: int | None = None
    reply_markup: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    edits: list[dict[str, Any]] = field(default_factory=list)
    media_group_id: str | None = None
    deleted: bool = False

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]


@dataclass
class _File:
    file_id: str
    unique_id: str
    kind: str  # photo | document | sticker
    data: bytes
    size: int
    mime: str
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    path: str | None = None


@dataclass
class _Stored:
    data: dict[str, Any]  # the Message JSON without reply_to_message
    reply_to: int | None
    from_bot: bool
    deleted: bool = False
    sent: SentMessage | None = None


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    description: str | None


class PaymentRefused(Exception):
    """The bot answered a pre-checkout query with ok=false; the message is its error_message."""


@dataclass
class StarCharge:
    """A payment in Stars the stand-in took from a person."""

    charge_id: str
    user: User
    chat_id: int
    payload: str
    amount: int
    date: int
    message: dict[str, Any]  # the successful_payment message, as delivered
    refunded: bool = False


class ApiError(Exception):
    """Answered to the client as Telegram's error body."""

    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _entities(text: str, bot_username: str) -> list[dict[str, Any]]:
    """bot_command and mention entities like Telegram's (offsets in UTF-16 code units)."""
    found: list[tuple[int, int, str]] = []
    for match in _COMMAND.finditer(text):
        found.append((match.start(), match.end(), "bot_command"))
    for match in _MENTION.finditer(text):
        if not any(s <= match.start() < e for s, e, _ in found):
            found.append((match.start(), match.end(), "mention"))
    return [
        {"offset": _utf16_len(text[:start]), "length": _utf16_len(text[start:end]), "type": kind}
        for start, end, kind in sorted(found)
    ]


class _HtmlText(HTMLParser):
    """Telegram's HTML subset: collects the plain text and rejects what Telegram rejects."""

    ALLOWED = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
                         "a", "code", "pre", "blockquote", "tg-emoji", "br"})

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.text: list[str] = []
        self.open: list[str] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        lines = self.source.split("\n")
        return len("\n".join(lines[: line - 1]).encode()) + (1 if line > 1 else 0) + len(
            lines[line - 1][:col].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED:
            raise _bad(f'can\'t parse entities: Unsupported start tag "{tag}" '
                       f"at byte offset {self._offset()}")
        if tag != "br":
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise _bad(f"can't parse entities: Unexpected end tag at byte offset {self._offset()}")
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _plain(text: str, parse_mode: str | None) -> str:
    """The text a person would see once Telegram applied parse_mode."""
    if not parse_mode:
        return text
    mode = parse_mode.lower()
    if mode == "html":
        parser = _HtmlText(text)
        parser.feed(text)
        parser.close()
        if parser.open:
            raise _bad("can't parse entities: Can't find end tag corresponding to start tag "
                       f'"{parser.open[-1]}"')
        return html.unescape("".join(parser.text))
    if mode in ("markdown", "markdownv2"):
        return text  # not validated (see the module docstring)
    raise _bad("unsupported parse_mode")


def _file_id(kind: str) -> tuple[str, str]:
    prefix, unique = {"photo": ("AgACAgIAAxkBAAI", "AQAD"), "document": ("BQACAgIAAxkBAAI", "AgAD"),
                      "sticker": ("CAACAgIAAxkBAAI", "AgAD")}[kind]
    return prefix + secrets.token_urlsafe(45), unique + secrets.token_urlsafe(9)


def _jpeg(image: Image.Image, quality: int = 87) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


class FakeTelegram:
    """The Bot API on 127.0.0.1 plus a scripted world of people, chats and files."""

    # The token is shaped like a real one (`pixme run` refuses one that is not, before connecting).
    def __init__(self, token: str = "123456:AAE-TEST-TOKEN-abcdefghij_klmnopqrs",
                 bot_username: str = "pixme_test_bot", bot_id: int = 123456, *, bot_name: str = "Pix Me Test",
                 privacy_mode: bool = True, inline_mode: bool = False, limits: FloodLimits | None = None) -> None:
        self.token = token
        self.limits = limits  # None: no flood control (`fail_next` still injects 429s)
        self.flood_refusals: list[tuple[str, str]] = []  # (method, chat id) of every message refused with 429
        self.message_times: list[tuple[float, str, str]] = []  # (monotonic time, chat id, method) of counted calls
        self.inline_mode = inline_mode  # BotFather's /setinline: without it no inline queries arrive
        self.bot_username = bot_username
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.privacy_mode = privacy_mode  # groups: only commands and replies to the bot reach it
        self.bot_messages: list[SentMessage] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.commands_by_scope: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, int, str]] = []  # (method, status, description) answered with ok=false
        self.updates: list[dict[str, Any]] = []  # every update ever queued (delivered or not)
        self.handled: set[int] = set()  # update ids the bot reported handled (see `mark_handled`)
        self.file_downloads: list[str] = []  # file_id of every download served, in order
        self.webhook_url = ""
        self.webhook_secret = ""
        self.webhook_max_connections = 40
        # Where webhook updates really go (a test's proxy on loopback http); None: they wait in the queue.
        self.webhook_target: str | None = None
        self.webhook_posts: list[tuple[int, int]] = []  # (update_id, HTTP status or 0 for no answer) per POST
        self._webhook_wake = asyncio.Event()
        self._deliverer: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._queue: list[dict[str, Any]] = []
        self._again: set[int] = set()  # update ids given again (`redeliver`): not dropped by an older offset
        self._update_ids = itertools.count(100_000_001)
        self._allowed_updates: set[str] | None = None
        self._poll_waiter: asyncio.Future[str] | None = None
        self._changed = asyncio.Event()
        self._faults: dict[str, list[_Fault]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._private_users: dict[int, User] = {}
        self._blocked: set[int] = set()
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], _Stored] = {}
        self._files: dict[str, _File] = {}
        self._photo_groups: dict[str, list[dict[str, Any]]] = {}
        self._by_path: dict[str, _File] = {}
        self._path_ids = itertools.count(1)
        self._queries: dict[str, bool] = {}  # callback query id -> answered
        self._consumed: set[int] = set()  # id() of SentMessages returned by wait_for_message(s)
        self._edits_seen: dict[tuple[int, int], int] = {}
        self._media_groups = itertools.count(13_000_000_000_000_001)
        self._members: dict[tuple[int, int], str] = {}  # (chat, user) -> status, once seen or set
        self._users: dict[int, User] = {}
        self._checkouts: dict[str, tuple[float, dict[str, Any] | None]] = {}  # query id -> (asked at, answer)
        self.charges: dict[str, StarCharge] = {}  # telegram_payment_charge_id -> the payment
        self.star_transactions: list[dict[str, Any]] = []  # what getStarTransactions lists, oldest first
        # Called with the updates a getUpdates call is about to return, before it returns them (a test can stop
        # the bot's process there: the updates are on their way but not yet handled, nor confirmed).
        self.on_deliver: Callable[[list[dict[str, Any]]], None] | None = None
        # Called with each message the bot sends, once stored and before Telegram answers (a test can stop the
        # bot's process there: the message is out, but the bot never hears so).
        self.on_sent: Callable[[SentMessage], None] | None = None
        self._closing = False
        self.inline_answers: list[dict[str, Any]] = []  # every answerInlineQuery accepted, in order
        self._inline_queries: dict[str, tuple[int, bool]] = {}  # query id -> (asker, answered)
        self._inline_results: dict[tuple[str, str], dict[str, Any]] = {}  # (query id, result id) -> result
        self._profile_photos: dict[int, list[list[dict[str, Any]]]] = {}  # user -> photos (sizes), newest first
        self._rights: dict[tuple[int, int], dict[str, bool]] = {}  # (chat, user) -> an admin's rights
        self.chat_photos: dict[int, bytes] = {}  # chat -> the photo the bot set (setChatPhoto)

    def __repr__(self) -> str:
        return f"FakeTelegram(@{self.bot_username}, port={self._port})"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._closing = False

    async def stop(self) -> None:
        """Answer pending long polls with no updates, stop delivering to the webhook and shut the server down."""
        self._closing = True
        self._wake_poll("stop")
        await self._stop_delivering()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def base(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """PTB's base_url (PTB appends the token)."""
        return f"{self.base}/bot"

    @property
    def file_url(self) -> str:
        """PTB's base_file_url."""
        return f"{self.base}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_name, "username": self.bot_username}

    # -- people act --------------------------------------------------------------------------------

    def add_chat(self, chat: Chat, user: User | None = None) -> None:
        """Make a chat known (as if the person had started the bot / added it to the group)."""
        if chat.type == "private":
            if user is None or user.id != chat.id:
                raise ValueError("a private chat needs its person, and chat.id must equal user.id")
            self._private_users[chat.id] = user
            data: dict[str, Any] = {"id": chat.id, "type": "private", "first_name": user.first_name}
            if user.last_name:
                data["last_name"] = user.last_name
            if user.username:
                data["username"] = user.username
        elif chat.type in ("group", "supergroup"):
            data = {"id": chat.id, "type": chat.type, "title": chat.title or f"Group {chat.id}"}
        else:
            raise ValueError(f"unsupported chat type {chat.type!r}")
        self._chats[chat.id] = data
        self._next_message_id.setdefault(chat.id, 1)

    def set_member_status(self, chat: Chat, user: User, status: str = "administrator") -> None:
        """Make `user` a "creator", "administrator" or plain "member" of a group (getChatMember)."""
        if status not in ("creator", "administrator", "member"):
            raise ValueError(f"unsupported member status {status!r}")
        if chat.id not in self._chats:
            self.add_chat(chat)
        self._users[user.id] = user
        self._members[(chat.id, user.id)] = status

    def block_bot(self, user_id: int) -> None:
        """The person blocks the bot (or the bot is kicked from the group with this id)."""
        self._blocked.add(user_id)

    def unblock_bot(self, user_id: int) -> None:
        self._blocked.discard(user_id)

    def send_text(self, chat: Chat, user: User, text: str, reply_to: int | None = None) -> int:
        """A person sends a text message; returns its message_id."""
        content: dict[str, Any] = {"text": text}
        if entities := _entities(text, self.bot_username):
            content["entities"] = entities
        return self._person_message(chat, user, content, reply_to)

    def send_photo(self, chat: Chat, user: User, image: bytes, caption: str | None = None,
                   reply_to: int | None = None, media_group_id: str | None = None) -> int:
        """A person sends a photo (sizes: thumbnails first, the original bytes last)."""
        content: dict[str, Any] = {"photo": self._make_photo(image, reencode=False)}
        self._caption_content(content, caption)
        if media_group_id:
            content["media_group_id"] = media_group_id
        return self._person_message(chat, user, content, reply_to)

    def send_album(self, chat: Chat, user: User, images: list[bytes], caption: str | None = None, *,
                   caption_on: int = 0, reply_to: int | None = None) -> list[int]:
        """A person sends 2-10 photos as one album: one message each, sharing a media_group_id.

        As in Telegram apps, the caption rides on one photo (`caption_on`) and every photo of an
        album that replies to a message replies to it.
        """
        if not 2 <= len(images) <= 10:
            raise ValueError("an album holds 2 to 10 items")
        group_id = str(next(self._media_groups))
        return [self.send_photo(chat, user, image, caption=caption if i == caption_on else None,
                                reply_to=reply_to, media_group_id=group_id)
                for i, image in enumerate(images)]

    def send_document(self, chat: Chat, user: User, data: bytes, file_name: str, mime_type: str,
                      caption: str | None = None, reply_to: int | None = None, *,
                      declared_size: int | None = None) -> int:
        """A person sends a file; declared_size fakes a big file without allocating it."""
        content: dict[str, Any] = {"document": self._make_document(data, file_name, mime_type, declared_size)}
        self._caption_content(content, caption)
        return self._person_message(chat, user, content, reply_to)

    def send_sticker(self, chat: Chat, user: User, data: bytes, *, emoji: str = "🙂",
                     is_animated: bool = False, is_video: bool = False, reply_to: int | None = None) -> int:
        """A person sends a sticker (a WEBP image unless animated/video)."""
        content = {"sticker": self._make_sticker(data, emoji, is_animated, is_video)}
        return self._person_message(chat, user, content, reply_to)

    def press_button(self, chat: Chat, user: User, message_id: int, data: str, *, strict: bool = True) -> str:
        """A person presses an inline button of a bot message; returns the callback query id."""
        stored = self._messages.get((chat.id, message_id))
        if stored is None or stored.deleted or not stored.from_bot:
            raise ValueError(f"no bot message {message_id} in chat {chat.id}")
        if strict and not any(b.get("callback_data") == data
                              for row in (stored.data.get("reply_markup") or {}).get("inline_keyboard", [])
                              for b in row):
            raise ValueError(f"message {message_id} has no button with callback_data {data!r}")
        query_id = str(secrets.randbits(62))
        self._queries[query_id] = False
        self._seen(chat.id, user)
        self._push_update("callback_query", {
            "id": query_id, "from": user.to_json(), "message": self._full(chat.id, message_id),
            "chat_instance": str(-(abs(chat.id) * 7919 % 10**18) - 1), "data": data,
        })
        return query_id

    async def pay(self, user: User, invoice: SentMessage, *, timeout: float = 10.0,
                  deliver: bool = True) -> str:
        """`user` pays the bot's invoice: a pre_checkout_query, the bot's answer (within 10 s, as on Telegram),
        then a successful_payment message in the invoice's chat. Returns the telegram_payment_charge_id;
        PaymentRefused with the bot's error_message if it said no. `deliver=False`: the Stars are taken and the
        payment is listed by getStarTransactions, but its update never reaches the bot (lost in a crash)."""
        if invoice.method != "sendInvoice":
            raise ValueError(f"message {invoice.message_id} is not an invoice")
        currency, payload = invoice.params["currency"], invoice.params["payload"]
        amount = sum(int(price["amount"]) for price in invoice.params["prices"])
        query_id = str(secrets.randbits(62))
        self._checkouts[query_id] = (asyncio.get_running_loop().time(), None)
        self._users[user.id] = user
        self._push_update("pre_checkout_query", {"id": query_id, "from": user.to_json(), "currency": currency,
                                                 "total_amount": amount, "invoice_payload": payload})
        answer: dict[str, Any] = await self._wait(lambda: self._checkouts[query_id][1], timeout,
                                                  f"the answer to pre-checkout query {query_id}")
        if not answer["ok"]:
            raise PaymentRefused(str(answer.get("error_message") or ""))
        charge_id = "stxp" + secrets.token_urlsafe(24)
        successful = {"currency": currency, "total_amount": amount, "invoice_payload": payload,
                      "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": charge_id}
        date = int(time.time())
        chat = self._chats[invoice.chat_id]
        message_id = self._new_message_id(invoice.chat_id)
        data = {"message_id": message_id, "from": user.to_json(), "date": date, "chat": dict(chat),
                "successful_payment": successful}
        self._messages[(invoice.chat_id, message_id)] = _Stored(data, None, from_bot=False)
        self.charges[charge_id] = StarCharge(charge_id, user, invoice.chat_id, payload, amount, date, data)
        self.star_transactions.append({"id": charge_id, "amount": amount, "date": date, "source": {
            "type": "user", "transaction_type": "invoice_payment", "user": user.to_json(), "invoice_payload": payload}})
        if deliver:
            self._push_update("message", self._full(invoice.chat_id, message_id))
        return charge_id

    def replay_payment(self, charge_id: str) -> int:
        """The same successful_payment message delivered once more (a duplicated update); returns its update id."""
        charge = self.charges[charge_id]
        self._push_update("message", json.loads(json.dumps(charge.message)))
        return int(self.updates[-1]["update_id"])

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The stored Message JSON (with reply_to_message), as the bot would see it now."""
        return self._full(chat_id, message_id)

    # -- inline mode, profile photos, the bot's rights ---------------------------------------------------

    def send_inline_query(self, user: User, query: str = "", *, offset: str = "",
                          chat_type: str = "sender") -> str:
        """A person types `@bot <query>` in some chat; returns the inline query id."""
        if not self.inline_mode:
            raise ValueError("inline mode is off for this bot (BotFather's /setinline)")
        query_id = str(secrets.randbits(62))
        self._inline_queries[query_id] = (user.id, False)
        self._users[user.id] = user
        self._push_update("inline_query", {"id": query_id, "from": user.to_json(), "query": query,
                                           "offset": offset, "chat_type": chat_type})
        return query_id

    async def wait_for_inline_answer(self, query_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The bot's answerInlineQuery for the query `send_inline_query` returned `query_id` for."""

        def ready() -> dict[str, Any] | None:
            return next((a for a in self.inline_answers if a.get("inline_query_id") == query_id), None)

        return await self._wait(ready, timeout, f"the answer to inline query {query_id}")

    def choose_inline_result(self, chat: Chat, user: User, query_id: str, result_id: str) -> int:
        """The person picks a result of an answered inline query: it is posted in `chat` as their message,
        `via_bot`; returns its message_id. (Bots get messages sent via them, privacy mode or not.)"""
        result = self._inline_results.get((query_id, result_id))
        if result is None:
            raise ValueError(f"inline query {query_id} was not answered with a result {result_id!r}")
        if result["type"] != "photo" or "photo_file_id" not in result:
            raise ValueError("the stand-in posts cached photos only")
        content: dict[str, Any] = {"photo": self._photo_groups[result["photo_file_id"]], "via_bot": self.bot_user}
        self._caption_content(content, result.get("caption"))
        if chat.id not in self._chats:
            self.add_chat(chat, user)
        message_id = self._new_message_id(chat.id)
        data = {"message_id": message_id, "from": user.to_json(), "date": int(time.time()),
                "chat": dict(self._chats[chat.id]), **content}
        self._messages[(chat.id, message_id)] = _Stored(data, None, from_bot=False)
        self._seen(chat.id, user)
        self._push_update("message", self._full(chat.id, message_id))
        return message_id

    def photo_bytes(self, file_id: str) -> bytes:
        """The bytes Telegram keeps for a photo size (the largest size is the photo as sent)."""
        return self._files[file_id].data

    def set_profile_photos(self, user: User, images: list[bytes]) -> None:
        """The person's profile pictures, newest first ([]: none, or hidden from bots by their privacy)."""
        self._users[user.id] = user
        self._profile_photos[user.id] = [self._make_photo(image, reencode=True) for image in images]

    def profile_photos(self, user: User) -> list[list[dict[str, Any]]]:
        """The person's profile photos as getUserProfilePhotos describes them (PhotoSize lists, newest first)."""
        return list(self._profile_photos.get(user.id, []))

    def set_bot_rights(self, chat: Chat, status: str = "administrator", *, can_change_info: bool = True) -> None:
        """Make the bot a "member" or an "administrator" (with or without can_change_info) of a group, as its
        admins do in the app; the bot hears it as a my_chat_member update."""
        if chat.id not in self._chats:
            self.add_chat(chat)
        old = self._member_json(chat.id, self.bot_id)
        self._members[(chat.id, self.bot_id)] = status
        self._rights[(chat.id, self.bot_id)] = {"can_change_info": can_change_info}
        someone = next((u for (c, uid), s in self._members.items() if c == chat.id and s == "creator"
                        and (u := self._users.get(uid)) is not None), None)
        self._push_update("my_chat_member", {
            "chat": dict(self._chats[chat.id]), "from": (someone or User(1, "Admin")).to_json(),
            "date": int(time.time()), "old_chat_member": old,
            "new_chat_member": self._member_json(chat.id, self.bot_id)})

    # -- what the bot did --------------------------------------------------------------------------

    def fail_next(self, method: str, status: int = 429, *, retry_after: int | None = None,
                  description: str | None = None, count: int = 1) -> None:
        """The next `count` calls of `method` ("*" = any) fail like Telegram with `status`."""
        if status == 429 and retry_after is None:
            retry_after = 1
        key = method.lower()
        faults = self._faults.setdefault(key, [])
        faults.extend(_Fault(status, retry_after, description) for _ in range(count))

    def download_count(self, file_id: str) -> int:
        return self.file_downloads.count(file_id)

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name.lower() == method.lower()]

    def unconsumed(self, chat_id: int | None = None) -> list[SentMessage]:
        return [m for m in self.bot_messages
                if id(m) not in self._consumed and (chat_id is None or m.chat_id == chat_id)]

    async def wait_for_message(self, predicate: Callable[[SentMessage], bool] | None = None, *,
                               chat_id: int | None = None,
                               timeout: float = 10.0) -> SentMessage:
        """The first not-yet-returned bot message matching (already sent or still to come)."""
        return (await self.wait_for_messages(1, predicate, chat_id=chat_id, timeout=timeout))[0]

    async def wait_for_messages(self, n: int, predicate: Callable[[SentMessage], bool] | None = None, *,
                                chat_id: int | None = None,
                                timeout: float = 10.0) -> list[SentMessage]:
        """The first n not-yet-returned bot messages matching, in the order sent."""

        def ready() -> list[SentMessage] | None:
            found = [m for m in self.unconsumed(chat_id) if predicate is None or predicate(m)]
            return found[:n] if len(found) >= n else None

        found = await self._wait(ready, timeout, f"{n} bot message(s) (chat_id={chat_id})")
        self._consumed.update(id(m) for m in found)
        return found

    async def wait_for_edit(self, message_id: int, timeout: float = 10.0, *,
                            chat_id: int | None = None) -> dict[str, Any]:
        """The next not-yet-returned edit of a bot message."""

        def ready() -> dict[str, Any] | None:
            for m in self.bot_messages:
                if m.message_id == message_id and (chat_id is None or m.chat_id == chat_id):
                    seen = self._edits_seen.get((m.chat_id, m.message_id), 0)
                    if len(m.edits) > seen:
                        self._edits_seen[(m.chat_id, m.message_id)] = seen + 1
                        return m.edits[seen]
            return None

        return await self._wait(ready, timeout, f"an edit of message {message_id}")

    async def wait_until(self, condition: Callable[[], object], timeout: float = 10.0,
                         what: str = "a condition") -> None:
        """Wait until `condition()` is truthy; it is re-checked after every Bot API call."""
        await self._wait(lambda: True if condition() else None, timeout, what)

    async def wait_for_callback_answer(self, query_id: str,
                                       timeout: float = 10.0) -> dict[str, Any]:
        """The bot's answerCallbackQuery for the press `press_button` returned `query_id` for."""

        def ready() -> dict[str, Any] | None:
            return next((a for a in self.callback_answers if a.get("callback_query_id") == query_id), None)

        return await self._wait(ready, timeout, f"the answer to callback query {query_id}")

    async def expect_no_message(self, *, chat_id: int | None = None, after: Awaitable[object]) -> None:
        """Fail if the bot has sent a message not yet returned by a wait, once `after` is done.

        `after` is the proof that the bot has finished whatever could still send something (every update
        handled and every job done, say); waiting for it, not for some seconds, is what makes silence mean
        something."""
        await after
        if extra := self.unconsumed(chat_id):
            raise AssertionError(f"unexpected bot messages: {[self._summary(m) for m in extra]}")

    # -- what the bot reports ------------------------------------------------------------------------

    def mark_handled(self, update_id: int) -> None:
        """Called by the test's bot once its handlers are done with an update."""
        self.handled.add(update_id)
        self._notify()

    def first_unconfirmed_update(self) -> int:
        """The id of the oldest update a newly started bot would still receive."""
        if self._queue:
            return int(self._queue[0]["update_id"])
        return int(self.updates[-1]["update_id"]) + 1 if self.updates else 0

    async def wait_handled(self, since: int = 0, timeout: float = 10.0) -> None:
        """Wait until the bot has handled every update queued so far (from id `since` on)."""

        def ready() -> bool | None:
            return all(u["update_id"] in self.handled for u in self.updates if u["update_id"] >= since) or None

        await self._wait(ready, timeout, "the bot to handle every update")

    async def _wait(self, ready: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while (result := ready()) is None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what}; unconsumed bot messages: "
                    f"{[self._summary(m) for m in self.unconsumed()]}; errors answered: {self.errors[-5:]}")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)
        return result

    @staticmethod
    def _summary(m: SentMessage) -> str:
        body = m.text if m.text is not None else m.caption
        return f"{m.method}#{m.message_id}@{m.chat_id}: {body!r}"

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- the world ---------------------------------------------------------------------------------

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _full(self, chat_id: int, message_id: int) -> dict[str, Any]:
        stored = self._messages.get((chat_id, message_id))
        if stored is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        data = json.loads(json.dumps(stored.data))
        target = self._messages.get((chat_id, stored.reply_to)) if stored.reply_to else None
        if target is not None and not target.deleted:
            data["reply_to_message"] = json.loads(json.dumps(target.data))
        return data

    def _caption_content(self, content: dict[str, Any], caption: str | None) -> None:
        if caption:
            content["caption"] = caption
            if entities := _entities(caption, self.bot_username):
                content["caption_entities"] = entities

    def _person_message(self, chat: Chat, user: User, content: dict[str, Any], reply_to: int | None) -> int:
        if chat.id not in self._chats:
            self.add_chat(chat, user)
        elif chat.type == "private" and chat.id != user.id:
            raise ValueError("chat.id of a private chat must equal user.id")
        if reply_to is not None:
            target = self._messages.get((chat.id, reply_to))
            if target is None or target.deleted:
                raise ValueError(f"no message {reply_to} in chat {chat.id} to reply to")
        message_id = self._new_message_id(chat.id)
        data = {"message_id": message_id, "from": user.to_json(), "date": int(time.time()),
                "chat": dict(self._chats[chat.id]), **content}
        self._messages[(chat.id, message_id)] = _Stored(data, reply_to, from_bot=False)
        self._seen(chat.id, user)
        if self._delivered(chat, data, reply_to):
            self._push_update("message", self._full(chat.id, message_id))
        return message_id

    def _seen(self, chat_id: int, user: User) -> None:
        """Whoever writes or presses in a chat is in it."""
        self._users[user.id] = user
        self._members.setdefault((chat_id, user.id), "member")

    def _delivered(self, chat: Chat, data: dict[str, Any], reply_to: int | None) -> bool:
        """Privacy mode: in groups only commands for this bot and replies to it arrive."""
        if chat.type == "private" or not self.privacy_mode or "successful_payment" in data:
            return True
        if reply_to is not None and self._messages[(chat.id, reply_to)].from_bot:
            return True
        body = data.get("text") or data.get("caption") or ""
        entities = data.get("entities") or data.get("caption_entities") or []
        for entity in entities:
            if entity["type"] == "bot_command" and entity["offset"] == 0:
                command = body[: entity["length"]]
                _, _, addressee = command.partition("@")
                return not addressee or addressee.lower() == self.bot_username.lower()
        return False

    def _push_update(self, kind: str, payload: dict[str, Any]) -> None:
        update = {"update_id": next(self._update_ids), kind: payload}
        self.updates.append(update)
        self._queue.append(update)
        self._wake_poll("update")
        self._webhook_wake.set()

    def _wake_poll(self, why: str) -> None:
        if self._poll_waiter is not None and not self._poll_waiter.done():
            self._poll_waiter.set_result(why)

    def _register(self, kind: str, data: bytes, size: int, mime: str, **extra: Any) -> _File:
        file_id, unique_id = _file_id(kind)
        file = _File(file_id, unique_id, kind, data, size, mime, **extra)
        self._files[file_id] = file
        return file

    def _make_photo(self, data: bytes, *, reencode: bool) -> list[dict[str, Any]]:
        """PhotoSize list, smallest first; the last is the full picture."""
        if not data:
            raise _bad("file must be non-empty")
        try:
            image: Image.Image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise _bad("IMAGE_PROCESS_FAILED") from exc
        width, height = image.size
        if width + height > 10_000 or max(width, height) > 20 * min(width, height):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        if reencode and (image.format != "JPEG" or max(width, height) > PHOTO_MAX_SIDE):
            image = image.convert("RGB")
            image.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
            data, (width, height) = _jpeg(image), image.size
        sizes: list[tuple[bytes, int, int]] = []
        for side in PHOTO_SIDES:
            if max(width, height) > side:
                thumb = image.convert("RGB")
                thumb.thumbnail((side, side))
                sizes.append((_jpeg(thumb, 80), *thumb.size))
        sizes.append((data, width, height))
        result: list[dict[str, Any]] = []
        for blob, w, h in sizes:
            file = self._register("photo", blob, len(blob), "image/jpeg", width=w, height=h)
            result.append({"file_id": file.file_id, "file_unique_id": file.unique_id,
                           "file_size": file.size, "width": w, "height": h})
        for size in result:
            self._photo_groups[size["file_id"]] = result
        return result

    def _make_document(self, data: bytes, file_name: str | None, mime: str | None,
                       declared_size: int | None = None) -> dict[str, Any]:
        mime = mime or (mimetypes.guess_type(file_name or "")[0]) or "application/octet-stream"
        file = self._register("document", data, declared_size if declared_size is not None else len(data),
                              mime, file_name=file_name)
        doc: dict[str, Any] = {"file_id": file.file_id, "file_unique_id": file.unique_id,
                               "file_size": file.size, "mime_type": mime}
        if file_name:
            doc["file_name"] = file_name
        return doc

    def _make_sticker(self, data: bytes, emoji: str, is_animated: bool, is_video: bool) -> dict[str, Any]:
        width = height = 512
        if not (is_animated or is_video):
            with contextlib.suppress(UnidentifiedImageError, OSError):
                width, height = Image.open(io.BytesIO(data)).size
        mime = "application/x-tgsticker" if is_animated else "video/webm" if is_video else "image/webp"
        file = self._register("sticker", data, len(data), mime, width=width, height=height)
        return {"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.size,
                "type": "regular", "width": width, "height": height, "emoji": emoji,
                "is_animated": is_animated, "is_video": is_video}

    # -- HTTP --------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        try:
            if path.startswith("/file/bot"):
                return await self._download(path[len("/file/bot"):])
            if not path.startswith("/bot"):
                raise ApiError(404, "Not Found")
            token, _, method = path[len("/bot"):].partition("/")
            self._check_token(token)
            canonical = _CANONICAL.get(method.lower())
            if canonical is None:
                raise ApiError(404, "Not Found")
            try:
                params, files = await self._read_params(request)
            except web.HTTPRequestEntityTooLarge:
                return web.Response(status=413, content_type="text/html",
                                    text=_NGINX.format(code=413, phrase="Request Entity Too Large"))
            self.calls.append((canonical, {**params, **files}))
            if (fault := self._take_fault(canonical)) is not None:
                return self._fault_response(canonical, fault)
            self._flood_control(canonical, params)
            try:
                result = await getattr(self, f"_api_{canonical}")(params, files)
            except ApiError as exc:
                self.errors.append((canonical, exc.status, exc.description))
                raise
            return web.json_response({"ok": True, "result": result})
        except ApiError as exc:
            body: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
            return web.json_response(body, status=exc.status)
        except Exception as exc:  # never leak the token through aiohttp's own error log
            log.exception("fake telegram: internal error (%s)", type(exc).__name__)
            self.errors.append(("?", 500, repr(exc)))
            return web.json_response({"ok": False, "error_code": 500, "description": "Internal Server Error"},
                                     status=500)
        finally:
            self._notify()

    def _check_token(self, token: str) -> None:
        if not _TOKEN_SHAPE.match(token):
            raise ApiError(404, "Not Found")
        if token != self.token:
            raise ApiError(401, "Unauthorized")

    def _flood_control(self, method: str, params: dict[str, Any]) -> None:
        """Refuse a message over a limit with 429 (counted in `flood_refusals`); record one within them."""
        chat = params.get("chat_id")
        if chat is None or not _COUNTED.match(method):
            return
        chat_id, now = str(chat), time.monotonic()
        if self.limits is not None:
            group = chat_id.startswith(("-", "@"))
            rules = [(self.limits.bot, None), (self.limits.group if group else self.limits.chat, chat_id)]
            for rule, scope in rules:
                if rule is None:
                    continue
                n, window = rule
                recent = [t for t, c, _m in self.message_times if t > now - window and (scope is None or c == scope)]
                if len(recent) >= n:
                    wait = max(1, math.ceil(recent[-n] + window - now))
                    self.flood_refusals.append((method, chat_id))
                    self.errors.append((method, 429, f"Too Many Requests: retry after {wait}"))
                    raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        self.message_times.append((now, chat_id, method))

    def most_in_window(self, chat_id: int | str, window_s: float) -> int:
        """The most messages the bot sent (or edited) in `chat_id` within any `window_s` seconds."""
        times = [t for t, c, _m in self.message_times if c == str(chat_id)]
        return max((sum(1 for u in times if t <= u < t + window_s) for t in times), default=0)

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method.lower(), "*"):
            if self._faults.get(key):
                return self._faults[key].pop(0)
        return None

    def _fault_response(self, method: str, fault: _Fault) -> web.Response:
        status = fault.status
        defaults = {400: "Bad Request: injected failure", 401: "Unauthorized",
                    403: "Forbidden: bot was blocked by the user", 404: "Not Found",
                    409: "Conflict: terminated by other getUpdates request; make sure that only one bot "
                         "instance is running",
                    429: f"Too Many Requests: retry after {fault.retry_after}", 500: "Internal Server Error"}
        if fault.description is None and status in (502, 503, 504):  # nginx answers those, in HTML
            phrase = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
            self.errors.append((method, status, phrase[status]))
            return web.Response(status=status, content_type="text/html",
                                text=_NGINX.format(code=status, phrase=phrase[status]))
        description = fault.description or defaults.get(status, "Internal Server Error")
        self.errors.append((method, status, description))
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if fault.retry_after is not None:
            body["parameters"] = {"retry_after": fault.retry_after}
        return web.json_response(body, status=status)

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, Upload] = {}
        if request.content_type == "application/json":
            body = await request.read()
            if body:
                try:
                    decoded = json.loads(body)
                except ValueError as exc:
                    raise _bad("can't parse JSON object") from exc
                if not isinstance(decoded, dict):
                    raise _bad("can't parse JSON object")
                raw.update(decoded)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = Upload(value.filename, value.content_type, value.file.read())
                elif isinstance(value, bytes):
                    raw[key] = value.decode("utf-8", "replace")
                else:
                    raw[key] = value
        return {key: self._decode(key, value) for key, value in raw.items()}, files

    @staticmethod
    def _decode(key: str, value: Any) -> Any:
        if not isinstance(value, str) or (key in _STRING_FIELDS and key not in _JSON_FIELDS):
            return value
        try:
            decoded = json.loads(value)
        except ValueError:
            if key in _JSON_FIELDS:
                raise _bad(f"can't parse {key} JSON object") from None
            return value
        return value if isinstance(decoded, str) and key not in _JSON_FIELDS else decoded

    async def _download(self, rest: str) -> web.StreamResponse:
        token, _, file_path = rest.partition("/")
        self._check_token(token)
        file = self._by_path.get(file_path)
        if file is None:
            raise ApiError(404, "Not Found")
        self.file_downloads.append(file.file_id)
        return web.Response(body=file.data, content_type=file.mime)

    # -- parameter helpers -------------------------------------------------------------------------

    @staticmethod
    def _int(params: dict[str, Any], key: str, *, required: bool = True) -> int | None:
        value = params.get(key)
        if value is None or value == "":
            if required:
                raise _bad(f"{key} is empty")
            return None
        if isinstance(value, bool):
            raise _bad(f"invalid {key} specified")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad(f"invalid {key} specified") from None

    @staticmethod
    def _bool(params: dict[str, Any], key: str) -> bool:
        value = params.get(key)
        return value is True or (isinstance(value, str) and value.lower() in ("true", "1")) or value == 1

    def _chat_id(self, params: dict[str, Any]) -> int:
        value = params.get("chat_id")
        if value is None or value == "":
            raise _bad("chat_id is empty")
        if isinstance(value, str) and not re.fullmatch(r"-?\d+", value):
            raise _bad("chat not found")  # @channelusername: no channels here
        chat_id = int(value)
        if chat_id not in self._chats:
            raise _bad("chat not found")
        return chat_id

    def _writable_chat(self, params: dict[str, Any]) -> int:
        chat_id = self._chat_id(params)
        if chat_id in self._blocked:
            if self._chats[chat_id]["type"] == "private":
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            raise ApiError(403, f"Forbidden: bot was kicked from the {self._chats[chat_id]['type']} chat")
        return chat_id

    def _reply_to(self, params: dict[str, Any], chat_id: int) -> int | None:
        reply = params.get("reply_parameters")
        allow_without = self._bool(params, "allow_sending_without_reply")
        if isinstance(reply, dict):
            target = self._int(reply, "message_id")
            allow_without = allow_without or self._bool(reply, "allow_sending_without_reply")
            if reply.get("chat_id") not in (None, chat_id, str(chat_id)):
                raise _bad("replies to other chats are not supported by the stand-in")
        elif reply is not None:
            raise _bad("can't parse reply parameters JSON object")
        else:
            target = self._int(params, "reply_to_message_id", required=False)
        if target is None:
            return None
        stored = self._messages.get((chat_id, target))
        if stored is None or stored.deleted:
            if allow_without:
                return None
            raise _bad("message to be replied not found")
        return target

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is not None:
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
            for button in (b for row in rows for b in row):
                if not isinstance(button, dict) or "text" not in button:
                    raise _bad("can't parse inline keyboard button: Field \"text\" must be of type String")
                data = button.get("callback_data")
                if data is not None:
                    if not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
                        raise _bad("BUTTON_DATA_INVALID")
                elif not any(k in button for k in ("url", "login_url", "switch_inline_query", "web_app",
                                                   "switch_inline_query_current_chat", "copy_text", "pay",
                                                   "callback_game", "switch_inline_query_chosen_chat")):
                    raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the "
                               "inline keyboard")
        return markup

    def _text(self, params: dict[str, Any], *, required: bool) -> str | None:
        text = params.get("text")
        if text is None and not required:
            return None
        if not isinstance(text, str):
            text = "" if text is None else json.dumps(text)
        plain = _plain(text, params.get("parse_mode"))
        if not plain.strip():
            raise _bad("message text is empty")
        if len(plain) > TEXT_LIMIT:
            raise _bad("message is too long")
        return text

    def _caption(self, caption: Any, parse_mode: str | None) -> str | None:
        if caption is None or caption == "":
            return None
        caption = caption if isinstance(caption, str) else json.dumps(caption)
        if len(_plain(caption, parse_mode)) > CAPTION_LIMIT:
            raise _bad("message caption is too long")
        return caption

    def _input_file(self, params: dict[str, Any], files: dict[str, Upload], key: str,
                    value: Any = None, *, kind: str) -> tuple[Upload | None, _File | None]:
        """An upload (multipart part or attach://) or an existing file referenced by file_id."""
        if value is None:
            if key in files:
                return files[key], None
            value = params.get(key)
        if value is None or value == "":
            raise _bad(f"there is no {kind} in the request")
        if not isinstance(value, str):
            raise _bad(f"wrong type of the {kind} specified")
        if value.startswith("attach://"):
            upload = files.get(value[len("attach://"):])
            if upload is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            return upload, None
        if value.startswith(("http://", "https://")):
            raise _bad("failed to get HTTP URL content")
        existing = self._files.get(value)
        if existing is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        if existing.kind != kind:
            raise _bad(f"can't use file of type {existing.kind.capitalize()} as {kind.capitalize()}")
        return None, existing

    # -- sending -----------------------------------------------------------------------------------

    def _bot_message(self, chat_id: int, method: str, params: dict[str, Any], content: dict[str, Any], *,
                     reply_to: int | None, markup: dict[str, Any] | None, **sent: Any) -> dict[str, Any]:
        message_id = self._new_message_id(chat_id)
        data: dict[str, Any] = {"message_id": message_id, "from": self.bot_user, "date": int(time.time()),
                                "chat": dict(self._chats[chat_id]), **content}
        if markup is not None and "inline_keyboard" in markup:
            data["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        record = SentMessage(message_id, chat_id, method, text=content.get("text"),
                             caption=content.get("caption"), reply_to_message_id=reply_to,
                             reply_markup=markup, params=params,
                             media_group_id=content.get("media_group_id"), **sent)
        self._messages[(chat_id, message_id)] = _Stored(data, reply_to, from_bot=True, sent=record)
        self.bot_messages.append(record)
        if self.on_sent is not None:
            self.on_sent(record)
        return self._full(chat_id, message_id)

    def _text_content(self, params: dict[str, Any], key: str, value: str | None) -> dict[str, Any]:
        if value is None:
            return {}
        content: dict[str, Any] = {key: _plain(value, params.get("parse_mode"))}
        entities_key = "entities" if key == "text" else "caption_entities"
        if isinstance(params.get(entities_key), list) and params[entities_key]:
            content[entities_key] = params[entities_key]
        return content

    async def _api_sendMessage(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        chat_id = self._writable_chat(params)
        text = self._text(params, required=True)
        reply_to, markup = self._reply_to(params, chat_id), self._markup(params)
        content = self._text_content(params, "text", text)
        return self._bot_message(chat_id, "sendMessage", {**params}, content, reply_to=reply_to,
                                 markup=markup)

    def _media_content(self, kind: str, upload: Upload | None, existing: _File | None) -> tuple[
            dict[str, Any], bytes, str | None]:
        """Message content for a photo/document/sticker, the bytes, and the file name."""
        if existing is not None:
            data, name = existing.data, existing.file_name
            if kind == "photo":
                return {"photo": self._photo_groups[existing.file_id]}, data, None
            if kind == "sticker":
                return {"sticker": self._sticker_json(existing)}, data, None
            return {"document": self._document_json(existing)}, data, name
        assert upload is not None
        if kind == "photo":
            if len(upload.data) > PHOTO_UPLOAD_LIMIT:
                raise _bad("PHOTO_SAVE_FILE_INVALID")
            return {"photo": self._make_photo(upload.data, reencode=True)}, upload.data, None
        if not upload.data:
            raise _bad("file must be non-empty")
        if kind == "sticker":
            return {"sticker": self._make_sticker(upload.data, "🙂", False, False)}, upload.data, None
        mime = upload.content_type or mimetypes.guess_type(upload.filename or "")[0]
        document = self._make_document(upload.data, upload.filename, mime)
        return {"document": document}, upload.data, upload.filename

    @staticmethod
    def _document_json(file: _File) -> dict[str, Any]:
        doc = {"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.size,
               "mime_type": file.mime}
        if file.file_name:
            doc["file_name"] = file.file_name
        return doc

    @staticmethod
    def _sticker_json(file: _File) -> dict[str, Any]:
        return {"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.size,
                "type": "regular", "width": file.width, "height": file.height,
                "is_animated": file.mime == "application/x-tgsticker", "is_video": file.mime == "video/webm"}

    async def _send_file(self, method: str, kind: str, params: dict[str, Any],
                         files: dict[str, Upload]) -> dict[str, Any]:
        chat_id = self._writable_chat(params)
        upload, existing = self._input_file(params, files, kind, kind=kind)
        caption = None
        if kind != "sticker":
            caption = self._caption(params.get("caption"), params.get("parse_mode"))
        reply_to, markup = self._reply_to(params, chat_id), self._markup(params)
        content, data, name = self._media_content(kind, upload, existing)
        content.update(self._text_content(params, "caption", caption))
        if kind == "sticker" and "emoji" in params:
            content["sticker"]["emoji"] = params["emoji"]
        recorded = {**params, **files}
        return self._bot_message(chat_id, method, recorded, content, reply_to=reply_to, markup=markup,
                                 file_name=name, **{kind: data})

    async def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        return await self._send_file("sendPhoto", "photo", params, files)

    async def _api_sendDocument(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        return await self._send_file("sendDocument", "document", params, files)

    async def _api_sendSticker(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        return await self._send_file("sendSticker", "sticker", params, files)

    async def _api_sendMediaGroup(self, params: dict[str, Any], files: dict[str, Upload]) -> list[Any]:
        chat_id = self._writable_chat(params)
        media = params.get("media")
        if not isinstance(media, list) or not media:
            raise _bad("there is no media in the request")
        if not 2 <= len(media) <= 10:
            raise _bad("wrong number of media in the album: must be between 2 and 10")
        reply_to = self._reply_to(params, chat_id)
        prepared = []
        for item in media:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in ("photo", "document"):
                raise _bad("unsupported media type in the album (the stand-in knows photo and document)")
            if not item.get("media"):  # each item names its file: attach://<part>, or a file_id
                raise _bad("wrong file identifier/HTTP URL specified")
            upload, existing = self._input_file(params, files, "media", item.get("media"), kind=kind)
            caption = self._caption(item.get("caption"), item.get("parse_mode") or params.get("parse_mode"))
            prepared.append((kind, upload, existing, caption, item))
        group_id = str(next(self._media_groups))
        results = []
        for kind, upload, existing, caption, item in prepared:
            content, data, name = self._media_content(kind, upload, existing)
            if caption:
                content["caption"] = caption
            content["media_group_id"] = group_id
            recorded = {**params, **files, "item": item}
            results.append(self._bot_message(chat_id, "sendMediaGroup", recorded, content, reply_to=reply_to,
                                             markup=None, file_name=name, **{kind: data}))
        return results

    async def _api_sendChatAction(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        chat_id = self._writable_chat(params)
        action = params.get("action")
        if action not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        self.chat_actions.append((chat_id, action))
        return True

    # -- editing -----------------------------------------------------------------------------------

    def _editable(self, params: dict[str, Any]) -> tuple[int, _Stored]:
        if params.get("inline_message_id"):
            raise _bad("MESSAGE_ID_INVALID")
        chat_id = self._chat_id(params)
        message_id = self._int(params, "message_id")
        assert message_id is not None
        stored = self._messages.get((chat_id, message_id))
        if stored is None or stored.deleted:
            raise _bad("message to edit not found")
        if not stored.from_bot:
            raise _bad("message can't be edited")
        return chat_id, stored

    def _apply_edit(self, method: str, params: dict[str, Any], stored: _Stored, content: dict[str, Any],
                    markup: dict[str, Any] | None, **sent: Any) -> dict[str, Any]:
        now = int(time.time())
        stored.data.update(content)
        for body, entities in (("text", "entities"), ("caption", "caption_entities")):
            if body in content and entities not in content:
                stored.data.pop(entities, None)
        for key, value in list(content.items()):
            if value is None:
                stored.data.pop(key)
        if markup is not None and "inline_keyboard" in markup:
            stored.data["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        else:
            stored.data.pop("reply_markup", None)
        stored.data["edit_date"] = now
        record = stored.sent
        assert record is not None
        for key in ("text", "caption"):
            if key in content:
                setattr(record, key, content[key])
        for key, value in sent.items():
            setattr(record, key, value)
        record.reply_markup = markup
        record.edits.append({"method": method, **params, "edit_date": now})
        return self._full(stored.data["chat"]["id"], stored.data["message_id"])

    @staticmethod
    def _same_markup(stored: _Stored, markup: dict[str, Any] | None) -> bool:
        new = None
        if markup and "inline_keyboard" in markup:
            new = {"inline_keyboard": markup["inline_keyboard"]}
        return stored.data.get("reply_markup") == new

    async def _api_editMessageText(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        _, stored = self._editable(params)
        if "text" not in stored.data:
            raise _bad("there is no text in the message to edit")
        text = self._text(params, required=True)
        markup = self._markup(params)
        content = self._text_content(params, "text", text)
        if content["text"] == stored.data["text"] and self._same_markup(stored, markup):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._apply_edit("editMessageText", params, stored, content, markup)

    async def _api_editMessageCaption(self, params: dict[str, Any],
                                      files: dict[str, Upload]) -> dict[str, Any]:
        _, stored = self._editable(params)
        if "text" in stored.data:
            raise _bad("there is no caption in the message to edit")
        caption = self._caption(params.get("caption"), params.get("parse_mode"))
        markup = self._markup(params)
        content = self._text_content(params, "caption", caption) or {"caption": None}
        if content["caption"] == stored.data.get("caption") and self._same_markup(stored, markup):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._apply_edit("editMessageCaption", params, stored, content, markup)

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any],
                                          files: dict[str, Upload]) -> dict[str, Any]:
        _, stored = self._editable(params)
        markup = self._markup(params)
        if self._same_markup(stored, markup):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._apply_edit("editMessageReplyMarkup", params, stored, {}, markup)

    async def _api_editMessageMedia(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        _, stored = self._editable(params)
        if "text" in stored.data:
            raise _bad("there is no media in the message to edit")
        item = params.get("media")
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(item, dict) or kind not in ("photo", "document"):
            raise _bad("can't parse InputMedia JSON object")
        upload, existing = self._input_file(params, files, "media", item.get("media"), kind=kind)
        caption = self._caption(item.get("caption"), item.get("parse_mode"))
        markup = self._markup(params)
        content, data, name = self._media_content(kind, upload, existing)
        content = {"photo": None, "document": None, "caption": caption, **content}
        sent = {"photo": None, "document": None, "file_name": name, kind: data}
        return self._apply_edit("editMessageMedia", {**params, **files}, stored, content, markup, **sent)

    async def _api_deleteMessage(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        chat_id = self._chat_id(params)
        message_id = self._int(params, "message_id")
        stored = self._messages.get((chat_id, message_id or 0))
        if stored is None or stored.deleted:
            raise _bad("message to delete not found")
        if not stored.from_bot and self._chats[chat_id]["type"] != "private":
            raise _bad("message can't be deleted")
        stored.deleted = True
        if stored.sent is not None:
            stored.sent.deleted = True
        return True

    async def _api_deleteMessages(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        chat_id = self._chat_id(params)
        for message_id in params.get("message_ids") or []:
            stored = self._messages.get((chat_id, int(message_id)))
            if stored is not None and (stored.from_bot or self._chats[chat_id]["type"] == "private"):
                stored.deleted = True
                if stored.sent is not None:
                    stored.sent.deleted = True
        return True

    async def _api_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if self._queries.get(query_id, True):
            raise _bad(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        if len(str(params.get("text") or "")) > CALLBACK_ANSWER_LIMIT:
            raise _bad("MESSAGE_TOO_LONG")
        self._queries[query_id] = True
        self.callback_answers.append(params)
        return True

    # -- files -------------------------------------------------------------------------------------

    async def _api_getFile(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        file_id = params.get("file_id")
        if not file_id:
            raise _bad("file_id is empty")
        file = self._files.get(str(file_id))
        if file is None:
            raise _bad("wrong file_id or the file is temporarily unavailable")
        if file.size > DOWNLOAD_LIMIT:
            raise _bad("file is too big")
        if file.path is None:
            folder = {"photo": "photos", "document": "documents", "sticker": "stickers"}[file.kind]
            ext = mimetypes.guess_extension(file.mime) or ".bin"
            if file.file_name and "." in file.file_name:
                ext = "." + file.file_name.rsplit(".", 1)[1]
            ext = {".jpe": ".jpg", ".jpeg": ".jpg"}.get(ext, ext)
            file.path = f"{folder}/file_{next(self._path_ids)}{ext}"
            self._by_path[file.path] = file
        return {"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.size,
                "file_path": file.path}

    # -- bot, updates, commands --------------------------------------------------------------------

    async def _api_getMe(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True,
                "can_read_all_group_messages": not self.privacy_mode, "supports_inline_queries": self.inline_mode,
                "can_connect_to_business": False, "has_main_web_app": False}

    async def _api_getChat(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        return {**self._chats[chat_id], "accent_color_id": 0, "max_reaction_count": 11}

    async def _api_getChatMember(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        user_id = self._int(params, "user_id")
        assert user_id is not None
        if user_id != self.bot_id and (user_id not in self._users or (chat_id, user_id) not in self._members):
            if self._chats[chat_id]["type"] == "private":
                raise _bad("member not found")
            raise _bad("PARTICIPANT_ID_INVALID")
        return self._member_json(chat_id, user_id)

    def _member_json(self, chat_id: int, user_id: int) -> dict[str, Any]:
        """A ChatMember; the bot is a plain member of every chat it is in until `set_bot_rights`."""
        user = self.bot_user if user_id == self.bot_id else self._users[user_id].to_json()
        status = self._members.get((chat_id, user_id), "member")
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(dict.fromkeys(
                ("can_be_edited", "is_anonymous", "can_restrict_members", "can_promote_members",
                 "can_post_stories", "can_edit_stories", "can_delete_stories"), False))
            member.update(dict.fromkeys(
                ("can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_change_info",
                 "can_invite_users", "can_pin_messages"), True))
            member.update(self._rights.get((chat_id, user_id), {}))
        return member

    def _may_change_info(self, chat_id: int, user_id: int) -> bool:
        member = self._member_json(chat_id, user_id)
        return member["status"] == "creator" or bool(member.get("can_change_info"))

    async def _api_answerInlineQuery(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        query_id = str(params.get("inline_query_id") or "")
        asked = self._inline_queries.get(query_id)
        if asked is None or asked[1]:
            raise _bad(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        results = params.get("results")
        if not isinstance(results, list):
            raise _bad("can't parse inline query results JSON object")
        if len(results) > INLINE_RESULTS_LIMIT:
            raise _bad("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            result_id = str(result.get("id") or "") if isinstance(result, dict) else ""
            if not 1 <= len(result_id.encode()) <= 64 or result_id in seen:
                raise _bad("RESULT_ID_INVALID" if result_id not in seen else "RESULT_ID_DUPLICATE")
            seen.add(result_id)
            if result.get("type") != "photo":
                raise _bad("the stand-in answers inline queries with photos only")
            file_id = result.get("photo_file_id")
            if file_id is not None:
                file = self._files.get(str(file_id))
                if file is None or file.kind != "photo":
                    raise _bad("PHOTO_INVALID")
            elif not str(result.get("photo_url") or "").startswith("https://"):
                raise _bad("PHOTO_URL_INVALID")
        button = params.get("button")
        if button is not None and (not isinstance(button, dict) or not button.get("text") or not re.fullmatch(
                r"[A-Za-z0-9_-]{1,64}", str(button.get("start_parameter") or ""))):
            raise _bad("BUTTON_INVALID")
        cache_time = self._int(params, "cache_time", required=False)
        self._inline_queries[query_id] = (asked[0], True)
        for result in results:
            self._inline_results[(query_id, str(result["id"]))] = result
        self.inline_answers.append({**params, "cache_time": INLINE_CACHE_DEFAULT if cache_time is None
                                    else cache_time, "is_personal": self._bool(params, "is_personal")})
        return True

    async def _api_getUserProfilePhotos(self, params: dict[str, Any],
                                        files: dict[str, Upload]) -> dict[str, Any]:
        user_id = self._int(params, "user_id")
        assert user_id is not None
        if user_id not in self._users and user_id not in self._private_users:
            raise _bad("user not found")
        offset = self._int(params, "offset", required=False) or 0
        limit = min(max(self._int(params, "limit", required=False) or 100, 1), 100)
        photos = self._profile_photos.get(user_id, [])
        return {"total_count": len(photos), "photos": photos[offset:offset + limit]}

    async def _api_setChatPhoto(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        chat_id = self._writable_chat(params)
        if self._chats[chat_id]["type"] == "private":
            raise _bad("chat photo can't be changed in private chats")
        if not self._may_change_info(chat_id, self.bot_id):
            raise _bad("not enough rights to change chat photo")
        upload = files.get("photo")
        if upload is None:
            raise _bad("photo must be uploaded as an InputFile")
        self._make_photo(upload.data, reencode=True)  # refuses what isn't a picture, like Telegram
        self.chat_photos[chat_id] = upload.data
        return True

    async def _api_logOut(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        return True

    async def _api_close(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        return True

    async def _api_setWebhook(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        url = str(params.get("url") or "")
        if not url:  # an empty url removes the webhook, as deleteWebhook does
            return await self._api_deleteWebhook(params, files)
        if not url.startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = str(params.get("secret_token") or "")
        if secret and not _WEBHOOK_SECRET.fullmatch(secret):
            raise _bad("secret token contains unallowed characters")
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            if not isinstance(allowed, list):
                raise _bad("can't parse allowed updates")
            self._allowed_updates = set(allowed) or None
        self.webhook_max_connections = self._int(params, "max_connections", required=False) or 40
        self.webhook_url, self.webhook_secret = url, secret
        if self._bool(params, "drop_pending_updates"):
            self._queue.clear()
        self._wake_poll("conflict")
        if self._deliverer is None or self._deliverer.done():
            self._deliverer = asyncio.create_task(self._deliver_all(), name="fake-telegram-webhook")
        self._webhook_wake.set()
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        self.webhook_url, self.webhook_secret = "", ""
        await self._stop_delivering()
        if self._bool(params, "drop_pending_updates"):
            self._queue.clear()
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        info: dict[str, Any] = {"url": self.webhook_url, "has_custom_certificate": False,
                                "pending_update_count": len(self._queue)}
        if self.webhook_url:
            info["max_connections"] = self.webhook_max_connections
            if self._allowed_updates is not None:
                info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    # -- webhook delivery ----------------------------------------------------------------------------

    def take_pending(self) -> dict[str, Any]:
        """The oldest update waiting for delivery, taken off the queue (as if Telegram had handed it over)."""
        if not self._queue:
            raise LookupError("no update is waiting")
        return self._queue.pop(0)

    def redeliver(self, update: dict[str, Any]) -> None:
        """Queue `update` again: a polling bot restarted before confirming it fetches it again, and Telegram
        retries a webhook update it got no 200 for."""
        self._queue.append(update)
        self._again.add(int(update["update_id"]))  # handed out once more, below the bot's offset
        self._wake_poll("update")
        self._webhook_wake.set()

    async def post_update(self, url: str, update: dict[str, Any], *, secret: str | None = None,
                          body: bytes | None = None) -> int:
        """POST `update` (or raw `body`) to `url` as Telegram does, with the webhook's secret (or `secret`) in
        the header; the HTTP status."""
        if self._client is None:
            self._client = aiohttp.ClientSession()
        token = self.webhook_secret if secret is None else secret
        headers = {"Content-Type": "application/json", **({SECRET_HEADER: token} if token else {})}
        data = body if body is not None else json.dumps(update).encode()
        async with self._client.post(url, data=data, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=30)) as response:
            await response.read()
            return response.status

    async def _stop_delivering(self) -> None:
        task, self._deliverer = self._deliverer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_all(self) -> None:
        """While a webhook is set: every queued update POSTed to `webhook_target`, several at once, each until
        it is answered 200 (then it leaves the queue)."""
        in_flight: dict[int, asyncio.Task[None]] = {}
        try:
            while self.webhook_url and not self._closing:
                self._webhook_wake.clear()
                target = self.webhook_target
                if target is not None:
                    for update in self._take_updates(100):
                        if len(in_flight) >= self.webhook_max_connections:
                            break
                        update_id = update["update_id"]
                        if update_id not in in_flight:
                            in_flight[update_id] = asyncio.create_task(self._deliver(target, update))
                waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._webhook_wake.wait())]
                await asyncio.wait([*in_flight.values(), *waits], return_when=asyncio.FIRST_COMPLETED)
                for update_id, task in list(in_flight.items()):
                    if task.done():
                        del in_flight[update_id]
                for wait in waits:
                    wait.cancel()
        finally:
            for task in in_flight.values():
                task.cancel()

    async def _deliver(self, target: str, update: dict[str, Any]) -> None:
        try:
            status = await self.post_update(target, update)
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.webhook_posts.append((update["update_id"], status))
        if status == 200:
            self._queue = [u for u in self._queue if u["update_id"] != update["update_id"]]
        else:
            await asyncio.sleep(WEBHOOK_RETRY_S)  # then the loop tries it again
        self._notify()

    def _take_updates(self, limit: int) -> list[dict[str, Any]]:
        allowed = self._allowed_updates
        if allowed is not None:
            self._queue = [u for u in self._queue if any(k in allowed for k in u if k != "update_id")]
        return self._queue[:limit]

    async def _api_getUpdates(self, params: dict[str, Any], files: dict[str, Upload]) -> list[Any]:
        if self.webhook_url:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use "
                                "deleteWebhook to delete the webhook first")
        offset = self._int(params, "offset", required=False)
        limit = self._int(params, "limit", required=False) or 100
        limit = min(max(limit, 1), 100)
        timeout = max(self._int(params, "timeout", required=False) or 0, 0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            if not isinstance(allowed, list):
                raise _bad("can't parse allowed updates")
            self._allowed_updates = set(allowed) or None
        self._wake_poll("conflict")  # a newer getUpdates terminates the older one, as on Telegram
        if offset is not None:
            if offset < 0:
                self._queue = self._queue[offset:]
            else:
                self._queue = [u for u in self._queue if u["update_id"] >= offset or u["update_id"] in self._again]
        updates = self._take_updates(limit)
        self._again -= {int(u["update_id"]) for u in updates}  # the next offset confirms them
        if updates and self.on_deliver is not None:
            self.on_deliver(updates)
        if not updates and timeout and not self._closing:
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._poll_waiter = waiter
            try:
                why = await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                why = "timeout"
            finally:
                if self._poll_waiter is waiter:
                    self._poll_waiter = None
            if why == "conflict":
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure that only "
                                    "one bot instance is running")
            updates = self._take_updates(limit)
            self._again -= {int(u["update_id"]) for u in updates}
            if updates and self.on_deliver is not None:
                self.on_deliver(updates)
        return updates

    @staticmethod
    def _scope_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _api_setMyCommands(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name.lstrip("/")):
                raise _bad("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._scope_key(params)
        self.commands_by_scope[key] = commands
        if key == self._scope_key({}):
            self.commands = commands
        return True

    async def _api_getMyCommands(self, params: dict[str, Any], files: dict[str, Upload]) -> list[Any]:
        return self.commands_by_scope.get(self._scope_key(params), [])

    async def _api_deleteMyCommands(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        key = self._scope_key(params)
        self.commands_by_scope.pop(key, None)
        if key == self._scope_key({}):
            self.commands = []
        return True

    async def _api_setMyDescription(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        return True

    async def _api_setMyShortDescription(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        return True

    async def _api_setMyName(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        return True

    async def _api_setChatMenuButton(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        return True

    # -- payments (Telegram Stars) -----------------------------------------------------------------

    async def _api_sendInvoice(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        chat_id = self._writable_chat(params)
        title, description = str(params.get("title") or ""), str(params.get("description") or "")
        payload = str(params.get("payload") or "")
        if not 1 <= len(title) <= 32:
            raise _bad("INVOICE_TITLE_INVALID" if title else "title is empty")
        if not 1 <= len(description) <= 255:
            raise _bad("INVOICE_DESCRIPTION_INVALID" if description else "description is empty")
        if not 1 <= len(payload.encode()) <= 128:
            raise _bad("INVOICE_PAYLOAD_INVALID" if payload else "payload is empty")
        if params.get("currency") != "XTR":
            raise _bad("CURRENCY_INVALID (the stand-in sells in Telegram Stars, XTR, only)")
        if params.get("provider_token") not in (None, ""):
            raise _bad("PAYMENT_PROVIDER_INVALID")  # Stars take no payment provider
        prices = params.get("prices")
        if not isinstance(prices, list) or len(prices) != 1:
            raise _bad("STARS_INVOICE_INVALID: an invoice in Stars has exactly one price")
        price = prices[0]
        if not isinstance(price, dict) or not price.get("label") or not isinstance(price.get("amount"), int) \
                or not 1 <= price["amount"] <= 10000:
            raise _bad("STARS_INVOICE_INVALID: the price needs a label and 1-10000 Stars")
        reply_to, markup = self._reply_to(params, chat_id), self._markup(params)
        content = {"invoice": {"title": title, "description": description,
                               "start_parameter": str(params.get("start_parameter") or ""),
                               "currency": "XTR", "total_amount": price["amount"]}}
        return self._bot_message(chat_id, "sendInvoice", {**params}, content, reply_to=reply_to, markup=markup)

    async def _api_answerPreCheckoutQuery(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        query_id = str(params.get("pre_checkout_query_id") or "")
        asked = self._checkouts.get(query_id)
        if asked is None or asked[1] is not None or asyncio.get_running_loop().time() - asked[0] > 10:
            raise _bad("QUERY_ID_INVALID")
        ok = self._bool(params, "ok")
        if not ok and not str(params.get("error_message") or "").strip():
            raise _bad("ERROR_MESSAGE_EMPTY")
        self._checkouts[query_id] = (asked[0], {"ok": ok, "error_message": params.get("error_message")})
        return True

    async def _api_refundStarPayment(self, params: dict[str, Any], files: dict[str, Upload]) -> bool:
        user_id = self._int(params, "user_id")
        charge = self.charges.get(str(params.get("telegram_payment_charge_id") or ""))
        if charge is None or charge.user.id != user_id:
            raise _bad("CHARGE_NOT_FOUND")
        if charge.refunded:
            raise _bad("CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        self.star_transactions.append({"id": charge.charge_id, "amount": charge.amount, "date": int(time.time()),
                                       "receiver": {"type": "user", "transaction_type": "invoice_payment",
                                                    "user": charge.user.to_json()}})
        if charge.user.id in self._chats:  # Telegram tells the person in their chat with the bot
            message_id = self._new_message_id(charge.user.id)
            data = {"message_id": message_id, "from": charge.user.to_json(), "date": int(time.time()),
                    "chat": dict(self._chats[charge.user.id]), "refunded_payment": {
                        "currency": "XTR", "total_amount": charge.amount, "invoice_payload": charge.payload,
                        "telegram_payment_charge_id": charge.charge_id}}
            self._messages[(charge.user.id, message_id)] = _Stored(data, None, from_bot=False)
            self._push_update("message", self._full(charge.user.id, message_id))
        return True

    async def _api_getStarTransactions(self, params: dict[str, Any], files: dict[str, Upload]) -> dict[str, Any]:
        offset = self._int(params, "offset", required=False) or 0
        limit = min(max(self._int(params, "limit", required=False) or 100, 1), 100)
        return {"transactions": self.star_transactions[offset:offset + limit]}

    async def _api_getChatMenuButton(self, params: dict[str, Any],
                                     files: dict[str, Upload]) -> dict[str, Any]:
        return {"type": "commands"}
