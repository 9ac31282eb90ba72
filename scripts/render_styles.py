"""Render every offline style, a few edits and a group poster from the test face into out/.

    .venv/bin/python scripts/render_styles.py [--size 1024] [--photo path.jpg]

Writes one file per result plus out/contact_sheet.png (all of them, labelled), and prints how
long each style took. Look at the sheet after changing a pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engines.base import Portrait  # noqa: E402
from core.engines.offline import OfflineEngine, _font  # noqa: E402
from core.styles import STYLES, get_style  # noqa: E402

EDITS = (
    "add a crown",
    "party hat",
    "sunglasses and a mustache",
    "add a halo and make it warmer",
    "devil horns, more contrast",
    'sepia and write "HELLO WORLD"',
)


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def save(out: Path, name: str, data: bytes, mime: str) -> Path:
    path = out / f"{name}.{'png' if mime == 'image/png' else 'jpg'}"
    path.write_bytes(data)
    return path


def contact_sheet(items: list[tuple[str, Path]], path: Path, cell: int = 300, cols: int = 5) -> None:
    rows = (len(items) + cols - 1) // cols
    label = 28
    sheet = Image.new("RGB", (cols * cell, rows * (cell + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(18)
    for i, (name, p) in enumerate(items):
        im = ImageOps.contain(Image.open(p).convert("RGB"), (cell - 8, cell - 8), Image.Resampling.LANCZOS)
        x, y = (i % cols) * cell, (i // cols) * (cell + label)
        sheet.paste(im, (x + (cell - im.width) // 2, y + 4))
        draw.text((x + 6, y + cell), name, fill=(0, 0, 0), font=font)
    sheet.save(path)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="long side of the test selfie")
    parser.add_argument("--photo", type=Path, default=ROOT / "tests" / "fixtures" / "astronaut.png")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    face = Image.open(args.photo).convert("RGB")
    face = ImageOps.contain(face, (args.size, args.size), Image.Resampling.LANCZOS) \
        if max(face.size) > args.size else face.resize(
            (round(face.width * args.size / max(face.size)), round(face.height * args.size / max(face.size))),
            Image.Resampling.LANCZOS)
    selfie = jpeg(face)
    engine = OfflineEngine(rng_seed=7)
    items: list[tuple[str, Path]] = []
    styled: dict[str, bytes] = {}
    print(f"selfie {face.size[0]}x{face.size[1]}")
    for style in STYLES:
        await engine.stylize(selfie, style)  # warm-up (cascades, caches)
        start = time.perf_counter()
        result = await engine.stylize(selfie, style)
        ms = (time.perf_counter() - start) * 1000
        styled[style.id] = result.image
        items.append((style.id, save(args.out, f"style_{style.id}", result.image, result.mime)))
        print(f"{style.id:11s} {ms:6.0f} ms  {len(result.image) // 1024:5d} KiB  {result.commentary}")

    for i, instruction in enumerate(EDITS):
        base = styled["anime"] if i == 4 else selfie
        start = time.perf_counter()
        result = await engine.edit(base, instruction, identity=selfie)
        ms = (time.perf_counter() - start) * 1000
        items.append((instruction[:28], save(args.out, f"edit_{i}", result.image, result.mime)))
        print(f"edit {instruction!r:40s} {ms:6.0f} ms  {result.commentary}")

    others = [
        ImageOps.mirror(face),
        ImageOps.autocontrast(face.rotate(4, resample=Image.Resampling.BICUBIC)).crop(
            (40, 0, face.width, face.height - 40)),
    ]
    portraits = [Portrait("Eileen", selfie), Portrait("Mirror Eileen", jpeg(others[0])),
                 Portrait("Tilted", jpeg(others[1]))]
    for sid in ("comic", "popart", "anime"):
        style = get_style(sid)
        assert style is not None
        start = time.perf_counter()
        result = await engine.fuse(portraits, style, theme="Mission crew")
        ms = (time.perf_counter() - start) * 1000
        items.append((f"fuse {sid}", save(args.out, f"fuse_{sid}", result.image, result.mime)))
        print(f"fuse {sid:7s} {ms:6.0f} ms  {result.commentary}")

    contact_sheet(items, args.out / "contact_sheet.png")
    print(f"wrote {args.out / 'contact_sheet.png'}")
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
