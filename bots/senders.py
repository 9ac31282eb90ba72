"""The platforms as a worker process needs them (`pixme run --role worker`): their HTTP APIs for sending
results, and nothing that listens. Telegram: the Bot API client without polling; Discord: the REST client logged
in with the token, no gateway connection."""

from __future__ import annotations

import logging

from core.config import DiscordSettings, TelegramSettings
from core.studio import Studio

log = logging.getLogger(__name__)


class TelegramSender:
    """Sends through the Bot API; updates stay with Telegram for the gateways to fetch."""

    def __init__(self, settings: TelegramSettings, studio: Studio) -> None:
        from bots.telegram.bot import PLATFORM, build_application
        from bots.telegram.messenger import TelegramMessenger

        self.studio = studio
        self.platform = PLATFORM
        self.application = build_application(settings, concurrency=1, slots=studio.store)
        self.messenger = TelegramMessenger(lambda: self.application.bot, on_photo=self._photo_delivered)
        studio.attach(PLATFORM, self.messenger)
        self._ready = False

    async def start(self) -> None:
        await self.application.initialize()  # getMe: the token works
        self._ready = True
        log.info("telegram: sending as @%s (no polling: this is a worker)", self.application.bot.username)

    @property
    def connected(self) -> bool:
        return self._ready

    async def stop(self) -> None:
        self._ready = False
        await self.messenger.recorded()
        await self.application.shutdown()
        await self.application.bot.shutdown()

    async def _photo_delivered(self, node_id: int, file_id: str) -> None:
        await self.studio.sharing.remember_file(self.platform, node_id, file_id)


class DiscordSender:
    """Sends through Discord's REST API, logged in with the bot token; no gateway session."""

    def __init__(self, settings: DiscordSettings, studio: Studio) -> None:
        import discord

        from bots.discord.convert import PLATFORM
        from bots.discord.messenger import DiscordMessenger

        self.settings = settings
        self.client = discord.Client(intents=discord.Intents.none())
        self.messenger = DiscordMessenger(self.client, studio.reply_tokens)  # follow-ups from the database
        studio.attach(PLATFORM, self.messenger)
        self._ready = False

    async def start(self) -> None:
        from bots.discord.bot import configure_endpoints

        configure_endpoints(self.settings)
        await self.client.login(self.settings.token.get_secret_value())
        self._ready = True
        log.info("discord: sending over REST (no gateway: this is a worker)")

    @property
    def connected(self) -> bool:
        return self._ready and not self.client.is_closed()

    async def stop(self) -> None:
        self._ready = False
        await self.client.close()
