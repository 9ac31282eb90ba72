"""The playground in a real browser: headless Chromium (Debian's) driven by Playwright, against the real
server on 127.0.0.1 with the offline engine. What is asserted is what a person sees on the page.

Nothing is downloaded: Playwright only drives the Chromium already on the machine, and the tests are
skipped, saying why, when there is none.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots.cli import open_studio
from bots.playground import Playground
from core.config import PlaygroundSettings, Settings, StorageSettings
from core.engines.offline import OfflineEngine

playwright_api = pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 15_000


def _chromium() -> str | None:
    for candidate in (os.environ.get("PIXME_TEST_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _chromium()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (install Debian's: apt-get install chromium)")]


@pytest.fixture
async def playground_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(storage=StorageSettings(dir=tmp_path / "data"))
    async with open_studio(settings, engine=OfflineEngine()) as studio:
        playground = Playground(PlaygroundSettings(port=0), studio, engine_name="offline", engine_model="offline")
        await playground.start()
        try:
            yield playground.url
        finally:
            await playground.stop()


@pytest.fixture
async def page(playground_url: str) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = await browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            await tab.goto(playground_url)
            await playwright_api.expect(tab.locator("#status")).to_have_text("connected")
            yield tab
            assert errors == [], f"the page's script failed: {errors}"
        finally:
            await browser.close()


def _results(page: Any) -> Any:
    return page.locator(".msg.bot[data-kind=image]")


async def _image_loaded(locator: Any) -> bool:
    return bool(await locator.locator("img.shot").evaluate("img => img.complete && img.naturalWidth > 0"))


async def test_a_selfie_becomes_an_avatar_that_can_be_edited_and_undone(page: Any) -> None:
    expect = playwright_api.expect
    await expect(page.locator("#engine")).to_contain_text("Offline engine")

    await page.set_input_files("#file", FIXTURE)
    await expect(page.locator(".msg.person[data-kind=photo] img.shot")).to_be_visible()
    await page.locator(".msg[data-kind=menu] button[data-style=zombie]").click()
    first = _results(page).nth(0)
    await expect(first).to_be_visible()
    await expect(first.locator(".text")).not_to_be_empty()  # the commentary
    assert await _image_loaded(first)

    await first.get_by_role("button", name="Reply").click()
    await expect(page.locator("#replying")).to_be_visible()
    await page.fill("#text", "add a crown")
    await page.press("#text", "Enter")
    crowned = _results(page).nth(1)
    await expect(crowned.locator(".text")).to_contain_text("Crown")
    await expect(crowned.locator(".quote")).to_contain_text("Alex: add a crown")
    assert await _image_loaded(crowned)

    await crowned.get_by_role("button", name="Undo").click()
    back = _results(page).nth(2)
    await expect(back.locator(".text")).to_contain_text("Back to step 1")
    assert await _image_loaded(back)
    await expect(page.locator(".working")).to_have_count(0)  # no progress bubble left behind


async def test_a_file_that_is_not_a_photo_is_refused_and_a_dropped_selfie_works(page: Any) -> None:
    expect = playwright_api.expect
    await page.set_input_files("#file", {"name": "cv.pdf", "mimeType": "application/pdf",
                                         "buffer": b"%PDF-1.4 definitely not a selfie"})
    await expect(page.locator(".msg.bot[data-kind=text]").last).to_contain_text("doesn't look like a photo")
    await expect(page.locator(".msg[data-kind=menu]")).to_have_count(0)

    # Drag and drop onto the page, as a person does from their file manager.
    data = base64.b64encode(FIXTURE.read_bytes()).decode()
    transfer = await page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "selfie.png", {type: "image/png"}));
        return dt;
    }""", data)
    await page.dispatch_event("#log", "drop", {"dataTransfer": transfer})
    await expect(page.locator(".msg[data-kind=menu]")).to_have_count(1)
    await page.locator(".msg[data-kind=menu] button[data-style=pixel]").click()
    await expect(_results(page)).to_have_count(1)


async def test_two_people_hold_a_party_on_one_page(page: Any) -> None:
    expect = playwright_api.expect
    await page.get_by_role("button", name="Open a party").click()
    lobby = page.locator(".msg.bot[data-kind=buttons]").first
    await expect(lobby).to_contain_text("Avatar party")

    async def join_as(name: str) -> None:
        await page.fill("#person", name)
        async with page.expect_file_chooser() as chooser:
            await lobby.get_by_role("button", name="Send my selfie").click()
        await (await chooser.value).set_files(FIXTURE)

    await join_as("Alex")
    await expect(lobby).to_contain_text("Alex (host) — 📸 selfie in")
    await join_as("Sam")
    await expect(lobby).to_contain_text("Sam — 📸 selfie in")

    await lobby.get_by_role("button", name="Start").click()  # Sam is not the host
    await expect(page.locator("#toast")).to_contain_text("host")
    await page.locator(".chip", has_text="Alex").click()
    await expect(page.locator("#person")).to_have_value("Alex")
    await lobby.get_by_role("button", name="Start").click()
    await expect(lobby).to_contain_text("has started with Alex and Sam")
    group = _results(page).last
    await expect(group.locator(".text")).to_contain_text("Alex and Sam", timeout=30_000)
    assert await _image_loaded(group)


async def test_a_result_offers_exports_and_a_sticker_shows_on_its_own(page: Any) -> None:
    expect = playwright_api.expect
    await page.set_input_files("#file", FIXTURE)
    await page.locator(".msg[data-kind=menu] button[data-style=comic]").click()
    result = _results(page).first
    exports = result.locator("button[data-export]")
    await expect(exports).to_have_count(3)
    await expect(exports.nth(0)).to_contain_text("Sticker")

    await result.locator("button[data-export=sticker]").click()
    sticker = page.locator(".msg.bot[data-kind=sticker] img.sticker")
    await expect(sticker).to_be_visible()
    assert await sticker.evaluate("img => img.complete && img.naturalWidth === 512")
    box = await sticker.bounding_box()
    assert box is not None and box["width"] <= 256
    bubble = page.locator(".msg.bot[data-kind=sticker] .bubble")
    assert await bubble.evaluate("b => getComputedStyle(b).backgroundColor") == "rgba(0, 0, 0, 0)"  # no bubble
    save = page.locator(".msg.bot[data-kind=sticker] a.sticker-save")
    assert (await save.get_attribute("download")) == "pixme-sticker.webp"

    # /settings: pressing a choice edits the same message, on the page too.
    await page.fill("#text", "/settings")
    await page.press("#text", "Enter")
    keyboard = page.locator(".msg.bot[data-kind=buttons]").last
    await keyboard.get_by_role("button", name="Aspect ratio").click()
    await keyboard.get_by_role("button", name="16:9", exact=True).click()
    await expect(keyboard).to_contain_text("Aspect ratio: 16:9")
    await expect(page.locator(".msg.bot[data-kind=buttons]")).to_have_count(1)
