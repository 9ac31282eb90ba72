"""Likeness people can see, end to end: the real Telegram adapter and studio on SQLite against the loopback Bot
API, with the offline engine and with the real GeminiEngine against the Gemini stand-in answering chosen pictures
(real portraits from tests/fixtures). The caption ends with the score, a faceless picture says so, /history lists
scores, /stats averages them, `[likeness] retry_below` retries once and sends the better picture, and a party
picture's caption says who is recognisable."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.config import Settings, load_settings
from core.engines.gemini import STRONGER_IDENTITY
from core.likeness import Score, default_likeness
from tests.backends import Backend, storage_settings
from tests.standins.gemini_api import FakeGemini
from tests.standins.telegram_api import FakeTelegram, SentMessage
from tests.test_telegram_harness import ALICE, BOB, CAROL, GROUP, Running, private, running_bot, small_selfie
from tests.test_telegram_party import button, join, open_party, press

FIXTURES = Path(__file__).parent / "fixtures"
ALICE_CHAT = private(ALICE)


def picture(name: str, side: int = 512, fmt: str = "JPEG") -> bytes:
    """A fixture portrait at about `side` px (the small crops scaled up, as a phone's selfie would be)."""
    image = Image.open(FIXTURES / name).convert("RGB")
    scale = side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, fmt, quality=90)
    return out.getvalue()


def faceless() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), (240, 150, 40)).save(out, "PNG")
    return out.getvalue()


def settings(tg: FakeTelegram, data_dir: Path, *, gem: FakeGemini | None = None, admins: list[str] | None = None,
             **likeness: Any) -> Settings:
    gemini: dict[str, Any] = {"api_key": ""}
    if gem is not None:
        gemini = {"api_key": gem.api_key, "base_url": gem.base_url, "retry_budget_s": 2, "request_timeout_s": 20}
    return load_settings(
        None,
        telegram={"token": tg.token, "api_url": tg.api_url, "file_url": tg.file_url, "album_wait_s": 0.3},
        storage=storage_settings(data_dir, retention_days=0),
        engine={"default": "gemini" if gem else "offline", "input_max_px": 256},
        access={"admins": admins or []},
        gemini=gemini,
        likeness=likeness,
    )


def kept(caption: str | None) -> int:
    """The percentage a caption's last line says the face kept."""
    assert caption is not None
    last = caption.splitlines()[-1]
    assert last.startswith("face kept ") and last.endswith("%"), caption
    return int(last.removeprefix("face kept ").removesuffix("%"))


async def node_of(run: Running, message: SentMessage) -> Any:
    await run.finished()
    node = await run.studio.store.node_for_message("telegram", str(message.chat_id), str(message.message_id))
    assert node is not None
    return node


# -- the offline engine ------------------------------------------------------------------------------


async def test_the_caption_history_and_stats_carry_the_likeness(tmp_path: Path, backend: Backend) -> None:
    async with FakeTelegram() as tg, running_bot(tg, tmp_path, settings=settings(
            tg, tmp_path, admins=[str(ALICE.id)])) as run:
        tg.send_photo(ALICE_CHAT, ALICE, small_selfie(320), caption="/sketch")
        result = await run.photo_reply(ALICE_CHAT)
        percent = kept(result.caption)
        assert percent >= 40, "a sketch keeps the astronaut recognisable"
        assert result.caption is not None and result.caption.count("\n") == 1, "commentary, then the score"
        node = await node_of(run, result)
        assert node.likeness_status == "scored" and round(node.likeness) == percent

        # An edit of that picture is scored against the original selfie, not against the sketch.
        tg.send_text(ALICE_CHAT, ALICE, "add a crown", reply_to=result.message_id)
        crowned = await run.photo_reply(ALICE_CHAT)
        crowned_percent = kept(crowned.caption)
        assert (await node_of(run, crowned)).likeness_status == "scored"
        anchor = default_likeness().score(crowned.photo or b"", small_selfie(320))
        assert isinstance(anchor, Score) and abs(anchor.percent - crowned_percent) <= 3

        tg.send_text(ALICE_CHAT, ALICE, "/history")
        await run.text_reply(ALICE_CHAT)
        old, new = await tg.wait_for_messages(2, lambda m: m.method == "sendMediaGroup", chat_id=ALICE.id)
        assert f"face kept {percent}%" in (old.caption or "") and "Step 1" in (old.caption or "")
        assert f"face kept {crowned_percent}%" in (new.caption or "")

        tg.send_text(ALICE_CHAT, ALICE, "/stats")
        stats = (await run.text_reply(ALICE_CHAT)).text or ""
        assert "Face kept, on average" in stats
        assert f"offline · sketch: {percent}% (1)" in stats
        assert "likeness retr" not in stats, "the offline engine is never retried"


