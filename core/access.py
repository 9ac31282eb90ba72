"""Who may use the bot, and who is an admin. Lists hold platform user or chat ids."""

from __future__ import annotations

from core.config import AccessSettings
from core.requests import Context


def _ids(ctx: Context) -> set[str]:
    platform = ctx.chat.platform
    ids = {ctx.person.id, ctx.chat.id}
    # "telegram:123" pins an id to one platform, since Telegram and Discord ids could collide.
    return ids | {f"{platform}:{i}" for i in ids}


class Access:
    def __init__(self, settings: AccessSettings) -> None:
        self._admins = set(settings.admins)
        self._allow = set(settings.allow)
        self._deny = set(settings.deny)

    def is_admin(self, ctx: Context) -> bool:
        return self.is_admin_id(ctx.chat.platform, ctx.person.id)

    def is_admin_id(self, platform: str, user_id: str) -> bool:
        return bool({user_id, f"{platform}:{user_id}"} & self._admins)

    def allows(self, ctx: Context) -> bool:
        ids = _ids(ctx)
        if ids & self._deny:
            return False
        return not self._allow or bool(ids & self._allow) or self.is_admin(ctx)
