"""The use cases through real SQLite and image storage, with an in-memory engine and messenger."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from core.config import LimitsSettings
from core.engines.base import Blocked, EngineResult, NoImage
from core.exports import has_provenance
from core.ports import Member, Preferences, Store
from core.requests import Chat, Context, ImageReply, Person, PhotoRef, ReplyTarget
from core.studio import Studio
from storage.images import FileImageStore
from tests.backends import open_stores, sql, stored_images
from tests.fakes import FakeEngine, FakeMessenger, invert

pytestmark = pytest.mark.usefixtures("backend")  # every test here runs on SQLite and on PostgreSQL

CHAT = Chat("test", "42", is_private=True)
ADA = Person("7", "Ada")


def ctx(message_id: str, person: Person = ADA) -> Context:
    return Context(CHAT, person, message_id)


def photo(data: bytes, message_id: str = "1") -> PhotoRef:
    async def fetch() -> bytes:
        return data

    return PhotoRef(fetch=fetch, message_id=message_id, size=len(data))


class Harness:
    def __init__(self, studio: Studio, engine: FakeEngine, messenger: FakeMessenger) -> None:
        self.studio, self.engine, self.messenger = studio, engine, messenger

    async def settle(self) -> None:
        await self.studio.jobs.wait_idle(timeout=10)


async def make_harness(data_dir: Path, engine: FakeEngine | None = None) -> tuple[Harness, Store]:
    store, images = await open_stores(data_dir / "db.sqlite3")
    engine = engine or FakeEngine()
    studio = Studio(store=store, images=images, engine=engine,
                    limits=LimitsSettings(concurrency=4))
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    return Harness(studio, engine, messenger), store


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness, store = await make_harness(tmp_path)
    yield harness
    await harness.studio.aclose()
    await store.close()


async def test_style_replies_to_the_photo_with_the_engines_image(h: Harness, selfie: bytes) -> None:
    await h.studio.style(ctx("1"), "zombie", photo(selfie))
    await h.settle()
    [sent] = h.messenger.sent
    assert sent.kind == "image" and sent.target.reply_to == "1"
    assert sent.text == "style: zombie"  # the model's commentary is the caption
    # What was sent is the engine's output for the intake'd selfie.
    _, engine_input, _, _ = h.engine.calls[0]
    # (pixel for pixel: the delivered file also carries the AI-provenance XMP the engine's did not).
    assert sent.image is not None and has_provenance(sent.image)
    assert Image.open(io.BytesIO(sent.image)).tobytes() == Image.open(io.BytesIO(invert(engine_input))).tobytes()
    assert h.messenger.working, "the chat shows a working indicator"


async def test_edit_by_reply_sends_identity_and_branches(h: Harness, selfie: bytes) -> None:
    await h.studio.style(ctx("1"), "comic", photo(selfie))
    await h.settle()
    first = h.messenger.sent[-1]
    await h.studio.edit(ctx("2"), "add a crown", first.message_id)
    await h.settle()
    second = h.messenger.sent[-1]
    assert second.kind == "image" and second.target.reply_to == "2"
    kind, edited, instruction, identity = h.engine.calls[-1]
    assert (kind, instruction) == ("edit", "add a crown")
    assert edited == first.image  # it edits the result replied to
    assert identity == h.engine.calls[0][1]  # with the original selfie as the identity reference
    # Replying to the older result again branches from it, not from the newest.
    await h.studio.edit(ctx("3"), "make it warmer", first.message_id)
    await h.settle()
    assert h.engine.calls[-1][1] == first.image


async def test_undo_resends_the_previous_step_and_it_can_be_replied_to(h: Harness, selfie: bytes) -> None:
    await h.studio.style(ctx("1"), "comic", photo(selfie))
    await h.settle()
    step1 = h.messenger.sent[-1]
    await h.studio.edit(ctx("2"), "add a crown", step1.message_id)
    await h.settle()
    step2 = h.messenger.sent[-1]
    await h.studio.undo(ctx("3"), step2.message_id)
    back = h.messenger.sent[-1]
    assert back.kind == "image" and back.image == step1.image and "Back to step 1" in back.text
    await h.studio.edit(ctx("4"), "add sunglasses", back.message_id)
    await h.settle()
    assert h.engine.calls[-1][1] == step1.image
    await h.studio.undo(ctx("5"), step1.message_id)
    assert "first step" in h.messenger.sent[-1].text


async def test_style_without_photo_gets_a_hint_and_no_model_call(h: Harness) -> None:
    await h.studio.style(ctx("1"), "zombie", None)
    assert h.messenger.sent[-1].kind == "text" and "/zombie" in h.messenger.sent[-1].text
    assert h.engine.calls == []


async def test_bad_file_is_refused_without_a_model_call(h: Harness) -> None:
    await h.studio.style(ctx("1"), "zombie", photo(b"%PDF-1.4 not an image"))
    await h.settle()
    assert "doesn't look like a photo" in h.messenger.sent[-1].text
    assert h.engine.calls == []


async def test_blocked_and_text_only_answers_are_explained(tmp_path: Path, selfie: bytes) -> None:
    engine = FakeEngine(fail_with=Blocked("That request was blocked by the safety filter. Try rephrasing."))
    h, store = await make_harness(tmp_path, engine)
    await h.studio.style(ctx("1"), "zombie", photo(selfie))
    await h.settle()
    assert h.messenger.sent[-1].text.startswith("That request was blocked")
    engine.fail_with = NoImage("The model answered with words instead of a picture.", text="I can't draw that")
    await h.studio.style(ctx("2"), "zombie", photo(selfie, "2"))
    await h.settle()
    assert "I can't draw that" in h.messenger.sent[-1].text
    await h.studio.aclose()
    await store.close()


async def test_restyling_a_result_starts_from_the_original(h: Harness, selfie: bytes) -> None:
    await h.studio.style(ctx("1"), "comic", photo(selfie))
    await h.settle()
    result = h.messenger.sent[-1]
    await h.studio.style(ctx("2"), "manga", None, result.message_id)
    await h.settle()
    assert h.engine.calls[-1][1] == h.engine.calls[0][1]


async def test_history_and_pending_jobs_survive_a_restart(tmp_path: Path, selfie: bytes) -> None:
    h, store = await make_harness(tmp_path, FakeEngine(delay=30))
    await h.studio.style(ctx("1"), "zombie", photo(selfie))
    await h.studio.aclose()  # stopped mid-job: nothing was delivered
    await store.close()
    assert h.messenger.sent == []

    h2, store2 = await make_harness(tmp_path)
    assert await h2.studio.resume() == 1
    await h2.settle()
    [delivered] = h2.messenger.sent
    assert delivered.kind == "image" and delivered.target.reply_to == "1"
    # …and the delivered result can be edited after yet another restart.
    await h2.studio.aclose()
    await store2.close()
    h3, store3 = await make_harness(tmp_path)
    assert await h3.studio.resume() == 0  # delivered jobs are never sent twice
    await h3.studio.edit(ctx("2"), "add a crown", delivered.message_id)
    await h3.settle()
    assert h3.messenger.sent[-1].kind == "image"
    await h3.studio.aclose()
    await store3.close()


async def test_same_image_is_stored_once(tmp_path: Path, selfie: bytes) -> None:
    h, store = await make_harness(tmp_path)
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.studio.style(ctx("2"), "zombie", photo(selfie, "2"))
    await h.settle()
    shas = await stored_images(store, tmp_path)
    assert len(shas) == 2  # one selfie + one result, although each was produced twice
    assert all([Image.open(io.BytesIO(await h.studio.images.get(sha))).size for sha in shas])
    await h.studio.aclose()
    await store.close()


# -- part 2: fairness, limits, access, privacy, outages ------------------------------------------


async def studio_with(tmp_path: Path, **kwargs: object) -> tuple[Harness, Store]:
    store, images = await open_stores(tmp_path / "db.sqlite3")
    engine = kwargs.pop("engine", None) or FakeEngine()
    studio = Studio(store=store, images=images, engine=engine,  # type: ignore[arg-type]
                    **kwargs)  # type: ignore[arg-type]
    messenger = FakeMessenger()
    studio.attach("test", messenger)
    return Harness(studio, engine, messenger), store  # type: ignore[arg-type]


def person(n: int) -> Person:
    return Person(str(n), f"P{n}")


async def test_waiting_people_are_told_their_place_and_the_message_moves(tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path, engine=FakeEngine(delay=0.3),
                                 limits=LimitsSettings(concurrency=1, queue_note_after_s=0))
    for n in range(1, 5):
        await h.studio.style(ctx(str(n), person(n)), "zombie", photo(selfie, str(n)))
    await h.messenger.wait_for(3)  # the three notes of the three waiting
    places = [s.text for s in h.messenger.sent if s.kind == "text"]
    assert places == ["⏳ You're #1 in line — your picture will appear here.",
                      "⏳ You're #2 in line — your picture will appear here.",
                      "⏳ You're #3 in line — your picture will appear here."]
    await h.settle()
    # The line moved: #3 became #2 then #1, the messages were edited, and finally removed for the result.
    assert any("#1 in line" in text for _, text in h.messenger.edits)
    assert len(h.messenger.deleted) == 3
    assert sum(1 for s in h.messenger.sent if s.kind == "image") == 4
    await h.studio.aclose()
    await store.close()


@dataclasses.dataclass
class HeldEngine(FakeEngine):
    """Draws nothing until released, so a test decides when the running job ends, not the machine's speed."""

    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def _answer(self, kind: str, image: bytes, what: str, identity: bytes | None = None) -> EngineResult:
        await self.release.wait()
        return await super()._answer(kind, image, what, identity)


