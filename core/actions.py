"""The button vocabulary and what a press comes back as, the same on every platform.

A button carries a typed action, written as a short string (`party:join:7`, `set:ratio:16:9`,
`export:sticker:42`) by `encode` and read back by `parse`; this module is the only place that knows
those strings. A press answers with an `Outcome`: the sentence for the presser plus what kind of answer
it is, so a front-end decides how to show it (a toast or an alert, whether the buttons stay) from the
kind, never by comparing sentences.
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

    key: str  # "menu", "model", "ratio", "size", "delivery"
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


Action = PartyPress | SettingPress | LanguagePress | ExportPress | ForgetPress


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
    return None
