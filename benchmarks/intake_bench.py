"""(1) A 12 MP phone JPEG to a model-ready 1024 px JPEG: `core.intake.prepare` vs a naive Pillow pipeline,
and the same through the bot's bounded path (`core.intake_pool.Intake`: a worker process, its pipe)."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from benchmarks.common import Target, summary_ms
from benchmarks.photos import phone_photo
from core.config import IntakeSettings
from core.intake import draft_scale, fit_size, prepare
from core.intake_pool import Intake

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
    """Only the reduced-scale JPEG decode prepare() starts with (1/4 scale here, as `draft_scale` picks): its
    floor. Decoded by OpenCV, as prepare() does for whole colour JPEGs."""
    image = Image.open(io.BytesIO(data))
    scale = draft_scale(image.size, max_px)
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[scale]
    cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)


def decode_half(data: bytes, max_px: int = MAX_PX) -> None:
    """Decode at 1/2 scale (2016 px), what prepare() did before it accepted 1008 px for 1024."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (image.width // 2, image.height // 2))
    image.load()


def exact_size(data: bytes, max_px: int = MAX_PX) -> bytes:
    """prepare()'s 1/4-scale decode, then bicubic up to exactly max_px (1008 -> 1024): what holding the
    long side at exactly 1024 would cost (a figure only; prepare() returns the 1008 px picture)."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION)
    assert pixels is not None
    pixels = cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    pixels = cv2.resize(pixels, fit_size((pixels.shape[1], pixels.shape[0]), max_px), interpolation=cv2.INTER_CUBIC)
    return bytes(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])


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


def bounded(data: bytes, reps: int) -> tuple[list[float], list[float]]:
    """`Intake.prepare` as the bot calls it: wall time per photo, and the CPU this process spends on it
    (header peek, pickling, the pipe, the thread hop; the decoding itself is the worker's)."""

    async def measure() -> tuple[list[float], list[float]]:
        pool = Intake(IntakeSettings(workers=1))
        await pool.start()
        try:
            await pool.prepare(data, max_px=MAX_PX)  # warm-up
            walls, cpus = [], []
            for _ in range(reps):
                wall, cpu = time.perf_counter(), time.process_time()
                await pool.prepare(data, max_px=MAX_PX)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            return walls, cpus
        finally:
            await pool.aclose()

    return asyncio.run(measure())


def run(quick: bool) -> dict[str, Any]:
    data = phone_photo()
    reps, naive_reps = (5, 2) if quick else (41, 11)
    result = prepare(data, max_px=MAX_PX)
    ours = summary_ms(_times(lambda: prepare(data, max_px=MAX_PX), reps))
    theirs = summary_ms(_times(lambda: naive(data), naive_reps))
    floor = summary_ms(_times(lambda: decode_only(data), reps))
    half = summary_ms(_times(lambda: decode_half(data), reps))
    eighth = summary_ms(_times(lambda: decode_eighth(data), reps))
    exact = summary_ms(_times(lambda: exact_size(data), reps))
    walls, cpus = bounded(data, reps)
    in_worker, parent_cpu = summary_ms(walls), summary_ms(cpus)
    ratio = float(theirs["p50_ms"]) / float(ours["p50_ms"])
    return {
        "figures": {
            "photo": {"bytes": len(data), "stored_size": [4032, 3024], "exif_orientation": 6},
            "output": {"width": result.width, "height": result.height, "bytes": len(result.data)},
            "prepare": ours,
            "naive_pillow": theirs,
            "decode_only_at_prepare_scale": floor,
            "prepare_scale": draft_scale((4032, 3024), MAX_PX),
            "decode_only_at_half_scale": half,
            "decode_only_at_eighth_scale": eighth,
            "quarter_scale_upscaled_to_exactly_1024": exact,
            "prepare_in_worker_process": in_worker,
            "bot_process_cpu_per_photo": parent_cpu,
            "speedup_vs_naive": round(ratio, 2),
        },
        "targets": [
            Target("intake median", float(ours["p50_ms"]), 30, "ms"),
            Target("speed-up vs naive Pillow", ratio, 5, "x", at_most=False),
        ],
    }