async def test_one_person_cannot_hog_the_queue(tmp_path: Path, selfie: bytes) -> None:
    engine = HeldEngine()
    h, store = await studio_with(tmp_path, engine=engine, limits=LimitsSettings(concurrency=1, queue_per_user=3))
    for n in range(1, 5):  # Ada sends four: one runs, three wait
        await h.studio.style(ctx(f"a{n}"), "zombie", photo(selfie, f"a{n}"))
    await h.studio.style(ctx("a5"), "zombie", photo(selfie, "a5"))
    assert "One at a time" in h.messenger.sent[-1].text
    await h.studio.style(ctx("b1", person(99)), "zombie", photo(selfie, "b1"))
    engine.release.set()
    await h.settle()
    order = [s.target.reply_to for s in h.messenger.sent if s.kind == "image"]
    # Ben arrived last but runs right after Ada's running job, not after all of Ada's queue.
    assert order.index("b1") <= 1, order
    await h.studio.aclose()
    await store.close()


async def test_cancel_stops_waiting_and_running_jobs(tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path, engine=FakeEngine(delay=5), limits=LimitsSettings(concurrency=1))
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.studio.style(ctx("2"), "comic", photo(selfie, "2"))
    await h.studio.cancel(ctx("3"))
    assert h.messenger.sent[-1].text == "Cancelled 2 requests."
    await h.settle()
    assert not [s for s in h.messenger.sent if s.kind == "image"]
    await h.studio.cancel(ctx("4"))
    assert "nothing waiting" in h.messenger.sent[-1].text
    await h.studio.aclose()
    await store.close()


