"""Pins the python-telegram-bot behaviour bots/telegram/shim.py relies on (beyond its documented API)."""

from __future__ import annotations

import inspect

from telegram.request import BaseRequest

from bots.telegram import shim


def test_ptbs_default_marker_means_the_requests_own_timeout() -> None:
    assert shim.timeout_or(BaseRequest.DEFAULT_NONE, 5.0) == 5.0
    assert shim.timeout_or(BaseRequest.DEFAULT_NONE, None) is None


def test_a_given_timeout_wins_and_none_means_no_limit() -> None:
    assert shim.timeout_or(2.5, 5.0) == 2.5
    assert shim.timeout_or(None, 5.0) is None


def test_do_request_receives_its_timeouts_with_the_default_marker() -> None:
    """The signature AiohttpRequest.do_request overrides: every timeout defaults to PTB's marker."""
    parameters = inspect.signature(BaseRequest.do_request).parameters
    for name in ("read_timeout", "write_timeout", "connect_timeout", "pool_timeout"):
        assert parameters[name].default is BaseRequest.DEFAULT_NONE, name
        assert shim.timeout_or(parameters[name].default, 1.0) == 1.0
