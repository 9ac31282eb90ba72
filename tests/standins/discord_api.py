"""A loopback stand-in of Discord (REST v10 + gateway) that the real discord.py client talks to.

It serves Discord's wire protocol on 127.0.0.1: the REST routes a bot uses (``/api/v10/...``, JSON and
``multipart/form-data`` with ``payload_json`` + ``files[n]``, Discord's error bodies and codes) and the
gateway websocket (HELLO, heartbeats and ACKs, IDENTIFY -> READY + GUILD_CREATE, RESUME -> RESUMED,
dispatches), plus a CDN for attachments and avatars. Point discord.py at it with ``[discord] api_url = dc.api_url``
(the bot then finds ``dc.gateway_url`` through ``GET /gateway/bot``). Tests act as people and assert on
what the bot posted::

    async with FakeDiscord() as dc:
        ...start the bot with dc.token and dc.api_url, wait for READY...
        interaction = await dc.slash(ALICE, "avatar", {"style": "zombie"}, attachments={"photo": dc.upload(jpeg)})
        result = await dc.wait_for_bot_message(lambda m: m["attachments"])
        await dc.click(ALICE, result, "pixme:again:2")

Modelled: guilds with one text channel each (`add_guild`), DM channels; gateway sharding as Discord does
it (``GET /gateway/bot`` recommends ``shards`` and says ``max_concurrency``; IDENTIFY's ``shard: [id, count]``;
a guild's events go only to the shard owning it, ``(guild_id >> 22) % count``, DMs to shard 0; an invalid
shard closes with 4010); slash commands, message context menus, buttons,
string selects and modals as INTERACTION_CREATE; callback types 4, 5, 6, 7, 9 with Discord's
"already acknowledged" rule; the first follow-up after a deferral replaces the "thinking" message;
webhook follow-ups, edits and deletes; ephemeral flags; message references; command bulk overwrite
(global and guild) with Discord's size rules; per-file upload limit (40005); interaction token expiry
(10062 / 50027); a message's `nonce` with `enforce_nonce` (a second message by the bot with a nonce seen in the
last `nonce_ttl_s` is not created: the first is returned, as Discord does); the Message Content intent
(content hidden unless the bot is pinged or in a DM; asking for it while ``message_content_enabled=False``
closes the gateway with 4014).

Limitations: no rate limits, permissions, threads, embeds validation, event replay on RESUME, zlib/zstd
transport compression (frames are plain text, which discord.py accepts), or the large-bot "sharding
required" close (4011). Harness methods
must be called from the event loop's thread. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1420070400000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOKEN_TTL_S = 15 * 60
NONCE_TTL_S = 120.0  # Discord: a nonce "checked for uniqueness in the past few minutes"
EPHEMERAL = 1 << 6
LOADING = 1 << 7
ALL_PERMISSIONS = str((1 << 50) - 1)
MESSAGE_CONTENT_INTENT = 1 << 15
# Permission bits people may hold (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16)  # view, send, attach files, read history

Payload = dict[str, Any]


class _DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Interaction:
    """One interaction as Discord tracks it: how the bot answered and what it created."""

    id: int
    token: str
    type: int
    user: Payload
    channel_id: int
    created: float
    payload: Payload
    responses: list[int] = field(default_factory=list)  # callback types, in order
    original_id: int | None = None  # the response message (or the "thinking" one)
    modal: Payload | None = None  # the modal the bot opened, if any
    message_id: int | None = None  # for components: the message the component sits on
    followups: list[int] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return bool(self.responses)


def snowflake(counter: itertools.count[int]) -> int:
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(counter) & 0x3FFFFF)


def _iso(ts: float | None = None) -> str:
    return dt.datetime.fromtimestamp(ts if ts is not None else time.time(), dt.UTC).isoformat()


def _json(body: Any, status: int = 200) -> web.Response:
    # discord.py only parses bodies whose Content-Type is exactly "application/json", as Discord sends.
    return web.Response(body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"})


# The locales Discord accepts in name_localizations / description_localizations.
DISCORD_LOCALES = frozenset({"id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl",
                             "no", "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi",
                             "th", "zh-CN", "ja", "zh-TW", "ko"})


def _check_localizations(thing: Payload) -> None:
    """Discord refuses unknown locales and over-long names (32) or descriptions (100)."""
    for key, limit in (("name_localizations", 100 if "value" in thing else 32), ("description_localizations", 100)):
        for locale, text in (thing.get(key) or {}).items():
            assert locale in DISCORD_LOCALES, f"{key}: unknown locale {locale!r}"
            assert 1 <= len(text) <= limit, f"{key}[{locale}] is {len(text)} characters: {text!r}"


def user(user_id: int, name: str, *, bot: bool = False, locale: str = "en-US") -> Payload:
    """A Discord user object; `locale` is their client's language, sent with each of their interactions."""
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name.title(),
            "avatar": None, "bot": bot, "system": False, "public_flags": 0, "flags": 0, "locale": locale}