async def test_daily_limits_say_which_and_when_and_admins_are_exempt(tmp_path: Path, selfie: bytes) -> None:
    from core.config import AccessSettings

    h, store = await studio_with(tmp_path, limits=LimitsSettings(user_daily=1),
                                 access=AccessSettings(admins=["1"]))
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    await h.studio.style(ctx("2"), "zombie", photo(selfie, "2"))
    refusal = h.messenger.sent[-1].text
    assert "your 1 picture for today" in refusal and "00:00 UTC" in refusal
    admin = person(1)
    for n in range(3):
        await h.studio.style(ctx(f"x{n}", admin), "comic", photo(selfie, f"x{n}"))
    await h.settle()
    assert sum(1 for s in h.messenger.sent if s.kind == "image" and s.target.reply_to.startswith("x")) == 3
    await h.studio.aclose()
    await store.close()


async def test_failed_jobs_do_not_count_against_the_limit(tmp_path: Path, selfie: bytes) -> None:
    engine = FakeEngine(fail_with=Blocked("blocked"))
    h, store = await studio_with(tmp_path, engine=engine, limits=LimitsSettings(user_daily=1))
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    engine.fail_with = None
    await h.studio.style(ctx("2"), "zombie", photo(selfie, "2"))
    await h.settle()
    assert h.messenger.sent[-1].kind == "image"
    await h.studio.aclose()
    await store.close()


