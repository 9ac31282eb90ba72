"""The button vocabulary and what a press comes back as, the same on every platform.

A button (or a select menu, or a dialog) carries a typed action, written as a short string
(`party:join:7`, `set:ratio:16:9`, `export:sticker:42`, `again:12`) by `encode` and read back by `parse`;
this module is the only place that knows those strings. Front-ends may wrap them in a fixed prefix of
their own (Discord's `pixme:`, Telegram's `do:`); `pattern` gives the regular expression for one kind,
for routers that match ids by pattern (Discord's dynamic components). The strings are stored on
messages already sent, so an existing one never changes meaning.

A press answers with an `Outcome`: the sentence for the presser plus what kind of answer it is, so a
front-end decides how to show it (a toast or an alert, whether the buttons stay) from the kind, never by
comparing sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutcomeKind = Literal["ok", "refused", "settled"]


@dataclass(frozen=True)
class Outcome:
    """What a press or a choice did.

    `ok`: done, or good news. `refused`: not allowed or not possible now; the buttons stay for whoever may
    use them. `settled`: the question behind the buttons is answered or gone; take its buttons away.
    `alert`: show it so the presser cannot miss it (a refusal, bad news), not as a passing toast."""

    text: str
    kind: OutcomeKind = "ok"
    alert: bool = False

    @staticmethod
    def ok(text: str) -> Outcome:
        return Outcome(text, "ok")

    @staticmethod
    def refused(text: str, *, alert: bool = True) -> Outcome:
        return Outcome(text, "refused", alert)

    @staticmethod
    def settled(text: str, *, alert: bool = False) -> Outcome:
        return Outcome(text, "settled", alert)


PartyVerb = Literal["join", "leave", "start", "cancel", "reuse"]
_PARTY_VERBS: tuple[PartyVerb, ...] = ("join", "leave", "start", "cancel", "reuse")


@dataclass(frozen=True)
class PartyPress:
    """A lobby button; `owner` is set on a personal one (reuse: only that person may press it)."""

    verb: PartyVerb
    party_id: int
    owner: str = ""


@dataclass(frozen=True)
class SettingPress:
    """A settings keyboard button: open a menu (`menu`, value = its name) or choose a value in one."""

    key: str  # "menu", "model", "ratio", "size", "delivery", "variants"
    value: str


@dataclass(frozen=True)
class LanguagePress:
    code: str


@dataclass(frozen=True)
class ExportPress:
    kind: str  # "sticker", "profile", "original"
    node_id: int


@dataclass(frozen=True)
class ForgetPress:
    """The answer to "delete everything about me?"; only `owner` may give it."""

    confirmed: bool
    owner: str


NodeVerb = Literal["edit", "undo", "again", "styles"]
NODE_VERBS: tuple[NodeVerb, ...] = ("edit", "undo", "again", "styles")


@dataclass(frozen=True)
class NodePress:
    """A button under a result: edit it, undo it, make it again, or open the style menu for its selfie."""

    verb: NodeVerb
    node_id: int


@dataclass(frozen=True)
class RestylePick:
    """The style menu opened from a result's Style button; the chosen style comes with the choice."""

    node_id: int
    message_id: str  # the result's message, which the new picture replies to


@dataclass(frozen=True)
class PhotoPick:
    """A style menu for the photo in `message_id`; the chosen style comes with the choice."""

    message_id: str


@dataclass(frozen=True)
class StyleChoice:
    """A style button under a photo (the menu replies to the photo it styles)."""

    style_id: str


@dataclass(frozen=True)
class StepPick:
    """The menu of steps under a history gallery; the chosen step (a node id) comes with the choice."""


@dataclass(frozen=True)
class SettingMenu:
    """One setting as a menu of its values (`key`: model, ratio, size, delivery, variants); the value comes with
    the choice."""

    key: str


@dataclass(frozen=True)
class EditPrompt:
    """The dialog asking what to change in a result; the instruction comes with the answer."""

    node_id: int


@dataclass(frozen=True)
class VariantPick:
    """One of the pictures made together (variants, a style pack), chosen to continue from: it comes out as a
    result of its own, with that result's buttons."""

    node_id: int


@dataclass(frozen=True)
class ChatPhotoPress:
    """"Set as group photo" under a group picture: the chat's admins make it the chat's photo."""

    node_id: int


@dataclass(frozen=True)
class VariantMenu:
    """The menu under pictures made together (Discord's select); the chosen picture (a node id) comes with the
    choice."""


