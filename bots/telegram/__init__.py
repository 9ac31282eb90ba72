"""The Telegram front-end: python-telegram-bot 22 (its HTTP on aiohttp) <-> core."""

from bots.telegram.bot import TelegramBot
from bots.telegram.messenger import TelegramMessenger

__all__ = ["TelegramBot", "TelegramMessenger"]
