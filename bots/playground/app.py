"""Playground adapter: a local web chat (aiohttp) <-> core, for trying Pix Me! with no bot token.

The page talks over one WebSocket (actions in, events out) and uploads photos with a multipart
POST. Like the other adapters it only translates: page actions become studio calls, and the
studio answers through `PlaygroundMessenger`. Several people can be simulated from one page: every
action names who does it, which is what makes parties work here too.

It has no login, so it guards itself against the browser it runs in: on loopback it answers only
requests addressed to a loopback name on its own port (a DNS-rebinding page names its own host), and
the page, the WebSocket and uploads need the key made at each launch, which only the printed address
carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path, PureWindowsPath
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from bots.playground.messenger import Event, ImageCache, PlaygroundMessenger
from core import texts
from core.actions import LanguagePress, SettingPress, parse
from core.commands import Commands, Typed
from core.config import PlaygroundSettings
from core.intake import MAX_FILE_BYTES, IntakeError
from core.requests import Chat, Context, Person, PhotoRef, ReplyTarget
from core.studio import Studio
from core.styles import STYLES, get_style

log = logging.getLogger(__name__)

PLATFORM = "playground"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
                ".png": "image/png", ".ico": "image/x-icon"}
UPLOAD_CACHE_BYTES = 200 * 1024 * 1024
DRAIN_LIMIT = 4 * MAX_FILE_BYTES  # past this an oversized upload is cut off instead of read to the end
PREVIEW_PX = 768
MAX_TEXT = 2000
MAX_NAME = 32
MAX_FIELD_BYTES = 4 * MAX_TEXT  # a form field (name, caption, …) as UTF-8: MAX_TEXT characters at most
MAX_PARTS = 8  # the page sends four
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]{1,5}))?$")
_CHAT_ID = re.compile(r"^[0-9a-f]{1,16}-[0-9a-f]{8}$")
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8}){0,4}$")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
}

PLAYGROUND_KEY: web.AppKey[Playground] = web.AppKey("playground")


def person_named(name: object, language: object = None) -> Person:
    """The simulated person behind a name typed on the page; the same name is the same person.

    `language` is the browser's `navigator.language`: the page's own chrome stays English, but
    everything the server says is in the person's language (core negotiates the tag)."""
    clean = " ".join(str(name or "").split())[:MAX_NAME] or "You"
    tag = language if isinstance(language, str) and _LANGUAGE_TAG.match(language) else None
    return Person("pg-" + clean.casefold(), clean, tag)


