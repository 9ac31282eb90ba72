"""What each image model can take and give, and roughly what one image costs.

Sources (Google's Gemini API image-generation guide, pricing page and Vertex AI limitations page, as
quoted by their readers):
- gemini-2.5-flash-image ("Nano Banana"): best with at most 3 input images; 1024 px output only
  (no image size option); $30 per 1M image-output tokens, 1290 tokens an image = $0.039.
- gemini-3-pro-image ("Nano Banana Pro"): up to 14 input images; 1K, 2K or 4K output;
  $0.134 per 1K or 2K image, $0.24 per 4K image.
- gemini-3.1-flash-image ("Nano Banana 2"): up to 14 input images; 512, 1K, 2K or 4K output (sizes
  need an uppercase K); $60 per 1M image-output tokens = $0.045 (512), $0.067 (1K), $0.101 (2K),
  $0.151 (4K); adds the extreme aspect ratios 1:4, 4:1, 1:8 and 8:1.
- Batch mode halves these prices; this bot does not use it. Input images and prompt text cost a
  fraction of a cent more, ignored here: the figures are spend *estimates* for /stats.
Prices and limits change; an unknown model gets `DEFAULT`, which assumes the tightest limits.
"""

from __future__ import annotations

from core.engines.base import ModelInfo

_COMMON_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in (
        ModelInfo(
            "gemini-3.1-flash-image",
            max_input_images=14,
            aspect_ratios=(*_COMMON_RATIOS, "1:4", "4:1", "1:8", "8:1"),
            image_sizes=("512", "1K", "2K", "4K"),
            usd_per_image=0.067,
            notes="Nano Banana 2: fast, the default; $0.045 at 512 px, $0.101 at 2K, $0.151 at 4K.",
            aliases=("gemini-3.1-flash-image-preview",),
            usd_by_size=(("512", 0.045), ("1K", 0.067), ("2K", 0.101), ("4K", 0.151)),
        ),
        ModelInfo(
            "gemini-3-pro-image",
            max_input_images=14,
            aspect_ratios=_COMMON_RATIOS,
            image_sizes=("1K", "2K", "4K"),
            usd_per_image=0.134,
            notes="Nano Banana Pro: thinks before drawing; $0.24 at 4K.",
            aliases=("gemini-3-pro-image-preview",),
            usd_by_size=(("1K", 0.134), ("2K", 0.134), ("4K", 0.24)),
        ),
        ModelInfo(
            "gemini-2.5-flash-image",
            max_input_images=3,
            aspect_ratios=_COMMON_RATIOS,
            image_sizes=("1K",),
            usd_per_image=0.039,
            notes="Nano Banana: 1024 px only; no image size option.",
            aliases=("gemini-2.5-flash-image-preview",),
        ),
        ModelInfo(
            "offline",
            max_input_images=8,  # the offline engine's own fusion limit
            aspect_ratios=_COMMON_RATIOS,  # by cropping around the face; "1:1" is not forced
            image_sizes=("1K",),
            usd_per_image=0.0,
            notes="OpenCV + Pillow on this machine; costs nothing.",
        ),
    )
}

_BY_ALIAS: dict[str, ModelInfo] = {alias: m for m in MODELS.values() for alias in m.aliases}

# Unknown models: the smallest input limit and the dearest known price, so estimates err high.
DEFAULT = ModelInfo(
    "unknown",
    max_input_images=3,
    aspect_ratios=_COMMON_RATIOS,
    image_sizes=("1K",),
    usd_per_image=0.134,
    notes="Not in the capability table; conservative limits assumed.",
)


def model_info(model_id: str) -> ModelInfo:
    """The capability entry for `model_id` ("models/" prefix and "-preview" aliases accepted)."""
    key = model_id.strip().removeprefix("models/")
    found = MODELS.get(key) or _BY_ALIAS.get(key)
    if found is not None:
        return found
    return ModelInfo(
        key or DEFAULT.id,
        max_input_images=DEFAULT.max_input_images,
        aspect_ratios=DEFAULT.aspect_ratios,
        image_sizes=DEFAULT.image_sizes,
        usd_per_image=DEFAULT.usd_per_image,
        notes=DEFAULT.notes,
    )