class FakeDiscord:
    """Discord on 127.0.0.1. `upload_limit` is what the guild and interactions allow per file."""

    def __init__(self, *, upload_limit: int = DEFAULT_UPLOAD_LIMIT, token_ttl_s: float = TOKEN_TTL_S,
                 message_content_enabled: bool = True, shards: int = 1, max_concurrency: int = 1,
                 nonce_ttl_s: float = NONCE_TTL_S) -> None:
        self._ids = itertools.count(1)
        self.nonce_ttl_s = nonce_ttl_s
        self._nonces: dict[str, tuple[int, float]] = {}  # nonce -> (the message it made, when)
        self.nonce_repeats = 0  # messages not created because their nonce was seen (the first returned instead)
        # Called with each message the bot creates in a channel, once stored and before Discord answers (a test can
        # stop the bot's process there: the message is out, but the bot never hears so).
        self.on_create: Callable[[Payload], None] | None = None
        self.recommended_shards = shards  # what GET /gateway/bot answers, with the IDENTIFYs allowed per 5 s
        self.max_concurrency = max_concurrency
        self.token = f"{snowflake(self._ids)}.fake.{secrets.token_urlsafe(24)}"
        self.app_id = snowflake(self._ids)
        self.bot = user(self.app_id, "PixMe", bot=True)
        self.guild_id = snowflake(self._ids)
        self.channel_id = snowflake(self._ids)
        self.guilds: dict[int, int] = {self.guild_id: self.channel_id}  # guild id -> its text channel
        self.owner = user(snowflake(self._ids), "owner")
        self.upload_limit = upload_limit
        self.token_ttl_s = token_ttl_s
        # The Developer Portal switch: without it, asking for the Message Content intent closes with 4014.
        self.message_content_enabled = message_content_enabled
        self.message_content = False  # whether the bot sees content it isn't pinged in (set at IDENTIFY)
        self.messages: dict[int, Payload] = {}
        self.deleted: set[int] = set()
        self.files: dict[str, tuple[bytes, str]] = {}  # CDN path -> (bytes, content type)
        self.downloads: list[str] = []  # CDN path of every file served, in order
        self.commands: dict[int | None, list[Payload]] = {}  # None = global
        self.interactions: dict[int, Interaction] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> channel id
        self.typing: list[int] = []
        # What each person may do in the guild (user id -> permission bits); everyone else holds all of them.
        self.permissions: dict[str, int] = {}
        self.identified = 0  # IDENTIFYs (new sessions)
        self.resumed = 0  # RESUMEs accepted
        self.intents: int | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._shard_of: dict[web.WebSocketResponse, tuple[int, int]] = {}  # socket -> [shard id, shard count]
        self.sessions: dict[str, tuple[int, int]] = {}  # session id -> the shard it was identified for
        self.identified_shards: list[tuple[int, int]] = []  # each IDENTIFY's [shard id, shard count], in order
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._errors])
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get("/cdn/{path:.+}", self._cdn)
        api = "/api/v10"
        r.add_get(api + "/gateway", self._get_gateway)
        r.add_get(api + "/gateway/bot", self._get_gateway)
        r.add_get(api + "/users/@me", self._me)
        r.add_get(api + "/oauth2/applications/@me", self._app_info)
        r.add_put(api + "/applications/{app}/commands", self._put_commands)
        r.add_put(api + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_get(api + "/applications/{app}/commands", self._get_commands)
        r.add_get(api + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        r.add_post(api + "/interactions/{id}/{token}/callback", self._callback)
        r.add_post(api + "/webhooks/{app}/{token}", self._followup)
        r.add_get(api + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_get)
        r.add_patch(api + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_edit)
        r.add_delete(api + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_delete)
        r.add_post(api + "/channels/{cid}/messages", self._create_message)
        r.add_get(api + "/channels/{cid}/messages/{mid}", self._get_message)
        r.add_patch(api + "/channels/{cid}/messages/{mid}", self._edit_message)
        r.add_delete(api + "/channels/{cid}/messages/{mid}", self._delete_message)
        r.add_post(api + "/channels/{cid}/typing", self._typing)
        r.add_post(api + "/users/@me/channels", self._open_dm)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *_: object) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- harness: acting as people -------------------------------------------------------------

    def upload(self, data: bytes, filename: str = "selfie.jpg", content_type: str | None = "image/jpeg",
               channel_id: int | None = None) -> Payload:
        """Put a file on the CDN the way Discord does for a message or slash-command attachment."""
        att_id = snowflake(self._ids)
        path = f"attachments/{channel_id or self.channel_id}/{att_id}/{filename}"
        self.files[path] = (data, content_type or "application/octet-stream")
        att: Payload = {"id": str(att_id), "filename": filename, "size": len(data),
                        "url": f"{self.base}/cdn/{path}", "proxy_url": f"{self.base}/cdn/{path}"}
        if content_type:
            att["content_type"] = content_type
        with contextlib.suppress(UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            with Image.open(io.BytesIO(data)) as image:  # Discord reports sizes of images it can read
                att["width"], att["height"] = image.size
        return att

    async def post(self, author: Payload, content: str = "", *, files: list[Payload] | None = None,
                   reply_to: int | None = None, channel_id: int | None = None, ping_reply: bool = True,
                   mentions: list[Payload] | None = None) -> Payload:
        """A person posts a message (MESSAGE_CREATE goes to the bot)."""
        channel = channel_id or self.channel_id
        msg = self._message(channel, author, content, attachments=files or [], reference=reply_to)
        msg["mentions"].extend(mentions or [])
        replied = self.messages.get(reply_to) if reply_to else None
        if replied is not None and ping_reply and replied["author"]["id"] != author["id"]:
            msg["mentions"].append(replied["author"])
        await self._store(msg)
        await self.dispatch("MESSAGE_CREATE", self._as_seen_by_bot(msg))
        return msg

    async def slash(self, person: Payload, name: str, options: dict[str, Any] | None = None, *,
                    attachments: dict[str, Payload] | None = None, channel_id: int | None = None) -> Interaction:
        """A person runs `/name option:value…` (`"party open"` runs a subcommand); attachment options
        take an uploaded attachment."""
        name, _, subcommand = name.partition(" ")
        opts: list[Payload] = [{"name": k, "type": 3 if isinstance(v, str) else 4, "value": v}
                               for k, v in (options or {}).items()]
        resolved: Payload = {}
        for key, att in (attachments or {}).items():
            opts.append({"name": key, "type": 11, "value": att["id"]})
            resolved.setdefault("attachments", {})[att["id"]] = att
        command = self._command(name, 1, self.guild_of(channel_id or self.channel_id))
        if subcommand:
            offered = [o["name"] for o in command.get("options", []) if o.get("type") == 1]
            assert subcommand in offered, f"/{name} has no subcommand {subcommand!r} (has {offered})"
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        data: Payload = {"id": command["id"], "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        guild = self.guild_of(channel_id or self.channel_id)
        if guild is not None:
            data["guild_id"] = str(guild)
        return await self._interact(person, 2, data, channel_id)

    async def context_menu(self, person: Payload, name: str, target: Payload) -> Interaction:
        """Right-click a message -> Apps -> `name`."""
        command = self._command(name, 3, self.guild_of(int(target["channel_id"])))
        data = {"id": command["id"], "name": name, "type": 3, "target_id": target["id"],
                "resolved": {"messages": {target["id"]: self._as_seen_by_bot(target)}}}
        return await self._interact(person, 2, data, int(target["channel_id"]))

    async def click(self, person: Payload, message: Payload, custom_id: str) -> Interaction:
        """Press a button on a message."""
        self._find_component(message, custom_id, 2)
        return await self._interact(person, 3, {"custom_id": custom_id, "component_type": 2}, message=message)

    async def choose(self, person: Payload, message: Payload, custom_id: str, values: list[str]) -> Interaction:
        """Pick options in a string select on a message."""
        component = self._find_component(message, custom_id, 3)
        allowed = {o["value"] for o in component.get("options", [])}
        assert set(values) <= allowed, f"{values} not offered by {custom_id}"
        data = {"custom_id": custom_id, "component_type": 3, "values": values}
        return await self._interact(person, 3, data, message=message)

    async def submit_modal(self, person: Payload, opened_by: Interaction, values: dict[str, str]) -> Interaction:
        """Fill in and submit the modal the bot opened in answer to `opened_by`."""
        modal = opened_by.modal
        assert modal is not None, "the bot opened no modal"
        rows = []
        for row in modal["components"]:
            inputs = row["components"] if row.get("type") == 1 else [row.get("component", row)]
            rows.append({"type": 1, "components": [
                {"type": 4, "custom_id": c["custom_id"], "value": values.get(c["custom_id"], "")} for c in inputs]})
        data = {"custom_id": modal["custom_id"], "components": rows}
        message = self.messages.get(opened_by.message_id) if opened_by.message_id else None
        return await self._interact(person, 5, data, opened_by.channel_id, message=message)

    # -- harness: what the bot did -----------------------------------------------------------------

    def bot_messages(self, channel_id: int | None = None) -> list[Payload]:
        """Everything the bot has visibly posted (not deleted, not still "thinking"), oldest first."""
        return [m for mid, m in sorted(self.messages.items())
                if m["author"]["id"] == self.bot["id"] and mid not in self.deleted and not m["flags"] & LOADING
                and (channel_id is None or int(m["channel_id"]) == channel_id)]

    async def wait_for(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `check()` returns something truthy, and return it."""
        async with asyncio.timeout(timeout), self._changed:
            while not (found := check()):
                await self._changed.wait()
            return found

    async def wait_for_bot_message(self, match: Callable[[Payload], Any], timeout: float = 10.0,
                                   after: int = 0) -> Payload:
        """The first visible bot message with id > `after` that `match`es."""
        def check() -> Payload | None:
            return next((m for m in self.bot_messages() if int(m["id"]) > after and match(m)), None)
        found: Payload = await self.wait_for(check, timeout)
        return found

    def answers(self, interaction: Interaction) -> list[Payload]:
        """The visible messages the bot made in answer to an interaction (response and follow-ups)."""
        ids = sorted({*([interaction.original_id] if interaction.original_id else []), *interaction.followups})
        return [self.messages[i] for i in ids if i not in self.deleted and not self.messages[i]["flags"] & LOADING]

    def file_of(self, message: Payload, index: int = 0) -> bytes:
        """The bytes of a message's attachment."""
        url = message["attachments"][index]["url"]
        return self.files[url.split("/cdn/", 1)[1]][0]

    def reply_to(self, message: Payload) -> int | None:
        ref = message.get("message_reference")
        return int(ref["message_id"]) if ref else None

    def last_id(self) -> int:
        return max(self.messages, default=0)

    # -- gateway -------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: Payload) -> None:
        """Send a DISPATCH to the gateway connections of the shard it belongs to: a guild's events to the shard
        owning the guild, everything else (DMs) to shard 0."""
        guild = data.get("id") if event.startswith("GUILD_") else data.get("guild_id")
        for ws in list(self._sockets):
            shard, count = self._shard_of.get(ws, (0, 1))
            if shard != (self.shard_of(int(guild), count) if guild else 0):
                continue
            await self._send_dispatch(ws, event, data)

    async def _send_dispatch(self, ws: web.WebSocketResponse, event: str, data: Payload) -> None:
        self._seq += 1
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    @staticmethod
    def shard_of(guild_id: int, shard_count: int) -> int:
        """The shard that receives a guild's events, as Discord computes it."""
        return (guild_id >> 22) % shard_count

    def guild_of(self, channel_id: int) -> int | None:
        """The guild a channel is in (None for a DM)."""
        return next((g for g, c in self.guilds.items() if c == channel_id), None)

    def add_guild(self, *, shard: int | None = None, shard_count: int = 1) -> tuple[int, int]:
        """Another guild with one text channel (the bot is a member); `shard`: its id is one that shard of
        `shard_count` owns. Bots already connected are not told (add guilds before they connect)."""
        guild = snowflake(self._ids)
        if shard is not None:
            stamp = guild >> 22
            stamp -= (stamp - shard) % shard_count
            guild = (stamp << 22) | (guild & 0x3FFFFF)
            assert self.shard_of(guild, shard_count) == shard
        channel = snowflake(self._ids)
        self.guilds[guild] = channel
        return guild, channel

    async def drop_connections(self) -> None:
        """Close every gateway connection with 4000 (unknown error), which clients answer with RESUME."""
        for ws in list(self._sockets):
            self._sockets.remove(ws)
            self._shard_of.pop(ws, None)
            await ws.close(code=4000)

    def connected_shards(self) -> list[tuple[int, int]]:
        """[shard id, shard count] of every live gateway connection."""
        return sorted(self._shard_of.get(ws, (0, 1)) for ws in self._sockets)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self._sockets, timeout)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                op, data = msg.get("op"), msg.get("d")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    if data.get("token") != self.token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    self.intents = int(data.get("intents", 0))
                    self.message_content = bool(self.intents & MESSAGE_CONTENT_INTENT)
                    if self.message_content and not self.message_content_enabled:
                        await ws.close(code=4014, message=b"Disallowed intent(s).")
                        break
                    shard, count = data.get("shard") or (0, 1)
                    if not 0 <= shard < count:
                        await ws.close(code=4010, message=b"Invalid shard.")
                        break
                    await self._identify(ws, shard, count)
                elif op == 6:
                    session = self.sessions.get(data.get("session_id") or "")
                    if data.get("token") != self.token or session is None:
                        await ws.send_str(json.dumps({"op": 9, "d": False}))
                        continue
                    self.resumed += 1
                    self._sockets.append(ws)
                    self._shard_of[ws] = session
                    await self._send_dispatch(ws, "RESUMED", {})
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            self._shard_of.pop(ws, None)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, shard: int, count: int) -> None:
        self.identified += 1
        self.identified_shards.append((shard, count))
        session = secrets.token_hex(16)
        self.sessions[session] = (shard, count)
        owned = [g for g in self.guilds if self.shard_of(g, count) == shard]
        ready = {"v": 10, "user": self.bot, "guilds": [{"id": str(g), "unavailable": True} for g in owned],
                 "session_id": session, "resume_gateway_url": self.gateway_url,
                 "application": {"id": str(self.app_id), "flags": 0}, "private_channels": [],
                 "relationships": [], "user_settings": {}, "shard": [shard, count]}
        await self._send_dispatch(ws, "READY", ready)
        self._sockets.append(ws)
        self._shard_of[ws] = (shard, count)
        for guild in owned:
            await self._send_dispatch(ws, "GUILD_CREATE", self._guild(guild))
        async with self._changed:
            self._changed.notify_all()

    def _guild(self, guild_id: int) -> Payload:
        gid = str(guild_id)
        return {
            "id": gid, "name": "Avatars", "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": self.owner["id"], "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "vanity_url_code": None, "description": None, "banner": None, "premium_tier": 0,
            "premium_subscription_count": 0, "preferred_locale": "en-US", "public_updates_channel_id": None,
            "nsfw_level": 0, "premium_progress_bar_enabled": False, "features": [], "emojis": [], "stickers": [],
            "roles": [{"id": gid, "name": "@everyone", "permissions": ALL_PERMISSIONS, "position": 0,
                       "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "joined_at": _iso(), "large": False, "unavailable": False, "member_count": 3,
            "voice_states": [], "members": [self._member(self.bot)], "channels": [self._channel(self.guilds[guild_id])],
            "threads": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _channel(self, channel_id: int) -> Payload:
        return {"id": str(channel_id), "type": 0, "guild_id": str(self.guild_of(channel_id)), "name": "avatars",
                "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0, "flags": 0}

    def _member(self, person: Payload) -> Payload:
        permissions = self.permissions.get(person["id"])
        return {"user": person, "roles": [], "joined_at": _iso(), "deaf": False, "mute": False, "flags": 0,
                "nick": None, "avatar": None, "pending": False,
                "permissions": ALL_PERMISSIONS if permissions is None else str(permissions)}

    # -- building objects ---------------------------------------------------------------------------

    def _is_guild(self, channel_id: int) -> bool:
        return self.guild_of(channel_id) is not None

    def _message(self, channel_id: int, author: Payload, content: str, *, attachments: list[Payload],
                 reference: int | None = None, components: list[Payload] | None = None, flags: int = 0,
                 interaction: Interaction | None = None) -> Payload:
        msg: Payload = {
            "id": str(snowflake(self._ids)), "channel_id": str(channel_id), "author": author,
            "content": content, "timestamp": _iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": attachments,
            "embeds": [], "pinned": False, "type": 0, "flags": flags, "components": components or [],
        }
        guild = self.guild_of(channel_id)
        if guild is not None:
            msg["guild_id"] = str(guild)
        if reference is not None:
            msg["type"] = 19
            msg["message_reference"] = {"type": 0, "message_id": str(reference), "channel_id": str(channel_id)}
            if guild is not None:
                msg["message_reference"]["guild_id"] = str(guild)
        if interaction is not None:
            msg["webhook_id"] = str(self.app_id)
            msg["application_id"] = str(self.app_id)
            msg["interaction_metadata"] = {"id": str(interaction.id), "type": interaction.type,
                                           "user": interaction.user,
                                           "authorizing_integration_owners": {"0": str(guild or self.guild_id)}}
            if interaction.type == 2:
                msg["type"] = 20
        return msg

    def _as_seen_by_bot(self, msg: Payload) -> Payload:
        """What a bot receives: content is hidden without the Message Content intent unless it is pinged."""
        seen = dict(msg)
        ref = msg.get("message_reference")
        if ref and int(ref["message_id"]) in self.messages:
            referenced = dict(self.messages[int(ref["message_id"])])
            referenced.pop("referenced_message", None)
            seen["referenced_message"] = referenced
        if self._is_guild(int(msg["channel_id"])):
            member = self._member(msg["author"])
            member.pop("user")
            seen["member"] = member
        mentioned = any(u["id"] == self.bot["id"] for u in msg["mentions"])
        private = not self._is_guild(int(msg["channel_id"]))
        if not (self.message_content or mentioned or private or msg["author"]["id"] == self.bot["id"]):
            seen.update(content="", attachments=[], embeds=[], components=[])
        return seen

    def _command(self, name: str, kind: int, guild: int | None = None) -> Payload:
        for scope in (guild, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return command
        raise AssertionError(f"the bot has not registered the command {name!r} (type {kind})")

    def _find_component(self, message: Payload, custom_id: str, kind: int) -> Payload:
        current = self.messages.get(int(message["id"]), message)
        for row in current.get("components", []):
            for component in row.get("components", []):
                if component.get("custom_id") == custom_id and component.get("type") == kind:
                    if component.get("disabled"):
                        raise AssertionError(f"{custom_id} is disabled")
                    return component
        raise AssertionError(f"message {message['id']} has no component {custom_id!r}")

    async def _interact(self, person: Payload, kind: int, data: Payload, channel_id: int | None = None,
                        message: Payload | None = None) -> Interaction:
        channel = channel_id or (int(message["channel_id"]) if message else self.channel_id)
        iid = snowflake(self._ids)
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: Payload = {
            "id": str(iid), "application_id": str(self.app_id), "type": kind, "token": token, "version": 1,
            "data": data, "channel_id": str(channel), "locale": person.get("locale", "en-US"),
            "app_permissions": ALL_PERMISSIONS,
            "entitlements": [], "attachment_size_limit": self.upload_limit, "context": 0,
        }
        guild = self.guild_of(channel)
        if guild is not None:
            payload.update(guild_id=str(guild), guild_locale="en-US", member=self._member(person),
                           channel=self._channel(channel), authorizing_integration_owners={"0": str(guild)})
        else:
            payload.update(user=person, context=1, authorizing_integration_owners={"1": person["id"]},
                           channel={"id": str(channel), "type": 1, "recipients": [person], "flags": 0,
                                    "last_message_id": None})
        if message is not None:
            payload["message"] = self._as_seen_by_bot(self.messages.get(int(message["id"]), message))
        record = Interaction(iid, token, kind, person, channel, time.time(), payload,
                             message_id=int(message["id"]) if message else None)
        self.interactions[iid] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    async def _store(self, msg: Payload) -> Payload:
        self.messages[int(msg["id"])] = msg
        async with self._changed:
            self._changed.notify_all()
        return msg

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- REST ------------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except _DiscordError as err:
            return _json({"message": err.message, "code": err.code}, status=err.status)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("discord stand-in: %s %s failed", request.method, request.match_info.route.resource)
            return _json({"message": "500: Internal Server Error", "code": 0}, status=500)

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise _DiscordError(401, 0, "401: Unauthorized")

    async def _body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes, str]]]:
        """JSON, or multipart with payload_json and files[n]; files as (filename, bytes, content type)."""
        if not request.content_type.startswith("multipart/"):
            text = await request.text()
            return (json.loads(text) if text else {}), []
        payload: Payload = {}
        files: dict[int, tuple[str, bytes, str]] = {}
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            data = await part.read(decode=False)
            if name == "payload_json":
                payload = json.loads(data)
            elif name.startswith("files["):
                index = int(name[6:-1])
                files[index] = (part.filename or f"file{index}", bytes(data),
                                part.headers.get("Content-Type", "application/octet-stream"))
        for _name, data, _type in files.values():
            if len(data) > self.upload_limit:
                raise _DiscordError(413, 40005, "Request entity too large")
        return payload, [files[i] for i in sorted(files)]

    def _attachments(self, channel_id: int, files: list[tuple[str, bytes, str]]) -> list[Payload]:
        return [self.upload(data, filename, content_type, channel_id) for filename, data, content_type in files]

    async def _get_gateway(self, request: web.Request) -> web.Response:
        if request.path.endswith("/bot"):
            self._auth(request)
        return _json({"url": self.gateway_url, "shards": self.recommended_shards, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": self.max_concurrency}})

    async def _me(self, request: web.Request) -> web.Response:
        self._auth(request)
        return _json(self.bot)

    async def _app_info(self, request: web.Request) -> web.Response:
        self._auth(request)
        return _json({
            "id": str(self.app_id), "name": "PixMe", "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": self.owner, "verify_key": "0" * 64, "flags": 0,
            "team": None, "summary": "", "bot": self.bot})

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._auth(request)
        if int(request.match_info["app"]) != self.app_id:
            raise _DiscordError(403, 50001, "Missing Access")
        guild = int(request.match_info["guild"]) if "guild" in request.match_info else None
        body, _ = await self._body(request)
        registered = []
        for command in body:
            assert 1 <= len(command["name"]) <= 32, command["name"]
            _check_localizations(command)
            if command.get("type", 1) == 1:
                assert 1 <= len(command.get("description", "")) <= 100
                options = list(command.get("options", []))
                for option in options:
                    options.extend(option.get("options", []))  # subcommands' own options
                    assert 1 <= len(option["name"]) <= 32 and len(option.get("description", "")) <= 100
                    assert len(option.get("choices", [])) <= 25
                    _check_localizations(option)
                    for choice in option.get("choices", []):
                        assert 1 <= len(choice["name"]) <= 100, choice
                        _check_localizations(choice)
            registered.append({**command, "id": str(snowflake(self._ids)), "application_id": str(self.app_id),
                               "version": str(snowflake(self._ids)), "guild_id": str(guild) if guild else None,
                               "default_member_permissions": command.get("default_member_permissions"),
                               "type": command.get("type", 1), "description": command.get("description", ""),
                               "nsfw": command.get("nsfw", False)})
        self.commands[guild] = registered
        await self._changed_now()
        return _json(registered)

    async def _get_commands(self, request: web.Request) -> web.Response:
        self._auth(request)
        guild = int(request.match_info["guild"]) if "guild" in request.match_info else None
        return _json(self.commands.get(guild, []))

    def _interaction(self, request: web.Request, *, by_id: bool) -> Interaction:
        token = request.match_info["token"]
        found = next((i for i in self.interactions.values() if i.token == token), None)
        if found is None or (by_id and found.id != int(request.match_info["id"])):
            raise _DiscordError(404, 10062 if by_id else 10015, "Unknown interaction" if by_id else "Unknown Webhook")
        if time.time() - found.created > self.token_ttl_s:
            if by_id:
                raise _DiscordError(404, 10062, "Unknown interaction")
            raise _DiscordError(401, 50027, "Invalid Webhook Token")
        return found

    def _components_of(self, data: Payload) -> list[Payload]:
        components: list[Payload] = data.get("components") or []
        for row in components:
            for comp in row.get("components", []):
                if "custom_id" in comp:
                    assert len(comp["custom_id"]) <= 100, comp["custom_id"]
        return components

    async def _callback(self, request: web.Request) -> web.Response:
        record = self._interaction(request, by_id=True)
        body, files = await self._body(request)
        kind, data = body["type"], body.get("data") or {}
        if record.acknowledged:
            raise _DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if kind in (6, 7) and record.type not in (3, 5):
            raise _DiscordError(400, 50035, "Invalid Form Body")
        if kind == 9 and record.type == 5:
            raise _DiscordError(400, 50035, "Invalid Form Body")
        record.responses.append(kind)
        resource: Payload | None = None
        if kind in (4, 5):
            flags = int(data.get("flags", 0)) & EPHEMERAL
            if kind == 5:
                flags |= LOADING
            msg = self._message(record.channel_id, self.bot, data.get("content", "") if kind == 4 else "",
                                attachments=self._attachments(record.channel_id, files),
                                components=self._components_of(data), flags=flags, interaction=record)
            record.original_id = int(msg["id"])
            await self._store(msg)
            resource = msg
        elif kind == 7:
            assert record.message_id is not None
            msg = self.messages[record.message_id]
            self._apply_edit(msg, data, files)
            await self._store(msg)
            resource = msg
        elif kind == 9:
            assert data.get("title") and data.get("custom_id") and data.get("components"), data
            record.modal = data
            await self._changed_now()
        else:
            await self._changed_now()
        answer: Payload = {"interaction": {"id": str(record.id), "type": record.type}}
        if resource is not None:
            answer["interaction"].update(response_message_id=resource["id"],
                                         response_message_loading=kind == 5,
                                         response_message_ephemeral=bool(resource["flags"] & EPHEMERAL))
            answer["resource"] = {"type": kind, "message": resource}
        return _json(answer)

    def _apply_edit(self, msg: Payload, data: Payload, files: list[tuple[str, bytes, str]]) -> None:
        if "content" in data:
            msg["content"] = data["content"] or ""
        if "components" in data:
            msg["components"] = self._components_of(data)
        if "attachments" in data or files:
            kept_ids = {str(a.get("id")) for a in data.get("attachments", [])}
            kept = [a for a in msg["attachments"] if a["id"] in kept_ids]
            msg["attachments"] = kept + self._attachments(int(msg["channel_id"]), files)
        msg["edited_timestamp"] = _iso()

    async def _followup(self, request: web.Request) -> web.Response:
        record = self._interaction(request, by_id=False)
        if not record.acknowledged:
            raise _DiscordError(404, 10015, "Unknown Webhook")
        body, files = await self._body(request)
        original = self.messages.get(record.original_id) if record.original_id else None
        if original is not None and original["flags"] & LOADING and record.original_id not in self.deleted:
            # The first follow-up after a deferral replaces the "thinking" message.
            original["flags"] &= ~LOADING
            original["attachments"] = []
            self._apply_edit(original, body, files)
            original["edited_timestamp"] = None
            await self._store(original)
            record.followups.append(int(original["id"]))
            return _json(original)
        msg = self._message(record.channel_id, self.bot, body.get("content", ""),
                            attachments=self._attachments(record.channel_id, files),
                            components=self._components_of(body), flags=int(body.get("flags", 0)) & EPHEMERAL,
                            interaction=record)
        await self._store(msg)
        record.followups.append(int(msg["id"]))
        return _json(msg)

    def _webhook_message(self, request: web.Request) -> tuple[Interaction, Payload]:
        record = self._interaction(request, by_id=False)
        mid = request.match_info["mid"]
        message_id = record.original_id if mid == "@original" else int(mid)
        if message_id is None or message_id not in self.messages or message_id in self.deleted:
            raise _DiscordError(404, 10008, "Unknown Message")
        if message_id != record.original_id and message_id not in record.followups:
            raise _DiscordError(404, 10008, "Unknown Message")
        return record, self.messages[message_id]

    async def _webhook_get(self, request: web.Request) -> web.Response:
        _, msg = self._webhook_message(request)
        return _json(msg)

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        _, msg = self._webhook_message(request)
        body, files = await self._body(request)
        self._apply_edit(msg, body, files)
        msg["flags"] &= ~LOADING
        await self._store(msg)
        return _json(msg)

    async def _webhook_delete(self, request: web.Request) -> web.Response:
        _, msg = self._webhook_message(request)
        self.deleted.add(int(msg["id"]))
        await self._changed_now()
        return web.Response(status=204)

    def _known_channel(self, request: web.Request) -> int:
        channel = int(request.match_info["cid"])
        if not self._is_guild(channel) and channel not in self.dm_channels.values():
            raise _DiscordError(404, 10003, "Unknown Channel")
        return channel

    async def _create_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        channel = self._known_channel(request)
        body, files = await self._body(request)
        if not (body.get("content") or files or body.get("components")):
            raise _DiscordError(400, 50006, "Cannot send an empty message")
        if len(body.get("content") or "") > 2000:
            raise _DiscordError(400, 50035, "Invalid Form Body")
        nonce = body.get("nonce")
        if nonce is not None and len(str(nonce)) > 25:
            raise _DiscordError(400, 50035, "Invalid Form Body: nonce must be 25 characters or fewer")
        if nonce is not None and body.get("enforce_nonce"):
            seen = self._nonces.get(str(nonce))
            if seen is not None and time.time() - seen[1] < self.nonce_ttl_s:
                self.nonce_repeats += 1
                return _json(self.messages[seen[0]])
        reference = body.get("message_reference")
        reply_to: int | None = None
        if reference:
            reply_to = int(reference["message_id"])
            if reply_to not in self.messages or reply_to in self.deleted:
                if reference.get("fail_if_not_exists", True):
                    raise _DiscordError(400, 50035, "Invalid Form Body: Unknown message")
                reply_to = None
        msg = self._message(channel, self.bot, body.get("content") or "",
                            attachments=self._attachments(channel, files), reference=reply_to,
                            components=self._components_of(body))
        if nonce is not None:
            msg["nonce"] = str(nonce)
            self._nonces[str(nonce)] = (int(msg["id"]), time.time())
        await self._store(msg)
        await self.dispatch("MESSAGE_CREATE", self._as_seen_by_bot(msg))
        if self.on_create is not None:
            self.on_create(msg)
        return _json(msg)

    async def _get_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        self._known_channel(request)
        mid = int(request.match_info["mid"])
        if mid not in self.messages or mid in self.deleted or self.messages[mid]["flags"] & EPHEMERAL:
            raise _DiscordError(404, 10008, "Unknown Message")
        return _json(self._as_seen_by_bot(self.messages[mid]))

    async def _edit_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        self._known_channel(request)
        mid = int(request.match_info["mid"])
        msg = self.messages.get(mid)
        if msg is None or mid in self.deleted:
            raise _DiscordError(404, 10008, "Unknown Message")
        if msg["author"]["id"] != self.bot["id"]:
            raise _DiscordError(403, 50005, "Cannot edit a message authored by another user")
        body, files = await self._body(request)
        self._apply_edit(msg, body, files)
        await self._store(msg)
        return _json(msg)

    async def _delete_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        self._known_channel(request)
        mid = int(request.match_info["mid"])
        if mid not in self.messages or mid in self.deleted:
            raise _DiscordError(404, 10008, "Unknown Message")
        self.deleted.add(mid)
        await self._changed_now()
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.typing.append(self._known_channel(request))
        return web.Response(status=204)

    async def _open_dm(self, request: web.Request) -> web.Response:
        self._auth(request)
        body, _ = await self._body(request)
        recipient = int(body["recipient_id"])
        channel = self.dm_channels.setdefault(recipient, snowflake(self._ids))
        return _json({"id": str(channel), "type": 1, "last_message_id": None, "flags": 0,
                                  "recipients": [user(recipient, f"user{recipient}")]})

    def set_permissions(self, person: Payload, permissions: int) -> None:
        """What `person` may do in the guild from now on (their member payloads carry it)."""
        self.permissions[person["id"]] = permissions

    def set_avatar(self, person: Payload, data: bytes | None) -> None:
        """The person's avatar from now on (None: Discord's default one), served on the CDN as Discord does
        (`/avatars/<user id>/<hash>.png`, the URL discord.py builds from `Asset.BASE` = `cdn_url`)."""
        if data is None:
            person["avatar"] = None
            return
        avatar = secrets.token_hex(16)
        person["avatar"] = avatar
        with Image.open(io.BytesIO(data)) as image:  # the CDN serves the size asked for, as PNG
            out = io.BytesIO()
            image.convert("RGB").save(out, "PNG", compress_level=1)
        self.files[f"avatars/{person['id']}/{avatar}.png"] = (out.getvalue(), "image/png")

    @property
    def cdn_url(self) -> str:
        """Where discord.py should fetch avatars from (`[discord] cdn_url`)."""
        return f"{self.base}/cdn"

    def dm_channel(self, person: Payload) -> int:
        return self.dm_channels.setdefault(int(person["id"]), snowflake(self._ids))

    async def _cdn(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["path"])
        if found is None:
            raise _DiscordError(404, 0, "404: Not Found")
        self.downloads.append(request.match_info["path"])
        return web.Response(body=found[0], content_type=found[1].split(";")[0])
