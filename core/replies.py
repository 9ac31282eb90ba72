"""Where answers go: each front-end's Messenger by platform, and the one-line reply to a request."""

from __future__ import annotations

from core.requests import Context, Messenger, ReplyTarget


class Replies:
    """The messenger registry. Front-ends attach theirs at start; use cases answer through it."""

    def __init__(self) -> None:
        self._messengers: dict[str, Messenger] = {}

    def attach(self, platform: str, messenger: Messenger) -> None:
        self._messengers[platform] = messenger

    @property
    def platforms(self) -> set[str]:
        """The platforms whose front-end is running now."""
        return set(self._messengers)

    def get(self, platform: str) -> Messenger | None:
        """The platform's messenger, or None while its front-end isn't running (its jobs wait)."""
        return self._messengers.get(platform)

    def to(self, ctx: Context) -> Messenger:
        """The messenger of the platform a request came from (it is running: the request came through it)."""
        return self._messengers[ctx.chat.platform]

    @staticmethod
    def target(ctx: Context, reply_to: str | None = None) -> ReplyTarget:
        """Where an answer to `ctx` goes: its chat, as a reply to `reply_to` or to the request itself."""
        return ReplyTarget(ctx.chat.platform, ctx.chat.id, reply_to or ctx.message_id)

    async def say(self, ctx: Context, text: str) -> None:
        """One line of text in answer to the request."""
        await self.to(ctx).send_text(self.target(ctx), text)
