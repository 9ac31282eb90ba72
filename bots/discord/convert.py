"""Discord things as core sees them: who asked, where, which photo; and what Discord already tells us
about an attachment before it is downloaded."""

from __future__ import annotations

from typing import Any

import discord

from core import texts
from core.intake import IntakeError, check_declared_size
from core.requests import Chat, Context, Person, PhotoRef
from core.sharing import NoProfilePhoto

PLATFORM = "discord"
CONTENT_LIMIT = 2000
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".tif", ".tiff", ".bmp")


def chat_of(channel_id: int | None, guild: Any) -> Chat:
    return Chat(PLATFORM, str(channel_id or 0), is_private=guild is None)


def person_of(member: discord.abc.User, locale: discord.Locale | None = None) -> Person:
    return Person(str(member.id), member.display_name, locale.value if locale is not None else None)


def interaction_context(interaction: discord.Interaction, message_id: int | str) -> Context:
    # The presser's resolved permissions arrive with the interaction (its member payload), so asking
    # whether they administer the server costs no request.
    permissions = interaction.permissions

    async def chat_admin() -> bool:
        return interaction.guild_id is not None and (permissions.administrator or permissions.manage_guild)

    return Context(chat_of(interaction.channel_id, interaction.guild_id),
                   person_of(interaction.user, interaction.locale), str(message_id), chat_admin=chat_admin)


def attachment_photo(attachment: discord.Attachment, message_id: int | None = None) -> PhotoRef:
    """An attachment as a photo core fetches when it needs it (and checks then)."""
    return PhotoRef(fetch=attachment.read, message_id=str(message_id) if message_id is not None else None,
                    size=attachment.size, mime=attachment.content_type, file_name=attachment.filename)


def avatar_photo(person: discord.abc.User) -> PhotoRef:
    """`/me`: the person's avatar (this server's, else their own) as a photo core fetches when it takes it in.
    Discord's default avatars are not a picture of anyone: none set means no profile picture."""
    asset = getattr(person, "guild_avatar", None) or person.avatar

    async def fetch() -> bytes:
        if asset is None:
            raise NoProfilePhoto()
        return await asset.with_size(1024).read()

    return PhotoRef(fetch=fetch, owner_id=str(person.id))


def is_image(attachment: discord.Attachment) -> bool:
    """Discord reports a content type and dimensions for files it can read as images."""
    if attachment.content_type is not None:
        return attachment.content_type.startswith("image/") and attachment.content_type != "image/svg+xml"
    return attachment.filename.lower().endswith(_IMAGE_EXTENSIONS)


def first_image(message: discord.Message) -> discord.Attachment | None:
    return next((a for a in message.attachments if is_image(a)), None)


def declared_problem(attachment: discord.Attachment) -> str | None:
    """What Discord already tells us is wrong with an attachment, before downloading it."""
    if not is_image(attachment):
        return texts.NOT_AN_IMAGE
    try:
        check_declared_size(attachment.size)
    except IntakeError as refusal:
        return refusal.message
    return None



def caption(text: str) -> str:
    """Text cut to what one Discord message may carry."""
    return text if len(text) <= CONTENT_LIMIT else text[:CONTENT_LIMIT - 1] + "…"
