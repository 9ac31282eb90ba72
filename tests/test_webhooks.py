"""Telegram webhooks: the real bot in webhook mode behind a real nginx, several gateways, each update handled once.

The deployment is Telegram -> nginx (TLS) -> gateways; here the loopback Bot API POSTs to nginx over loopback
http (it cannot do TLS to it), and nginx passes each update round-robin to two gateways sharing one PostgreSQL
database. The webhook server, the update log and the stand-in are all real; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from telegram import Update
from telegram.ext import ContextTypes, TypeHandler

from core.config import ConfigError, Settings, TelegramSettings, load_settings
from tests.backends import Backend, open_store
from tests.standins.telegram_api import FakeTelegram, User
from tests.test_telegram_harness import (
    ALICE,
    BOB,
    Running,
    is_photo,
    is_text,
    make_settings,
    private,
    running_bot,
    small_selfie,
)

SECRET = "wh-Secret_0123456789abcdef"
PUBLIC_URL = "https://bot.example.com/telegram"  # what Telegram is told; nginx stands in for it
NGINX = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_settings(tg: FakeTelegram, data_dir: Path, port: int, **telegram: Any) -> Settings:
    """`make_settings`, in webhook mode on `port`."""
    settings = make_settings(tg, data_dir)
    keys = {**settings.telegram.model_dump(), "webhook_url": PUBLIC_URL, "webhook_secret": SECRET,
            "webhook_port": port, **telegram}
    return settings.model_copy(update={"telegram": TelegramSettings(**keys)})


def gateway_url(running: Running) -> str:
    webhook = running.bot.webhook
    assert webhook is not None
    return f"http://127.0.0.1:{webhook.port}{webhook.path}"


class Taken:
    """Which gateway's handlers got which update (a handler group after the bot's own)."""

    def __init__(self) -> None:
        self.by: dict[str, list[int]] = {}

    def watch(self, name: str, running: Running) -> None:
        self.by[name] = []

        async def note(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
            self.by[name].append(update.update_id)

        running.bot.application.add_handler(TypeHandler(Update, note), group=999)

    def all(self) -> list[int]:
        return sorted(u for ids in self.by.values() for u in ids)


@contextlib.asynccontextmanager
async def gateways(tg: FakeTelegram, tmp_path: Path, ports: tuple[int, int]) -> AsyncIterator[list[Running]]:
    """Two gateways in webhook mode on `ports`, one database (the test's PostgreSQL)."""
    async with contextlib.AsyncExitStack() as stack:
        running = [await stack.enter_async_context(running_bot(
            tg, tmp_path / f"gw{n}", settings=gateway_settings(tg, tmp_path / f"gw{n}", port)))
            for n, port in enumerate(ports)]
        yield running
        await asyncio.gather(*(r.finished() for r in running))


# -- nginx ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nginx:
    port: int
    upstreams: tuple[int, int]

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"


def _nginx_missing() -> str | None:
    """Why nginx cannot run here (None when it can), installing Debian's package as root if it is missing."""
    if os.path.exists(NGINX):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{NGINX} is not installed (apt-get install nginx as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "nginx"]):
        try:
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"nginx is not installed and `{' '.join(command)}` failed: {type(exc).__name__}"
    return None if os.path.exists(NGINX) else f"{NGINX} still missing after apt-get install nginx"


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
{user}
events {{ worker_connections 512; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # The gateways; max_fails=0: one that was down between tests is not benched for the next one.
    upstream pixme_gateways {{
        server 127.0.0.1:{first} max_fails=0;
        server 127.0.0.1:{second} max_fails=0;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /telegram {{
            proxy_pass http://pixme_gateways;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """Debian's nginx on a free loopback port, proxying /telegram round-robin to two gateway ports."""
    reason = _nginx_missing()
    if reason:
        pytest.skip(reason)
    with nginx_running(tmp_path_factory.mktemp("nginx")) as found:
        yield found


@contextlib.contextmanager
def nginx_running(folder: Path) -> Iterator[Nginx]:
    """nginx (installed: see `_nginx_missing`) with its files in `folder`, until the block ends."""
    found = Nginx(free_port(), (free_port(), free_port()))
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=found.port, first=found.upstreams[0],
                                      second=found.upstreams[1],
                                      user="user root root;" if os.geteuid() == 0 else ""))
    process = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:  # until it accepts connections (or has died, saying why)
            if process.poll() is not None:
                log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
                pytest.fail(f"nginx exited {process.returncode}: {log[-1500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", found.port), timeout=0.5):
                break
            assert time.monotonic() < deadline, "nginx did not listen within 15 s"
            time.sleep(0.05)
        yield found
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- settings -------------------------------------------------------------------------------------------

def test_webhook_settings_are_checked_in_one_line() -> None:
    ok = load_settings(None, telegram={"webhook_url": PUBLIC_URL, "webhook_secret": SECRET})
    assert ok.telegram.webhook_path == "/telegram"
    assert (ok.telegram.webhook_listen, ok.telegram.webhook_port) == ("127.0.0.1", 8443)
    assert SECRET in ok.secrets()  # masked in the logs like the token
    with pytest.raises(ConfigError) as missing:
        load_settings(None, telegram={"webhook_url": PUBLIC_URL})
    assert "webhook_secret is required with webhook_url" in str(missing.value)
    assert "\n" not in str(missing.value)
    with pytest.raises(ConfigError, match="https://"):
        load_settings(None, telegram={"webhook_url": "http://bot.example.com/telegram", "webhook_secret": SECRET})
    with pytest.raises(ConfigError, match="malformed") as bad:
        load_settings(None, telegram={"webhook_url": PUBLIC_URL, "webhook_secret": "has spaces in it"})
    assert "has spaces" not in str(bad.value)  # the secret is described, not repeated
    with pytest.raises(ConfigError, match="malformed"):
        load_settings(None, telegram={"webhook_url": PUBLIC_URL, "webhook_secret": "x" * 257})
    assert load_settings(None).telegram.webhook_url == ""  # long polling by default


# -- the update log ---------------------------------------------------------------------------------------

async def test_an_update_id_is_taken_once_and_forgotten_after_a_day(backend: Backend, tmp_path: Path) -> None:
    store = await open_store(tmp_path / "pixme.sqlite3")
    try:
        assert await store.record_update(100_000_001)
        assert not await store.record_update(100_000_001)
        assert await store.record_update(100_000_002)
        assert await store.prune_updates(time.time() - 24 * 3600) == 0  # both are recent
        assert await store.prune_updates(time.time() + 1) == 2
        assert await store.record_update(100_000_001)  # forgotten: Telegram would not send it again by then
    finally:
        await store.close()


# -- one gateway ------------------------------------------------------------------------------------------

async def test_webhook_mode_sets_the_webhook_and_refuses_a_wrong_secret(backend: Backend, tg: FakeTelegram,
                                                                         tmp_path: Path) -> None:
    async with running_bot(tg, tmp_path, settings=gateway_settings(tg, tmp_path, 0)) as gw:
        (call,) = tg.calls_of("setWebhook")
        assert call["url"] == PUBLIC_URL and call["secret_token"] == SECRET
        assert set(call["allowed_updates"]) >= {"message", "callback_query", "pre_checkout_query"}
        assert not tg.calls_of("getUpdates") and not tg.calls_of("deleteWebhook")
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
        update = tg.take_pending()  # Telegram hands it over; the test delivers it
        url = gateway_url(gw)
        assert await tg.post_update(url, update, secret="wrong-secret") == 403
        assert await tg.post_update(url, update, secret="") == 403
        assert await tg.post_update(url, update, body=b"{not json") == 400
        assert await tg.post_update(url, {"hello": 1}) == 400
        assert tg.handled == set() and not tg.bot_messages
        # Refused means not recorded either: the real delivery afterwards is handled, once.
        assert await tg.post_update(url, update) == 200
        await gw.photo_reply(private(ALICE))
        assert await tg.post_update(url, update) == 200  # Telegram retrying: answered, not handled again
        await gw.finished()
        assert len([m for m in tg.bot_messages if m.chat_id == ALICE.id and is_photo(m)]) == 1
    assert tg.webhook_url == PUBLIC_URL  # left set at stop: the other gateways keep serving


async def test_back_to_polling_deletes_the_webhook_first(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running_bot(tg, tmp_path, settings=gateway_settings(tg, tmp_path, 0)):
        pass
    assert tg.webhook_url == PUBLIC_URL
    tg.send_text(private(ALICE), ALICE, "hello")
    async with running_bot(tg, tmp_path) as polling:  # webhook_url left empty
        await polling.text_reply(private(ALICE))
        await polling.finished()
    names = [name for name, _params in tg.calls]
    assert tg.webhook_url == ""
    assert names.index("deleteWebhook") < names.index("getUpdates")
    assert not [e for e in tg.errors if "webhook is active" in e[2]]


@pytest.mark.slow  # the skipped update is only seen when PTB's current long poll (10 s) ends
async def test_polling_skips_an_update_it_took_before(backend: Backend, tg: FakeTelegram, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bots.telegram.bot")
    tg.send_text(private(ALICE), ALICE, "hello")
    update = dict(tg.updates[-1])
    async with running_bot(tg, tmp_path) as polling:
        await polling.text_reply(private(ALICE))
        await polling.finished()
        tg.redeliver(update)  # fetched again, as after a restart before the offset was confirmed
        await tg.wait_until(lambda: f"update {update['update_id']} was taken before" in caplog.text, 10,
                            "the bot to skip the update")
        await polling.finished()
    assert len([m for m in tg.bot_messages if m.chat_id == ALICE.id]) == 1


# -- two gateways, one database ------------------------------------------------------------------------------

async def test_the_same_update_posted_to_both_gateways_is_handled_once(postgres: Backend, tg: FakeTelegram,
                                                                       tmp_path: Path) -> None:
    async with gateways(tg, tmp_path, (0, 0)) as (first, second):
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
        update = tg.take_pending()
        statuses = await asyncio.gather(tg.post_update(gateway_url(first), update),
                                        tg.post_update(gateway_url(second), update))
        assert statuses == [200, 200]
        await tg.wait_for_message(is_photo, chat_id=ALICE.id, timeout=30)
    assert len([m for m in tg.bot_messages if m.chat_id == ALICE.id and is_photo(m)]) == 1
    assert tg.handled == {update["update_id"]}


async def test_a_photo_through_nginx_reaches_a_gateway_and_gets_its_picture(postgres: Backend, tg: FakeTelegram,
                                                                           tmp_path: Path, nginx: Nginx) -> None:
    tg.webhook_target = nginx.webhook
    async with gateways(tg, tmp_path, nginx.upstreams):
        tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
        picture = await tg.wait_for_message(is_photo, chat_id=ALICE.id, timeout=30)
        assert picture.caption
    assert not tg.calls_of("getUpdates")
    assert [status for _update, status in tg.webhook_posts] == [200]
    assert len([m for m in tg.bot_messages if m.chat_id == ALICE.id and is_photo(m)]) == 1


async def test_a_wrong_secret_through_nginx_is_refused(postgres: Backend, tg: FakeTelegram, tmp_path: Path,
                                                       nginx: Nginx) -> None:
    async with gateways(tg, tmp_path, nginx.upstreams):
        tg.send_text(private(BOB), BOB, "hello")
        update = tg.take_pending()
        assert await tg.post_update(nginx.webhook, update, secret="not-the-secret") == 403
        assert await tg.post_update(nginx.webhook, update) == 200
        await tg.wait_for_message(is_text, chat_id=BOB.id, timeout=20)
    assert len([m for m in tg.bot_messages if m.chat_id == BOB.id]) == 1


@pytest.mark.slow
async def test_a_burst_through_nginx_is_answered_exactly_once_each(postgres: Backend, tg: FakeTelegram,
                                                                   tmp_path: Path, nginx: Nginx) -> None:
    people = [User(id=5000 + n, first_name=f"Person {n}") for n in range(40)]
    taken = Taken()
    tg.webhook_target = nginx.webhook
    async with gateways(tg, tmp_path, nginx.upstreams) as (first, second):
        taken.watch("first", first)
        taken.watch("second", second)
        for person in people:
            tg.send_text(private(person), person, "hello")
        await tg.wait_for_messages(len(people), is_text, timeout=30)
    for person in people:
        assert len([m for m in tg.bot_messages if m.chat_id == person.id]) == 1, person
    sent = sorted(u["update_id"] for u in tg.updates)
    assert taken.all() == sent  # every update handled, none twice
    assert taken.by["first"] and taken.by["second"], "nginx shares the updates out round-robin"
    assert {status for _update, status in tg.webhook_posts} == {200}


# -- the database away while an update is handled ------------------------------------------------------------

async def test_an_update_the_database_could_not_take_is_answered_500_and_its_redelivery_is_handled(
        postgres: Backend, tg: FakeTelegram, tmp_path: Path) -> None:
    """The update is recorded, then its handling meets a database that cannot answer (another process holds the
    jobs table past the lock timeout): the person is told nothing, Telegram gets 500, and the same update delivered
    again is handled, once, as if the first delivery had never happened."""
    other = await asyncpg.connect(postgres.url)
    try:
        async with running_bot(tg, tmp_path, settings=gateway_settings(tg, tmp_path, 0)) as gw:
            tg.send_photo(private(ALICE), ALICE, small_selfie(), caption="/zombie")
            update = tg.take_pending()
            locked = other.transaction()
            await locked.start()
            await other.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            assert await tg.post_update(gateway_url(gw), update) == 500
            await locked.rollback()
            assert not [m for m in tg.bot_messages if m.chat_id == ALICE.id], "nothing said: Telegram sends it again"

            assert await tg.post_update(gateway_url(gw), update) == 200
            await gw.photo_reply(private(ALICE))
            assert await tg.post_update(gateway_url(gw), update) == 200  # handled now: a third one is skipped
            await gw.finished()
    finally:
        await other.close()
    assert [m.method for m in tg.bot_messages if m.chat_id == ALICE.id] == ["sendPhoto"]
