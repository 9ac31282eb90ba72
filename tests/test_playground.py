"""The playground as its page uses it: the real aiohttp app over HTTP and a WebSocket, the real core,
the offline engine and SQLite. Each test does what a person does on the page and checks what the
page would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bots.cli import open_studio
from bots.playground import Playground
from bots.playground.app import PLAYGROUND_KEY
from core import texts
from core.config import LikenessSettings, LimitsSettings, PlaygroundSettings, Settings, StorageSettings
from core.engines.base import ImageEngine
from core.engines.offline import OfflineEngine
from core.exports import AI_SOURCE_TYPE, has_provenance
from core.intake import MAX_FILE_BYTES
from tests.fakes import FakeEngine

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut.png"
SPANISH_CATALOG = Path(__file__).parent.parent / "core" / "locale" / "es" / "LC_MESSAGES" / "pixme.po"
Event = dict[str, Any]


class Page:
    """One open playground page: its WebSocket, and every event the server pushed to it."""

    def __init__(self, client: TestClient[Any, Any], ws: aiohttp.ClientWebSocketResponse, hello: Event) -> None:
        self.client = client
        self.ws = ws
        self.hello = hello
        self.chat: str = hello["chat"]
        self.events: list[Event] = []
        self._seen = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(msg.json())
                self._changed.set()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()

    async def next(self, match: Callable[[Event], bool], timeout: float = 15.0) -> Event:
        """The next event (after those already taken) that matches."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(self._seen, len(self.events)):
                    if match(self.events[i]):
                        self._seen = i + 1
                        return self.events[i]
                self._changed.clear()
                await self._changed.wait()

    async def message(self, kind: str, timeout: float = 15.0, **fields: Any) -> Event:
        event = await self.next(lambda e: e["type"] == "message" and e["message"]["kind"] == kind
                                and all(e["message"].get(k) == v for k, v in fields.items()), timeout)
        return event["message"]  # type: ignore[no-any-return]

    async def act(self, op: str, name: str = "Alex", **fields: Any) -> None:
        await self.ws.send_json({"op": op, "name": name, **fields})

    async def upload(self, data: bytes, name: str = "Alex", reply_to: str | None = None,
                     filename: str = "selfie.jpg", content_type: str = "image/jpeg") -> str:
        form = aiohttp.FormData()
        form.add_field("name", name)
        if reply_to:
            form.add_field("reply_to", reply_to)
        form.add_field("photo", data, filename=filename, content_type=content_type)
        response = await self.client.post(f"/api/chats/{self.chat}/photos?key={key_of(self.client)}", data=form)
        assert response.status == 200, await response.text()
        return str((await response.json())["id"])

    async def download(self, url: str) -> tuple[bytes, str]:
        """What the page's download link saves: the bytes as served, and their type."""
        response = await self.client.get(url)
        assert response.status == 200
        return await response.read(), response.content_type

    async def image(self, url: str) -> Image.Image:
        response = await self.client.get(url)
        assert response.status == 200
        assert response.content_type.startswith("image/")
        return Image.open(io.BytesIO(await response.read())).convert("RGB")


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, engine: ImageEngine, **settings: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """The playground app over a real studio (SQLite under tmp_path), served on 127.0.0.1."""
    # Not scored: captions are the commentary alone; likeness has its own tests (test_likeness_delivery.py).
    settings.setdefault("likeness", LikenessSettings(enabled=False))
    config = Settings(storage=StorageSettings(dir=tmp_path / "data"), **settings)
    async with open_studio(config, engine=engine) as studio:
        playground = Playground(PlaygroundSettings(), studio, engine_name=engine.name, engine_model=engine.model)
        async with TestClient(TestServer(playground.app)) as test_client:
            yield test_client
        await playground.aclose()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with serve(tmp_path, OfflineEngine()) as test_client:
        yield test_client


async def all_handled(client: TestClient[Any, Any]) -> None:
    """Every upload and action the playground took in has been handled, and every job it started is done."""
    playground = client.app[PLAYGROUND_KEY]
    if playground._tasks:
        await asyncio.wait(set(playground._tasks), timeout=10)
    await playground.studio.jobs.wait_idle(10)


def key_of(client: TestClient[Any, Any]) -> str:
    """This launch's key, which the printed address (and so the page) carries."""
    return client.app[PLAYGROUND_KEY].key


async def open_page(client: TestClient[Any, Any], chat: str = "", lang: str = "") -> Page:
    """A page as a browser opens it; `lang` is its navigator.language."""
    ws = await client.ws_connect(f"/ws?chat={chat}&key={key_of(client)}" + (f"&lang={lang}" if lang else ""))
    hello = await ws.receive_json(timeout=10)
    assert hello["type"] == "hello"
    return Page(client, ws, hello)


