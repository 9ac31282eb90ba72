"""What each image model can take and give, what one picture costs, and whether Google still serves it.

The facts live in `models.toml` beside this module, so adding or retiring a model is a data change.
An unknown model gets the file's `[defaults]`: the tightest limits and a dear price, so estimates err high.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any, cast

from core.engines.base import ModelInfo, ModelStatus

_STATUSES = ("current", "deprecated", "shut_down")


def _entry(raw: dict[str, Any], defaults: dict[str, Any]) -> ModelInfo:
    merged = {**defaults, **raw}
    prices = {str(size): float(usd) for size, usd in dict(merged["usd"]).items()}
    sizes = tuple(str(s) for s in merged["sizes"])
    status = str(merged.get("status", "current"))
    if status not in _STATUSES:
        raise ValueError(f"models.toml: {merged.get('id')}: status {status!r} is not one of {_STATUSES}")
    standard = prices.get("1K", next(iter(prices.values()), 0.0))
    return ModelInfo(
        str(merged["id"]),
        max_input_images=int(merged["max_inputs"]),
        aspect_ratios=tuple(str(r) for r in merged["ratios"]),
        image_sizes=sizes,
        usd_per_image=standard,
        notes=str(merged.get("notes", "")),
        aliases=tuple(str(a) for a in merged.get("aliases", ())),
        usd_by_size=tuple(prices.items()),
        status=cast(ModelStatus, status),
        successor=str(merged.get("successor", "")),
        retires=str(merged.get("retires", "")),
        max_people=int(merged.get("characters", merged["max_inputs"])),
    )


def _load() -> tuple[dict[str, ModelInfo], dict[str, Any]]:
    data = tomllib.loads(resources.files("core.engines").joinpath("models.toml").read_text("utf-8"))
    defaults = {k: v for k, v in data["defaults"].items()}
    table = {str(raw["id"]): _entry(raw, defaults) for raw in data["model"]}
    for info in table.values():
        if info.successor and info.successor not in table:
            raise ValueError(f"models.toml: {info.id} names an unknown successor {info.successor!r}")
    return table, defaults


MODELS, _DEFAULTS = _load()
_BY_ALIAS: dict[str, ModelInfo] = {alias: m for m in MODELS.values() for alias in m.aliases}
DEFAULT = _entry({"id": "unknown"}, _DEFAULTS)


def known(model_id: str) -> bool:
    """Whether `model_id` is in the table (by id or alias)."""
    key = model_id.strip().removeprefix("models/")
    return key in MODELS or key in _BY_ALIAS


def model_info(model_id: str) -> ModelInfo:
    """The capability entry for `model_id` ("models/" prefix and aliases accepted)."""
    key = model_id.strip().removeprefix("models/")
    found = MODELS.get(key) or _BY_ALIAS.get(key)
    if found is not None:
        return found
    return _entry({"id": key or DEFAULT.id}, _DEFAULTS)


def successors(model_id: str) -> list[str]:
    """The chain of named successors after `model_id`, nearest first (cycles cut)."""
    chain: list[str] = []
    current = model_info(model_id).successor
    while current and current not in chain and current != model_id:
        chain.append(current)
        current = model_info(current).successor
    return chain
