"""The `pixme` command line as an operator uses it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bots.cli import main
from core.styles import STYLES
from tests.backends import Backend

TOKENS = ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY",
          "PIXME_TELEGRAM__TOKEN", "PIXME_DISCORD__TOKEN", "PIXME_GEMINI__API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in TOKENS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray config.toml


def test_styles_lists_one_style_a_line_command_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["styles"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [s.id for s in STYLES]


@pytest.mark.slow  # runs `pixme` as a process
async def test_run_without_any_token_says_what_to_set(tmp_path: Path) -> None:
    """With no token, `pixme run` starts the local playground, prints its address, and says how to go live."""
    import asyncio
    import os
    import signal
    import sys

    import aiohttp

    env = {k: v for k, v in os.environ.items() if k not in TOKENS and not k.startswith("PIXME_")}
    env.update(PIXME_STORAGE__DIR=str(tmp_path / "data"), PIXME_PLAYGROUND__PORT="0", PIXME_OPS__PORT="0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "run", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert "playground" in line and "http://127.0.0.1:" in line
        url = line[line.index("http://"):].split()[0]
        address, _, key = url.partition("/?key=")
        assert not address.endswith(":0") and len(key) >= 24  # the port really bound, and this launch's key
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as page:
                assert page.status == 200 and "Pix Me!" in await page.text()
            async with session.get(address + "/") as keyless:
                assert keyless.status == 403
        # Names, personas and instructions are this account's alone: the folder 0700, the database 0600.
        data = tmp_path / "data"
        assert _mode(data) == 0o700
        for name in ("pixme.sqlite3", "pixme.sqlite3-wal", "pixme.sqlite3-shm"):
            assert _mode(data / name) == 0o600, name
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        err = (await proc.stderr.read()).decode()
        assert "TELEGRAM_BOT_TOKEN" in err and "BotFather" in err and "DISCORD_BOT_TOKEN" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_a_playground_host_other_than_loopback_needs_public(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    assert main(["playground", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no login" in err and "--public" in err
    (tmp_path / "config.toml").write_text('[playground]\nenabled = true\nhost = "192.168.1.20"\n')
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "192.168.1.20 is not loopback" in err and "public = true" in err


@pytest.mark.slow  # runs `pixme` as a process
async def test_a_public_playground_warns_that_it_has_no_login(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal
    import sys

    import aiohttp

    env = {k: v for k, v in os.environ.items() if k not in TOKENS and not k.startswith("PIXME_")}
    env.update(PIXME_STORAGE__DIR=str(tmp_path / "data"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.cli", "playground", "--host", "0.0.0.0", "--public", "--port", "0",
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        url = line[line.index("http://"):].split()[0]
        async with aiohttp.ClientSession() as session, session.get(url) as page:
            assert page.status == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        err = (await proc.stderr.read()).decode()
        warning = next(x for x in err.splitlines() if "warning" in x)
        assert "open to other machines" in warning and "no login" in warning
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _mode(path: Path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)


async def test_a_data_folder_others_could_read_is_tightened_with_one_line_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from bots.cli import open_studio
    from core.config import Settings, StorageSettings
    from core.engines.offline import OfflineEngine
    from storage.sqlite import SqliteStore

    data = tmp_path / "data"
    await (await SqliteStore.open(data / "pixme.sqlite3")).close()  # as an earlier version left it
    data.chmod(0o755)
    (data / "pixme.sqlite3").chmod(0o644)
    settings = Settings(storage=StorageSettings(dir=data))
    with caplog.at_level(logging.INFO):
        async with open_studio(settings, engine=OfflineEngine()):
            assert _mode(data) == 0o700
            for name in ("pixme.sqlite3", "pixme.sqlite3-wal", "pixme.sqlite3-shm"):
                assert _mode(data / name) == 0o600, name
    notices = [r.getMessage() for r in caplog.records if "other users" in r.getMessage()]
    assert len(notices) == 1 and str(data) in notices[0] and "\n" not in notices[0]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        async with open_studio(settings, engine=OfflineEngine()):
            pass
    assert not [r for r in caplog.records if "other users" in r.getMessage()]  # said once, when it was so


def test_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "render", "edit", "styles", "migrate"):
        assert command in out


@pytest.mark.slow  # runs `pixme` as a process
def test_run_help_lists_config_and_the_option_works_after_the_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "bots.cli", "run", "--help"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "--config CONFIG" in shown.stdout and "config.toml" in shown.stdout
    assert "--verbose" in shown.stdout and "playground" in shown.stdout
    # Given after the command, --config is honoured, not silently dropped.
    missing = subprocess.run([sys.executable, "-m", "bots.cli", "run", "--config", "nope.toml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope.toml not found" in missing.stderr


def test_a_missing_config_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "styles"]) == 0  # styles needs no config
    assert main(["--config", str(tmp_path / "nope.toml"), "run"]) == 2
    assert "nope.toml not found" in capsys.readouterr().err


def _pixels(path: Path) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(Image.open(path).convert("RGB").resize((256, 256)), dtype=np.int16)


@pytest.mark.slow  # every style through the CLI; the quick run renders each style in the engine's own tests
def test_render_offline_makes_a_distinct_picture_for_every_style(tmp_path: Path,
                                                                 face_image: Image.Image) -> None:
    selfie = tmp_path / "selfie.jpg"
    face_image.resize((384, 384)).save(selfie, quality=90)
    outputs = {}
    for style in STYLES:
        out = tmp_path / "out" / f"{style.id}.png"
        assert main(["render", str(selfie), "--style", style.id, "-o", str(out), "--engine", "offline"]) == 0
        outputs[style.id] = _pixels(out)
    original = _pixels(selfie)
    for sid, pixels in outputs.items():
        assert np.abs(pixels - original).mean() > 12, f"{sid} barely changed the photo"
    ids = list(outputs)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            assert np.abs(outputs[a] - outputs[b]).mean() > 10, f"{a} and {b} look alike"


def test_render_refuses_an_unknown_style_and_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "doc.jpg"
    bad.write_bytes(b"%PDF-1.7 definitely not a photo")
    with pytest.raises(SystemExit, match="unknown style"):
        main(["render", str(bad), "--style", "vaporwave", "-o", str(tmp_path / "x.png"), "--engine", "offline"])
    with pytest.raises(SystemExit, match="doesn't look like a photo"):
        main(["render", str(bad), "--style", "comic", "-o", str(tmp_path / "x.png"), "--engine", "offline"])


def test_edit_offline_draws_understood_edits_and_explains_the_rest(
        tmp_path: Path, face_image: Image.Image, capsys: pytest.CaptureFixture[str]) -> None:
    selfie = tmp_path / "selfie.png"
    face_image.resize((384, 384)).save(selfie)
    out = tmp_path / "crowned.png"
    assert main(["edit", str(selfie), "add a crown", "-o", str(out), "--engine", "offline"]) == 0
    assert "Crown on" in capsys.readouterr().out
    assert np.abs(_pixels(out) - _pixels(selfie)).max() > 100
    assert main(["edit", str(selfie), "turn me into a dragon", "-o", str(out), "--engine", "offline"]) == 1
    assert "Gemini" in capsys.readouterr().err


def test_gemini_without_a_key_is_a_clear_error(tmp_path: Path, face_image: Image.Image,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    selfie = tmp_path / "s.jpg"
    buf = io.BytesIO()
    face_image.resize((256, 256)).save(buf, "JPEG")
    selfie.write_bytes(buf.getvalue())
    assert main(["render", str(selfie), "--style", "comic", "-o", str(tmp_path / "o.png"), "--engine", "gemini"]) == 1
    assert "GEMINI_API_KEY" in capsys.readouterr().err


def test_migrate_brings_the_sqlite_database_to_the_latest_schema(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    from storage.migrations import latest

    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"pixme: data/pixme.sqlite3: schema version {latest()}"
    assert (tmp_path / "data" / "pixme.sqlite3").exists()


def test_migrate_on_postgres_applies_the_history_once(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      postgres: Backend) -> None:
    from storage.migrations import latest

    assert postgres.cluster is not None
    database = postgres.cluster.create_database("template0")  # nothing in it yet
    try:
        url = postgres.cluster.url(database).replace("postgres@", "postgres:a-password@")  # trust: not checked
        (tmp_path / "config.toml").write_text(f'[storage]\nurl = "{url}"\n', encoding="utf-8")
        assert main(["migrate"]) == 0
        first = capsys.readouterr().out
        assert f"schema version {latest()} (applied 0001_initial, 0002_" in first
        assert "a-password" not in first and "postgres:***@" in first
        assert main(["migrate"]) == 0
        assert capsys.readouterr().out.strip().endswith(f"schema version {latest()} (nothing to do)")
    finally:
        postgres.cluster.drop_database(database)


def test_a_storage_url_that_is_not_postgresql_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[storage]\nurl = "mysql://x@y/z"\n', encoding="utf-8")
    assert main(["migrate"]) == 2
    assert "storage.url: url must be empty" in capsys.readouterr().err