@pytest.fixture
async def page(client: TestClient[Any, Any]) -> AsyncIterator[Page]:
    opened = await open_page(client)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def selfie() -> bytes:
    out = io.BytesIO()
    Image.open(FIXTURE).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0-255) at a common size."""
    pixels = [np.asarray(i.resize((128, 128)), dtype=np.int16) for i in (a, b)]
    return float(np.abs(pixels[0] - pixels[1]).mean())


async def _styled(page: Page, selfie: bytes, style: str = "zombie") -> tuple[str, Event]:
    photo_id = await page.upload(selfie)
    menu = await page.message("menu", reply_to=photo_id)
    await page.act("style", message=menu["id"], style=style)
    return photo_id, await page.message("image", reply_to=photo_id)


async def test_the_page_says_which_engine_and_lists_the_styles(page: Page, client: TestClient[Any, Any]) -> None:
    assert page.hello["engine"] == "offline"
    assert "zombie" in [s["id"] for s in page.hello["styles"]]
    index = await client.get(f"/?key={key_of(client)}")
    body = await index.text()
    assert index.status == 200 and "Pix Me!" in body and "/static/app.js" in body
    assert "default-src 'self'" in index.headers["Content-Security-Policy"]


async def test_upload_and_pick_a_style_shows_the_avatar_with_commentary(page: Page, selfie: bytes) -> None:
    photo_id = await page.upload(selfie)
    photo = await page.message("photo", id=photo_id)
    assert photo["from"]["name"] == "Alex" and photo["image"]  # the person's photo shows in the chat
    menu = await page.message("menu", reply_to=photo_id)
    assert {"zombie", "comic", "anime"} <= {s["id"] for s in menu["styles"]}

    await page.act("style", message=menu["id"], style="zombie")
    working = await page.next(lambda e: e["type"] in ("working", "message") and e.get("reply_to") == photo_id)
    assert working["type"] == "working"  # the page shows progress before the picture arrives
    result = await page.message("image", reply_to=photo_id)
    assert result["text"]  # the commentary under the picture
    assert isinstance(result["node"], int)
    avatar, original = await page.image(result["image"]), Image.open(FIXTURE).convert("RGB")
    assert _difference(avatar, original) > 10  # it really is restyled


async def test_replying_to_a_result_edits_that_result_and_undo_goes_back(page: Page, selfie: bytes) -> None:
    _, first = await _styled(page, selfie)
    await page.act("text", text="add a crown", reply_to=first["id"])
    said = await page.message("text", text="add a crown")
    assert said["reply_to"] == first["id"] and said["from"]["name"] == "Alex"
    crowned = await page.message("image", reply_to=said["id"])
    assert "crown" in crowned["text"].lower()
    first_image, crowned_image = await page.image(first["image"]), await page.image(crowned["image"])
    assert _difference(first_image, crowned_image) > 0.5

    await page.act("undo", message=crowned["id"], node=crowned["node"])
    back = await page.message("image", reply_to=crowned["id"])
    assert "Back to step 1" in back["text"]
    assert _difference(await page.image(back["image"]), first_image) < 0.5  # the zombie again, no crown

    # The picture undo brought back can itself be replied to.
    await page.act("text", text="make it sepia", reply_to=back["id"])
    said = await page.message("text", text="make it sepia")
    assert (await page.message("image", reply_to=said["id"]))["node"] != crowned["node"]


async def test_again_and_a_reply_without_a_picture_are_understood(page: Page, selfie: bytes) -> None:
    _, first = await _styled(page, selfie, "comic")
    await page.act("again", message=first["id"], node=first["node"])
    again = await page.message("image", reply_to=first["id"])
    assert again["node"] != first["node"]
    await page.act("text", text="hello?")
    said = await page.message("text", text="hello?")
    hint = await page.message("text", reply_to=said["id"])
    assert "Upload a selfie" in hint["text"]


async def test_me_says_in_one_line_that_the_playground_has_no_profile_pictures(page: Page) -> None:
    await page.act("text", text="/me zombie")
    said = await page.message("text", text="/me zombie")
    answer = await page.message("text", reply_to=said["id"])
    assert answer["text"] == texts.ME_NOT_HERE


async def test_a_file_that_is_not_a_photo_gets_a_one_line_refusal(page: Page) -> None:
    upload_id = await page.upload(b"%PDF-1.4 not a selfie at all", filename="cv.pdf", content_type="application/pdf")
    refusal = await page.message("text", reply_to=upload_id)
    assert "\n" not in refusal["text"] and len(refusal["text"]) < 200
    await all_handled(page.client)
    assert not [e for e in page.events if e["type"] == "message" and e["message"]["kind"] == "menu"]


async def test_a_file_over_20_mb_is_refused_with_the_limit(page: Page) -> None:
    upload_id = await page.upload(b"\xff\xd8" + b"\0" * MAX_FILE_BYTES)
    refusal = await page.message("text", reply_to=upload_id)
    assert "20 MB" in refusal["text"]


async def test_a_party_with_two_people_makes_one_group_picture(page: Page, selfie: bytes) -> None:
    await page.act("text", text="/party comic Beach day")
    lobby = await page.message("buttons")
    assert "Avatar party" in lobby["text"] and "Beach day" in lobby["text"]
    assert any(b["action"].startswith("party:join:") for b in lobby["buttons"])

    await page.upload(selfie, name="Alex", reply_to=lobby["id"])
    edit = await page.next(lambda e: e["type"] == "edit" and "Alex (host) — 📸 selfie in" in e["message"]["text"])
    await page.upload(selfie, name="Sam", reply_to=lobby["id"])
    edit = await page.next(lambda e: e["type"] == "edit" and "Sam — 📸 selfie in" in e["message"]["text"])
    start = next(b["action"] for b in edit["message"]["buttons"] if b["action"].startswith("party:start:"))

    await page.act("press", name="Sam", message=lobby["id"], action=start)
    toast = await page.next(lambda e: e["type"] == "toast")
    assert "host" in toast["text"]  # only the host starts it

    await page.act("press", name="Alex", message=lobby["id"], action=start)
    started = await page.next(lambda e: e["type"] == "edit" and "has started" in e["message"]["text"])
    assert "Alex and Sam" in started["message"]["text"]
    group = await page.message("image", reply_to=lobby["id"], timeout=30)
    assert "Alex and Sam" in group["text"]


async def test_a_reloaded_page_sees_the_conversation_again(client: TestClient[Any, Any], page: Page,
                                                            selfie: bytes) -> None:
    _, result = await _styled(page, selfie)
    again = await open_page(client, page.chat)
    try:
        assert again.chat == page.chat
        assert result["id"] in [m["id"] for m in again.hello["history"]]
        # Everyone watching the chat sees what happens in it.
        await again.act("text", name="Sam", text="add sunglasses", reply_to=result["id"])
        said = await page.message("text", text="add sunglasses")
        assert said["from"]["name"] == "Sam"
        assert "sunglasses" in (await page.message("image", reply_to=said["id"]))["text"].lower()
    finally:
        await again.close()
    stranger = await open_page(client, "deadbeef-00000000")  # an unknown chat gets a fresh one
    assert stranger.chat != page.chat and stranger.hello["history"] == []
    await stranger.close()


async def test_only_static_files_and_produced_pictures_are_served(client: TestClient[Any, Any], page: Page,
                                                                  selfie: bytes) -> None:
    for path in ("/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/..%2F..%2Fcore%2Fconfig.py",
                 "/static/.hidden", "/images/not-a-token", "/bots/playground/app.py", "/pixme.sqlite3"):
        response = await client.get(path)
        assert response.status == 404, path
    assert (await client.get("/static/app.js")).status == 200
    # Another website in the same browser cannot drive the playground.
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect(f"/ws?key={key_of(client)}", headers={"Origin": "https://evil.example"})
    form = aiohttp.FormData()
    form.add_field("photo", selfie, filename="a.jpg", content_type="image/jpeg")
    response = await client.post(f"/api/chats/{page.chat}/photos?key={key_of(client)}", data=form,
                                 headers={"Origin": "https://evil.example"})
    assert response.status == 403
    assert PlaygroundSettings().host == "127.0.0.1" and PlaygroundSettings().port == 8080


async def _history_of(client: TestClient[Any, Any], chat: str) -> list[Event]:
    page = await open_page(client, chat)
    await page.close()
    return page.hello["history"]  # type: ignore[no-any-return]


async def test_a_dns_rebinding_page_is_refused_the_page_the_upload_and_the_websocket(
        client: TestClient[Any, Any], page: Page, selfie: bytes) -> None:
    """A website whose name was rebound to 127.0.0.1 calls itself by its own name, Origin and Host alike;
    even holding the key (which it cannot know) it gets nothing."""
    _, result = await _styled(page, selfie)
    key, port = key_of(client), client.port
    rebound = f"rebind.attacker.example:{port}"
    attacker = {"Host": rebound, "Origin": f"http://{rebound}"}
    response = await client.get(f"/?key={key}", headers=attacker)
    assert response.status == 403 and "Pix Me!" not in await response.text()
    form = aiohttp.FormData()
    form.add_field("name", "Alex")
    form.add_field("photo", selfie, filename="a.jpg", content_type="image/jpeg")
    response = await client.post(f"/api/chats/{page.chat}/photos?key={key}", data=form, headers=attacker)
    assert response.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"/ws?chat={page.chat}&key={key}", headers=attacker)
    assert refused.value.status == 403
    assert (await client.get(result["image"], headers=attacker)).status == 403  # nor Alex's pictures
    # Nothing reached the chat: Alex's picture is the last thing in it.
    assert (await _history_of(client, page.chat))[-1]["id"] == result["id"]

    # The loopback names on the port it listens on are the playground's own; another port is not.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert (await client.get(f"/?key={key}", headers={"Host": host})).status == 200, host
    for host in (f"127.0.0.1:{port + 1}", "127.0.0.1", f"127.0.0.1.nip.io:{port}", f"[::2]:{port}", ""):
        assert (await client.get(f"/?key={key}", headers={"Host": host})).status == 403, host


async def test_without_this_launchs_key_the_page_the_upload_and_the_websocket_are_refused(
        client: TestClient[Any, Any], page: Page, selfie: bytes) -> None:
    for query in ("", "?key=", "?key=" + "A" * 32, f"?key={key_of(client)}x"):
        response = await client.get(f"/{query}")
        assert response.status == 403, query
        assert "address pixme printed" in await response.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"/ws{query}")
        assert refused.value.status == 403
        form = aiohttp.FormData()
        form.add_field("photo", selfie, filename="a.jpg", content_type="image/jpeg")
        assert (await client.post(f"/api/chats/{page.chat}/photos{query}", data=form)).status == 403
    assert [e for e in page.events if e["type"] == "message"] == []  # no upload got through
    assert (await client.get("/static/app.js")).status == 200  # the script itself is no secret
    assert (await client.get(f"/?key={key_of(client)}")).status == 200


async def test_an_upload_that_is_not_a_form_gets_400_with_one_line(client: TestClient[Any, Any], page: Page,
                                                                    selfie: bytes) -> None:
    url = f"/api/chats/{page.chat}/photos?key={key_of(client)}"
    for body, content_type in ((b'{"photo": "x"}', "application/json"), (selfie, "image/jpeg"),
                               (b"--x\r\n", "multipart/form-data"),  # no boundary
                               (b"garbage", "multipart/form-data; boundary=xyz")):
        response = await client.post(url, data=body, headers={"Content-Type": content_type})
        text = await response.text()
        assert response.status == 400, (content_type, text)
        assert "\n" not in text.strip() and "Traceback" not in text and len(text) < 100
    # A form field is read up to a cap of the app's own, not aiohttp's (1 MB by default).
    form = aiohttp.FormData()
    form.add_field("name", "A" * 100_000)
    form.add_field("photo", selfie, filename="a.jpg", content_type="image/jpeg")
    assert (await client.post(url, data=form)).status == 413
    form = aiohttp.FormData()
    for i in range(12):  # the page sends four fields; a flood of them is not read on and on
        form.add_field(f"f{i}", "x")
    form.add_field("photo", selfie, filename="a.jpg", content_type="image/jpeg")
    assert (await client.post(url, data=form)).status == 400
    assert [e for e in page.events if e["type"] == "message"] == []
    assert (await page.upload(selfie)) != ""  # and a real one still works


async def test_a_waiting_request_shows_its_place_in_line_then_the_picture(tmp_path: Path, selfie: bytes) -> None:
    limits = LimitsSettings(concurrency=1, queue_note_after_s=0)
    async with serve(tmp_path, FakeEngine(delay=0.6), limits=limits) as test_client:
        page = await open_page(test_client)
        try:
            menus = []
            for name in ("Alex", "Sam"):
                photo_id = await page.upload(selfie, name=name)
                menus.append((photo_id, await page.message("menu", reply_to=photo_id)))
            for name, (_, menu) in zip(("Alex", "Sam"), menus, strict=True):
                await page.act("style", name=name, message=menu["id"], style="noir")
            # One runs at once, so whoever came second (their photos are checked side by side) waits.
            line = (await page.next(lambda e: e["type"] == "message" and "in line" in e["message"]["text"]))["message"]
            assert "#1 in line" in line["text"]
            waiting_photo = line["reply_to"]
            assert waiting_photo in (menus[0][0], menus[1][0])
            await page.next(lambda e: e["type"] == "edit" and e["message"]["id"] == line["id"]
                            and "Working" in e["message"]["text"])
            assert (await page.message("image", reply_to=waiting_photo))["text"] == "style: noir"
            await page.next(lambda e: e["type"] == "delete" and e["id"] == line["id"])  # the note goes away
        finally:
            await page.close()


async def test_the_page_names_the_gemini_engine_when_it_is_the_one_in_use(tmp_path: Path) -> None:
    engine = FakeEngine(name="gemini", model="gemini-3.1-flash-image")
    async with serve(tmp_path, engine) as test_client:
        page = await open_page(test_client)
        assert (page.hello["engine"], page.hello["model"]) == ("gemini", "gemini-3.1-flash-image")
        await page.close()


async def test_forget_asks_first_then_deletes_and_takes_its_buttons_away(page: Page, selfie: bytes) -> None:
    await _styled(page, selfie)
    await page.act("text", text="/forget")
    question = await page.message("buttons")
    yes = next(b["action"] for b in question["buttons"] if b["action"].startswith("forget:yes:"))
    await page.act("press", name="Sam", message=question["id"], action=yes)
    assert "someone else" in (await page.next(lambda e: e["type"] == "toast"))["text"]
    await page.act("press", name="Alex", message=question["id"], action=yes)
    done = await page.message("text", reply_to=question["id"])
    assert done["text"].startswith("Done — I deleted")
    settled = await page.next(lambda e: e["type"] == "edit" and e["message"]["id"] == question["id"])
    assert settled["message"]["buttons"] == []


# -- settings, persona, history, exports, languages ------------------------------------------------


async def _command(page: Page, text: str, name: str = "Alex", reply_to: str | None = None,
                   kind: str = "text") -> tuple[Event, Event]:
    """Type a command; returns what the person said and the bot's first answer to it."""
    await page.act("text", name=name, text=text, reply_to=reply_to)
    said = await page.message("text", text=text)
    return said, await page.message(kind, reply_to=said["id"])


