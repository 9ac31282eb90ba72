"""`TelegramMessenger`: core's Messenger protocol with Bot API calls (python-telegram-bot's `Bot`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import (
    Bot,
    ChatMember,
    ChatMemberAdministrator,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    LabeledPrice,
    Message,
    ReplyParameters,
    TransactionPartnerUser,
)
from telegram.constants import ChatAction, ChatMemberStatus
from telegram.error import BadRequest, Forbidden, TelegramError

from core import texts
from core.actions import ExportPress, StyleChoice, VariantPick, encode
from core.credits import CURRENCY, Invoice, RefundFailed, StarPayment
from core.requests import Button, DeliveryRefused, ImageReply, ReplyTarget
from core.styles import Style

log = logging.getLogger(__name__)
T = TypeVar("T")

CAPTION_LIMIT = 1024
ALBUM_LIMIT = 10  # photos in one sendMediaGroup
TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64  # bytes, Telegram's limit for callback_data
INVOICE_TITLE_LIMIT, INVOICE_DESCRIPTION_LIMIT = 32, 255
STAR_TRANSACTIONS_PAGE = 100  # getStarTransactions' largest page
STAR_TRANSACTIONS_PAGES = 1000  # read at most this many pages at start (100,000 transactions)
ACTION_BUTTON_PREFIX = "do:"
LONG_ACTION_PREFIX = "k:"  # an action too long for callback_data, kept in memory under a hash
# sendPhoto refuses some images (too big, odd dimensions); those still go out as a file.
_PHOTO_REFUSALS = ("PHOTO_INVALID_DIMENSIONS", "PHOTO_SAVE_FILE_INVALID", "IMAGE_PROCESS_FAILED")
RIGHTS_TTL_S = 600.0  # how long what getChatMember said about the bot's rights in a chat is trusted
# What a delivered photo is known by from now on (its Telegram file_id), for inline sharing.
PhotoDelivered = Callable[[int, str], Awaitable[None]]


def may_change_info(member: ChatMember) -> bool:
    """Whether a chat member (the bot) may change the chat's title and photo."""
    if member.status == ChatMemberStatus.OWNER:
        return True
    return isinstance(member, ChatMemberAdministrator) and bool(member.can_change_info)


def _chunks(text: str, size: int = TEXT_LIMIT) -> list[str]:
    """Split long text into messages, preferring line breaks, then spaces."""
    parts: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", 0, size)
        if cut <= size // 2:
            cut = text.rfind(" ", 0, size)
        if cut <= size // 2:
            cut = size
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip():
        parts.append(text)
    return parts


def _extension(mime: str) -> str:
    return {"image/png": "png", "image/webp": "webp"}.get(mime, "jpg")


async def _refusing(call: Awaitable[T]) -> T:
    """Run a Bot API call; a chat that will never accept messages becomes `DeliveryRefused`."""
    try:
        return await call
    except Forbidden as exc:  # blocked by the person, kicked from the group, deactivated account
        raise DeliveryRefused(exc.message) from exc
    except BadRequest as exc:
        if "chat not found" in exc.message.lower():
            raise DeliveryRefused(exc.message) from exc
        raise


