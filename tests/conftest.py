"""Shared fixtures: the real face photo, and small builders used across test modules."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.standins.telegram_api import FakeTelegram

FIXTURES = Path(__file__).parent / "fixtures"


def jpeg_bytes(image: Image.Image, quality: int = 92, **save: object) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality, **save)
    return out.getvalue()


@pytest.fixture(scope="session")
def face_image() -> Image.Image:
    """The public-domain astronaut portrait (Eileen Collins) shipped with scikit-image."""
    return Image.open(FIXTURES / "astronaut.png").convert("RGB")


@pytest.fixture(scope="session")
def selfie(face_image: Image.Image) -> bytes:
    return jpeg_bytes(face_image)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """`pixme` commands configure logging onto the test's captured stderr; take that back afterwards,
    or later tests log into a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """A fresh loopback Telegram Bot API for one test."""
    async with FakeTelegram() as fake:
        yield fake