def _action(message: Event, prefix: str) -> str:
    return next(b["action"] for b in message["buttons"] if b["action"].startswith(prefix))


async def _edited(page: Page, message_id: str, match: Callable[[Event], bool] = lambda m: True) -> Event:
    event = await page.next(lambda e: e["type"] == "edit" and e["message"]["id"] == message_id and match(e["message"]))
    return event["message"]  # type: ignore[no-any-return]


async def test_settings_buttons_edit_the_message_in_place_and_the_next_result_honours_them(
        client: TestClient[Any, Any], page: Page, selfie: bytes) -> None:
    _, settings = await _command(page, "/settings", kind="buttons")
    assert "Your settings" in settings["text"] and "Aspect ratio: auto" in settings["text"]
    await page.act("press", message=settings["id"], action=_action(settings, "set:menu:ratio"))
    ratios = await _edited(page, settings["id"])  # the same message, now with the ratio choices
    assert "set:ratio:16:9" in [b["action"] for b in ratios["buttons"]]
    assert any(b["label"] == "✓ auto" for b in ratios["buttons"])  # the current choice is marked

    # Someone else on the page can't change Alex's settings through Alex's keyboard.
    await page.act("press", name="Sam", message=settings["id"], action="set:ratio:9:16")
    assert "someone else" in (await page.next(lambda e: e["type"] == "toast"))["text"]

    await page.act("press", message=settings["id"], action="set:ratio:16:9")
    saved = await _edited(page, settings["id"])  # edited first, then the presser is told
    assert (await page.next(lambda e: e["type"] == "toast"))["text"] == "Saved ✓"
    assert "Aspect ratio: 16:9" in saved["text"]
    assert any(b["action"] == "set:menu:ratio" for b in saved["buttons"])  # back at the main keyboard
    reloaded = await open_page(client, page.chat)  # a reloaded page shows the edited message, not the old one
    await reloaded.close()
    assert next(m for m in reloaded.hello["history"] if m["id"] == settings["id"]) == saved

    _, result = await _styled(page, selfie)
    width, height = (await page.image(result["image"])).size
    assert width > height * 1.5  # 16:9 from the offline engine
    # Sam never chose a ratio: Sam's pictures keep the photo's shape.
    photo_id = await page.upload(selfie, name="Sam")
    menu = await page.message("menu", reply_to=photo_id)
    await page.act("style", name="Sam", message=menu["id"], style="comic")
    width, height = (await page.image((await page.message("image", reply_to=photo_id))["image"])).size
    assert abs(width - height) < width * 0.2


