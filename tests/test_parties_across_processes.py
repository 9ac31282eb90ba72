"""Avatar parties when processes share PostgreSQL: a lobby is started or closed once, whoever gets there first.

Two studios, each on its own store connections, stand for two processes: a gateway where the host presses Start
or Cancel, and the process holding the chore lock, whose deadline sweep starts the lobby at the same moment. Both
talk to the one chat through one messenger. The test holds the lobby's row (as a slow transaction elsewhere would)
until both are waiting to change it, so both have read it open before either writes: the race, every time.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from core import texts
from core.config import PartySettings
from core.requests import Chat, Context, Person, PhotoRef
from core.studio import Shared, Studio
from storage.images import PostgresImageStore
from storage.postgres import PostgresStore
from tests.backends import Backend
from tests.clock import ManualClock
from tests.fakes import FakeEngine, FakeMessenger

GROUP = Chat("test", "-100", is_private=False)
ADA, BEN, CY = Person("1", "Ada"), Person("2", "Ben"), Person("3", "Cy")


def _ctx(person: Person, message_id: str) -> Context:
    return Context(GROUP, person, message_id)


def _photo(data: bytes, message_id: str) -> PhotoRef:
    async def fetch() -> bytes:
        return data

    return PhotoRef(fetch=fetch, message_id=message_id, size=len(data))


async def _waiting_for_a_lock(admin: asyncpg.Connection, n: int) -> None:
    async with asyncio.timeout(10):
        while await admin.fetchval(  # noqa: ASYNC110 - the server's own view of who waits for a lock
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'pixme' AND wait_event_type = 'Lock'") < n:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("verb", ["start", "cancel"])
async def test_a_press_racing_the_deadline_sweep_in_another_process_starts_or_closes_the_lobby_once(
        postgres: Backend, selfie: bytes, verb: str) -> None:
    clock = ManualClock()
    messenger = FakeMessenger()  # the chat, as both processes see it
    stores = [await PostgresStore.open(postgres.url) for _ in range(2)]
    gateway, sweeper = studios = [
        Studio(store=store, images=PostgresImageStore(store), engine=FakeEngine(), clock=clock,
               party=PartySettings(deadline_minutes=10), shared=Shared(store, owner=f"process{i}", works=False))
        for i, store in enumerate(stores)]
    for studio in studios:
        studio.attach("test", messenger)
    admin = await asyncpg.connect(postgres.url)
    try:
        await gateway.parties.open(_ctx(ADA, "m1"), "")
        lobby = next(s for s in messenger.sent if s.kind == "buttons")
        press = {b.action.split(":")[1]: b.action for b in lobby.buttons}
        for n, person in enumerate((BEN, CY)):
            await gateway.press(_ctx(person, f"j{n}"), press["join"])
            assert await gateway.parties.join_with_photo(_ctx(person, f"s{n}"), lobby.message_id,
                                                         _photo(selfie, f"s{n}"))
        party_id = int(await admin.fetchval("SELECT id FROM parties"))
        await clock.advance(10 * 60)  # the deadline is reached as Ada presses
        edits_before = len(messenger.edits)

        held = admin.transaction()
        await held.start()
        await admin.execute("SELECT 1 FROM parties WHERE id = $1 FOR UPDATE", party_id)
        pressed = asyncio.create_task(gateway.press(_ctx(ADA, "p1"), press[verb]))
        swept = asyncio.create_task(sweeper.parties.sweep_deadlines())
        await _waiting_for_a_lock(admin, 2)  # both read the lobby open; both are about to change it
        await held.rollback()
        outcome, due = await asyncio.gather(pressed, swept)

        fused = await admin.fetchval("SELECT count(*) FROM jobs WHERE kind = 'fuse'")
        status = await admin.fetchval("SELECT status FROM parties WHERE id = $1", party_id)
        said = [text for message_id, text in messenger.edits[edits_before:] if message_id == lobby.message_id]
    finally:
        await admin.close()
        for studio in studios:
            await studio.aclose()
        for store in stores:
            await store.close()

    assert due == 1
    started = texts.party_started(["Ben", "Cy"])
    if verb == "cancel" and status == "cancelled":  # the press won
        assert (fused, said, outcome.text) == (0, [texts.party_cancelled("Ada")], "Party cancelled.")
    else:  # started once, by whichever got there first; the lobby says so once
        assert (status, fused, said) == ("started", 1, [started])
        won = ["Starting the party!"] if verb == "start" else []
        assert outcome.text in [*won, "That party isn't open any more."]
    assert lobby.text == said[0] and lobby.buttons == []