class Playground:
    """The web app around a studio; `start()` serves it, `url` says where."""

    def __init__(self, settings: PlaygroundSettings, studio: Studio, *, engine_name: str,
                 engine_model: str = "") -> None:
        self.settings = settings
        self.studio = studio
        self.engine_name = engine_name
        self.commands = Commands(studio, engine_name=engine_name)
        self.engine_model = engine_model
        self.messenger = PlaygroundMessenger()
        self.uploads = ImageCache(UPLOAD_CACHE_BYTES)  # the photos as sent, by message id
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        # Made at each launch and known only from the printed address; the page carries it on.
        self.key = secrets.token_urlsafe(24)
        self.url = ""
        studio.attach(PLATFORM, self.messenger)
        self.app = self._build_app()

    # -- lifecycle --------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        middlewares = [_security_headers]
        if self.settings.is_loopback:  # served to other machines (--public), any name may be theirs
            middlewares.append(_loopback_names_only)
        app = web.Application(middlewares=middlewares, client_max_size=MAX_FILE_BYTES + 1024 * 1024)
        app[PLAYGROUND_KEY] = self
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/images/{token}", self._image)
        app.router.add_get("/ws", self._websocket)
        app.router.add_post("/api/chats/{chat}/photos", self._upload)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def start(self) -> None:
        """Listen on the configured host and port (port 0 picks a free one)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        host, port = self._runner.addresses[0][:2]  # what was really bound: port 0 became a real one
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        address = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
        self.url = f"{address}?key={self.key}"
        log.info("playground: serving %s", address)  # the key stays out of the log

    @property
    def connected(self) -> bool:
        """Serving the page (readiness, bots/ops.py)."""
        return self._runner is not None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the actions still being handled (the studio finishes or resumes their jobs)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _close_sockets(self, _: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")

    # -- static files and images ------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _static(self, request: web.Request) -> web.StreamResponse:
        # Only plain files directly inside static/: no paths, no dot-files, no symlinks out.
        name = request.match_info["name"]
        path = STATIC_DIR / name
        if "/" in name or "\\" in name or name.startswith(".") or path.suffix not in STATIC_TYPES \
                or not path.is_file() or path.is_symlink():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix],
                                               "Cache-Control": "no-cache"})

    async def _image(self, request: web.Request) -> web.Response:
        item = self.messenger.images.get(request.match_info["token"])
        if item is None:
            raise web.HTTPNotFound(text="This picture is no longer kept by the playground.")
        data, mime = item
        return web.Response(body=data, content_type=mime, headers={"Cache-Control": "private, max-age=86400"})

    # -- the WebSocket ----------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        _check_origin(request)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        chat_id = request.query.get("chat", "")
        language = request.query.get("lang")  # navigator.language, also sent with every action
        if not (_CHAT_ID.match(chat_id) and self.messenger.is_current(chat_id)):
            chat_id = self.messenger.new_room().id
        room = self.messenger.room(chat_id)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        await ws.send_json({
            "type": "hello", "chat": chat_id, "engine": self.engine_name, "model": self.engine_model,
            "max_upload": MAX_FILE_BYTES, "history": self.messenger.history(chat_id),
            "styles": [{"id": s.id, "label": s.label, "description": s.description} for s in STYLES],
        })
        room.listeners.add(queue)
        self._sockets.add(ws)
        writer = asyncio.create_task(_forward(queue, ws))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    action = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(action, dict):
                    action.setdefault("lang", language)
                    self._spawn(self._act(chat_id, action, queue))
        finally:
            room.listeners.discard(queue)
            self._sockets.discard(ws)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _act(self, chat_id: str, action: dict[str, Any], queue: asyncio.Queue[Event]) -> None:
        """One page action -> one studio call. Nothing may escape: log it and tell the page."""
        try:
            await self._dispatch(chat_id, action, queue)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("playground: action %s failed", action.get("op"))
            self.messenger.toast(queue, texts.INTERNAL_ERROR)

    async def _dispatch(self, chat_id: str, action: dict[str, Any], queue: asyncio.Queue[Event]) -> None:
        op = str(action.get("op", ""))
        person = person_named(action.get("name"), action.get("lang"))
        studio = self.studio
        # Everything said from here on (toasts, hints, the studio's answers) is in the person's language.
        await studio.speak_to(self._context(chat_id, person, ""))
        if op == "text":
            text = str(action.get("text", "")).strip()[:MAX_TEXT]
            reply_to = _message_id(action.get("reply_to"))
            if not text:
                return
            message_id = self.messenger.post_from_person(chat_id, person, text=text, reply_to=reply_to)
            await self._on_text(self._context(chat_id, person, message_id), text, reply_to)
            return
        # Buttons: the context is the message the button is on, so the answer replies to it.
        on = _message_id(action.get("message"))
        if on is None or self.messenger.message(chat_id, on) is None:
            self.messenger.toast(queue, texts.UNKNOWN_BUTTON)
            return
        ctx = self._context(chat_id, person, on)
        if op == "style":  # a style picked from the menu under a photo
            photo_id = self.messenger.message(chat_id, on).get("reply_to")  # type: ignore[union-attr]
            style = get_style(str(action.get("style", "")))
            if photo_id is None or style is None:
                self.messenger.toast(queue, texts.UNKNOWN_BUTTON)
                return
            self.messenger.toast(queue, texts.style_coming(style.label))
            await studio.style(self._context(chat_id, person, photo_id), style.id, self._photo(chat_id, photo_id))
        elif op in ("undo", "again", "restyle"):
            node = action.get("node")
            if not isinstance(node, int):
                self.messenger.toast(queue, texts.UNKNOWN_BUTTON)
            elif op == "undo":
                await studio.undo_node(ctx, node)
            elif op == "again":
                await studio.again(ctx, node)
            else:
                await studio.restyle(ctx, node, str(action.get("style", "")))
        elif op == "press":
            action_name = str(action.get("action", ""))[:200]
            if isinstance(parse(action_name), SettingPress | LanguagePress):
                if not self._asked_by(chat_id, on, person):
                    self.messenger.toast(queue, texts.NOT_YOUR_BUTTON)
                    return
                ctx = _personal(ctx)
            outcome = await studio.press(ctx, action_name)
            self.messenger.toast(queue, outcome.text)
            if outcome.kind == "settled":  # the question behind these buttons is answered or gone
                await self.messenger.remove_buttons(chat_id, on)
        else:
            self.messenger.toast(queue, texts.UNKNOWN_BUTTON)

    async def _on_text(self, ctx: Context, text: str, reply_to: str | None) -> None:
        studio = self.studio
        target = ReplyTarget(PLATFORM, ctx.chat.id, ctx.message_id)
        photo = self._replied_photo(ctx.chat.id, reply_to)
        if not text.startswith("/"):
            named = get_style(text) if photo is not None else None  # "comic", replying to a photo
            if named is not None:
                await studio.style(ctx, named.id, photo, reply_to)
            elif reply_to is not None:  # a change to a picture, or to the person's own photo
                await studio.edit(ctx, text, reply_to, photo)
            else:
                await self.messenger.send_text(target, texts.PLAYGROUND_HINT)
            return
        head, _, rest = text[1:].partition(" ")
        replied = self.messenger.message(ctx.chat.id, reply_to) if reply_to else None
        await self.commands.dispatch(ctx, Typed(
            head.casefold(), rest.strip(), replied_to=reply_to,
            replied_to_ours=replied is not None and replied.get("from") is None, photo=photo,
            # The page is one group chat with no admins: settings are each person's own.
            personal_settings=True))

    # -- uploads ----------------------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        self._check_key(request)
        _check_origin(request)
        chat_id = request.match_info["chat"]
        if not self.messenger.is_current(chat_id):
            raise web.HTTPNotFound(text="Unknown chat — reload the page.")
        if request.content_type != "multipart/form-data":
            raise web.HTTPBadRequest(text="The photo must be sent as multipart/form-data.")
        fields: dict[str, str] = {}
        data = bytearray()
        size = 0
        mime: str | None = None
        file_name: str | None = None
        parts = 0
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                parts += 1
                if parts > MAX_PARTS:
                    raise web.HTTPBadRequest(text="Too many fields in the upload.")
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.name == "photo":
                    mime = part.headers.get("Content-Type") or "application/octet-stream"
                    file_name = part.filename
                    while chunk := await part.read_chunk(256 * 1024):
                        size += len(chunk)
                        if size <= MAX_FILE_BYTES:
                            data += chunk
                        elif size > DRAIN_LIMIT:
                            raise web.HTTPRequestEntityTooLarge(max_size=MAX_FILE_BYTES, actual_size=size)
                else:
                    fields[part.name] = (await _read_field(part))[:MAX_TEXT]
        except ValueError:  # no boundary, a broken one, a body cut short
            raise web.HTTPBadRequest(text="The upload could not be read.") from None
        if mime is None:
            raise web.HTTPBadRequest(text="No photo in the upload.")
        person = person_named(fields.get("name"), fields.get("lang"))
        asking = self._context(chat_id, person, "")
        await self.studio.speak_to(asking)  # intake's refusals are said in it too
        reply_to = _message_id(fields.get("reply_to"))
        caption = fields.get("caption", "").strip()
        original = bytes(data)
        preview: bytes | None = None
        refusal: str | None = None
        if size > MAX_FILE_BYTES:
            refusal = texts.playground_too_big(size)
        elif self.studio.access.allows(asking):  # a refused person's file is not even looked at
            try:
                # The same bounded intake as every photo: worker processes, budgets, one at a time per person.
                async with self.studio.intake.turn((PLATFORM, person.id)):
                    preview = (await self.studio.intake.prepare(original, max_px=PREVIEW_PX)).data
            except IntakeError as exc:
                refusal = exc.message
        message_id = self.messenger.post_from_person(
            chat_id, person, kind="photo", text=caption, reply_to=reply_to,
            photo=(preview, "image/jpeg") if preview is not None else None, file_name=_base_name(file_name))
        if refusal is None and preview is not None:
            self.uploads.put(original, mime, token=message_id)
        ctx = self._context(chat_id, person, message_id)
        photo = PhotoRef(fetch=self._fetcher(message_id), message_id=message_id, size=size, mime=mime,
                         file_name=file_name)
        self._spawn(self._on_photo(ctx, photo, reply_to, caption, refusal))
        return web.json_response({"id": message_id})

    async def _on_photo(self, ctx: Context, photo: PhotoRef, reply_to: str | None, caption: str,
                        refusal: str | None) -> None:
        try:
            target = ReplyTarget(PLATFORM, ctx.chat.id, ctx.message_id)
            if refusal is not None:
                # Intake's own one-line reason, at once rather than after a style is picked.
                await self.messenger.send_text(target, refusal)
                return
            if reply_to is not None and await self.studio.parties.join_with_photo(ctx, reply_to, photo):
                return
            command = caption[1:].split(maxsplit=1)[0].casefold() if caption.startswith("/") else ""
            if get_style(command) is not None:
                await self.studio.style(ctx, command, photo)
            else:
                await self.studio.offer_styles(ctx, ctx.message_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("playground: photo %s failed", ctx.message_id)

    # -- helpers ----------------------------------------------------------------------------------

    def _check_key(self, request: web.Request) -> None:
        """The page, its WebSocket and its uploads need this launch's key (from the printed address)."""
        if not secrets.compare_digest(request.query.get("key", ""), self.key):
            raise web.HTTPForbidden(text="Open the playground at the address pixme printed (it carries a key).")

    def _fetcher(self, message_id: str) -> Callable[[], Awaitable[bytes]]:
        async def fetch() -> bytes:
            item = self.uploads.get(message_id)
            if item is None:
                raise LookupError("upload no longer kept")
            return item[0]
        return fetch

    def _photo(self, chat_id: str, message_id: str | None) -> PhotoRef | None:
        if message_id is None:
            return None
        item = self.uploads.get(message_id)
        sent = self.messenger.message(chat_id, message_id)
        return PhotoRef(fetch=self._fetcher(message_id), message_id=message_id,
                        size=len(item[0]) if item else None, mime=item[1] if item else None,
                        owner_id=(sent.get("from") or {}).get("id") if sent else None)  # whose photo it is

    def _replied_photo(self, chat_id: str, reply_to: str | None) -> PhotoRef | None:
        """The photo a person uploaded, when that is what a message replies to (refused files are not)."""
        replied = self.messenger.message(chat_id, reply_to) if reply_to else None
        if replied is None or replied.get("kind") != "photo" or not replied.get("image"):
            return None
        return self._photo(chat_id, reply_to)

    def _asked_by(self, chat_id: str, message_id: str, person: Person) -> bool:
        """Whether `person` sent the command a bot message answers (true when nobody can tell)."""
        message = self.messenger.message(chat_id, message_id)
        asked = self.messenger.message(chat_id, message.get("reply_to") or "") if message else None
        return asked is None or asked.get("from") is None or asked["from"].get("id") == person.id

    @staticmethod
    def _context(chat_id: str, person: Person, message_id: str) -> Context:
        # One page is one group chat with several simulated people (parties are for groups).
        return Context(Chat(PLATFORM, chat_id, is_private=False), person, message_id)