Action = (PartyPress | SettingPress | LanguagePress | ExportPress | ForgetPress | NodePress | RestylePick
          | PhotoPick | StyleChoice | StepPick | SettingMenu | EditPrompt | VariantPick | VariantMenu
          | ChatPhotoPress)


def encode(action: Action) -> str:
    """The short string a button carries for `action`."""
    match action:
        case PartyPress(verb, party_id, owner):
            return f"party:{verb}:{party_id}" + (f":{owner}" if owner else "")
        case SettingPress(key, value):
            return f"set:{key}:{value}"
        case LanguagePress(code):
            return f"lang:{code}"
        case ExportPress(kind, node_id):
            return f"export:{kind}:{node_id}"
        case ForgetPress(confirmed, owner):
            return f"forget:{'yes' if confirmed else 'no'}:{owner}"
        case NodePress(verb, node_id):
            return f"{verb}:{node_id}"
        case RestylePick(node_id, message_id):
            return f"restyle:{node_id}:{message_id}"
        case PhotoPick(message_id):
            return f"pick:{message_id}"
        case StyleChoice(style_id):
            return f"style:{style_id}"
        case StepPick():
            return "step"
        case SettingMenu(key):
            return f"setting:{key}"
        case EditPrompt(node_id):
            return f"editmodal:{node_id}"
        case VariantPick(node_id):
            return f"variant:{node_id}"
        case VariantMenu():
            return "variants"
        case ChatPhotoPress(node_id):
            return f"chatphoto:{node_id}"
    raise TypeError(f"not an action: {action!r}")  # pragma: no cover - the union is closed


def parse(data: str) -> Action | None:
    """The action a button's string stands for, or None when it is not one of ours (or was tampered with)."""
    verb, _, rest = data.partition(":")
    if verb == "party":
        what, _, rest = rest.partition(":")
        party_id, _, owner = rest.partition(":")
        party_verb = next((v for v in _PARTY_VERBS if v == what), None)
        if party_verb is None or not party_id.isdigit():
            return None
        return PartyPress(party_verb, int(party_id), owner)
    if verb == "set":
        key, sep, value = rest.partition(":")
        return SettingPress(key, value) if sep and key else None
    if verb == "lang":
        return LanguagePress(rest) if rest else None
    if verb == "export":
        kind, _, node_id = rest.partition(":")
        return ExportPress(kind, int(node_id)) if kind and node_id.isdigit() else None
    if verb == "forget":
        answer, _, owner = rest.partition(":")
        return ForgetPress(answer == "yes", owner) if answer in ("yes", "no") and owner else None
    node_verb = next((v for v in NODE_VERBS if v == verb), None)
    if node_verb is not None:
        return NodePress(node_verb, int(rest)) if rest.isdigit() else None
    if verb == "restyle":
        node_id, _, message_id = rest.partition(":")
        return RestylePick(int(node_id), message_id) if node_id.isdigit() and message_id.isdigit() else None
    if verb == "pick":
        return PhotoPick(rest) if rest.isdigit() else None
    if verb == "style":
        return StyleChoice(rest) if rest else None
    if verb == "step":
        return StepPick() if data == "step" else None
    if verb == "setting":
        return SettingMenu(rest) if rest.isalpha() else None
    if verb == "editmodal":
        return EditPrompt(int(rest)) if rest.isdigit() else None
    if verb == "variant":
        return VariantPick(int(rest)) if rest.isdigit() else None
    if verb == "variants":
        return VariantMenu() if data == "variants" else None
    if verb == "chatphoto":
        return ChatPhotoPress(int(rest)) if rest.isdigit() else None
    return None


_PATTERNS: dict[type, str] = {
    PartyPress: r"party:(?:join|leave|start|cancel|reuse):\d+(?::[^:]*)?",
    SettingPress: r"set:[a-z]+:.*",
    LanguagePress: r"lang:.+",
    ExportPress: r"export:[a-z]+:\d+",
    ForgetPress: r"forget:(?:yes|no):.+",
    NodePress: r"(?:edit|undo|again|styles):\d+",
    RestylePick: r"restyle:\d+:\d+",
    PhotoPick: r"pick:\d+",
    StyleChoice: r"style:.+",
    StepPick: r"step",
    SettingMenu: r"setting:[a-z]+",
    EditPrompt: r"editmodal:\d+",
    VariantPick: r"variant:\d+",
    VariantMenu: r"variants",
    ChatPhotoPress: r"chatphoto:\d+",
}


def pattern(kind: type) -> str:
    """A regular expression that fully matches what `encode` makes of actions of `kind`, and nothing of any
    other kind's (so routers matching by pattern never match one id twice)."""
    return _PATTERNS[kind]