async def test_show_false_keeps_the_score_out_of_captions_but_still_records_it(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, running_bot(tg, tmp_path, settings=settings(tg, tmp_path, show=False)) as run:
        tg.send_photo(ALICE_CHAT, ALICE, small_selfie(320), caption="/sketch")
        result = await run.photo_reply(ALICE_CHAT)
        assert "face kept" not in (result.caption or "")
        node = await node_of(run, result)
        assert node.likeness_status == "scored" and node.likeness is not None
        tg.send_text(ALICE_CHAT, ALICE, "/history")
        await run.text_reply(ALICE_CHAT)
        [shown] = await tg.wait_for_messages(1, lambda m: m.method in ("sendPhoto", "sendMediaGroup")
                                             and m.message_id != result.message_id, chat_id=ALICE.id)
        assert "face kept" not in (shown.caption or "")


async def test_enabled_false_scores_nothing(tmp_path: Path) -> None:
    """An operator who turns scoring off gets pictures as before: no line in the caption, no score kept, nothing
    in /stats."""
    async with FakeTelegram() as tg, running_bot(tg, tmp_path, settings=settings(
            tg, tmp_path, admins=[str(ALICE.id)], enabled=False)) as run:
        tg.send_photo(ALICE_CHAT, ALICE, small_selfie(320), caption="/sketch")
        result = await run.photo_reply(ALICE_CHAT)
        assert result.caption is not None and "face" not in result.caption
        assert (await node_of(run, result)).likeness_status is None
        tg.send_text(ALICE_CHAT, ALICE, "/stats")
        assert "Face kept" not in ((await run.text_reply(ALICE_CHAT)).text or "")


async def test_a_score_that_takes_too_long_never_holds_the_picture_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with FakeTelegram() as tg, running_bot(tg, tmp_path, settings=settings(tg, tmp_path)) as run:
        review = run.studio.worker.likeness
        assert review is not None
        review.wait_s = 0.0  # the image-work processes never answer in time
        tg.send_photo(ALICE_CHAT, ALICE, small_selfie(320), caption="/sketch")
        result = await run.photo_reply(ALICE_CHAT)
        assert result.caption is not None and "face kept" not in result.caption and "no face" not in result.caption
        assert (await node_of(run, result)).likeness_status is None, "delivered unscored"
        assert any("delivered unscored" in r.getMessage() for r in caplog.records)


async def test_a_selfie_without_a_face_gets_no_likeness_line(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, running_bot(tg, tmp_path, settings=settings(tg, tmp_path)) as run:
        tg.send_photo(ALICE_CHAT, ALICE, faceless_jpeg(), caption="/comic")
        result = await run.photo_reply(ALICE_CHAT)
        assert "face kept" not in (result.caption or "") and "no face" not in (result.caption or "")
        assert (await node_of(run, result)).likeness_status == "no_reference"


def faceless_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 320), (120, 180, 90)).save(out, "JPEG")
    return out.getvalue()


# -- Gemini: chosen pictures ---------------------------------------------------------------------------


