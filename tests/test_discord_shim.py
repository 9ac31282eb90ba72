"""Pins the discord.py behaviour bots/discord/shim.py relies on (beyond its documented API)."""

from __future__ import annotations

from collections.abc import Iterator

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bots.discord import shim as discord_shim


@pytest.fixture
def restored() -> Iterator[None]:
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    yield None
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


def test_rest_urls_and_the_gateway_follow_the_shim(restored: None) -> None:
    discord_shim.point_at("http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/gateway")
    assert Route("GET", "/users/@me").url == "http://127.0.0.1:9/api/v10/users/@me"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:9/gateway"
    assert discord_shim.api_base() == "http://127.0.0.1:9/api/v10"


async def test_a_webhook_can_be_rebuilt_from_the_clients_state() -> None:
    client = discord.Client(intents=discord.Intents.none())
    try:
        state = discord_shim.connection_state(client)
        hook = discord.Webhook.from_state(data={"id": 123, "type": 3, "token": "tok"}, state=state)
        assert (hook.id, hook.token) == (123, "tok")
    finally:
        await client.close()
