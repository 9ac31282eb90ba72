"""One TLS context for the whole process.

Loading Mozilla's CA bundle (certifi, as httpx and google-genai use; a slim container's system store may be
missing) costs ~35 ms of CPU, and each Bot API session and each google-genai client would otherwise load it
again (the SDK loads it three times per client: httpx, aiohttp and websockets). A context only verifies, so one
serves them all.
"""

from __future__ import annotations

import functools
import ssl

import certifi


@functools.cache
def client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())
