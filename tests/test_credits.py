"""Credits end to end: the real PTB bot against the loopback Bot API, paying in Telegram Stars.

A person runs out of free pictures, is offered the packs as invoices, pays (pre-checkout, then the
successful_payment message), and spends the credits; a picture that fails gives its credit back; a replayed
payment counts once; a payment whose update was lost is found at the next start; an admin refunds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from core.engines.base import Blocked
from tests.fakes import FakeEngine
from tests.standins.telegram_api import FakeTelegram, PaymentRefused, SentMessage, User
from tests.test_telegram_harness import ALICE, BOB, GROUP, Running, private, running_bot, small_selfie

PACKS = [{"stars": 50, "images": 2}, {"stars": 200, "images": 10}]
CREDITS = {"free_daily": 1, "packs": PACKS, "support": "@pixme_help"}
ADMIN = User(id=4242, first_name="Ops")


def is_invoice(m: SentMessage) -> bool:
    return m.method == "sendInvoice"


def is_photo(m: SentMessage) -> bool:
    return m.method == "sendPhoto"


def is_photo_in_album(m: SentMessage) -> bool:
    return m.method == "sendMediaGroup"


def says(fragment: str) -> Any:
    return lambda m: m.method == "sendMessage" and fragment in (m.text or "")


async def picture(run: Running, user: User, caption: str = "/zombie") -> SentMessage:
    """`user` sends a selfie with a style command in their private chat and gets the picture."""
    chat = private(user)
    run.tg.send_photo(chat, user, small_selfie(), caption=caption)
    return await run.tg.wait_for_message(is_photo, chat_id=chat.id, timeout=30)


async def run_out(run: Running, user: User) -> tuple[SentMessage, list[SentMessage]]:
    """`user` asks for one picture more than the free ones: the refusal, then one invoice per pack."""
    chat = private(user)
    run.tg.send_photo(chat, user, small_selfie(), caption="/comic")
    refusal = await run.tg.wait_for_message(says("free picture"), chat_id=chat.id)
    invoices = await run.tg.wait_for_messages(len(PACKS), is_invoice, chat_id=chat.id)
    return refusal, invoices


async def balance(run: Running, user: User) -> str:
    run.tg.send_text(private(user), user, "/balance")
    answer = await run.tg.wait_for_message(says("Credits:"), chat_id=user.id)
    return answer.text or ""


@contextlib.asynccontextmanager
async def bot(tg: FakeTelegram, data: Path, **kwargs: Any) -> Any:
    async with running_bot(tg, data, credits=kwargs.pop("credits", CREDITS), **kwargs) as run:
        yield run


async def test_out_of_free_pictures_a_pack_is_bought_and_spent(tg: FakeTelegram, tmp_path: Path) -> None:
    async with bot(tg, tmp_path) as run:
        await picture(run, ALICE)  # the free one of the day
        assert "Free pictures left today: 0 of 1" in await balance(run, ALICE)

        refusal, invoices = await run_out(run, ALICE)
        assert "You've had your 1 free picture for today — more at 00:00 UTC" in (refusal.text or "")
        assert "Telegram Stars" in (refusal.text or "")
        # One invoice per pack, in Stars: no payment provider, one price, the payload naming the pack.
        assert [(m.params["payload"], m.params["currency"], m.params["prices"]) for m in invoices] == [
            ("pack:50:2", "XTR", [{"label": "2 pictures", "amount": 50}]),
            ("pack:200:10", "XTR", [{"label": "10 pictures", "amount": 200}])]
        assert all(m.params.get("provider_token", "") == "" for m in invoices)
        assert tg.message(ALICE.id, invoices[0].message_id)["invoice"]["title"] == "2 pictures"

        await tg.pay(ALICE, invoices[0])
        thanks = await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id)
        assert "2 pictures added. You have 2 credits now." in (thanks.text or "")
        assert "Credits: 2 pictures" in await balance(run, ALICE)

        await picture(run, ALICE, "/comic")
        await picture(run, ALICE, "/noir")
        assert "Credits: 0 pictures" in await balance(run, ALICE)
        _, again = await run_out(run, ALICE)  # spent: the packs are offered again
        assert len(again) == len(PACKS)
        # The credits are the person's: a group chat spends the same ones (and Bob, who has none, has his free one).
        await tg.pay(ALICE, again[1])
        await tg.wait_for_message(says("10 pictures added. You have 10 credits now."), chat_id=ALICE.id)
        tg.send_photo(GROUP, ALICE, small_selfie(), caption="/zombie")
        await tg.wait_for_message(is_photo, chat_id=GROUP.id, timeout=30)
        assert "Credits: 9 pictures" in await balance(run, ALICE)
        await picture(run, BOB)
        await run.finished()


async def test_a_style_pack_costs_one_credit_a_picture_and_is_refused_whole_when_they_do_not_cover_it(
        tg: FakeTelegram, tmp_path: Path) -> None:
    async with bot(tg, tmp_path) as run:
        chat = private(ALICE)
        # One free picture and no credits: a pack of 3 is refused up front, with the packs on sale.
        tg.send_photo(chat, ALICE, small_selfie(), caption="/pack 3")
        await tg.wait_for_message(says("free picture"), chat_id=chat.id)
        invoices = await tg.wait_for_messages(len(PACKS), is_invoice, chat_id=chat.id)
        assert not tg.calls_of("sendMediaGroup")
        assert "Free pictures left today: 1 of 1" in await balance(run, ALICE)
        await tg.pay(ALICE, invoices[0])  # 2 pictures: with the free one, exactly 3
        await tg.wait_for_message(says("You have 2 credits now."), chat_id=ALICE.id)
        tg.send_photo(chat, ALICE, small_selfie(), caption="/pack 3")
        album = await tg.wait_for_messages(3, is_photo_in_album, chat_id=chat.id, timeout=60)
        assert len({m.media_group_id for m in album}) == 1
        text = await balance(run, ALICE)
        assert "Free pictures left today: 0 of 1" in text and "Credits: 0 pictures" in text
        await run.finished()


async def test_a_failed_or_cancelled_picture_gives_its_credit_back(tg: FakeTelegram, tmp_path: Path) -> None:
    engine = FakeEngine()
    async with bot(tg, tmp_path, engine=engine, credits={"free_daily": 1, "packs": [{"stars": 50, "images": 2}]}) \
            as run:
        await picture(run, ALICE)
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/comic")
        invoice = await tg.wait_for_message(is_invoice, chat_id=ALICE.id)
        await tg.pay(ALICE, invoice)
        await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id)

        engine.fail_with = Blocked("That picture was blocked by the model's safety filters.")
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
        await tg.wait_for_message(says("blocked"), chat_id=ALICE.id, timeout=30)
        await run.settle()
        assert "Credits: 2 pictures" in await balance(run, ALICE)

        # Cancelled while it is being drawn: the credit comes back too.
        engine.fail_with, engine.delay = None, 30.0
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
        await tg.wait_until(lambda: len(engine.calls) == 3, 20, "the engine to start the picture")
        assert "Credits: 1 picture" in await balance(run, ALICE)  # held while it is made
        tg.send_text(private(ALICE), ALICE, "/cancel")
        await tg.wait_for_message(says("Cancelled 1 request"), chat_id=ALICE.id)
        assert "Credits: 2 pictures" in await balance(run, ALICE)

        engine.delay = 0.0
        await picture(run, ALICE, "/comic")  # delivered: spent
        assert "Credits: 1 picture" in await balance(run, ALICE)
        await run.finished()


async def test_a_duplicated_successful_payment_is_counted_once(tg: FakeTelegram, tmp_path: Path) -> None:
    async with bot(tg, tmp_path) as run:
        await picture(run, ALICE)
        _, invoices = await run_out(run, ALICE)
        charge = await tg.pay(ALICE, invoices[0])
        await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id)
        tg.replay_payment(charge)
        tg.replay_payment(charge)
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())  # no second thank-you
        assert "Credits: 2 pictures" in await balance(run, ALICE)


async def test_a_pack_no_longer_on_sale_is_refused_at_checkout(tg: FakeTelegram, tmp_path: Path) -> None:
    async with bot(tg, tmp_path) as run:
        await picture(run, ALICE)
        _, invoices = await run_out(run, ALICE)
        await run.finished()
    # The operator stops selling the big pack; the invoice for it is still in Alice's chat.
    async with bot(tg, tmp_path, credits={**CREDITS, "packs": PACKS[:1]}) as run:
        with pytest.raises(PaymentRefused, match="isn't on sale any more"):
            await tg.pay(ALICE, invoices[1])
        assert "Credits: 0 pictures" in await balance(run, ALICE)
        await tg.pay(ALICE, invoices[0])
        await tg.wait_for_message(says("2 pictures added"), chat_id=ALICE.id)
        await run.finished()


async def test_a_payment_whose_update_was_lost_is_credited_at_the_next_start(tg: FakeTelegram,
                                                                            tmp_path: Path) -> None:
    async with bot(tg, tmp_path) as run:
        await picture(run, ALICE)
        _, invoices = await run_out(run, ALICE)
        # Paid, but the update never reaches the bot (its offset was confirmed, then the process died).
        await tg.pay(ALICE, invoices[1], deliver=False)
        await run.finished()
        assert "Credits: 0 pictures" in await balance(run, ALICE)
    async with bot(tg, tmp_path) as run:
        thanks = await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id)
        assert "10 pictures added" in (thanks.text or "")
        assert "Credits: 10 pictures" in await balance(run, ALICE)
        await run.finished()
    async with bot(tg, tmp_path) as run:  # listed again at every start, counted once
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert "Credits: 10 pictures" in await balance(run, ALICE)


async def test_an_admin_refunds_a_payment_and_its_unused_credits_go(tg: FakeTelegram, tmp_path: Path) -> None:
    admin_chat = private(ADMIN)
    async with bot(tg, tmp_path, admins=[f"telegram:{ADMIN.id}"]) as run:
        await picture(run, ALICE)
        _, invoices = await run_out(run, ALICE)
        charge = await tg.pay(ALICE, invoices[0])
        await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id)
        await picture(run, ALICE, "/noir")  # one of the two spent

        tg.send_text(private(ALICE), ALICE, f"/refund {charge}")
        await tg.wait_for_message(says("Only the bot's admins can refund"), chat_id=ALICE.id)
        tg.send_text(admin_chat, ADMIN, "/refund nonsense")
        await tg.wait_for_message(says("no payment with that charge id"), chat_id=ADMIN.id)

        tg.send_text(admin_chat, ADMIN, f"/refund {charge}")
        done = await tg.wait_for_message(says("Refunded"), chat_id=ADMIN.id)
        assert "50 ⭐ went back to the payer; 1 of the pack's 2 pictures were unused and taken back" \
            in (done.text or "")
        assert [(c["user_id"], c["telegram_payment_charge_id"]) for c in tg.calls_of("refundStarPayment")] == [
            (ALICE.id, charge)]
        assert tg.charges[charge].refunded
        assert "Credits: 0 pictures" in await balance(run, ALICE)
        # Asked again: said as it is, and Telegram is not asked twice.
        tg.send_text(admin_chat, ADMIN, f"/refund {charge}")
        await tg.wait_for_message(says("Refunded"), chat_id=ADMIN.id)
        assert len(tg.calls_of("refundStarPayment")) == 1

        # Telegram refunded it already (our record was lost in a crash): CHARGE_ALREADY_REFUNDED counts as done.
        other = await tg.pay(ALICE, invoices[1])
        await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id)
        tg.charges[other].refunded = True
        tg.send_text(admin_chat, ADMIN, f"/refund {other}")
        done = await tg.wait_for_message(says("Refunded"), chat_id=ADMIN.id)
        assert "10 of the pack's 10 pictures were unused" in (done.text or "")
        assert ("refundStarPayment", 400, "Bad Request: CHARGE_ALREADY_REFUNDED") in tg.errors
        assert "Credits: 0 pictures" in await balance(run, ALICE)
        await run.finished()


async def test_paysupport_and_the_menu(tg: FakeTelegram, tmp_path: Path) -> None:
    async with bot(tg, tmp_path) as run:
        tg.send_text(private(ALICE), ALICE, "/paysupport")
        help_ = await tg.wait_for_message(says("Help with a payment"), chat_id=ALICE.id)
        assert "@pixme_help" in (help_.text or "")
        menu = [c["command"] for c in tg.commands]
        assert "balance" in menu and "paysupport" in menu and "refund" not in menu
        assert "pre_checkout_query" in tg.calls_of("getUpdates")[-1]["allowed_updates"]
        await run.finished()
    async with running_bot(tg, tmp_path) as run:  # credits off (the default): nothing about them is offered
        assert "balance" not in [c["command"] for c in tg.commands]
        await picture(run, ALICE)
        await picture(run, ALICE, "/comic")
        tg.send_text(private(ALICE), ALICE, "/balance")
        await tg.wait_for_message(says("Pictures are free here"), chat_id=ALICE.id)
        await tg.expect_no_message(chat_id=ALICE.id, after=run.finished())
        assert not tg.calls_of("sendInvoice")


# -- kill -9 between the payment and its credit (a real `pixme run` process) ------------------------------

def _env(tg: FakeTelegram, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXME_") and k not in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN",
                                                       "GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env.update({
        "PIXME_TELEGRAM__TOKEN": tg.token, "PIXME_TELEGRAM__API_URL": tg.api_url,
        "PIXME_TELEGRAM__FILE_URL": tg.file_url, "PIXME_STORAGE__DIR": str(data_dir),
        "PIXME_ENGINE__DEFAULT": "offline", "PIXME_ENGINE__INPUT_MAX_PX": "256",
        "PIXME_CREDITS__FREE_DAILY": "1", "PIXME_CREDITS__PACKS": '[{"stars": 50, "images": 3}]',
    })
    return env


async def _start(env: dict[str, str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT)


def _credits(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'pixme.sqlite3'}?mode=ro", uri=True)) as db:
        (left,) = db.execute("SELECT COALESCE(SUM(remaining), 0) FROM payments").fetchone()
    return int(left)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_kill_9_between_the_payment_and_its_credit_counts_it_once(tmp_path: Path) -> None:
    log, data = tmp_path / "bot.log", tmp_path / "data"
    async with FakeTelegram() as tg:
        tg.add_chat(private(ALICE), ALICE)
        env = _env(tg, data)
        first = await _start(env, tmp_path, log)
        try:
            await tg.wait_until(lambda: tg.calls_of("getUpdates"), 60, "the bot to poll")
            tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
            await tg.wait_for_message(is_photo, chat_id=ALICE.id, timeout=60)
            tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/comic")
            invoice = await tg.wait_for_message(is_invoice, chat_id=ALICE.id, timeout=30)

            def freeze_on_payment(updates: list[dict[str, Any]]) -> None:
                # The payment is on its way to the bot, which stops before it can handle it or confirm its offset.
                if any("successful_payment" in (u.get("message") or {}) for u in updates):
                    tg.on_deliver = None
                    os.kill(first.pid, signal.SIGSTOP)

            tg.on_deliver = freeze_on_payment
            await tg.pay(ALICE, invoice, timeout=30)
            await tg.wait_until(lambda: tg.on_deliver is None, 30, "the payment to be fetched")
        finally:
            first.kill()  # SIGKILL: no clean-up of any kind
            await first.wait()
        assert _credits(data) == 0, "killed before the credit"
        assert not [m for m in tg.bot_messages if "Thank you" in (m.text or "")]

        second = await _start(env, tmp_path, log)
        try:
            thanks = await tg.wait_for_message(says("Thank you"), chat_id=ALICE.id, timeout=60)
            assert "3 pictures added. You have 3 credits now." in (thanks.text or "")
            tg.send_text(private(ALICE), ALICE, "/balance")
            answer = await tg.wait_for_message(says("Credits:"), chat_id=ALICE.id, timeout=30)
            assert "Credits: 3 pictures" in (answer.text or "")
        finally:
            second.send_signal(signal.SIGTERM)  # a clean stop handles every update it fetched first
            code = await asyncio.wait_for(second.wait(), 30)
        assert code == 0, log.read_text()[-2000:]
        # The payment's update came again after the restart (its offset was never confirmed): counted once.
        assert _credits(data) == 3
        assert len([m for m in tg.bot_messages if "Thank you" in (m.text or "")]) == 1
        assert sum(1 for u in tg.updates if "successful_payment" in (u.get("message") or {})) == 1
        assert len([c for c in tg.calls_of("getUpdates") if c.get("offset")]) > 0


# -- Discord and the playground honour the same rules (buying happens on Telegram) -------------------------

async def test_discord_counts_the_free_pictures_and_shows_the_balance(tmp_path: Path) -> None:
    from core.config import CreditsSettings
    from tests.standins.discord_api import FakeDiscord
    from tests.test_discord_e2e import ALICE as DISCORD_ALICE
    from tests.test_discord_e2e import running_bot as discord_bot

    async with FakeDiscord() as fake, discord_bot(fake, tmp_path, FakeEngine(),
                                                  credits=CreditsSettings.model_validate(CREDITS)):
        photo = fake.upload(small_selfie())
        before = fake.last_id()
        await fake.slash(DISCORD_ALICE, "avatar", {"style": "zombie"}, attachments={"photo": photo})
        await fake.wait_for_bot_message(lambda m: m["attachments"], after=before)
        before = fake.last_id()
        photo = fake.upload(small_selfie())
        await fake.slash(DISCORD_ALICE, "avatar", {"style": "comic"}, attachments={"photo": photo})
        refusal = await fake.wait_for_bot_message(lambda m: "free picture" in m["content"], after=before)
        # One line: no packs here (Stars are Telegram's), so none are offered.
        assert refusal["content"].startswith("You've had your 1 free picture for today — more at 00:00 UTC")
        assert "Stars" not in refusal["content"]
        before = fake.last_id()
        await fake.slash(DISCORD_ALICE, "balance")
        answer = await fake.wait_for_bot_message(lambda m: "Credits:" in m["content"], after=before)
        assert "Free pictures left today: 0 of 1" in answer["content"]
        assert "Credits: 0 pictures" in answer["content"] and "Packs" not in answer["content"]


async def test_the_playground_counts_the_free_pictures_and_shows_the_balance(tmp_path: Path) -> None:
    from core.config import CreditsSettings
    from core.engines.offline import OfflineEngine
    from tests.test_playground import _command, _styled, all_handled, open_page, serve

    async with serve(tmp_path, OfflineEngine(), credits=CreditsSettings.model_validate(CREDITS)) as client:
        page = await open_page(client)
        try:
            _, picture_ = await _styled(page, small_selfie())  # Alex's free one
            await page.act("text", name="Alex", text="/comic", reply_to=picture_["id"])
            refusal = await page.message("text", timeout=15)
            while "free picture" not in refusal["text"]:
                refusal = await page.message("text", timeout=15)
            assert refusal["text"].startswith("You've had your 1 free picture for today")
            assert "Stars" not in refusal["text"]
            _, answer = await _command(page, "/balance")
            assert "Free pictures left today: 0 of 1" in answer["text"] and "Credits: 0 pictures" in answer["text"]
            _, sam = await _command(page, "/balance", name="Sam")  # another name is another person
            assert "Free pictures left today: 1 of 1" in sam["text"]
            await all_handled(client)
        finally:
            await page.close()