async def test_access_lists_refuse_politely_in_private_and_silently_in_groups(
        tmp_path: Path, selfie: bytes) -> None:
    from core.config import AccessSettings

    h, store = await studio_with(tmp_path, access=AccessSettings(allow=["7"], deny=["666"]))
    stranger = person(5)
    await h.studio.style(ctx("1", stranger), "zombie", photo(selfie, "1"))
    await h.studio.style(ctx("2", stranger), "zombie", photo(selfie, "2"))
    assert h.messenger.texts() == ["Sorry, this bot is private — its operator hasn't given you access."]
    group = Context(Chat("test", "-100", is_private=False), stranger, "3")
    await h.studio.style(group, "zombie", photo(selfie, "3"))
    assert len(h.messenger.sent) == 1  # silence in the group
    await h.studio.style(ctx("4"), "zombie", photo(selfie, "4"))  # Ada (7) is allowed
    await h.settle()
    assert h.messenger.sent[-1].kind == "image"
    assert h.engine.calls and len(h.engine.calls) == 1
    await h.studio.aclose()
    await store.close()


async def test_forget_deletes_everything_after_confirmation(tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path)
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    result = h.messenger.sent[-1]
    assert await stored_images(store, tmp_path)
    await h.studio.forget(ctx("2"))
    yes = next(b for b in h.messenger.buttons if b.action.startswith("forget:yes"))
    refused = await h.studio.press(Context(CHAT, person(8), "3"), yes.action)
    assert (refused.text, refused.kind) == ("That button belongs to someone else.", "refused")  # the question stays
    done = await h.studio.press(ctx("3"), yes.action)
    assert done.text.startswith("Done — I deleted your history and 2 stored pictures") and done.kind == "settled"
    assert not await stored_images(store, tmp_path)
    await h.studio.edit(ctx("4"), "add a crown", result.message_id)
    assert h.messenger.sent[-1].text.startswith("Reply to one of my pictures")
    await h.studio.aclose()
    await store.close()


async def test_retention_purges_old_images(tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path)
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    assert await h.studio.retention.purge_expired(30) == 0  # fresh images stay
    await sql(store, "UPDATE nodes SET created_at = created_at - 31 * 86400")
    assert await h.studio.retention.purge_expired(30) == 2
    assert not await stored_images(store, tmp_path)
    await h.studio.aclose()
    await store.close()