async def test_model_command_chooses_directly_or_opens_the_model_menu(page: Page) -> None:
    _, chosen = await _command(page, "/model offline")
    assert "Model: offline" in chosen["text"]
    _, refused = await _command(page, "/model dall-e-9")
    assert "isn't one of the choices" in refused["text"]
    _, menu = await _command(page, "/model", kind="buttons")
    assert "set:model:offline" in [b["action"] for b in menu["buttons"]]


async def test_persona_is_saved_shown_and_cleared(page: Page) -> None:
    _, empty = await _command(page, "/persona")
    assert "no persona yet" in empty["text"]
    _, saved = await _command(page, "/persona a marathon runner who loves cats")
    assert saved["text"].startswith("Saved.") and "a marathon runner who loves cats" in saved["text"]
    _, shown = await _command(page, "/persona")
    assert "Your persona:" in shown["text"] and "a marathon runner who loves cats" in shown["text"]
    _, settings = await _command(page, "/settings", kind="buttons")
    assert "Persona: set" in settings["text"]
    _, sams = await _command(page, "/persona", name="Sam")
    assert "no persona yet" in sams["text"]  # a persona is the person's own
    _, cleared = await _command(page, "/persona clear")
    assert "persona is gone" in cleared["text"]


async def test_history_shows_the_last_results_and_replying_to_one_continues_from_it(
        page: Page, selfie: bytes) -> None:
    _, first = await _styled(page, selfie)
    await page.act("text", text="add a crown", reply_to=first["id"])
    crowned = await page.message("image", reply_to=(await page.message("text", text="add a crown"))["id"])

    _, intro = await _command(page, "/history")
    assert "Your last 2 pictures here" in intro["text"]
    steps = [await page.message("image", reply_to=None), await page.message("image", reply_to=None)]
    assert [m["node"] for m in steps] == [first["node"], crowned["node"]]  # oldest first
    assert steps[0]["text"].startswith("Step 1") and steps[1]["text"].startswith("Step 2")
    assert steps[0]["exports"]  # a history step can be exported like any result

    # Replying to the first step continues from it: undoing that edit lands on the zombie, not the crown.
    await page.act("text", text="make it sepia", reply_to=steps[0]["id"])
    sepia = await page.message("image", reply_to=(await page.message("text", text="make it sepia"))["id"])
    await page.act("undo", message=sepia["id"], node=sepia["node"])
    back = await page.message("image", reply_to=sepia["id"])
    assert "Back to step 1" in back["text"]
    assert _difference(await page.image(back["image"]), await page.image(first["image"])) < 0.5
    _, nobody = await _command(page, "/history", name="Sam")
    assert nobody["text"].startswith("Nothing here yet")


