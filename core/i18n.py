"""The language the bot speaks to the person it is answering, and the catalogs behind it.

Every user-facing sentence goes through `_` / `ngettext` here. The language is a context variable,
set once per request (from the platform's language, or the person's `/language` choice) and once
per job (the language the request came in), so code in between never passes it around: a task
inherits it, and two people answered at once each get their own.

Catalogs are gettext `.po` files in `core/locale/<lang>/LC_MESSAGES/pixme.po`, made from
`core/locale/pixme.pot` (`python -m core.i18n extract`, then `update`). They are read with Babel at
first use and compiled in memory, so there is no build step and no binary file to keep in step.
Prompts to the model stay in English; only what people read is translated.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gettext as _gettext
import io
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from babel import Locale, UnknownLocaleError, negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "pixme"
LOCALE_DIR = Path(__file__).with_name("locale")
DEFAULT = "en"
# The languages with a catalog, and how each is called in itself (for /language).
LANGUAGES: dict[str, str] = {"en": "English", "es": "Español", "ru": "Русский"}

_current: contextvars.ContextVar[str] = contextvars.ContextVar("pixme_language", default=DEFAULT)


@functools.lru_cache(maxsize=1024)  # asked on every update and for every Discord locale of every command
def negotiate(tag: str | None) -> str | None:
    """The supported language for a platform's tag (`es-419`, `pt_BR`, `ru`, `EN-us`), or None."""
    if not tag:
        return None
    cleaned = tag.strip().replace("_", "-").lower()
    if cleaned in LANGUAGES:
        return cleaned
    found = negotiate_locale([cleaned], list(LANGUAGES), sep="-")
    if found:
        return found
    primary = cleaned.split("-", 1)[0]
    return primary if primary in LANGUAGES else None


def language_named(text: str) -> str | None:
    """`/language es`, `/language Spanish`, `/language español` -> "es"; None when unknown."""
    wanted = text.strip().casefold()
    if not wanted:
        return None
    code = negotiate(wanted)
    if code:
        return code
    for code in LANGUAGES:
        names = {LANGUAGES[code].casefold()}
        try:
            for other in LANGUAGES:  # each language's name in every language we speak
                names.add((Locale.parse(code).get_display_name(other) or code).casefold())
        except (UnknownLocaleError, ValueError):
            pass
        if wanted in names:
            return code
    return None


def current() -> str:
    return _current.get()


def set_language(code: str | None) -> str:
    """Speak `code` (any platform tag) for the rest of this task; unknown or None keeps English."""
    chosen = negotiate(code) or DEFAULT
    _current.set(chosen)
    return chosen


@contextlib.contextmanager
def speaking(code: str | None) -> Iterator[str]:
    """Speak `code` inside the block only."""
    token = _current.set(negotiate(code) or DEFAULT)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


@cache
def translations(code: str) -> _gettext.NullTranslations:
    """The compiled catalog of `code` (English and unknown codes: the source strings themselves)."""
    path = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    if code == DEFAULT or not path.exists():
        return _gettext.NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=code)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def _(message: str) -> str:
    """`message` in the current language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form for `n` in the current language (Russian has three)."""
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a string for the catalog where it is defined; it is translated where it is shown."""
    return message


def _main(argv: list[str]) -> int:
    """`python -m core.i18n extract|update|check`: keep the catalogs in step with the code."""
    from babel.messages.frontend import main as pybabel

    root = Path(__file__).resolve().parent.parent
    pot = str(LOCALE_DIR / f"{DOMAIN}.pot")
    command = argv[0] if argv else "help"
    LOCALE_DIR.mkdir(exist_ok=True)
    if command == "extract":
        sys.argv = ["pybabel", "-q", "extract", "-F", str(root / "babel.cfg"), "-o", pot, "--no-location",
                    "--sort-output", "--project", "Pix Me!", "-k", "N_", "-c", "TRANSLATORS:",
                    str(root / "core"), str(root / "bots")]
    elif command == "update":
        sys.argv = ["pybabel", "-q", "update", "-i", pot, "-d", str(LOCALE_DIR), "-D", DOMAIN, "--no-wrap",
                    "--ignore-obsolete"]
    else:
        print("usage: python -m core.i18n extract|update", file=sys.stderr)
        return 2
    pybabel()  # type: ignore[no-untyped-call]  # Babel's CLI entry point has no annotations
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