async def test_retention_also_removes_old_parties_and_the_settings_of_people_gone_quiet(
        tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path)
    quiet, busy = person(8), person(9)
    old = await store.add_party("test", "g1", Member(quiet.id, quiet.name), "comic", "Quokka beach",
                                time.time() + 600, None)
    assert old is not None
    await store.put_member(old.id, Member(busy.id, busy.name))
    await store.set_party(old.id, status="closed")
    for who in (quiet, busy):
        await store.set_preferences("person", "test", who.id, Preferences(persona=f"{who.name} runs marathons"))
    await store.set_preferences("chat", "test", "g1", Preferences(aspect_ratio="16:9"))  # the admins' choice
    # All of that is 31 days old now; since then the busy one has had a picture made, the quiet one nothing.
    await sql(store, "UPDATE parties SET created_at = created_at - 31 * 86400, deadline = deadline - 31 * 86400")
    await sql(store, "UPDATE preferences SET updated_at = updated_at - 31 * 86400")
    await h.studio.style(Context(CHAT, busy, "5"), "zombie", photo(selfie, "5"))
    await h.settle()
    recent = await store.add_party("test", "g2", Member(busy.id, busy.name), "comic", "", time.time() + 600, None)
    assert recent is not None
    assert (await store.get_preferences("person", "test", quiet.id)).persona  # read, so kept in memory too

    await h.studio.retention.purge_expired(30)
    assert await store.get_party(old.id) is None
    assert await sql(store, "SELECT COUNT(*) FROM party_members WHERE party_id = ?", old.id) == [(0,)]
    assert await store.get_party(recent.id) is not None
    assert (await store.get_preferences("person", "test", quiet.id)).persona == ""  # gone, from memory too
    assert (await store.get_preferences("person", "test", busy.id)).persona == "P9 runs marathons"
    assert (await store.get_preferences("chat", "test", "g1")).aspect_ratio == "16:9"
    await h.studio.aclose()
    await store.close()