async def test_export_buttons_give_a_sticker_a_profile_picture_and_the_original_with_provenance(
        page: Page, selfie: bytes) -> None:
    _, result = await _styled(page, selfie)
    kinds = {b["action"]: b["label"] for b in result["exports"]}
    assert set(kinds) == {f"export:{k}:{result['node']}" for k in ("sticker", "profile", "original")}
    assert "🏷 Sticker" in kinds.values()

    await page.act("press", message=result["id"], action=f"export:sticker:{result['node']}")
    sticker = await page.message("sticker", reply_to=result["id"])
    assert (await page.next(lambda e: e["type"] == "toast"))["text"] == "Sent ✓"
    data, mime = await page.download(sticker["file"]["url"])
    assert mime == "image/webp" and sticker["file"]["name"].endswith(".webp")
    assert Image.open(io.BytesIO(data)).format == "WEBP" and Image.open(io.BytesIO(data)).size == (512, 512)
    assert AI_SOURCE_TYPE.encode() in data and sticker["file"]["size"] == len(data)

    await page.act("press", message=result["id"], action=f"export:profile:{result['node']}")
    profile = await page.message("file", reply_to=result["id"])
    data, mime = await page.download(profile["file"]["url"])
    assert mime == "image/jpeg" and profile["file"]["name"].endswith(".jpg")
    assert Image.open(io.BytesIO(data)).format == "JPEG" and Image.open(io.BytesIO(data)).size == (1024, 1024)
    assert AI_SOURCE_TYPE.encode() in data and has_provenance(data)
    assert profile["text"] == "Your profile picture: 1024×1024."

    await page.act("press", message=result["id"], action=f"export:original:{result['node']}")
    original = await page.message("file", reply_to=result["id"])
    data, mime = await page.download(original["file"]["url"])
    shown = await page.image(result["image"])
    as_file = Image.open(io.BytesIO(data))
    assert original["file"]["name"] == f"pixme-{result['node']}.{'png' if mime == 'image/png' else 'jpg'}"
    assert as_file.size == shown.size
    assert np.array_equal(np.asarray(as_file.convert("RGB")), np.asarray(shown))  # the same pixels
    assert has_provenance(data)

    # The original file is the same picture: replying to it continues from it.
    await page.act("text", text="add a crown", reply_to=original["id"])
    said = await page.message("text", text="add a crown")
    assert "crown" in (await page.message("image", reply_to=said["id"]))["text"].lower()


