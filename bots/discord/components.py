"""Discord's persistent components: result buttons, select menus, the edit modal.

Every component's `custom_id` is `pixme:` followed by a core action (`core.actions.encode`), so a press
is routed by its id through `discord.ui.DynamicItem`, the same before and after a restart.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import discord

from core import texts
from core.actions import (
    NODE_VERBS,
    Action,
    EditPrompt,
    ExportPress,
    NodePress,
    NodeVerb,
    PhotoPick,
    RestylePick,
    SettingMenu,
    StepPick,
    VariantMenu,
    encode,
    parse,
    pattern,
)
from core.people import SettingsForm
from core.requests import Button
from core.styles import STYLES

if TYPE_CHECKING:
    from bots.discord.bot import DiscordBot

PREVIEW_TIMEOUT_S = 600.0  # an unanswered edit modal is forgotten after this


def _adapter(interaction: discord.Interaction) -> DiscordBot:
    """The bot whose client received the interaction (components are registered once per client)."""
    client: Any = interaction.client
    adapter: DiscordBot = client.adapter
    return adapter


PREFIX = "pixme:"  # every component id: this, then a core action (core.actions.encode)
PRESS_PREFIX = PREFIX + "press:"  # a button from Messenger.send_buttons: its action goes to Studio.press
EDIT_FIELD = "instruction"
A = TypeVar("A")


def custom_id(action: Action) -> str:
    return PREFIX + encode(action)


def _template(kind: type) -> str:
    return re.escape(PREFIX) + f"(?P<action>{pattern(kind)})"


def _action(match: re.Match[str], kind: type[A]) -> A:
    """The action a matched id carries (the template only matches `kind`'s strings)."""
    action = parse(match["action"])
    if not isinstance(action, kind):
        raise ValueError(f"not a {kind.__name__}: {match['action']!r}")
    return action


class NodeButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=_template(NodePress)):
    """Edit / Undo / Again / Style ▾ under a result; the node id travels in the custom_id."""

    LOOKS: ClassVar[dict[NodeVerb, tuple[str, str, discord.ButtonStyle]]] = {  # labels: texts.<name>
        "edit": ("BUTTON_EDIT", "✏️", discord.ButtonStyle.primary),
        "undo": ("BUTTON_UNDO", "↩️", discord.ButtonStyle.secondary),
        "again": ("BUTTON_AGAIN", "🔁", discord.ButtonStyle.secondary),
        "styles": ("BUTTON_STYLE", "🎨", discord.ButtonStyle.secondary),
    }

    def __init__(self, verb: NodeVerb, node_id: int) -> None:
        text, emoji, style = self.LOOKS[verb]
        super().__init__(discord.ui.Button(label=getattr(texts, text), emoji=emoji, style=style,
                                           custom_id=custom_id(NodePress(verb, node_id))))
        self.verb = verb
        self.node_id = node_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> NodeButton:
        press = _action(match, NodePress)
        return cls(press.verb, press.node_id)

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_node_button(interaction, self.verb, self.node_id))


class ExportButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=_template(ExportPress)):
    """Sticker / Profile pic / Original under a result: sent only to the presser."""

    def __init__(self, kind: str, node_id: int, label: str = "") -> None:
        super().__init__(discord.ui.Button(label=label or kind, style=discord.ButtonStyle.secondary, row=1,
                                           custom_id=custom_id(ExportPress(kind, node_id))))
        self.kind = kind
        self.node_id = node_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> ExportButton:
        press = _action(match, ExportPress)
        return cls(press.kind, press.node_id, getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_export(interaction, self.kind, self.node_id))


class SettingSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=_template(SettingMenu)):
    """One select menu of the ephemeral /settings message; a choice is saved and the message redrawn."""

    def __init__(self, key: str, title: str = "", options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id=custom_id(SettingMenu(key)), placeholder=title[:150] or None,
                                           options=options or [discord.SelectOption(label=key)]))
        self.key = key

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> SettingSelect:
        return cls(_action(match, SettingMenu).key)

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_setting(interaction, self.key, self.item.values[0]))


def settings_view(form: SettingsForm) -> discord.ui.View:
    """The settings as select menus, the current choice of each selected (price notes as descriptions)."""
    view = components_view()
    for key, (title, choices) in form.menus.items():
        options = [discord.SelectOption(label=c.label[:100], value=c.value, description=c.note[:100] or None,
                                        default=c.current) for c in choices[:25]]
        view.add_item(SettingSelect(key, title, options))
    return view


def _style_options() -> list[discord.SelectOption]:
    return [discord.SelectOption(label=s.name, value=s.id, emoji=s.emoji, description=s.blurb[:100])
            for s in STYLES]