class TelegramMessenger:
    """Implements `core.requests.Messenger` with Bot API calls."""

    def __init__(self, bot: Callable[[], Bot], *, on_photo: PhotoDelivered | None = None) -> None:
        self._get_bot = bot
        self._long_actions: OrderedDict[str, str] = OrderedDict()
        self._on_photo = on_photo
        self._rights: dict[int, tuple[bool, float]] = {}  # chat -> (may change its photo, when learnt)
        self._recording: set[asyncio.Task[None]] = set()

    @property
    def _bot(self) -> Bot:
        return self._get_bot()

    @staticmethod
    def _reply(target: ReplyTarget, to: str | None = None) -> ReplyParameters | None:
        message_id = to or target.reply_to
        if message_id is None:
            return None
        return ReplyParameters(message_id=int(message_id), allow_sending_without_reply=True)

    async def send_image(self, target: ReplyTarget, reply: ImageReply) -> str:
        caption = reply.caption.strip()
        fits = len(caption) <= CAPTION_LIMIT
        upload = InputFile(reply.image, filename=f"pixme-{reply.node_id}.{_extension(reply.mime)}")
        chat_id = int(target.chat_id)
        markup = self._export_keyboard(reply.node_id, reply.buttons)
        try:
            sent = await _refusing(self._bot.send_photo(
                chat_id=chat_id, photo=upload, caption=caption if fits else None,
                reply_parameters=self._reply(target), reply_markup=markup))
        except BadRequest as exc:
            if not any(code in exc.message for code in _PHOTO_REFUSALS):
                raise
            log.info("telegram: sendPhoto refused the image (%s); sending it as a file", exc.message)
            upload = InputFile(reply.image, filename=f"pixme-{reply.node_id}.{_extension(reply.mime)}")
            sent = await _refusing(self._bot.send_document(
                chat_id=chat_id, document=upload, caption=caption if fits else None,
                reply_parameters=self._reply(target), reply_markup=markup))
        await self._delivered(reply.node_id, sent)
        if not fits:
            # Commentary longer than a caption may be goes underneath, replying to the picture.
            for part in _chunks(caption):
                await _refusing(self._bot.send_message(
                    chat_id=chat_id, text=part, reply_parameters=self._reply(target, str(sent.message_id))))
        return str(sent.message_id)

    async def send_gallery(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """An album (sendMediaGroup, up to 10 a message): every photo is its own message, captioned and
        replyable; albums carry no buttons, which the step captions make up for. One picture, or an album
        Telegram refuses, goes out one photo at a time."""
        if len(replies) < 2:
            return [await self.send_image(target, reply) for reply in replies]
        sent: list[str] = []
        for start in range(0, len(replies), ALBUM_LIMIT):
            chunk = replies[start:start + ALBUM_LIMIT]
            if len(chunk) == 1:
                sent.append(await self.send_image(target, chunk[0]))
                continue
            # attach=True: each photo its own multipart part, named in its item (attach://…).
            media = [InputMediaPhoto(InputFile(r.image, filename=f"pixme-{r.node_id}.{_extension(r.mime)}",
                                               attach=True),
                                     caption=r.caption.strip()[:CAPTION_LIMIT] or None) for r in chunk]
            try:
                messages = await _refusing(self._bot.send_media_group(
                    chat_id=int(target.chat_id), media=media, reply_parameters=self._reply(target)))
            except BadRequest as exc:
                log.info("telegram: sendMediaGroup refused the album (%s); sending the photos one by one",
                         exc.message)
                sent += [await self.send_image(target, reply) for reply in chunk]
                continue
            for reply, message in zip(chunk, messages, strict=False):
                await self._delivered(reply.node_id, message)
            sent += [str(message.message_id) for message in messages]
        return sent

    async def send_album(self, target: ReplyTarget, replies: list[ImageReply]) -> list[str]:
        """The pictures as an album (each its own message, captioned with its number and replyable); albums
        carry no buttons, so one message under it offers 1…N, each bringing that picture out as a result of its
        own (with its buttons) to continue from."""
        sent = await self.send_gallery(target, replies)
        buttons = [self._button(Button(str(number), encode(VariantPick(reply.node_id))))
                   for number, reply in enumerate(replies, start=1)]
        try:
            await self._send_keyboard(ReplyTarget(target.platform, target.chat_id, sent[0]), texts.VARIANTS_PICK,
                                      buttons, per_row=5)
        except Exception as exc:  # the pictures are out and replyable; a lost menu must not send them twice
            log.warning("telegram: could not send the menu under an album: %s", type(exc).__name__)
        return sent

    async def _delivered(self, node_id: int, message: Message) -> None:
        """Tell core what the delivered photo is known by, beside the send: the send returns at once (core links
        the message to its picture next, and a quick reply needs that link), and never fails over this."""
        if self._on_photo is None or node_id <= 0 or not message.photo:
            return
        largest = max(message.photo, key=lambda p: p.width * p.height)
        record = self._on_photo

        async def remember() -> None:
            try:
                await record(node_id, largest.file_id)
            except Exception as exc:
                log.warning("telegram: could not record the file of picture %s: %s", node_id, type(exc).__name__)

        task = asyncio.create_task(remember(), name=f"file-of-{node_id}")
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def recorded(self) -> None:
        """Wait for the delivered photos' files being recorded now (tests, and a clean stop)."""
        if self._recording:
            await asyncio.wait(set(self._recording))

    def _export_keyboard(self, node_id: int, more: tuple[Button, ...] = ()) -> InlineKeyboardMarkup | None:
        """Sticker / profile picture / original, under a result (the node id survives restarts); what else the
        picture offers goes underneath, a row each."""
        if node_id <= 0:
            return None
        rows = [[self._button(Button(label, encode(ExportPress(kind, node_id))))
                 for label, kind in texts.export_buttons()]]
        rows += [[self._button(button)] for button in more]
        return InlineKeyboardMarkup(rows)

    async def send_file(self, target: ReplyTarget, reply: ImageReply) -> str:
        """sendDocument: Telegram keeps the bytes (full resolution, provenance metadata) as they are."""
        caption = reply.caption.strip()
        name = reply.file_name or f"pixme-{reply.node_id}.{_extension(reply.mime)}"
        sent = await _refusing(self._bot.send_document(
            chat_id=int(target.chat_id), document=InputFile(reply.image, filename=name),
            caption=caption[:CAPTION_LIMIT] or None, reply_parameters=self._reply(target)))
        return str(sent.message_id)

    async def send_sticker(self, target: ReplyTarget, image: bytes) -> str:
        sent = await _refusing(self._bot.send_sticker(
            chat_id=int(target.chat_id), sticker=InputFile(image, filename="pixme-sticker.webp"), emoji="🖼",
            reply_parameters=self._reply(target)))
        return str(sent.message_id)

    async def send_text(self, target: ReplyTarget, text: str) -> str:
        first: str | None = None
        for part in _chunks(text) or ["…"]:
            sent = await _refusing(self._bot.send_message(
                chat_id=int(target.chat_id), text=part, reply_parameters=self._reply(target)))
            first = first or str(sent.message_id)
        assert first is not None
        return first

    async def send_style_menu(self, target: ReplyTarget, text: str, styles: list[Style]) -> str:
        buttons = [InlineKeyboardButton(s.label, callback_data=encode(StyleChoice(s.id))) for s in styles]
        return await self._send_keyboard(target, text, buttons, per_row=2)

    async def send_buttons(self, target: ReplyTarget, text: str, buttons: list[Button]) -> str:
        return await self._send_keyboard(target, text, [self._button(b) for b in buttons], per_row=1)

    async def _send_keyboard(self, target: ReplyTarget, text: str, buttons: list[InlineKeyboardButton],
                             per_row: int) -> str:
        sent = await _refusing(self._bot.send_message(
            chat_id=int(target.chat_id), text=text[:TEXT_LIMIT], reply_markup=self._keyboard(buttons, per_row),
            reply_parameters=self._reply(target)))
        return str(sent.message_id)

    def _button(self, button: Button) -> InlineKeyboardButton:
        return InlineKeyboardButton(button.label, callback_data=self.callback_data(button.action))

    @staticmethod
    def _keyboard(buttons: list[InlineKeyboardButton], per_row: int) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([buttons[i:i + per_row] for i in range(0, len(buttons), per_row)])

    async def edit_text(self, target: ReplyTarget, message_id: str, text: str,
                        buttons: list[Button] | None = None) -> None:
        markup = self._keyboard([self._button(b) for b in buttons], per_row=1) if buttons else None
        try:
            await _refusing(self._bot.edit_message_text(
                chat_id=int(target.chat_id), message_id=int(message_id), text=text[:TEXT_LIMIT],
                reply_markup=markup))
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise

    async def delete(self, target: ReplyTarget, message_id: str) -> None:
        try:
            await _refusing(self._bot.delete_message(chat_id=int(target.chat_id), message_id=int(message_id)))
        except BadRequest as exc:  # already gone, or too old to delete (48 h): nothing to do
            log.debug("telegram: could not delete message %s: %s", message_id, exc.message)

    # -- payments (core.credits.PaymentMessenger) ----------------------------------------------

    async def send_invoice(self, target: ReplyTarget, invoice: Invoice) -> str:
        """An invoice in Telegram Stars: no payment provider (an empty token), one price."""
        sent = await _refusing(self._bot.send_invoice(
            chat_id=int(target.chat_id), title=invoice.title[:INVOICE_TITLE_LIMIT],
            description=invoice.description[:INVOICE_DESCRIPTION_LIMIT], payload=invoice.payload,
            provider_token="", currency=CURRENCY, prices=[LabeledPrice(invoice.label, invoice.stars)],
            reply_parameters=self._reply(target)))
        return str(sent.message_id)

    async def refund_payment(self, user_id: str, charge_id: str) -> None:
        try:
            await self._bot.refund_star_payment(user_id=int(user_id), telegram_payment_charge_id=charge_id)
        except BadRequest as exc:
            if "charge_already_refunded" in exc.message.lower():  # done before (a crash before our record)
                return
            raise RefundFailed(exc.message) from exc

    async def star_payments(self) -> list[StarPayment]:
        """Every incoming payment from a person for an invoice, as getStarTransactions lists them."""
        found: list[StarPayment] = []
        for page in range(STAR_TRANSACTIONS_PAGES):
            batch = (await self._bot.get_star_transactions(offset=page * STAR_TRANSACTIONS_PAGE,
                                                           limit=STAR_TRANSACTIONS_PAGE)).transactions
            for transaction in batch:
                source = transaction.source
                if isinstance(source, TransactionPartnerUser) and source.transaction_type == "invoice_payment" \
                        and source.invoice_payload:
                    found.append(StarPayment(transaction.id, str(source.user.id), source.invoice_payload,
                                             transaction.amount))
            if len(batch) < STAR_TRANSACTIONS_PAGE:
                break
        return found

    async def show_working(self, target: ReplyTarget) -> None:
        await _refusing(self._bot.send_chat_action(chat_id=int(target.chat_id),
                                                   action=ChatAction.UPLOAD_PHOTO))

    # -- the group photo (core.sharing.ChatPhotoMessenger) ------------------------------------------

    async def can_set_chat_photo(self, target: ReplyTarget) -> bool:
        """Whether the bot may change the group's photo: learnt from getChatMember, trusted for RIGHTS_TTL_S
        (a my_chat_member update, `note_rights`, corrects it at once)."""
        chat_id = int(target.chat_id)
        if chat_id > 0:  # a private chat has no photo of its own to set
            return False
        known = self._rights.get(chat_id)
        if known is not None and time.monotonic() - known[1] < RIGHTS_TTL_S:
            return known[0]
        bot = self._bot
        try:
            member = await bot.get_chat_member(chat_id, bot.id)
        except TelegramError as exc:
            log.info("telegram: could not read the bot's rights in %s: %s", chat_id, exc.message)
            return False
        allowed = may_change_info(member)
        self.note_rights(chat_id, allowed)
        return allowed

    def note_rights(self, chat_id: int, allowed: bool) -> None:
        """What the bot may do in a chat changed (a my_chat_member update) or was just learnt."""
        self._rights[chat_id] = (allowed, time.monotonic())

    async def set_chat_photo(self, target: ReplyTarget, image: bytes) -> bool:
        chat_id = int(target.chat_id)
        try:
            await self._bot.set_chat_photo(chat_id=chat_id, photo=InputFile(image, filename="pixme-group.jpg"))
        except (BadRequest, Forbidden) as exc:
            log.info("telegram: setChatPhoto refused in %s: %s", chat_id, exc.message)
            self.note_rights(chat_id, False)
            return False
        return True

    # -- button payloads -----------------------------------------------------------------------

    def callback_data(self, action: str) -> str:
        """`do:<action>`, or a short key for actions longer than Telegram's 64 bytes."""
        data = f"{ACTION_BUTTON_PREFIX}{action}"
        if len(data.encode()) <= CALLBACK_DATA_LIMIT:
            return data
        key = LONG_ACTION_PREFIX + hashlib.sha256(action.encode()).hexdigest()[:32]
        self._long_actions[key] = action
        self._long_actions.move_to_end(key)
        while len(self._long_actions) > 10_000:
            self._long_actions.popitem(last=False)
        return key

    def action_of(self, data: str) -> str | None:
        """The studio action behind a button's callback_data, if it is one of ours."""
        if data.startswith(ACTION_BUTTON_PREFIX):
            return data[len(ACTION_BUTTON_PREFIX):]
        if data.startswith(LONG_ACTION_PREFIX):
            return self._long_actions.get(data)
        return None