async def test_forged_export_presses_read_neither_a_photo_nor_another_picture(page: Page, selfie: bytes) -> None:
    photo_id, result = await _styled(page, selfie)
    photo_node = result["node"] - 1  # ids count up: the selfie was stored just before its result

    # Sam names Alex's selfie on the selfie's own message, and on Alex's result.
    for message in (photo_id, result["id"]):
        await page.act("press", name="Sam", message=message, action=f"export:original:{photo_node}")
        assert (await page.next(lambda e: e["type"] == "toast"))["text"] == texts.UNKNOWN_BUTTON
    assert not [e for e in page.events if e["type"] == "message" and e["message"]["kind"] == "file"]

    # Alex may have his own photo back.
    await page.act("press", message=photo_id, action=f"export:original:{photo_node}")
    mine = await page.message("file", reply_to=photo_id)
    assert mine["node"] == photo_node
    assert (await page.next(lambda e: e["type"] == "toast"))["text"] == texts.EXPORT_SENT


async def test_export_typed_as_a_reply_and_explained_without_one(page: Page, selfie: bytes) -> None:
    _, result = await _styled(page, selfie)
    _, sticker = await _command(page, "/export sticker", reply_to=result["id"], kind="sticker")
    assert (await page.image(sticker["image"])).size == (512, 512)
    _, how = await _command(page, "/export sticker")
    assert "Reply to one of my pictures with /export" in how["text"]


