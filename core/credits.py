"""Credits: a few free pictures per person per day, then pictures paid for with Telegram Stars.

A picture holds one unit when it is accepted, in the same transaction as its job (a free picture of the day
first, then a credit); the worker spends it on delivery and gives it back when the picture fails, is blocked or
is cancelled. A payment is recorded and credited in one statement keyed by Telegram's charge id, so a replayed
update credits once; payments whose update never arrived (a crash after the offset was confirmed) are found in
the bot's Star transactions at start. Credits belong to the person (platform and user id), in every chat.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core import texts
from core.access import Access
from core.clock import Clock
from core.config import CreditsSettings
from core.errors import PixmeError
from core.gate import Gate
from core.ports import Balance, CreditStore, Job
from core.replies import Replies
from core.requests import Context, ReplyTarget

log = logging.getLogger(__name__)

CURRENCY = "XTR"  # Telegram Stars
PAYLOAD_PREFIX = "pack"


@dataclass(frozen=True)
class Invoice:
    """One pack as an invoice: what the person sees, the payload that comes back with the payment."""

    title: str
    description: str
    label: str
    payload: str
    stars: int


@dataclass(frozen=True)
class StarPayment:
    """An incoming payment as the platform lists it (Telegram's Star transactions)."""

    charge_id: str
    user_id: str
    payload: str
    stars: int


class RefundFailed(PixmeError):
    """The platform would not refund the payment; `reason` is its own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class PaymentMessenger(Protocol):
    """A messenger whose platform sells things (Telegram: invoices in Stars)."""

    async def send_invoice(self, target: ReplyTarget, invoice: Invoice) -> str: ...

    async def refund_payment(self, user_id: str, charge_id: str) -> None:
        """Give the person their Stars back; an already refunded charge counts as done. RefundFailed otherwise."""
        ...


def pack_payload(stars: int, images: int) -> str:
    return f"{PAYLOAD_PREFIX}:{stars}:{images}"


def parse_payload(payload: str) -> tuple[int, int] | None:
    """`pack:<stars>:<images>` -> (stars, images); None for anything else."""
    prefix, _, rest = payload.partition(":")
    stars, _, images = rest.partition(":")
    if prefix != PAYLOAD_PREFIX or not (stars.isdigit() and images.isdigit()) or int(images) < 1:
        return None
    return int(stars), int(images)


class Credits:
    """The free allowance, holds on accepted pictures, payments and refunds."""

    def __init__(self, *, store: CreditStore, clock: Clock, settings: CreditsSettings, access: Access,
                 replies: Replies, gate: Gate) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.access = access
        self.replies = replies
        self.gate = gate

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def applies_to(self, platform: str, user_id: str) -> bool:
        """Whether this person's pictures need the allowance or credits (the bot's admins are exempt)."""
        return self.enabled and not self.access.is_admin_id(platform, user_id)

    def _day_start(self) -> float:
        now = dt.datetime.fromtimestamp(self.clock.now(), dt.UTC)
        return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC).timestamp()

    def _resets(self) -> str:
        return texts.resets_in(self._day_start() + 86400 - self.clock.now())

    async def balance(self, platform: str, user_id: str) -> Balance:
        return await self.store.balance(platform, user_id, self._day_start())

    # -- admission and the worker's hooks ---------------------------------------------------------

    async def short(self, platform: str, user_id: str, pictures: int = 1) -> bool:
        """The free pictures left today and the credits together don't cover `pictures` more: a pack is needed
        (a request for several is refused whole, never half made)."""
        if not self.applies_to(platform, user_id):
            return False
        balance = await self.balance(platform, user_id)
        return max(0, self.settings.free_daily - balance.free_used) + balance.credits < pictures

    def refusal(self, platform: str) -> str:
        """The one line refusing a picture for want of credits (without the packs: see `offer`)."""
        sold_here = bool(self.settings.packs) and isinstance(self.replies.get(platform), PaymentMessenger)
        return texts.out_of_pictures(self.settings.free_daily, self._resets(), sold_here)

    async def offer(self, target: ReplyTarget) -> None:
        """The refusal, then one invoice per pack where the platform sells them."""
        messenger = self.replies.get(target.platform)
        if messenger is None:
            return
        await messenger.send_text(target, self.refusal(target.platform))
        if isinstance(messenger, PaymentMessenger):
            for pack in self.settings.packs:
                await messenger.send_invoice(ReplyTarget(target.platform, target.chat_id),
                                             self.invoice(pack.stars, pack.images))

    @staticmethod
    def invoice(stars: int, images: int) -> Invoice:
        return Invoice(texts.pack_title(images), texts.pack_description(images), texts.pack_title(images),
                       pack_payload(stars, images), stars)

    async def persist_job(self, platform: str, chat_id: str, user_id: str, kind: str, payload: dict[str, object],
                          target: ReplyTarget, pictures: int = 1) -> Job | None:
        """The job, saved together with the units it holds (one per picture it makes); None (nothing saved) when
        the person has too few left."""
        return await self.store.add_job_holding(platform, chat_id, user_id, kind, dict(payload), target,
                                                free_daily=self.settings.free_daily, since=self._day_start(),
                                                pictures=pictures)

    async def settle(self, job: Job, pictures: int) -> None:
        """`pictures` of the job's pictures were delivered: that many units are spent, any others come back (a
        candidate that failed costs nothing)."""
        await self.store.settle_hold(job.id, pictures)

    async def give_back(self, job: Job) -> None:
        """The job ended without a picture (failed, blocked, cancelled): the unit it held comes back."""
        if await self.store.return_hold(job.id):
            log.info("job %s: its credit was given back", job.id)

    async def settle_ended(self) -> None:
        """At start: holds of jobs that ended while the process died before settling them."""
        spent, returned = await self.store.settle_ended_holds()
        if spent or returned:
            log.info("credits: settled %d and gave back %d unit(s) of jobs that ended before a restart",
                     spent, returned)

    # -- payments ----------------------------------------------------------------------------------

    def checkout_refusal(self, payload: str, currency: str, amount: int) -> str | None:
        """Why a payment about to be made must be refused (the pack is no longer sold), or None to go ahead."""
        pack = parse_payload(payload)
        on_sale = {(p.stars, p.images) for p in self.settings.packs}
        if currency != CURRENCY or pack is None or pack not in on_sale or amount != pack[0]:
            return texts.PACK_GONE
        return None

    async def paid(self, ctx: Context, charge_id: str, payload: str, stars: int) -> None:
        """A successful payment arrived: credit its pictures once and thank the person (a replay says nothing)."""
        if await self._record(ctx.chat.platform, ctx.person.id, charge_id, payload, stars):
            await self.replies.say(ctx, await self._thanks(ctx.chat.platform, ctx.person.id, payload))

    async def recover(self, platform: str, payments: list[StarPayment]) -> int:
        """Payments the platform lists that were never recorded (their update was lost in a crash): credit them
        now and tell each person in their private chat. Returns how many."""
        recovered = 0
        messenger = self.replies.get(platform)
        for payment in payments:
            if not await self._record(platform, payment.user_id, payment.charge_id, payment.payload, payment.stars):
                continue
            recovered += 1
            log.info("credits: recorded a payment whose update never arrived")
            if messenger is not None:
                try:
                    await messenger.send_text(ReplyTarget(platform, payment.user_id),
                                              await self._thanks(platform, payment.user_id, payment.payload))
                except Exception as exc:  # the credit is what matters; the note is a courtesy
                    log.info("credits: could not tell a person about a recovered payment: %s", type(exc).__name__)
        return recovered

    async def _record(self, platform: str, user_id: str, charge_id: str, payload: str, stars: int) -> bool:
        pack = parse_payload(payload)
        if pack is None:
            log.warning("credits: a payment with a payload that names no pack was not credited")
            return False
        added = await self.store.record_payment(charge_id, platform, user_id, stars, pack[1], payload)
        if not added:
            log.info("credits: a payment seen before was not counted again")
        return added

    async def _thanks(self, platform: str, user_id: str, payload: str) -> str:
        pack = parse_payload(payload)
        balance = await self.balance(platform, user_id)
        return texts.pack_paid(pack[1] if pack else 0, balance.credits)

    # -- commands ----------------------------------------------------------------------------------

    async def show_balance(self, ctx: Context) -> None:
        """/balance: free pictures left today, and credits."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            platform = ctx.chat.platform
            if not self.enabled:
                await self.replies.say(ctx, texts.CREDITS_OFF)
                return
            if not self.applies_to(platform, ctx.person.id):
                await self.replies.say(ctx, texts.CREDITS_ADMIN)
                return
            balance = await self.balance(platform, ctx.person.id)
            free_left = max(0, self.settings.free_daily - balance.free_used)
            packs = [(p.stars, p.images) for p in self.settings.packs]
            sold_here = bool(packs) and isinstance(self.replies.to(ctx), PaymentMessenger)
            await self.replies.say(ctx, texts.balance(free_left, self.settings.free_daily, self._resets(),
                                                      balance.credits, packs if sold_here else []))

    async def pay_support(self, ctx: Context) -> None:
        """/paysupport: how to get help with a payment (Telegram requires bots that sell to answer it)."""
        async with self.gate.handling(ctx) as allowed:
            if allowed:
                await self.replies.say(ctx, texts.pay_support(self.settings.support))

    async def refund(self, ctx: Context, args: str) -> None:
        """/refund <charge id> (the bot's admins): the Stars back to the payer, the payment's unused credits gone."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if not self.access.is_admin(ctx):
                await self.replies.say(ctx, texts.REFUND_ADMINS_ONLY)
                return
            charge_id = args.strip()
            if not charge_id:
                await self.replies.say(ctx, texts.REFUND_HOW)
                return
            payment = await self.store.get_payment(charge_id)
            if payment is None:
                await self.replies.say(ctx, texts.REFUND_UNKNOWN)
                return
            if payment.refunded:
                await self.replies.say(ctx, texts.refund_done(payment.stars, payment.removed, payment.images))
                return
            messenger = self.replies.get(payment.platform)
            if not isinstance(messenger, PaymentMessenger):
                await self.replies.say(ctx, texts.REFUND_NOT_HERE)
                return
            try:
                # Telegram first: once it has refunded, a crash before our record is mended by running it again
                # (an already refunded charge counts as done); the other way round could take credits for nothing.
                await messenger.refund_payment(payment.user_id, charge_id)
            except RefundFailed as failure:
                await self.replies.say(ctx, texts.refund_refused(failure.reason))
                return
            done = await self.store.refund_payment(charge_id)
            assert done is not None
            log.info("credits: a payment was refunded; %d unused credit(s) taken back", done.removed)
            await self.replies.say(ctx, texts.refund_done(done.stars, done.removed, done.images))
