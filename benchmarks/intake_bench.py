"""(1) A 12 MP phone JPEG to a model-ready 1024 px JPEG: `core.intake.prepare` vs a naive Pillow pipeline."""

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image, ImageOps

from benchmarks.common import Target, summary_ms
from benchmarks.photos import phone_photo
from core.intake import prepare

MAX_PX = 1024


def naive(data: bytes, max_px: int = MAX_PX) -> bytes:
    """What one would write first: decode everything, rotate 12 MP, LANCZOS down, encode."""
    image: Image.Image = Image.open(io.BytesIO(data))
    image = ImageOps.exif_transpose(image).convert("RGB")
    image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def decode_only(data: bytes, max_px: int = MAX_PX) -> None:
    """Only the reduced-scale JPEG decode prepare() starts with (1/2 scale here): its floor."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (max_px, max_px))
    image.load()


def decode_eighth(data: bytes) -> None:
    """Decode at 1/8 scale, nearly all of it Huffman decoding, which every scale must do in full."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (image.width // 8, image.height // 8))
    image.load()


def _times(run: Any, reps: int) -> list[float]:
    run()  # warm-up: first-call costs (codec set-up, page faults) are not per-photo costs
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def run(quick: bool) -> dict[str, Any]:
    data = phone_photo()
    reps, naive_reps = (5, 2) if quick else (41, 11)
    result = prepare(data, max_px=MAX_PX)
    ours = summary_ms(_times(lambda: prepare(data, max_px=MAX_PX), reps))
    theirs = summary_ms(_times(lambda: naive(data), naive_reps))
    floor = summary_ms(_times(lambda: decode_only(data), reps))
    eighth = summary_ms(_times(lambda: decode_eighth(data), reps))
    ratio = float(theirs["p50_ms"]) / float(ours["p50_ms"])
    return {
        "figures": {
            "photo": {"bytes": len(data), "stored_size": [4032, 3024], "exif_orientation": 6},
            "output": {"width": result.width, "height": result.height, "bytes": len(result.data)},
            "prepare": ours,
            "naive_pillow": theirs,
            "decode_only_at_half_scale": floor,
            "decode_only_at_eighth_scale": eighth,
            "speedup_vs_naive": round(ratio, 2),
        },
        "targets": [
            Target("intake median", float(ours["p50_ms"]), 30, "ms"),
            Target("speed-up vs naive Pillow", ratio, 5, "x", at_most=False),
        ],
    }