async def test_delivery_as_a_file_or_both(page: Page, selfie: bytes) -> None:
    _, settings = await _command(page, "/settings", kind="buttons")
    await page.act("press", message=settings["id"], action="set:delivery:file")
    await _edited(page, settings["id"], lambda m: "Delivery: full-resolution file" in m["text"])
    photo_id, menu = await page.upload(selfie), None
    menu = await page.message("menu", reply_to=photo_id)
    await page.act("style", message=menu["id"], style="comic")
    as_file = await page.message("file", reply_to=photo_id)
    assert as_file["text"] and as_file["node"] > 0  # the commentary is the caption
    data, _ = await page.download(as_file["file"]["url"])
    assert has_provenance(data) and as_file["file"]["name"].startswith(f"pixme-{as_file['node']}.")
    assert not [e for e in page.events if e["type"] == "message" and e["message"]["kind"] == "image"]
    await page.act("text", text="add sunglasses", reply_to=as_file["id"])  # the file is a result to reply to
    said = await page.message("text", text="add sunglasses")
    assert "sunglasses" in (await page.message("file", reply_to=said["id"]))["text"].lower()

    await page.act("press", message=settings["id"], action="set:delivery:both")
    await _edited(page, settings["id"], lambda m: "Delivery: photo and file" in m["text"])
    await page.act("again", message=as_file["id"], node=as_file["node"])
    shown = await page.message("image", reply_to=as_file["id"])
    kept = await page.message("file", reply_to=as_file["id"])
    assert shown["node"] == kept["node"] and shown["exports"]


async def test_language_buttons_are_edited_in_place_into_the_chosen_language(page: Page) -> None:
    _, choose = await _command(page, "/language", kind="buttons")
    assert {"lang:es", "lang:ru", "lang:en", "lang:auto"} <= {b["action"] for b in choose["buttons"]}
    await page.act("press", message=choose["id"], action="lang:ru")
    answered = await _edited(page, choose["id"])
    assert "Русский" in answered["text"] and answered["buttons"] == []
    _, styles = await _command(page, "/styles")
    assert styles["text"].startswith("Стили:")
    _, back = await _command(page, "/language auto")
    assert "English" in back["text"]


@pytest.mark.skipif(not SPANISH_CATALOG.exists(), reason="Spanish catalog not yet written")
async def test_a_spanish_browser_is_answered_in_spanish(client: TestClient[Any, Any], selfie: bytes) -> None:
    page = await open_page(client, lang="es-ES")
    try:
        _, styles = await _command(page, "/styles")
        assert styles["text"].startswith("Estilos:")
        _, unknown = await _command(page, "/nosuchstyle")
        assert unknown["text"].startswith("No conozco el estilo “nosuchstyle”")
        _, settings = await _command(page, "/settings", kind="buttons")
        await page.act("press", name="Sam", message=settings["id"], action="set:ratio:1:1")
        assert (await page.next(lambda e: e["type"] == "toast"))["text"] == "Ese botón es de otra persona."
        _, result = await _styled(page, selfie)
        assert "🖼 Foto de perfil" in [b["label"] for b in result["exports"]]
        # The same chat, another person whose browser is English: English answers.
        await page.act("text", name="Sam", lang="en-GB", text="/styles")
        said = await page.message("text", text="/styles")
        assert (await page.message("text", reply_to=said["id"]))["text"].startswith("Styles:")
    finally:
        await page.close()


