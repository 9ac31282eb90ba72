"""The Discord front-end: discord.py 2 <-> core (slash commands from core's table, persistent components)."""

from bots.discord.bot import DiscordBot
from bots.discord.messenger import DiscordMessenger

__all__ = ["DiscordBot", "DiscordMessenger"]
