"""Configuration: the documented file, environment overrides, and secrets kept out of logs."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from bots.cli import main
from core.config import ConfigError, load_settings
from core.logsafe import RedactingFilter

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads_and_has_every_documented_section() -> None:
    settings = load_settings(ROOT / "config.example.toml")
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert set(data) >= {"telegram", "discord", "gemini", "engine", "storage", "limits", "access"}
    assert settings.gemini.model == "gemini-nano-banana-2.1"
    assert settings.gemini.sizes == ["1K", "2K"] and settings.limits.daily_usd == 0
    assert settings.telegram.api_url == "https://api.telegram.org/bot"
    assert settings.engine_name == "offline"  # no key in the example, so the bot runs offline


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[telegram]\ntoken = "from-file"\n[gemini]\nmodel = "gemini-3-pro-image"\n'
                      '[access]\nadmins = [12345]\n')
    monkeypatch.setenv("PIXME_TELEGRAM__TOKEN", "from-env")
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-conventional")
    settings = load_settings(config)
    assert settings.telegram.token.get_secret_value() == "from-env"
    assert settings.gemini.api_key.get_secret_value() == "AIza-conventional"
    assert settings.gemini.model == "gemini-3-pro-image"
    assert settings.access.admins == ["12345"]
    assert settings.engine_name == "gemini"
    assert "from-env" not in repr(settings)  # secrets don't print


def test_conventional_token_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    assert load_settings(None).telegram.token.get_secret_value() == "123:abc"


def test_bad_config_says_what_is_wrong(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[engine]\ndefault = "dall-e"\n')
    with pytest.raises(ConfigError, match=r"engine\.default"):
        load_settings(config)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_redaction_hides_tokens_even_inside_urls() -> None:
    token = "7012345678:AAH-secret_token_value_0123456789"
    redactor = RedactingFilter([token, "AIzaSecretKey123"])
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "GET %s key=%s",
                               (f"https://api.telegram.org/file/bot{token}/photos/1.jpg", "AIzaSecretKey123"),
                               None)
    redactor.filter(record)
    assert token not in record.getMessage() and "AIzaSecretKey123" not in record.getMessage()
    assert "[redacted]" in record.getMessage()
    unknown = logging.LogRecord("x", logging.INFO, __file__, 1, "bot9876543210:ZZZ-other_token_abcdefghijkl/x",
                                None, None)
    redactor.filter(unknown)
    assert "ZZZ-other" not in unknown.getMessage()


def test_run_without_any_token_says_what_to_set_and_runs_the_playground(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "PIXME_TELEGRAM__TOKEN", "PIXME_DISCORD__TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    ran: list[object] = []

    # The real one serves until a signal (tests/test_cli.py).
    async def fake_run_bots(settings: object, **_: object) -> int:
        ran.append(settings)
        return 0

    monkeypatch.setattr("bots.cli.run_bots", fake_run_bots)
    assert main(["run"]) == 0 and len(ran) == 1
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN" in err and "BotFather" in err and "playground" in err


def test_styles_command_lists_one_style_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["styles"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) >= 8
    assert [line.split("\t")[0] for line in lines][:3] == ["zombie", "comic", "manga"]