TELEGRAM_GESTURES = ("caption", "as a photo rather than a file", "album", "private chat")


async def test_the_playground_names_its_own_gestures_not_telegrams(page: Page) -> None:
    """Help, a style command with no photo and a file over the limit: said in the page's words
    (upload, the paperclip, Reply), never in Telegram's (a caption, "as a photo rather than a file")."""
    _, help_ = await _command(page, "/help")
    _, hint = await _command(page, "/zombie")
    upload_id = await page.upload(b"\xff\xd8" + b"\0" * MAX_FILE_BYTES, filename="holiday.jpg")
    too_big = await page.message("text", reply_to=upload_id)
    assert "paperclip" in help_["text"] and "Reply" in help_["text"] and "/party" in help_["text"]
    assert hint["text"].startswith("Upload a selfie and pick 🧟 Zombie under it") and "/zombie" in hint["text"]
    assert "20 MB" in too_big["text"] and "smaller" in too_big["text"]
    for said in (help_, hint, too_big):
        assert not [words for words in TELEGRAM_GESTURES if words in said["text"]], said["text"]


async def test_a_refused_upload_keeps_its_file_name(page: Page) -> None:
    upload_id = await page.upload(b"%PDF-1.4 not a selfie", filename="cv.pdf", content_type="application/pdf")
    shown = await page.message("photo", id=upload_id)
    assert shown["image"] is None and shown["file_name"] == "cv.pdf"  # the page shows it instead of a picture


async def test_replying_to_ones_own_photo_styles_or_edits_it(page: Page, selfie: bytes) -> None:
    """As on Telegram, a style command replying to a photo styles it; here a bare style name or a change
    ("add a crown") works too, even before any style was picked from the menu."""
    photo_id = await page.upload(selfie)
    await page.message("menu", reply_to=photo_id)
    original = Image.open(FIXTURE).convert("RGB")

    await page.act("text", text="add a crown", reply_to=photo_id)
    said = await page.message("text", text="add a crown")
    crowned = await page.message("image", reply_to=said["id"])
    assert "crown" in crowned["text"].lower()
    assert 0.5 < _difference(await page.image(crowned["image"]), original) < 40  # the photo, crowned

    for typed in ("comic", "/zombie"):
        await page.act("text", text=typed, reply_to=photo_id)
        said = await page.message("text", text=typed)
        styled = await page.message("image", reply_to=said["id"])
        assert styled["exports"] and _difference(await page.image(styled["image"]), original) > 10


async def test_a_spanish_browser_hears_the_playgrounds_own_sentences_in_spanish(client: TestClient[Any, Any]) -> None:
    page = await open_page(client, lang="es")
    try:
        _, hint = await _command(page, "/comic")
        assert hint["text"].startswith("Sube un selfie y elige") and "/comic" in hint["text"]
        _, help_ = await _command(page, "/help")
        assert "botón del clip" in help_["text"]
    finally:
        await page.close()


async def test_every_command_in_the_table_is_answered_and_none_as_unknown(page: Page) -> None:
    from core.commands import COMMANDS

    for name in [c.name for c in COMMANDS.values() if c.typed]:  # /avatar is Discord's, whose styles are not commands
        await page.act("text", name="Alex", text=f"/{name}")
        said = await page.message("text", text=f"/{name}")
        answer = await page.next(lambda e, said=said: e["type"] == "message"
                                 and e["message"].get("reply_to") == said["id"])
        assert answer["message"]["text"] and answer["message"]["text"] != texts.unknown_style(name), name
        if name == "party":  # one party at a time: close it so /join below meets none
            cancel = _action(answer["message"], "party:cancel:")
            await page.act("press", name="Alex", message=answer["message"]["id"], action=cancel)
            await page.next(lambda e: e["type"] == "toast")


async def test_join_as_a_reply_to_the_lobby_is_the_join_button(page: Page) -> None:
    await page.act("text", text="/party comic")
    lobby = await page.message("buttons")
    await page.act("text", name="Sam", text="/join", reply_to=lobby["id"])
    said = await page.message("text", text="/join")
    edit = await _edited(page, lobby["id"], lambda m: "Sam" in m["text"])  # the lobby lists Sam at once
    assert "Sam" in edit["text"]
    answer = await page.message("text", reply_to=said["id"])
    assert answer["text"] == texts.party_send_selfie("playground")
