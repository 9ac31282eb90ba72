"""Choose and build the configured image engine."""

from __future__ import annotations

from core.config import Settings
from core.engines.base import ImageEngine


def build_engine(settings: Settings, name: str | None = None) -> ImageEngine:
    """The engine `name` ("gemini"/"offline"), or the one the settings imply."""
    chosen = name or settings.engine_name
    if chosen == "gemini":
        key = settings.gemini.api_key.get_secret_value()
        if not key:
            raise ValueError("the Gemini engine needs an API key: set GEMINI_API_KEY or [gemini] api_key")
        from core.engines.gemini import GeminiEngine

        return GeminiEngine(api_key=key, model=settings.gemini.model, base_url=settings.gemini.base_url,
                            request_timeout_s=settings.gemini.request_timeout_s,
                            retry_budget_s=settings.gemini.retry_budget_s)
    from core.engines.offline import OfflineEngine

    return OfflineEngine()
