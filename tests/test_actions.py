"""The button vocabulary: every action survives encode -> parse, and tampered strings are refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.actions import (
    Action,
    ChatPhotoPress,
    EditPrompt,
    ExportPress,
    ForgetPress,
    LanguagePress,
    NodePress,
    Outcome,
    PartyPress,
    PhotoPick,
    RestylePick,
    SettingMenu,
    SettingPress,
    StepPick,
    StyleChoice,
    VariantMenu,
    VariantPick,
    encode,
    parse,
    pattern,
)

ids = st.text(alphabet="0123456789abcdef-", min_size=1, max_size=20)
actions = st.one_of(
    st.builds(PartyPress, st.sampled_from(["join", "leave", "start", "cancel", "reuse"]),
              st.integers(0, 10**9), st.one_of(st.just(""), ids)),
    st.builds(SettingPress, st.sampled_from(["menu", "model", "ratio", "size", "delivery"]),
              st.sampled_from(["main", "16:9", "2K", "gemini-nano-banana-2.1", "auto", "file"])),
    st.builds(LanguagePress, st.sampled_from(["en", "es", "ru", "auto"])),
    st.builds(ExportPress, st.sampled_from(["sticker", "profile", "original"]), st.integers(0, 10**9)),
    st.builds(ForgetPress, st.booleans(), ids),
    st.builds(NodePress, st.sampled_from(["edit", "undo", "again", "styles"]), st.integers(0, 10**9)),
    st.builds(RestylePick, st.integers(0, 10**9), st.integers(0, 10**19).map(str)),
    st.builds(PhotoPick, st.integers(0, 10**19).map(str)),
    st.builds(StyleChoice, st.sampled_from(["zombie", "comic", "popart"])),
    st.just(StepPick()),
    st.builds(SettingMenu, st.sampled_from(["model", "ratio", "size", "delivery"])),
    st.builds(EditPrompt, st.integers(0, 10**9)),
    st.builds(VariantPick, st.integers(0, 10**9)),
    st.just(VariantMenu()),
    st.builds(ChatPhotoPress, st.integers(0, 10**9)),
)
KINDS = [PartyPress, SettingPress, LanguagePress, ExportPress, ForgetPress, NodePress, RestylePick, PhotoPick,
         StyleChoice, StepPick, SettingMenu, EditPrompt, VariantPick, VariantMenu, ChatPhotoPress]


@given(actions)
def test_every_action_comes_back_as_itself(action: Action) -> None:
    assert parse(encode(action)) == action


def test_button_strings_fit_telegram_and_keep_their_old_shape() -> None:
    # Buttons already posted in chats carry these strings: they must keep meaning the same thing.
    assert parse("party:reuse:7:1001") == PartyPress("reuse", 7, "1001")
    assert parse("set:ratio:16:9") == SettingPress("ratio", "16:9")
    assert parse("export:sticker:42") == ExportPress("sticker", 42)
    assert parse("forget:no:55") == ForgetPress(False, "55")
    assert len(encode(PartyPress("reuse", 10**9, "1" * 20)).encode()) <= 64


@given(actions)
def test_each_kinds_pattern_matches_its_own_strings_and_no_other_kinds(action: Action) -> None:
    matching = [kind for kind in KINDS if re.fullmatch(pattern(kind), encode(action))]
    assert matching == [type(action)]


def test_discords_component_ids_keep_their_old_shape() -> None:
    # Discord components carry `pixme:` + these strings on messages already posted.
    assert parse("again:12") == NodePress("again", 12) and parse("styles:3") == NodePress("styles", 3)
    assert parse("restyle:12:1200000000000000000") == RestylePick(12, "1200000000000000000")
    assert parse("pick:99") == PhotoPick("99")
    assert parse("step") == StepPick()
    assert parse("setting:ratio") == SettingMenu("ratio")
    assert parse("editmodal:7") == EditPrompt(7)
    assert parse("style:zombie") == StyleChoice("zombie")  # Telegram's style menu under a photo


@pytest.mark.parametrize("forged", ["", "party", "party:dance:1", "party:join:x", "export:sticker:",
                                    "export::4", "forget:maybe:1", "forget:yes:", "lang:", "set:", "nope:1",
                                    "again:", "again:x", "undo:1:2", "restyle:1", "restyle:a:2", "pick:",
                                    "steps", "step:1", "setting:", "editmodal:x", "style:"])
def test_forged_or_unknown_strings_are_not_actions(forged: str) -> None:
    assert parse(forged) is None


def test_outcomes_say_how_to_show_them() -> None:
    assert Outcome.refused("no").alert and Outcome.refused("no").kind == "refused"
    assert not Outcome.ok("yes").alert and Outcome.settled("done").kind == "settled"
