"""Logging set-up that never writes a secret: the Telegram token sits inside every file URL."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

# Loggers that put what people wrote into their DEBUG lines: aiosqlite every statement with its parameters
# (party themes, personas, instructions), python-telegram-bot whole updates and every Bot API call's
# parameters and answer, discord.py request and response bodies, google-genai error bodies. They stay
# at INFO with -v too; our own DEBUG lines say what happened, not what anyone said.
CONTENT_LOGGERS = ("aiosqlite", "telegram.ext.ExtBot", "telegram.ext.Application", "discord.http",
                   "google_genai")

# A Bot API token anywhere in a URL or message, even one we were not told about.
_TOKEN_RE = re.compile(r"\d{5,}(?::|%3A|%3a)[A-Za-z0-9_-]{20,}")  # also URL-encoded (httpx quotes it)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with every known secret (and token-shaped text) masked."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # URL-encoded forms too: file download URLs carry the token with its colon as %3A.
        variants = {v for s in secrets if len(s) >= 6 for v in (s, quote(s, safe=""))}
        self._secrets = sorted(variants, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_RE.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and exception when there is one.
    It formats what the handler's RedactingFilter left, so secrets are masked exactly as in text logs."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(secrets: list[str], *, level: int = logging.INFO,
                      fmt: Literal["text", "json"] = "text") -> RedactingFilter:
    """Log to stderr through the redacting filter, as text lines or JSON lines; quiet the HTTP clients that log
    full URLs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):  # configuring twice replaces our handler, not anyone else's
        if any(isinstance(f, RedactingFilter) for f in old.filters):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "aiohttp.access", "discord.gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for talkative in CONTENT_LOGGERS:
        logging.getLogger(talkative).setLevel(max(level, logging.INFO))
    return redactor