class PickStyle(discord.ui.DynamicItem[discord.ui.Select[Any]], template=_template(PhotoPick)):
    """The style menu for a photo message (the "Pix Me" menu, or a bare photo in a DM)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(discord.ui.Select(custom_id=custom_id(PhotoPick(str(message_id))),
                                           options=_style_options(), placeholder=texts.PICK_A_STYLE))
        self.message_id = message_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PickStyle:
        return cls(int(_action(match, PhotoPick).message_id))

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_pick(interaction, self.message_id, self.item.values[0]))


class Restyle(discord.ui.DynamicItem[discord.ui.Select[Any]], template=_template(RestylePick)):
    """Style ▾: a new style for the original selfie behind a result (the result message is replied to)."""

    def __init__(self, node_id: int, message_id: int) -> None:
        super().__init__(discord.ui.Select(custom_id=custom_id(RestylePick(node_id, str(message_id))),
                                           options=_style_options(), placeholder=texts.PICK_A_STYLE))
        self.node_id = node_id
        self.message_id = message_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> Restyle:
        pick = _action(match, RestylePick)
        return cls(pick.node_id, int(pick.message_id))

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_restyle(interaction, self.node_id, self.message_id,
                                                              self.item.values[0]))


class StepSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=_template(StepPick)):
    """The menu under a /history gallery: the chosen step comes out as a result of its own."""

    def __init__(self, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id=custom_id(StepPick()), placeholder=texts.DISCORD_HISTORY_PICK,
                                           options=options or [discord.SelectOption(label="step")]))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> StepSelect:
        return cls()

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        value = self.item.values[0] if self.item.values else ""
        await adapter.guarded(interaction, adapter.on_step(interaction, int(value) if value.isdigit() else 0))


class VariantSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=_template(VariantMenu)):
    """The menu under pictures made together (variants, a style pack): the chosen one comes out as a result of
    its own, with its buttons, to continue from (a reply to a message of several pictures means its last)."""

    def __init__(self, options: list[discord.SelectOption] | None = None) -> None:
        super().__init__(discord.ui.Select(custom_id=custom_id(VariantMenu()), placeholder=texts.VARIANTS_PLACEHOLDER,
                                           options=options or [discord.SelectOption(label="1")]))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> VariantSelect:
        return cls()

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        value = self.item.values[0] if self.item.values else ""
        await adapter.guarded(interaction, adapter.on_variant(interaction, int(value) if value.isdigit() else 0))


class PressButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                  template=re.escape(PRESS_PREFIX) + r"(?P<action>.+)"):
    """A button from `Messenger.send_buttons`; its action (already a core string) goes back to `Studio.press`."""

    def __init__(self, label: str, action: str) -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=f"{PRESS_PREFIX}{action}"[:100]))
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> PressButton:
        return cls(getattr(item, "label", None) or "", match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter = _adapter(interaction)
        await adapter.guarded(interaction, adapter.on_press(interaction, self.action))


DYNAMIC_ITEMS = (NodeButton, PickStyle, Restyle, PressButton, ExportButton, SettingSelect, StepSelect, VariantSelect)


def edit_prompt_of(custom: str) -> EditPrompt | None:
    """The edit dialog a modal submission answers, if it is ours."""
    action = parse(custom.removeprefix(PREFIX)) if custom.startswith(PREFIX) else None
    return action if isinstance(action, EditPrompt) else None


def components_view() -> discord.ui.View:
    """A view used only to lay out components. It is stopped at once, so discord.py keeps no copy per
    message: every press is routed by its custom_id through the dynamic items, the same before and
    after a restart."""
    view = discord.ui.View(timeout=None)
    view.stop()
    return view


def press_view(buttons: list[Button]) -> discord.ui.View:
    view = components_view()
    for button in buttons:
        view.add_item(PressButton(button.label, button.action))
    return view


def result_view(node_id: int) -> discord.ui.View:
    view = components_view()
    for verb in NODE_VERBS:
        view.add_item(NodeButton(verb, node_id))
    for label, kind in texts.export_buttons():
        view.add_item(ExportButton(kind, node_id, label))
    return view


def edit_modal(node_id: int) -> discord.ui.Modal:
    modal = discord.ui.Modal(title=texts.EDIT_PROMPT_TITLE, custom_id=custom_id(EditPrompt(node_id)),
                             timeout=PREVIEW_TIMEOUT_S)
    modal.add_item(discord.ui.TextInput(label=texts.EDIT_PROMPT_LABEL, custom_id=EDIT_FIELD,
                                        placeholder=texts.EDIT_PROMPT_PLACEHOLDER, max_length=1000))
    return modal

