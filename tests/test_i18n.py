"""The translations: catalogs in step with the code, complete, safe to format, and actually spoken.

A developer who adds or changes a sentence without running `python -m core.i18n extract` and
`python -m core.i18n update` (and translating the new entries) gets a failing test here that lists
the sentences concerned.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from core import i18n, styles, texts

ROOT = Path(__file__).resolve().parent.parent
POT = i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot"
TRANSLATED = [code for code in i18n.LANGUAGES if code != i18n.DEFAULT]
NPLURALS = {"es": 2, "ru": 3}
HOW_TO_FIX = "run `python -m core.i18n extract && python -m core.i18n update`, then translate the new entries"


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def _po(code: str) -> Path:
    return i18n.LOCALE_DIR / code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def _ids(catalog: Catalog) -> set[str | tuple[str, ...]]:
    return {message.id for message in catalog if message.id}


def _messages(code: str) -> list[Message]:
    return [message for message in _read(_po(code), code) if message.id]


def _fields(text: str) -> set[str]:
    """The `{names}` that str.format fills in (raises ValueError on an unbalanced brace)."""
    return {name for _literal, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


def _short(ids: set[str | tuple[str, ...]]) -> str:
    return "\n".join(f"  {(m[0] if isinstance(m, tuple) else m)[:100]!r}" for m in sorted(ids, key=str))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """What `python -m core.i18n extract` would write today, from the code as it is."""
    out = tmp_path_factory.mktemp("i18n") / "extracted.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-o", str(out),
                                "--no-location", "-k", "N_", "-c", "TRANSLATORS:",
                                str(ROOT / "core"), str(ROOT / "bots")])
    return _read(out)


# -- (1) the catalogs are in step with the code -------------------------------------------------------

def test_extraction_finds_the_sentences(extracted: Catalog) -> None:
    ids = _ids(extracted)
    assert len(ids) > 100
    assert texts._SOURCE["PICK_STYLE"] in ids
    assert ("Cancelled {count} request.", "Cancelled {count} requests.") in ids


@pytest.mark.parametrize("path", [POT, *(_po(code) for code in TRANSLATED)], ids=lambda p: p.parent.parent.name
                         if p.suffix == ".po" else "pot")
def test_catalog_in_step_with_code(extracted: Catalog, path: Path) -> None:
    in_code, in_catalog = _ids(extracted), _ids(_read(path))
    missing, stale = in_code - in_catalog, in_catalog - in_code
    problems = []
    if missing:
        problems.append(f"{len(missing)} sentence(s) in the code but not in {path.name}:\n{_short(missing)}")
    if stale:
        problems.append(f"{len(stale)} sentence(s) in {path.name} no longer in the code:\n{_short(stale)}")
    assert not problems, f"{path} is out of step ({HOW_TO_FIX}):\n" + "\n".join(problems)


def test_no_translation_calls_inside_f_strings() -> None:
    """Babel (on Python 3.11) does not look inside f-strings: `f"{_('edit')}"` never reaches the catalog,
    so it stays English for everyone. Translate into a variable first, then put that in the f-string."""
    found = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "bots").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            for inner in ast.walk(node):
                if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                        and inner.func.id in {"_", "N_", "ngettext"} and inner.args
                        and isinstance(inner.args[0], ast.Constant)):  # a variable is marked where it is defined
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {ast.unparse(inner)}")
    assert not found, "translated calls inside f-strings (not extracted):\n" + "\n".join(found)


# -- (2) every message is translated, not fuzzy, and keeps its placeholders ----------------------------

@pytest.mark.parametrize("code", TRANSLATED)
def test_header(code: str) -> None:
    catalog = _read(_po(code), code)
    assert not catalog.fuzzy, f"{code}: the header is marked fuzzy"
    assert catalog.num_plurals == NPLURALS[code]
    assert str(catalog.locale) == code


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_message_translated_and_not_fuzzy(code: str) -> None:
    untranslated, fuzzy = [], []
    for message in _messages(code):
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if not forms or not all(form and form.strip() for form in forms):
            untranslated.append(message.id)
        if message.fuzzy:
            fuzzy.append(message.id)  # fuzzy entries are left out at runtime: people would read English
        if isinstance(message.id, tuple):
            assert len(forms) == NPLURALS[code], f"{code}: {message.id[0]!r} needs {NPLURALS[code]} plural forms"
    assert not untranslated, f"{code}: untranslated:\n{_short(set(untranslated))}"
    assert not fuzzy, f"{code}: fuzzy (check the translation, then remove the flag):\n{_short(set(fuzzy))}"


@pytest.mark.parametrize("code", TRANSLATED)
def test_placeholders_kept(code: str) -> None:
    wrong = []
    for message in _messages(code):
        if isinstance(message.id, tuple):
            singular, plural = (_fields(part) for part in message.id)
            # the first form may leave out what the English singular leaves out ("Your last picture here:")
            wanted = [singular] + [plural] * (len(message.string) - 1)
            allowed = singular | plural
            forms = list(message.string)
        else:
            wanted, allowed, forms = [_fields(message.id)], _fields(message.id), [message.string]
        for index, (form, needed) in enumerate(zip(forms, wanted, strict=True)):
            try:
                found = _fields(form)
            except ValueError as error:
                wrong.append(f"{message.id!r} form {index}: {error}")
                continue
            if not needed <= found or not found <= allowed:
                wrong.append(f"{message.id!r} form {index}: has {sorted(found)}, needs {sorted(needed)}")
            elif found:
                form.format(**dict.fromkeys(found, "x"))
    assert not wrong, f"{code}: placeholders differ from the English:\n" + "\n".join(wrong)


@pytest.mark.parametrize("code", TRANSLATED)
def test_catalog_compiles(code: str) -> None:
    i18n.translations.cache_clear()
    try:
        compiled = i18n.translations(code)
        assert compiled.gettext(texts._SOURCE["PICK_STYLE"]) != texts._SOURCE["PICK_STYLE"]
    finally:
        i18n.translations.cache_clear()


# -- (3) what a person notices --------------------------------------------------------------------------

def test_spanish_is_spoken() -> None:
    english_pick, english_one, english_five = texts.PICK_STYLE, texts.cancelled(1), texts.cancelled(5)
    english_list = texts.styles_list()
    with i18n.speaking("es") as code:
        assert code == "es"
        pick, listing, one, five = texts.PICK_STYLE, texts.styles_list(), texts.cancelled(1), texts.cancelled(5)
        names = {style.id: style.name for style in styles.STYLES}
        blurbs = {style.id: style.blurb for style in styles.STYLES}
    assert i18n.current() == i18n.DEFAULT
    assert pick != english_pick and "estilo" in pick
    assert listing != english_list and listing.startswith("Estilos:")
    for style in styles.STYLES:
        assert f"{style.emoji} /{style.id} — {blurbs[style.id]}" in listing  # the command itself stays /zombie
        assert blurbs[style.id] != style.description
        assert names[style.id] and len(names[style.id]) <= 25
    for style_id in ("zombie", "comic", "sketch", "watercolor", "noir"):
        assert names[style_id] != styles.get_style(style_id).title
    assert one != english_one and five != english_five and one != five
    assert "1" in one and "5" in five


@pytest.mark.parametrize(("n", "word"), [(1, "запрос"), (3, "запроса"), (5, "запросов"), (21, "запрос"),
                                         (11, "запросов"), (12, "запросов"), (22, "запроса"), (111, "запросов")])
def test_russian_plural_forms(n: int, word: str) -> None:
    with i18n.speaking("ru"):
        text = texts.cancelled(n)
    assert str(n) in text
    assert re.search(rf"(?<!\w){word}(?!\w)", text), text


def test_russian_has_three_distinct_forms() -> None:
    with i18n.speaking("ru-RU"):
        one, three, five, twenty_one = (texts.cancelled(n) for n in (1, 3, 5, 21))
    shape = [re.sub(r"\d+", "N", text) for text in (one, three, five, twenty_one)]
    assert len({shape[0], shape[1], shape[2]}) == 3
    assert shape[0] == shape[3]
    for message in _messages("ru"):
        if isinstance(message.id, tuple):
            assert len(set(message.string)) == 3, f"ru: plural forms of {message.id[0]!r} are not all different"


@pytest.mark.parametrize(("tag", "expected"), [
    ("es-419", "es"), ("es_ES", "es"), ("ES", "es"), ("es", "es"), ("ru-RU", "ru"), ("ru", "ru"),
    ("pt-BR", None), ("en-GB", "en"), ("EN-us", "en"), ("de", None), ("", None), (None, None),
])
def test_negotiate(tag: str | None, expected: str | None) -> None:
    assert i18n.negotiate(tag) == expected


def test_unknown_language_falls_back_to_english() -> None:
    with i18n.speaking("de") as code:
        assert code == "en"
        assert texts.PICK_STYLE == texts._SOURCE["PICK_STYLE"]
        assert texts.cancelled(2) == "Cancelled 2 requests."
        assert texts.styles_list().startswith("Styles:")


def test_languages_do_not_leak_between_blocks() -> None:
    with i18n.speaking("ru"):
        russian = texts.PICK_STYLE
        with i18n.speaking("es"):
            spanish = texts.PICK_STYLE
        assert texts.PICK_STYLE == russian
    assert len({russian, spanish, texts.PICK_STYLE}) == 3
