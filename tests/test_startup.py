"""`pixme run` meeting a newcomer's mistakes, as a real process: a malformed token is one line before
anything touches the network, and a start that fails closes what it opened."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.config import DiscordSettings, TelegramSettings, unknown_keys
from tests.standins.discord_api import FakeDiscord
from tests.standins.telegram_api import FakeTelegram

# Each start-up test runs `pixme run` as a real process (seconds each); `manage.py test --fast` leaves them out.
slow = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY")


class ConnectionRecorder:
    """A loopback TCP listener that only counts who connects (and answers nothing)."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionRecorder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("PIXME_")}
    env.update(PIXME_STORAGE__DIR=str(tmp_path / "data"), PIXME_PLAYGROUND__PORT="0", PIXME_OPS__PORT="0",
               **settings)
    return env


async def _run(env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@slow
@pytest.mark.parametrize(("platform", "token", "named"), [
    ("TELEGRAM", "abc", "Telegram token"),
    ("TELEGRAM", "7012345678:AAHdqTcvCH1v", "Telegram token"),  # cut short when pasted
    ("TELEGRAM", "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw\n", "Telegram token"),  # a stray newline
    ("DISCORD", "abc", "Discord token"),
    ("DISCORD", "Bot MTA4NzM0NTY3ODkwMTIzNDU2Nzg5.GxYz12.AbCdefghijklmnopqrstuvwxyz0123456789", "Discord token"),
])
async def test_a_malformed_token_is_one_line_and_no_connection(
        tmp_path: Path, platform: str, token: str, named: str) -> None:
    async with ConnectionRecorder() as recorder:
        base = f"http://127.0.0.1:{recorder.port}"
        env = _env(tmp_path, **{
            f"PIXME_{platform}__TOKEN": token,
            "PIXME_TELEGRAM__API_URL": f"{base}/bot", "PIXME_TELEGRAM__FILE_URL": f"{base}/file/bot",
            "PIXME_DISCORD__API_URL": base, "PIXME_DISCORD__GATEWAY_URL": f"ws://127.0.0.1:{recorder.port}/",
        })
        code, out, err = await _run(env, tmp_path)
    assert recorder.connections == 0, "refused before any network call"
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert named in lines[0] and "malformed" in lines[0]
    assert token.strip() not in err, "the message does not repeat the secret"
    assert out == ""


@slow
async def test_telegram_rejecting_the_token_stops_cleanly(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        wrong = tg.token.replace("TEST", "LOST")  # well-formed, but not this bot's
        code, _out, err = await _run(_env(tmp_path, PIXME_TELEGRAM__TOKEN=wrong, PIXME_TELEGRAM__API_URL=tg.api_url,
                                          PIXME_TELEGRAM__FILE_URL=tg.file_url), tmp_path)
    assert code == 1
    assert "telegram: could not start" in err and "rejected" in err
    assert "Unclosed" not in err and "Traceback" not in err, err
    assert wrong not in err and wrong.split(":")[1] not in err


@slow
async def test_telegram_unreachable_stops_cleanly(tmp_path: Path) -> None:
    async with ConnectionRecorder() as recorder:
        port = recorder.port
    # Nothing listens there any more: the connection is refused.
    code, _out, err = await _run(_env(tmp_path, PIXME_TELEGRAM__TOKEN=FakeTelegram().token,
                                      PIXME_TELEGRAM__API_URL=f"http://127.0.0.1:{port}/bot"), tmp_path)
    assert code == 1
    assert "telegram: could not start" in err
    assert "Unclosed" not in err and "Traceback" not in err, err


@slow
async def test_discord_rejecting_the_token_stops_cleanly(tmp_path: Path) -> None:
    async with FakeDiscord() as dc:
        wrong = dc.token[:-4] + "LOST"
        code, _out, err = await _run(_env(tmp_path, PIXME_DISCORD__TOKEN=wrong, PIXME_DISCORD__API_URL=dc.api_url),
                                     tmp_path)
    assert code == 1
    assert "discord: could not start" in err
    assert "Unclosed" not in err and "Traceback" not in err, err
    assert wrong not in err


@pytest.mark.parametrize("token", [
    "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "123456789:AAE_4-xYz0123456789abcdefghijklmnopq",
    FakeTelegram().token])
def test_telegram_tokens_as_botfather_issues_them_pass(token: str) -> None:
    assert TelegramSettings(token=SecretStr(token)).token_problem() is None


@pytest.mark.parametrize("token", [
    "MTA4NzM0NTY3ODkwMTIzNDU2Nzg5.GxYz12.AbCdefghijklmnopqrstuvwxyz0123456789",
    "OTk5OTk5OTk5OTk5OTk5OTk5.YQ8xNA.u8l0dbpZ_mOa1-2bC3dE4fG5hI6",
    FakeDiscord().token], ids=["portal", "portal-older", "stand-in"])  # the stand-in's is random: named, not shown
def test_discord_tokens_as_the_portal_issues_them_pass(token: str) -> None:
    assert DiscordSettings(token=SecretStr(token)).token_problem() is None


@slow
async def test_misspelt_settings_are_named_with_the_closest_known_one_and_the_bot_runs(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[telegram]\ntokn = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"\n'
                                          '[playgrond]\nport = 9999\n[playground]\nport = 0\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", env=_env(tmp_path), cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert "playground: open http://127.0.0.1:" in line, "it keeps running, on the settings it understood"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        err = (await proc.stderr.read()).decode().splitlines()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    warnings = [line for line in err if line.startswith("pixme: warning:")]
    assert warnings == [
        "pixme: warning: config.toml: ignored unknown key 'tokn' in [telegram]; did you mean token?",
        "pixme: warning: config.toml: ignored unknown section [playgrond]; did you mean [playground]?",
    ]
    assert not any("7012345678" in line for line in err), "the value is never shown"


def test_unknown_keys_outside_sections_wrong_case_and_no_close_match(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('token = "x"\n[gemini]\nAPI_key = "k"\nmodel = "gemini-3-pro-image"\n'
                      '[limits]\nfrobnicate = 1\n[party]\n[access]\nadmin = [1]\n')
    assert unknown_keys(config) == [
        "ignored unknown key 'token' outside any section; did you mean [telegram] token?",
        "ignored unknown key 'API_key' in [gemini]; did you mean api_key?",  # keys are case-sensitive
        "ignored unknown key 'frobnicate' in [limits] (known: concurrency, queue_per_user, user_daily, chat_daily, "
        "daily_images, daily_usd, queue_note_after_s)",
        "ignored unknown key 'admin' in [access]; did you mean admins?",
    ]
    assert unknown_keys(ROOT / "config.example.toml") == []  # the documented file is all known keys


def test_the_example_config_explains_what_newcomers_asked_about() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    section = {name: body for name, body in (part.split("]", 1) for part in text.split("\n[")[1:])}
    assert "downloaded from" in section["telegram"].split("file_url", 1)[1].split("\n")[0]
    assert '"telegram:123456789"' in section["access"] and "negative" in section["access"]
    assert "0 = any free port" in section["playground"]