async def _forward(queue: asyncio.Queue[Event], ws: web.WebSocketResponse) -> None:
    """Send a page its events in order, one writer per socket."""
    while True:
        event = await queue.get()
        if ws.closed:
            return
        try:
            await ws.send_json(event)
        except (ConnectionError, RuntimeError):
            return


def _personal(ctx: Context) -> Context:
    """Settings on the playground are each simulated person's own, as in their private chat with the bot.

    The page is one group chat, but it has no admins to set a group's defaults, so /settings, /model
    and their buttons act on the person's own choices; those fill the gaps of the (empty) group ones."""
    return dataclasses.replace(ctx, chat=dataclasses.replace(ctx.chat, is_private=True))


def _base_name(name: str | None) -> str | None:
    """An upload's own name without the folders some browsers send (`C:\\fakepath\\cv.pdf`)."""
    base = PureWindowsPath(name or "").name.strip()  # splits on / and on \
    return base[:MAX_NAME * 3] or None


def _message_id(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


async def _read_field(part: BodyPartReader) -> str:
    """A text field, refused past MAX_FIELD_BYTES rather than read whole into memory."""
    value = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        value += chunk
        if len(value) > MAX_FIELD_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_FIELD_BYTES, actual_size=len(value))
    return value.decode("utf-8", errors="replace")


def _allowed_host(request: web.Request) -> bool:
    """Whether the request names a loopback host on the port it really arrived at.

    A DNS-rebinding page reaches 127.0.0.1 under its own name (rebind.attacker.example:8080), and the
    browser lets it read the answers, as the same origin; the name in Host is what gives it away."""
    match = _HOST.match(request.headers.get("Host", ""))
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    if match is None or not local:
        return False
    name, port = match.group(1).lower(), int(match.group(2) or 80)
    local_ip, local_port = str(local[0]), int(local[1])
    names = {*LOOPBACK_NAMES, f"[{local_ip}]" if ":" in local_ip else local_ip}
    return name in names and port == local_port


@web.middleware
async def _loopback_names_only(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                               ) -> web.StreamResponse:
    if not _allowed_host(request):
        raise web.HTTPForbidden(text="The playground answers only at 127.0.0.1, localhost or [::1] on its own port.")
    return await handler(request)


def _check_origin(request: web.Request) -> None:
    """Another website open in the same browser must not drive the playground (it has no login)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="Cross-origin requests are not allowed.")


@web.middleware
async def _security_headers(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not response.prepared:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response

