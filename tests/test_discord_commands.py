"""Discord's slash commands are core's command table: what the bot registers with Discord (the loopback
stand-in) is exactly the table's commands meant for Discord, with the table's names and descriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.commands import COMMANDS, SLASH_GROUPS
from core.config import CreditsSettings
from tests.fakes import FakeEngine
from tests.standins.discord_api import FakeDiscord, Payload
from tests.test_discord_e2e import running_bot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as dc:
        yield dc


def _registered(commands: list[Payload]) -> dict[str, str]:
    """Every chat-input command as people type it (`party open`) -> its description; menus left out."""
    found: dict[str, str] = {}
    for command in commands:
        if command.get("type", 1) != 1:
            continue  # the "Pix Me" message menu is a message's, not a command of the table
        subcommands = [o for o in command.get("options", []) if o["type"] == 1]
        if subcommands:
            assert command["description"] == SLASH_GROUPS[command["name"]].description
            found.update({f"{command['name']} {o['name']}": o["description"] for o in subcommands})
        else:
            found[command["name"]] = command["description"]
    return found


def _table(credits: bool = False) -> dict[str, str]:
    """The table's commands meant for Discord, as people type them there -> their Discord description (the
    credit commands only while `[credits]` is on)."""
    return {" ".join(p for p in (c.slash.group, c.slash.name_for(c.name)) if p): c.slash.description
            for c in COMMANDS.values() if c.slash is not None and (credits or not c.credits)}


async def test_discords_slash_commands_are_exactly_the_tables(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path, FakeEngine()):
        registered = _registered(fake.commands[None])
    table = _table()
    assert set(registered) - set(table) == set(), "registered with Discord but not in core's table"
    assert set(table) - set(registered) == set(), "in core's table for Discord but not registered"
    assert registered == table
    assert {"avatar", "party open", "party join", "fuse", "settings", "help"} <= set(registered)
    menus = [c["name"] for c in fake.commands[None] if c.get("type", 1) == 3]
    assert menus == ["Pix Me"]


async def test_with_credits_on_balance_is_a_slash_command_too(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, tmp_path, FakeEngine(), credits=CreditsSettings(free_daily=2)):
        registered = _registered(fake.commands[None])
    assert registered == _table(credits=True)
    assert "balance" in registered and "balance" not in _table()
