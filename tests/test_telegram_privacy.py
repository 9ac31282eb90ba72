"""Privacy and fairness on Telegram, end to end: /forget takes every picture made from a person, parties obey
the daily limits, forged export buttons read nothing, and a full disk never loses a paid picture.

The real PTB Application and studio on SQLite against the loopback Bot API stand-in; assertions are about
what people in the chat see and what is left on disk afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from core import texts
from core.engines.base import EngineResult
from core.ports import UNFINISHED
from core.styles import Style
from tests.fakes import FakeEngine
from tests.standins.telegram_api import FakeTelegram, SentMessage
from tests.test_telegram_harness import (
    ALICE,
    BOB,
    CAROL,
    GROUP,
    Running,
    is_photo,
    private,
    running_bot,
    small_selfie,
)
from tests.test_telegram_party import alert, button, join, open_party, press, settings_for

ALICE_CHAT = private(ALICE)


def selfie_of(side: int, *, mirrored: bool = False) -> bytes:
    """Distinct selfies per person: images are stored by content, so shared bytes would be a shared file."""
    image = Image.open(io.BytesIO(small_selfie(side)))
    if mirrored:
        image = ImageOps.mirror(image)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def files_in(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "images").rglob("*") if p.is_file() and not p.name.startswith(".")}


def database_rows(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, read from the database file itself."""
    with contextlib.closing(sqlite3.connect(data_dir / "pixme.sqlite3")) as db:
        db.row_factory = sqlite3.Row
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [dict(r) for r in db.execute(f"SELECT * FROM {t}")] for t in tables}


def yes_button(confirm: SentMessage) -> str:
    return next(b["callback_data"] for b in confirm.buttons if b["text"] == texts.FORGET_YES)


# -- parties and the daily limits ------------------------------------------------------------------


def _before_resets(refusal: str) -> str:
    """A limit's sentence up to its reset time (which moves by the minute)."""
    return refusal.split("§")[0]


LIMITS = {
    "daily_images": lambda: _before_resets(texts.bot_daily_limit("§")),
    "user_daily": lambda: _before_resets(texts.user_daily_limit(1, "§")),
    "chat_daily": lambda: _before_resets(texts.chat_daily_limit(1, "§")),
}


@pytest.mark.parametrize("limit", list(LIMITS))
async def test_a_party_is_refused_over_each_daily_limit_at_start_and_at_party(
        tg: FakeTelegram, tmp_path: Path, limit: str) -> None:
    engine = FakeEngine()
    settings = settings_for(tg, tmp_path)
    settings = settings.model_copy(update={"limits": settings.limits.model_copy(update={limit: 1})})
    refusal = LIMITS[limit]()
    selfie = selfie_of(200)
    async with running_bot(tg, tmp_path, engine=engine, settings=settings) as run:
        lobby = await open_party(run, ALICE, "comic")  # nothing made today yet: the lobby opens
        await join(run, lobby, ALICE, selfie)
        await join(run, lobby, BOB, selfie_of(200, mirrored=True))

        # Meanwhile the day's one picture is made: by the host, in this group, so every limit is reached.
        tg.send_photo(GROUP, ALICE, selfie, caption="/zombie")
        await run.photo_reply(GROUP)
        await run.settle()

        refused = await press(run, ALICE, lobby, button(lobby, "start"))
        assert refused["text"].startswith(refusal) and "\n" not in refused["text"] and alert(refused)
        await tg.expect_no_message(chat_id=GROUP.id, within=0.3)
        assert engine.fused == [] and lobby.buttons, "no group picture; the lobby stays open"

        assert (await press(run, ALICE, lobby, button(lobby, "cancel")))["text"] == texts.PARTY_CANCELLED_TOAST
        asked = tg.send_text(GROUP, ALICE, "/party pixel")
        answer = await run.text_reply(GROUP)
        assert answer.text is not None and answer.text.startswith(refusal) and "\n" not in answer.text
        assert answer.reply_to_message_id == asked
        await tg.expect_no_message(chat_id=GROUP.id, within=0.3)
        assert await run.studio.store.open_party("telegram", str(GROUP.id)) is None, "no lobby was opened"
        assert engine.fused == []