def _hours_ago(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def _files(root: Path) -> set[Path]:
    return {p for p in (root / "images").rglob("*") if p.is_file()}


@pytest.mark.sqlite_only("image files on disk (PostgreSQL's sweep: tests/test_storage.py)")
async def test_an_image_file_nothing_refers_to_is_swept_after_an_hour(tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path)
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    kept = _files(tmp_path)  # Ada's photo and her avatar
    assert len(kept) == 2
    images = h.studio.images
    assert isinstance(images, FileImageStore)
    # What a crash between writing a file and its row leaves: an image nothing refers to, a half-written one.
    orphan = images.path(await images.put(b"written, then the process died"))
    temporary = orphan.parent / ".tmp-k2j3h4"
    temporary.write_bytes(b"half an ima")
    fresh = images.path(await images.put(b"written a moment ago, its node on the way"))
    for path in (*kept, orphan, temporary):
        _hours_ago(path, 2)

    assert await h.studio.retention.sweep_orphans() == 2
    assert _files(tmp_path) == {*kept, fresh}
    # Ada's pictures are all still there: a restart (nothing in memory) edits her avatar from disk.
    await h.studio.aclose()
    h2 = Harness(Studio(store=store, images=FileImageStore(tmp_path, store), engine=h.engine), h.engine, h.messenger)
    h2.studio.attach("test", h.messenger)
    await h2.studio.edit(ctx("2"), "add a crown", h.messenger.sent[-1].message_id)
    await h2.settle()
    assert h.messenger.sent[-1].kind == "image" and h.messenger.sent[-1].text == "edit: add a crown"

    # An old orphan whose bytes are sent again is in use again: the sweep leaves it.
    again = images.path(await images.put(b"the same selfie, sent twice"))
    _hours_ago(again, 2)
    await h2.studio.images.put(b"the same selfie, sent twice")
    assert await h2.studio.retention.sweep_orphans() == 0 and again.exists()
    await h2.studio.aclose()
    await store.close()


@pytest.mark.sqlite_only("image files on disk")
async def test_housekeeping_sweeps_orphans_even_when_history_is_kept_forever(tmp_path: Path) -> None:
    h, store = await studio_with(tmp_path)
    images = h.studio.images
    assert isinstance(images, FileImageStore)
    orphan = images.path(await images.put(b"left by a crash"))
    _hours_ago(orphan, 2)
    housekeeping = asyncio.create_task(h.studio.retention.housekeeping(retention_days=0))
    try:
        async with asyncio.timeout(10):
            while orphan.exists():  # noqa: ASYNC110 - waiting for the task's file work in its thread
                await asyncio.sleep(0.01)
    finally:
        housekeeping.cancel()
    assert await sql(store, "SELECT COUNT(*) FROM images") == [(0,)]  # its bookkeeping row went with it
    await h.studio.aclose()
    await store.close()


async def test_outage_saves_the_request_and_runs_it_when_the_service_is_back(
        tmp_path: Path, selfie: bytes) -> None:
    from core.breaker import CircuitBreaker
    from core.engines.base import Busy

    engine = FakeEngine(fail_with=Busy("The image service is busy."))
    h, store = await studio_with(tmp_path, engine=engine,
                                 breaker=CircuitBreaker(threshold=2, cooldown_s=0.2, max_cooldown_s=0.4))
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    async with asyncio.timeout(10):
        while len(engine.calls) < 3:  # noqa: ASYNC110 - the engine's calls are the events: tried again, twice
            await asyncio.sleep(0.01)
    assert h.messenger.texts() == [
        "The image service is down right now — your request is saved and will run as soon as it's back."]
    assert h.studio.breaker.is_open or len(engine.calls) >= 2
    engine.fail_with = None
    await h.settle()
    assert h.messenger.sent[-1].kind == "image"
    assert len(h.messenger.texts()) == 1  # told once, not at every retry
    await h.studio.aclose()
    await store.close()


async def test_blocked_chat_is_marked_and_not_retried(tmp_path: Path, selfie: bytes) -> None:
    from core.requests import DeliveryRefused

    h, store = await studio_with(tmp_path)
    attempts = 0

    async def refuse(target: object, reply: object) -> str:
        nonlocal attempts
        attempts += 1
        raise DeliveryRefused("Forbidden: bot was blocked by the user")

    h.messenger.send_image = refuse  # type: ignore[method-assign]
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    assert attempts == 1
    assert await store.is_chat_blocked("test", "42")
    await h.studio.aclose()
    await store.close()


async def test_admin_stats(tmp_path: Path, selfie: bytes) -> None:
    from core.config import AccessSettings

    h, store = await studio_with(tmp_path, access=AccessSettings(admins=["7"]))
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await h.settle()
    await h.studio.stats(ctx("2"))
    assert "1 jobs — 1 delivered" in h.messenger.sent[-1].text
    await h.studio.stats(ctx("3", person(9)))
    assert h.messenger.sent[-1].text == "Only the bot's admins can see its stats."
    await h.studio.aclose()
    await store.close()


async def test_a_shutdown_during_a_send_lets_it_finish_and_the_restart_does_not_send_it_again(
        tmp_path: Path, selfie: bytes) -> None:
    h, store = await studio_with(tmp_path)
    sending = asyncio.Event()
    real_send = h.messenger.send_image

    async def slow_send(target: ReplyTarget, reply: ImageReply) -> str:
        sending.set()
        await asyncio.sleep(0.3)  # the platform is taking the upload
        return await real_send(target, reply)

    h.messenger.send_image = slow_send  # type: ignore[method-assign]
    await h.studio.style(ctx("1"), "zombie", photo(selfie, "1"))
    await asyncio.wait_for(sending.wait(), 5)
    await h.studio.aclose()  # SIGTERM arrives mid-upload
    assert [s.kind for s in h.messenger.sent] == ["image"]  # the upload was not cut off
    await store.close()

    again, store = await make_harness(tmp_path)
    try:
        assert await again.studio.resume() == 0  # it was recorded as delivered: nothing to resend
        await again.settle()
        assert again.messenger.sent == []
    finally:
        await again.studio.aclose()
        await store.close()
