"""Likeness: what one score costs at 1024 px, whether scoring in the worker pool leaves the event loop
alone, and how much of each face every offline style keeps on the test portraits.

    .venv/bin/python -m benchmarks.run --only likeness
"""

from __future__ import annotations

import asyncio
import io
import itertools
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, Target, percentile, summary_ms

FIXTURES = ROOT / "tests" / "fixtures"
PEOPLE = {"astronaut": "astronaut.png", "obama": "portrait_dark_skin.jpg", "biden": "portrait_white_hair.jpg",
          **{f"group_{n}": f"group_{n}.jpg" for n in range(1, 7)}}


def _jpeg(rgb: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _at(name: str, side: int) -> Image.Image:
    image = Image.open(FIXTURES / name).convert("RGB")
    scale = side / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def _time_per_score(quick: bool) -> dict[str, Any]:
    """One 1024 px picture against a selfie whose embedding is known (the bot's case: a person's selfie is
    scored against again and again), and cold (both pictures worked on), in this process on one core."""
    from core.likeness import Likeness

    likeness = Likeness(cache_size=0)
    began = time.perf_counter()
    likeness.available()
    load_s = time.perf_counter() - began
    pictures = [_jpeg(_at(name, 1024)) for name in ("astronaut.png", "portrait_dark_skin.jpg",
                                                    "portrait_white_hair.jpg", "raised_hand.jpg")]
    reference = likeness.embed_bytes(_jpeg(_at("portrait_dark_skin.jpg", 1024)))[0]
    runs = 3 if quick else 15
    warm: list[float] = []
    cold: list[float] = []
    for _ in range(runs):
        for picture in pictures:
            t = time.perf_counter()
            likeness.score(picture, reference)
            warm.append(time.perf_counter() - t)
    for picture in pictures[: 2 if quick else 4]:
        for _ in range(1 if quick else 3):
            t = time.perf_counter()
            likeness.score(picture, pictures[1])
            cold.append(time.perf_counter() - t)
    group = (FIXTURES / "group.jpg").read_bytes()
    selfies = {f"g{n}": (FIXTURES / f"group_{n}.jpg").read_bytes() for n in range(1, 7)}
    t = time.perf_counter()
    likeness.match_group(group, selfies)
    group_s = time.perf_counter() - t
    return {"model_load_ms": round(load_s * 1000, 1), "score_1024_known_selfie": summary_ms(warm),
            "score_1024_known_selfie_fastest_ms": round(min(warm) * 1000, 1),
            "score_1024_both_pictures": summary_ms(cold), "group_960px_six_members_ms": round(group_s * 1000, 1)}


async def _in_the_pool(quick: bool) -> dict[str, Any]:
    """Scores through `Intake.likeness` (worker processes) while a ticker measures how late a 10 ms sleep
    wakes on the event loop; the same ticker alone first, for the baseline."""
    from core.intake_pool import Intake

    async def lag_during(work: Any) -> list[float]:
        lags: list[float] = []
        done = False

        async def tick() -> None:
            while not done:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t - 0.01)

        ticker = asyncio.create_task(tick())
        await work
        done = True
        await ticker
        return lags

    intake = Intake()
    await intake.start()
    try:
        selfie = _jpeg(_at("portrait_dark_skin.jpg", 1024))
        pictures = [_jpeg(_at(name, 1024)) for name in ("raised_hand.jpg", "portrait_white_hair.jpg")]
        await intake.likeness(pictures[0], selfie)  # the workers load the model
        await intake.likeness(pictures[1], selfie)
        baseline = await lag_during(asyncio.sleep(1.0 if quick else 3.0))
        rounds = 2 if quick else 20
        timings: list[float] = []
        # New pictures every round, as new results are: the workers remember pictures they have seen.
        fresh = [[_jpeg(_at(name, 1024), 80 + r % 15) + bytes([r]) for name in ("raised_hand.jpg",
                                                                               "portrait_white_hair.jpg")]
                 for r in range(rounds)]

        async def score_many() -> None:
            for batch in fresh:
                t = time.perf_counter()
                await asyncio.gather(*(intake.likeness(p, selfie) for p in batch))
                timings.append((time.perf_counter() - t) / len(batch))

        scoring = await lag_during(score_many())
    finally:
        await intake.aclose()
    return {"lag_idle_p99_ms": round(percentile(baseline, 99) * 1000, 2),
            "lag_while_scoring_p99_ms": round(percentile(scoring, 99) * 1000, 2),
            "pool_wall_per_score": summary_ms(timings)}


def _styles(quick: bool) -> dict[str, Any]:
    """Every offline style on every test portrait (scaled to 768 px, as a selfie would be), against the
    unedited portrait; plus the same photo re-encoded, another photo of one person, and different people."""
    from core.engines.offline.styles import PIPELINES, stylize_array
    from core.likeness import Likeness, Score

    likeness = Likeness()
    people = dict(itertools.islice(PEOPLE.items(), 2)) if quick else PEOPLE
    styles = ["watercolor", "pixel"] if quick else list(PIPELINES)
    originals = {p: (FIXTURES / f).read_bytes() for p, f in people.items()}
    table: dict[str, dict[str, int | None]] = {}
    for style in styles:
        row: dict[str, int | None] = {}
        for person, name in people.items():
            rgb = np.asarray(_at(name, 768))
            result = likeness.score(_jpeg(stylize_array(rgb, style, np.random.default_rng(7))), originals[person])
            row[person] = result.percent if isinstance(result, Score) else None
        table[style] = row
    same = [likeness.score(_jpeg(_at(f, 768), 85), originals[p]) for p, f in people.items()]
    different = [likeness.score(originals[a], originals[b]) for a, b in itertools.combinations(people, 2)]
    other_photo = likeness.score((FIXTURES / "raised_hand.jpg").read_bytes(),
                                 (FIXTURES / PEOPLE["obama"]).read_bytes())
    return {
        "per_style_percent": table,
        "per_style_mean_percent": {s: round(statistics.fmean([v for v in r.values() if v is not None]), 1)
                                   if any(v is not None for v in r.values()) else None for s, r in table.items()},
        "per_style_no_face": {s: sum(v is None for v in r.values()) for s, r in table.items()},
        "same_photo_reencoded_min_percent": min(r.percent for r in same if isinstance(r, Score)),
        "other_photo_same_person_percent": other_photo.percent if isinstance(other_photo, Score) else None,
        "different_people_max_percent": max(r.percent for r in different if isinstance(r, Score)),
        "different_people_pairs": len(different),
        "portraits": len(people),
    }


def run(quick: bool) -> dict[str, Any]:
    timing = _time_per_score(quick)
    pool = asyncio.run(_in_the_pool(quick))
    styles = _styles(quick)
    known = timing["score_1024_known_selfie"]
    targets = [
        Target("time per score at 1024 px p50 (selfie known)", known["p50_ms"], 150, "ms"),
        Target("event-loop lag p99 while scoring in the pool", pool["lag_while_scoring_p99_ms"], 20, "ms"),
        Target("same photo re-encoded (min)", styles["same_photo_reencoded_min_percent"], 95, "%", at_most=False),
        Target("different people (max)", styles["different_people_max_percent"], 40, "%"),
    ]
    return {"figures": {**timing, **pool, **styles}, "targets": targets}
