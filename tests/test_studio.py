"""The use cases through real SQLite and image storage, with an in-memory engine and messenger."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from core.engines.base import Blocked, NoImage
from core.requests import Chat, Context, Person, PhotoRef
from core.studio import Studio
from storage.images import FileImageStore
from storage.sqlite import SqliteStore
from tests.fakes import FakeEngine, FakeMessenger, invert

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


async def make_harness(data_dir: Path, engine: FakeEngine | None = None) -> tuple[Harness, SqliteStore]:
    store = await SqliteStore.open(data_dir / "db.sqlite3")
    engine = engine or FakeEngine()
    studio = Studio(store=store, images=FileImageStore(data_dir, store), engine=engine, concurrency=4)
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
    kind, engine_input, _, _ = h.engine.calls[0]
    assert sent.image == invert(engine_input)
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
    files = [p for p in (tmp_path / "images").rglob("*") if p.is_file()]
    assert len(files) == 2  # one selfie + one result, although each was produced twice
    assert all(Image.open(io.BytesIO(p.read_bytes())).size for p in files)
    await h.studio.aclose()
    await store.close()
