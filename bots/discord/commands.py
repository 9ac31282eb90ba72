"""Discord's slash commands, made from core's one command table (`core.commands.COMMANDS`).

Every command whose `CommandInfo.slash` says how it is offered becomes an application command with the
table's name, description and typed parameters (a `/party open|join` group where the table says so);
its callback only hands the interaction and the values Discord typed to `run`, which makes a `Context`
and a `Typed` and calls `Commands.dispatch`. Descriptions and choice names are English here and translated
per Discord locale by the client's translator.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import discord
from discord import app_commands

from core import i18n
from core.commands import COMMANDS, SLASH_GROUPS, CommandInfo, Option, Typed
from core.requests import PhotoRef
from core.styles import STYLES

Run = Callable[[discord.Interaction, CommandInfo, dict[str, Any]], Awaitable[None]]
AppCommand = app_commands.Command[Any, Any, Any] | app_commands.Group


def _style_choices() -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=f"{s.emoji} {s.title} — {s.description}"[:100], value=s.id) for s in STYLES]


def _language_choices() -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=name, value=code) for code, name in i18n.LANGUAGES.items()]


def _annotation(option: Option) -> Any:
    """The Python type discord.py reads a parameter's Discord type from."""
    kind: Any
    if option.kind == "photo":
        kind = discord.Attachment
    elif option.kind in ("style", "language"):
        kind = app_commands.Choice[str]
    elif option.max_length is not None:
        kind = app_commands.Range[str, None, option.max_length]
    else:
        kind = str
    return kind if option.required else kind | None


def _callback(info: CommandInfo, run: Run) -> Callable[..., Coroutine[Any, Any, None]]:
    """A callback whose signature declares the table's parameters; it passes what was typed on to `run`."""
    assert info.slash is not None
    options = info.slash.options

    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        await run(interaction, info, values)

    parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=discord.Interaction)]
    parameters += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=_annotation(o),
                                     **({} if o.required else {"default": None})) for o in options]
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    described = {o.name: o.description for o in options if o.description}
    if described:
        app_commands.describe(**described)(callback)
    choices = {o.name: _style_choices() if o.kind == "style" else _language_choices()
               for o in options if o.kind in ("style", "language")}
    if choices:
        app_commands.choices(**choices)(callback)
    return callback


def slash_commands(run: Run, offered: Callable[[CommandInfo], bool] = lambda _info: True) -> list[AppCommand]:
    """Every slash command in core's table that is `offered` here, grouped as the table says, in its order."""
    made: list[AppCommand] = []
    groups: dict[str, app_commands.Group] = {}
    for info in COMMANDS.values():
        slash = info.slash
        if slash is None or not offered(info):
            continue
        parent: app_commands.Group | None = None
        if slash.group:
            parent = groups.get(slash.group)
            if parent is None:
                group = SLASH_GROUPS[slash.group]
                parent = groups[slash.group] = app_commands.Group(
                    name=slash.group, description=group.description, guild_only=group.groups_only)
                made.append(parent)
        command: app_commands.Command[Any, Any, Any] = app_commands.Command(
            name=slash.name_for(info.name), description=slash.description, callback=_callback(info, run),
            parent=parent)
        if parent is not None:
            parent.add_command(command)
        else:
            made.append(command)
    return made


def path_of(info: CommandInfo) -> str:
    """How people type the command on Discord: `avatar`, `party open`."""
    assert info.slash is not None
    return " ".join(part for part in (info.slash.group, info.slash.name_for(info.name)) if part)




def typed_of(info: CommandInfo, values: dict[str, Any], photos: list[PhotoRef], lobby: str | None = None) -> Typed:
    """What was typed, as core reads it: text parameters in order as the arguments (`default` where left out),
    a style as `style`, the photos (already made `PhotoRef`s) as `photo` or `photos`. `lobby`: the message
    the command stands for a reply to (`/party join` means this channel's lobby)."""
    assert info.slash is not None
    args: list[str] = []
    style: str | None = None
    for option in info.slash.options:
        value = values.get(option.name)
        if isinstance(value, app_commands.Choice):
            value = value.value
        if option.kind == "style":
            style = str(value or "")
        elif option.kind != "photo":
            args.append(str(value or option.default))
    return Typed(info.name, " ".join(a for a in args if a), replied_to=lobby, replied_to_ours=lobby is not None,
                 photo=photos[0] if len(photos) == 1 else None, photos=tuple(photos) if len(photos) > 1 else (),
                 style=style, answer_the_request=True)
