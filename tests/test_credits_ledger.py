"""The credits ledger, on SQLite and PostgreSQL: what a picture holds, what comes back, what a refund takes,
and what a crash between a job's end and its settlement leaves (mended at start)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import ConfigError, CreditsSettings, load_settings
from core.credits import parse_payload
from core.ports import Store
from core.requests import ReplyTarget
from tests.backends import Backend, open_store

TARGET = ReplyTarget("telegram", "7", None)


@pytest.fixture
async def store(tmp_path: Path, backend: Backend) -> AsyncIterator[Store]:
    """The ledger on each backend: SQLite, and PostgreSQL (where several processes take holds at once)."""
    opened = await open_store(tmp_path / "pixme.sqlite3")
    yield opened
    await opened.close()


async def _hold(store: Store, free_daily: int = 1, user: str = "7") -> int | None:
    job = await store.add_job_holding("telegram", user, user, "style", {"style": "zombie", "node": 1}, TARGET,
                                      free_daily=free_daily, since=0.0)
    return None if job is None else job.id


async def test_free_pictures_first_then_the_oldest_payments_credits_then_nothing(store: Store) -> None:
    assert await _hold(store) is not None  # the free one
    assert await _hold(store) is None  # nothing left: and no job was written
    assert len(await store.unfinished_jobs()) == 1
    assert await store.record_payment("a", "telegram", "7", 50, 1, "pack:50:1")
    assert await store.record_payment("b", "telegram", "7", 200, 5, "pack:200:5")
    assert (await store.balance("telegram", "7", 0.0)).credits == 6
    first = await _hold(store)
    assert first is not None
    assert (await store.get_payment("a")).remaining == 0  # type: ignore[union-attr]
    assert (await store.balance("telegram", "7", 0.0)).credits == 5
    # Someone else's balance is their own.
    assert (await store.balance("telegram", "8", 0.0)).credits == 0
    assert (await store.balance("discord", "7", 0.0)).credits == 0


async def test_a_request_for_several_pictures_holds_one_unit_each_and_pays_only_for_those_delivered(
        store: Store) -> None:
    await store.record_payment("a", "telegram", "7", 50, 2, "pack:50:2")
    await store.record_payment("b", "telegram", "7", 50, 2, "pack:50:2")
    # One free picture and 4 credits: a pack of 6 is refused whole, and nothing is taken.
    assert await store.add_job_holding("telegram", "7", "7", "pack", {}, TARGET, free_daily=1, since=0.0,
                                       pictures=6) is None
    assert (await store.balance("telegram", "7", 0.0)).credits == 4
    assert len(await store.unfinished_jobs()) == 0
    # Three variants: the free one, then credits across both payments, oldest first.
    job = await store.add_job_holding("telegram", "7", "7", "style", {}, TARGET, free_daily=1, since=0.0,
                                      pictures=3)
    assert job is not None and job.pictures == 3
    assert (await store.balance("telegram", "7", 0.0)).credits == 2
    # Two of the three candidates were delivered: the third unit comes back to its payment.
    assert await store.settle_hold(job.id, 2)
    assert (await store.balance("telegram", "7", 0.0)).credits == 3
    assert not await store.return_hold(job.id)  # settled: nothing more to give back


async def test_a_payment_is_credited_once(store: Store) -> None:
    assert await store.record_payment("c", "telegram", "7", 50, 2, "pack:50:2")
    assert not await store.record_payment("c", "telegram", "7", 50, 2, "pack:50:2")
    assert (await store.balance("telegram", "7", 0.0)).credits == 2


async def test_spent_stays_spent_and_returned_comes_back_once(store: Store) -> None:
    await store.record_payment("c", "telegram", "7", 50, 2, "pack:50:2")
    spent, failed = await _hold(store, 0), await _hold(store, 0)
    assert spent is not None and failed is not None
    assert (await store.balance("telegram", "7", 0.0)).credits == 0
    assert await store.settle_hold(spent, 1)
    assert not await store.return_hold(spent)  # delivered: nothing to give back
    assert await store.return_hold(failed)
    assert not await store.return_hold(failed)  # once
    assert (await store.balance("telegram", "7", 0.0)).credits == 1


async def test_a_refund_takes_the_unused_credits_and_a_later_return_does_not_revive_them(store: Store) -> None:
    await store.record_payment("c", "telegram", "7", 50, 3, "pack:50:3")
    held = await _hold(store, 0)
    assert held is not None
    refunded = await store.refund_payment("c")
    assert refunded is not None and refunded.refunded and refunded.removed == 2 and refunded.remaining == 0
    again = await store.refund_payment("c")
    assert again is not None and again.removed == 2  # once
    assert await store.return_hold(held)  # the picture failed after the refund: its credit stays gone
    assert (await store.balance("telegram", "7", 0.0)).credits == 0
    assert await store.refund_payment("unknown") is None


async def test_holds_of_jobs_that_ended_before_a_crash_are_settled_at_start(store: Store) -> None:
    await store.record_payment("c", "telegram", "7", 50, 3, "pack:50:3")
    delivered, failed, waiting = await _hold(store, 0), await _hold(store, 0), await _hold(store, 0)
    assert delivered is not None and failed is not None and waiting is not None
    await store.update_job(delivered, status="delivered", delivered_message="9")
    await store.update_job(failed, status="failed", error="Blocked")
    assert await store.settle_ended_holds() == (1, 1)
    assert (await store.balance("telegram", "7", 0.0)).credits == 1  # the failed one's back; the waiting one holds
    assert not await store.return_hold(delivered)
    assert await store.settle_ended_holds() == (0, 0)


async def test_free_pictures_count_by_day(store: Store) -> None:
    first = await _hold(store, 1)
    assert first is not None
    assert (await store.balance("telegram", "7", 0.0)).free_used == 1
    assert (await store.balance("telegram", "7", 4e9)).free_used == 0  # a later day
    await store.return_hold(first)
    assert (await store.balance("telegram", "7", 0.0)).free_used == 0  # a failed picture isn't counted


def test_payloads_name_a_pack() -> None:
    assert parse_payload("pack:50:10") == (50, 10)
    for bad in ("pack:50", "pack:x:1", "other:50:10", "pack:50:0", ""):
        assert parse_payload(bad) is None


def test_packs_are_read_from_toml_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXME_CREDITS__PACKS", '[{"stars": 200, "images": 50}, {"stars": 50, "images": 10}]')
    monkeypatch.setenv("PIXME_CREDITS__FREE_DAILY", "3")
    settings = load_settings(None)
    assert settings.credits.enabled and settings.credits.free_daily == 3
    assert [(p.stars, p.images) for p in settings.credits.packs] == [(50, 10), (200, 50)]
    assert not CreditsSettings().enabled  # off by default
    monkeypatch.setenv("PIXME_CREDITS__PACKS", '[{"stars": 50, "images": 10}, {"stars": 50, "images": 10}]')
    with pytest.raises(ConfigError, match="the same pack is listed twice"):
        load_settings(None)
