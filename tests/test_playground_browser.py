"""The playground in a real browser: headless Chromium (Debian's) driven by Playwright, against the real
server on 127.0.0.1 with the offline engine. What is asserted is what a person sees on the page.

Nothing is downloaded: Playwright only drives the Chromium already on the machine, and the tests are
skipped, saying why, when there is none.
"""

from __future__ import annotations

import base64
import contextlib
import io
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
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def open_tab(browser: Any, url: str, width: int = 1280, height: int = 900) -> AsyncIterator[Any]:
    """The playground in a new tab of `width` x `height` CSS pixels, connected; its script must not fail."""
    tab = await browser.new_page(viewport={"width": width, "height": height})
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await tab.goto(url)
        await playwright_api.expect(tab.locator("#status")).to_have_text("connected")
        yield tab
        assert errors == [], f"the page's script failed: {errors}"
    finally:
        await tab.close()


@pytest.fixture
async def page(browser: Any, playground_url: str) -> AsyncIterator[Any]:
    async with open_tab(browser, playground_url) as tab:
        yield tab


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the screenshots go: $PIXME_SCREENSHOTS to keep and look at them, else the test's tmp folder."""
    folder = Path(os.environ.get("PIXME_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


# -- the layout on a phone, a tablet and a laptop ------------------------------------------------------

VIEWPORTS = {"phone": (390, 844), "tablet": (768, 1024), "laptop": (1280, 800)}
README_SCREENSHOT = Path(__file__).parent.parent / "docs" / "playground.png"
README_MAX_BYTES = 300 * 1024

# The part of an element the person can see: its box cut by every ancestor that clips (the scrolling
# conversation, the panel) and by the window. Null when none of it shows.
_VISIBLE_BOX = """(el) => {
    let r = el.getBoundingClientRect();
    let box = {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
    const cut = (c) => { box = {left: Math.max(box.left, c.left), top: Math.max(box.top, c.top),
                                right: Math.min(box.right, c.right), bottom: Math.min(box.bottom, c.bottom)}; };
    for (let a = el.parentElement; a; a = a.parentElement) {
        if (getComputedStyle(a).overflow !== "visible") cut(a.getBoundingClientRect());
    }
    cut({left: 0, top: 0, right: innerWidth, bottom: innerHeight});
    const shown = box.right - box.left > 0.5 && box.bottom - box.top > 0.5 && el.getClientRects().length > 0;
    return shown ? box : null;
}"""


async def _no_sideways_scroll(page: Any) -> None:
    widths = await page.evaluate("""() => ({page: document.scrollingElement.scrollWidth, window: innerWidth,
        log: document.getElementById("log").scrollWidth, logBox: document.getElementById("log").clientWidth})""")
    assert widths["page"] <= widths["window"], f"the page scrolls sideways: {widths}"
    assert widths["log"] <= widths["logBox"], f"the conversation scrolls sideways: {widths}"


async def _settled(page: Any) -> None:
    """Every picture loaded and no animation running (a new message pops in from 6 px lower)."""
    await page.wait_for_function("""() => [...document.images].every(i => i.complete)
        && document.getAnimations().every(a => a.playState !== "running"
                                             || a.effect.getTiming().iterations === Infinity)""")


async def _fully_visible(page: Any, locator: Any) -> bool:
    """Whether all of the element shows (nothing clipped by the conversation's scroll or the window)."""
    await _settled(page)
    return bool(await locator.evaluate("""(el) => {
        const visible = VISIBLE_BOX;
        const whole = el.getBoundingClientRect(), seen = visible(el);
        return seen !== null && Math.abs(whole.left - seen.left) <= 1 && Math.abs(whole.top - seen.top) <= 1
            && Math.abs(whole.right - seen.right) <= 1 && Math.abs(whole.bottom - seen.bottom) <= 1;
    }""".replace("VISIBLE_BOX", _VISIBLE_BOX)))


async def _controls_under_the_toast(page: Any) -> list[str]:
    """The visible buttons, menus and fields that the toast's box overlaps (it must overlap none)."""
    return list(await page.evaluate("""() => {
        const visible = VISIBLE_BOX;
        const box = visible(document.getElementById("toast"));
        if (!box) return ["(the toast is not showing)"];
        const hit = [];
        for (const c of document.querySelectorAll("button, select, input:not([type=file]), a[href], .chip")) {
            const r = visible(c);
            if (r && r.left < box.right && r.right > box.left && r.top < box.bottom && r.bottom > box.top) {
                hit.push((c.textContent || c.getAttribute("aria-label") || c.id).trim());
            }
        }
        return hit;
    }""".replace("VISIBLE_BOX", _VISIBLE_BOX)))


@pytest.mark.parametrize("device", list(VIEWPORTS))
async def test_the_page_fits_a_phone_a_tablet_and_a_laptop(browser: Any, playground_url: str, shots: Path,
                                                           device: str) -> None:
    """No sideways scrolling, the panel folded away on narrow screens, the result fully in view, and a toast
    that never covers a button; the screenshots are kept for a person to look at ($PIXME_SCREENSHOTS)."""
    expect = playwright_api.expect
    width, height = VIEWPORTS[device]
    narrow = width <= 820
    async with open_tab(browser, playground_url, width, height) as page:
        side, toggle = page.locator("#side"), page.locator("#side-toggle")
        if narrow:  # folded by default: the conversation gets the screen
            await expect(side).to_be_hidden()
            await expect(toggle).to_have_attribute("aria-expanded", "false")
        else:
            await expect(side).to_be_visible()
        await _no_sideways_scroll(page)
        await page.screenshot(path=shots / f"{device}-1-empty.png")

        await toggle.click()  # the other way round, and back
        await (expect(side).to_be_visible() if narrow else expect(side).to_be_hidden())
        await _no_sideways_scroll(page)
        await page.screenshot(path=shots / f"{device}-2-panel-toggled.png")
        await toggle.click()
        await (expect(side).to_be_hidden() if narrow else expect(side).to_be_visible())

        # The paperclip is a drawing, not an emoji that some machines show as a blank box.
        attach = page.locator("#attach")
        assert (await attach.inner_text()).strip() == "" and await attach.locator("svg path").count() == 1
        assert (await attach.bounding_box() or {}).get("width", 0) >= 40

        await page.set_input_files("#file", FIXTURE)
        await page.locator(".msg[data-kind=menu] button[data-style=comic]").click()
        toast = page.locator("#toast")
        await expect(toast).to_contain_text("coming up")
        result = _results(page).first
        await expect(result.locator("button[data-export]")).to_have_count(3)
        await expect(result.locator("img.shot")).to_be_visible()
        await _settled(page)
        await expect(toast).to_be_visible()  # still showing (3 s) next to the result and its buttons
        assert await _controls_under_the_toast(page) == []
        await page.screenshot(path=shots / f"{device}-3-result.png")

        assert await _image_loaded(result)
        assert await _fully_visible(page, result.locator("img.shot")), "the result is cut off"
        assert await _fully_visible(page, result.locator(".actions.exports")), "the export row is cut off"
        await _no_sideways_scroll(page)


async def test_on_a_phone_a_party_opened_from_the_panel_stays_in_view_after_joining(
        browser: Any, playground_url: str, shots: Path) -> None:
    expect = playwright_api.expect
    async with open_tab(browser, playground_url, *VIEWPORTS["phone"]) as page:
        for _ in range(2):  # some conversation first, so a lobby can scroll out of view
            await page.set_input_files("#file", FIXTURE)
        await expect(page.locator(".msg[data-kind=menu]")).to_have_count(2)
        await page.locator("#side-toggle").click()
        await page.get_by_role("button", name="Open a party").click()
        await expect(page.locator("#side")).to_be_hidden()  # the panel folds away for the lobby
        lobby = page.locator(".msg.bot[data-kind=buttons]").first
        await expect(lobby).to_contain_text("Avatar party")
        assert await _fully_visible(page, lobby)

        async with page.expect_file_chooser() as chooser:
            await lobby.get_by_role("button", name="Send my selfie").click()
        await (await chooser.value).set_files(FIXTURE)
        await expect(lobby).to_contain_text("Alex (host) — 📸 selfie in")
        await _settled(page)
        await page.wait_for_timeout(300)  # a preview that loads late must not scroll the lobby away again
        assert await _fully_visible(page, lobby), "the lobby the person just joined is off-screen"
        await page.screenshot(path=shots / "phone-4-party-joined.png")
        await _no_sideways_scroll(page)


async def test_a_refused_file_shows_its_name_and_ones_own_photo_can_be_replied_to(page: Any) -> None:
    expect = playwright_api.expect
    await page.set_input_files("#file", {"name": "holiday-notes.pdf", "mimeType": "application/pdf",
                                         "buffer": b"%PDF-1.4 definitely not a selfie"})
    refused = page.locator(".msg.person[data-kind=photo]").last
    await expect(refused.locator(".upload-name")).to_have_text("holiday-notes.pdf")
    await expect(page.locator(".msg.bot[data-kind=text]").last).to_contain_text("doesn't look like a photo")

    await page.set_input_files("#file", FIXTURE)
    photo = page.locator(".msg.person[data-kind=photo]").last
    await expect(photo.locator("img.shot")).to_be_visible()
    await photo.get_by_role("button", name="Reply").click()
    await expect(page.locator("#replying")).to_contain_text("Alex: picture")
    await page.fill("#text", "comic")  # a style by name, replying to the photo
    await page.press("#text", "Enter")
    result = _results(page).first
    await expect(result.locator(".quote")).to_contain_text("Alex: comic")
    assert await _image_loaded(result)


async def test_the_readme_screenshot_shows_the_five_steps(browser: Any, playground_url: str, shots: Path) -> None:
    """The README's picture of the playground, made here so it stays current: a selfie, its comic avatar,
    "add a crown" and the crowned result with its export row, at 1280×800. PIXME_README_SCREENSHOT=1
    writes it to docs/playground.png (palette PNG, under 300 KB)."""
    expect = playwright_api.expect
    async with open_tab(browser, playground_url, *VIEWPORTS["laptop"]) as page:
        await page.set_input_files("#file", FIXTURE)
        await page.locator(".msg[data-kind=menu] button[data-style=comic]").click()
        first = _results(page).first
        await first.get_by_role("button", name="Reply").click()
        await page.fill("#text", "add a crown")
        await page.press("#text", "Enter")
        crowned = _results(page).nth(1)
        await expect(crowned.locator(".text")).to_contain_text("Crown")
        await _settled(page)
        await expect(page.locator("#toast")).to_be_hidden(timeout=6000)
        await expect(page.locator(".how li")).to_have_count(5)
        assert await _fully_visible(page, crowned.locator(".actions.exports"))
        png = await page.screenshot()
    small = _palette_png(png)
    (shots / "readme.png").write_bytes(small)
    assert len(small) < README_MAX_BYTES, f"{len(small) // 1024} KB"
    if os.environ.get("PIXME_README_SCREENSHOT"):
        README_SCREENSHOT.write_bytes(small)


def _palette_png(png: bytes) -> bytes:
    """A screenshot in 256 colours, dithered so the gradients don't band: half the size of the original."""
    from PIL import Image

    shot = Image.open(io.BytesIO(png)).convert("RGB")
    palette = shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    shot.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, "PNG", optimize=True)
    return out.getvalue()
