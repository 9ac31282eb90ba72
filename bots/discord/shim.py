"""The one place that touches discord.py beyond its documented API.

- Endpoints: discord.py builds every REST URL from the class attribute `Route.BASE` and opens the gateway at
  `DiscordWebSocket.DEFAULT_GATEWAY`; pointing the bot at a Discord-compatible server (and the tests at
  their loopback stand-in) means setting both. They are process-wide, like the one bot a process runs.
- The CDN: avatar URLs are built from `Asset.BASE`, set with `point_cdn_at` (`[discord] cdn_url`).
- Webhooks from a state: an interaction's follow-up outlives the interaction object (a restart, a job that
  finishes later), so it is rebuilt with `Webhook.from_state`, which needs the client's private
  `ConnectionState` (`Client._connection`).

discord.py is pinned in pyproject.toml (`>=2.5,<3`); tests/test_discord_shim.py pins these behaviours.
"""

from __future__ import annotations

from typing import Any

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route


def point_at(api_base: str, gateway: str) -> None:
    """Send every REST call to `api_base` (…/api/v10) and open the gateway at `gateway`."""
    Route.BASE = api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)


def point_cdn_at(base: str) -> None:
    """Fetch avatars (`/me`) from `base` instead of cdn.discordapp.com: discord.py builds their URLs from the
    class attribute `Asset.BASE`."""
    discord.Asset.BASE = base.rstrip("/")


def api_base() -> str:
    """Where REST calls go now."""
    return str(Route.BASE)


def connection_state(client: discord.Client) -> Any:
    """The client's ConnectionState, which `discord.Webhook.from_state` needs."""
    return client._connection
