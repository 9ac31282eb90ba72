"""Property-based tests for what people type: style names and bot commands."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from core.styles import ALIASES, STYLES, get_style

STYLE_IDS = [s.id for s in STYLES]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(st.sampled_from(STYLE_IDS), st.sampled_from(["", "/"]), st.booleans(), st.booleans())
def test_every_style_is_found_however_it_is_typed(style_id: str, slash: str, upper: bool, spaces: bool) -> None:
    typed = slash + (style_id.upper() if upper else style_id)
    if spaces:
        typed = f"  {typed}\t"
    found = get_style(typed)
    assert found is not None and found.id == style_id


@given(st.sampled_from(sorted(ALIASES)))
def test_aliases_lead_to_real_styles(alias: str) -> None:
    found = get_style(alias.replace("_", "-"))
    assert found is not None and found.id == ALIASES[alias]


@given(TEXT)
def test_any_text_either_names_a_style_or_none_and_never_raises(text: str) -> None:
    found = get_style(text)
    assert found is None or found.id in STYLE_IDS


USERNAMES = st.text(alphabet=string.ascii_letters + string.digits + "_", min_size=5, max_size=32)


def _parse():  # type: ignore[no-untyped-def]
    from bots.telegram.bot import parse_command

    return parse_command


@given(st.sampled_from(STYLE_IDS), USERNAMES, st.sampled_from(["", " add a crown", "   extra   words "]),
       st.booleans())
def test_commands_addressed_to_this_bot_parse(style_id: str, bot: str, rest: str, mention: bool) -> None:
    text = f"/{style_id}{'@' + bot if mention else ''}{rest}"
    parsed = _parse()(text, bot)
    assert parsed is not None and parsed.name == style_id and parsed.rest == rest.strip()


@given(st.sampled_from(STYLE_IDS), USERNAMES, USERNAMES)
def test_commands_for_another_bot_are_ignored(style_id: str, bot: str, other: str) -> None:
    parsed = _parse()(f"/{style_id}@{other}", bot)
    if other.lower() == bot.lower():
        assert parsed is not None
    else:
        assert parsed is None


@given(TEXT, USERNAMES)
def test_arbitrary_captions_never_raise(text: str, bot: str) -> None:
    parsed = _parse()(text, bot)
    if not text.startswith("/"):
        assert parsed is None
    elif parsed is not None:
        assert parsed.name == parsed.name.lower() and parsed.name.strip() == parsed.name
        assert not any(ch.isspace() for ch in parsed.name)


@given(st.sampled_from(STYLE_IDS), st.sampled_from(["\n", "\t", "\u00a0", " \n "]), st.text(min_size=1, max_size=40))
def test_a_command_on_its_own_line_still_parses(style_id: str, gap: str, rest: str) -> None:
    parsed = _parse()(f"/{style_id}{gap}{rest}", "PixMeBot")
    assert parsed is not None and parsed.name == style_id and parsed.rest == rest.strip()