async def test_a_faceless_result_says_so_and_retry_below_zero_never_retries(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem, running_bot(tg, tmp_path, settings=settings(
            tg, tmp_path, gem=gem)) as run:
        gem.script(gem.image(faceless(), text="All hat, no face."))
        tg.send_photo(ALICE_CHAT, ALICE, small_selfie(320), caption="/zombie")
        result = await run.photo_reply(ALICE_CHAT)
        assert result.caption == "All hat, no face.\nno face found"
        assert (await node_of(run, result)).likeness_status == "no_face"
        assert len(gem.generate_requests) == 1, "retry_below = 0: never a second call"


async def test_retry_below_retries_once_and_delivers_the_better_picture(tmp_path: Path, backend: Backend) -> None:
    selfie = small_selfie(320)
    own_face = picture("astronaut.png", 320)  # what a model keeping the face would give back
    someone_else = picture("portrait_dark_skin.jpg", 320)
    async with FakeTelegram() as tg, FakeGemini() as gem, running_bot(tg, tmp_path, settings=settings(
            tg, tmp_path, gem=gem, admins=[str(ALICE.id)], retry_below=50)) as run:
        gem.script(gem.image(someone_else, mime="image/jpeg", text="Who is this?"),
                   gem.image(own_face, mime="image/jpeg", text="There you are."))
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/zombie")
        result = await run.photo_reply(ALICE_CHAT)
        first, second = gem.generate_requests
        assert STRONGER_IDENTITY not in first.text and STRONGER_IDENTITY in second.text
        assert result.caption is not None and result.caption.startswith("There you are.")
        percent = kept(result.caption)
        assert percent >= 80, "the retried picture, which is the person's own face"
        delivered = default_likeness().score(result.photo or b"", selfie)
        assert isinstance(delivered, Score) and delivered.same_person
        await run.finished()
        assert len(gem.generate_requests) == 2, "exactly one retry"

        # A retry that does worse: the first picture goes out, still one retry only.
        gem.script(gem.image(someone_else, mime="image/jpeg", text="Not quite you."),
                   gem.image(faceless(), text="Even less you."))
        tg.send_photo(ALICE_CHAT, ALICE, selfie, caption="/comic")
        worse = await tg.wait_for_message(lambda m: m.method == "sendPhoto" and m.message_id != result.message_id,
                                          chat_id=ALICE.id, timeout=30)
        assert worse.caption is not None and worse.caption.startswith("Not quite you.")
        stranger = default_likeness().score(someone_else, selfie)
        assert isinstance(stranger, Score) and kept(worse.caption) == pytest.approx(stranger.percent, abs=3)
        await run.finished()
        assert len(gem.generate_requests) == 4

        # The retries cost money (in /stats) but are no one's pictures: the limits count two.
        assert await run.studio.store.count_delivered(0, user_id=str(ALICE.id)) == 2
        tg.send_text(ALICE_CHAT, ALICE, "/stats")
        stats = await tg.wait_for_message(lambda m: (m.text or "").startswith("📊"), chat_id=ALICE.id)
        assert "2 likeness retries (not charged to anyone)" in (stats.text or "")


async def test_a_pack_scores_every_picture_in_its_own_caption(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeGemini() as gem, running_bot(tg, tmp_path, settings=settings(
            tg, tmp_path, gem=gem)) as run:
        gem.script(gem.image(picture("astronaut.png", 320), mime="image/jpeg", text="One."),
                   gem.image(faceless(), text="Two."))
        tg.send_photo(ALICE_CHAT, ALICE, small_selfie(320), caption="/pack 2")
        album = await tg.wait_for_messages(2, lambda m: m.method == "sendMediaGroup", chat_id=ALICE.id, timeout=30)
        for message in album:  # the two calls run at once: which style got which answer is not fixed
            node = await node_of(run, message)
            if node.likeness_status == "no_face":
                assert (message.caption or "").endswith(" · no face found"), message.caption
            else:
                assert node.likeness_status == "scored" and node.likeness >= 80
                assert (message.caption or "").endswith(f" · face kept {round(node.likeness)}%"), message.caption
        assert sorted([(await node_of(run, m)).likeness_status for m in album]) == ["no_face", "scored"]


# -- groups ------------------------------------------------------------------------------------------


async def test_a_party_picture_names_who_is_recognisable(tmp_path: Path, backend: Backend) -> None:
    """Three friends whose selfies are faces from one group photo; the model answers with that photo, where
    Alice and Bob are and Carol (the astronaut) is not."""
    group = picture("group.jpg", 960)
    async with FakeTelegram() as tg, FakeGemini() as gem, running_bot(tg, tmp_path, settings=settings(
            tg, tmp_path, gem=gem)) as run:
        lobby = await open_party(run, ALICE, "noir")
        await join(run, lobby, ALICE, picture("group_2.jpg", 320))
        await join(run, lobby, BOB, picture("group_5.jpg", 320))
        await join(run, lobby, CAROL, small_selfie(320))
        gem.script(gem.image(group, mime="image/jpeg", text="The whole crew."))
        await press(run, ALICE, lobby, button(lobby, "start"))
        result = await run.photo_reply(GROUP, timeout=30)
        assert result.caption is not None
        assert result.caption.splitlines()[-1] == "Recognisable: Alice and Bob (2 of 3)", result.caption
        node = await node_of(run, result)
        scores = await run.studio.store.member_likeness(node.id)
        assert scores[str(ALICE.id)] is not None and scores[str(ALICE.id)] >= 40
        assert scores[str(BOB.id)] is not None and scores[str(BOB.id)] >= 40
        assert scores[str(CAROL.id)] is None or scores[str(CAROL.id)] < 40
