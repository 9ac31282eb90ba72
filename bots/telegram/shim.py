"""The one place that touches python-telegram-bot beyond its documented API.

`BaseRequest.do_request` (the documented way to bring one's own HTTP) receives its timeouts as
`ODVInput[float]`: a number, None, or PTB's `DEFAULT_NONE` sentinel (a `DefaultValue`) meaning "use the
request object's own". Both types live in the private `telegram._utils` package; an implementation
needs them to tell the sentinel apart and to declare the same signature as the method it overrides.

python-telegram-bot is pinned in pyproject.toml (`>=22.5,<23`); tests/test_telegram_shim.py pins these
behaviours, so an upgrade that moves them fails a test instead of the bot.
"""

from __future__ import annotations

from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput

Timeout = ODVInput[float]
"""A timeout as `BaseRequest.do_request` receives it: seconds, None (no limit), or PTB's default marker."""


def timeout_or(given: Timeout, own: float | None) -> float | None:
    """The timeout to use: what the caller gave, or `own` where PTB passed its default marker."""
    return own if isinstance(given, DefaultValue) else given
