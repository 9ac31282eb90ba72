"""Render every offline style on the test portraits, a few edits and a group poster, into out/.

    .venv/bin/python scripts/render_styles.py [--size 1024] [--photo path.jpg ...] [--styles-only]
    .venv/bin/python scripts/render_styles.py --sheet docs/styles.png   # the README's contact sheet

Writes one file per result, out/contact_sheet.png (the first portrait's styles, edits and posters)
and out/styles.png (every style on every portrait: one row a portrait), and prints how long each
style took. Look at the sheets after changing a pipeline.
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
from core.engines.offline import OfflineEngine, label_font  # noqa: E402
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


PORTRAITS = ("astronaut.png", "portrait_dark_skin.jpg", "portrait_white_hair.jpg", "raised_hand.jpg")


def styles_sheet(rows: list[list[Image.Image]], names: list[str], path: Path, cell: int = 200) -> None:
    """One row per portrait: the photo, then each style, with the style names on top."""
    label = 30
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * cell, label + len(rows) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = label_font(17)
    for c, name in enumerate(names):
        width = draw.textlength(name, font=font)
        draw.text((c * cell + (cell - width) / 2, 6), name, fill=(30, 30, 30), font=font)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            im = ImageOps.fit(im.convert("RGB"), (cell - 4, cell - 4), Image.Resampling.LANCZOS, centering=(0.5, 0.35))
            sheet.paste(im, (c * cell + 2, label + r * cell + 2))
    sheet.save(path, optimize=True)


def contact_sheet(items: list[tuple[str, Path]], path: Path, cell: int = 300, cols: int = 5) -> None:
    rows = (len(items) + cols - 1) // cols
    label = 28
    sheet = Image.new("RGB", (cols * cell, rows * (cell + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = label_font(18)
    for i, (name, p) in enumerate(items):
        im = ImageOps.contain(Image.open(p).convert("RGB"), (cell - 8, cell - 8), Image.Resampling.LANCZOS)
        x, y = (i % cols) * cell, (i // cols) * (cell + label)
        sheet.paste(im, (x + (cell - im.width) // 2, y + 4))
        draw.text((x + 6, y + cell), name, fill=(0, 0, 0), font=font)
    sheet.save(path)


def load(path: Path, size: int) -> Image.Image:
    face = Image.open(path).convert("RGB")
    scale = size / max(face.size)
    return face.resize((round(face.width * scale), round(face.height * scale)), Image.Resampling.LANCZOS)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="long side of the test selfie")
    parser.add_argument("--photo", type=Path, action="append", default=None,
                        help="a portrait (repeatable); default: the four in tests/fixtures")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--sheet", type=Path, default=None, help="also write the styles sheet here")
    parser.add_argument("--styles-only", action="store_true", help="skip the edits and the posters")
    parser.add_argument("--only", action="append", default=None, help="render only this style (repeatable)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    photos = args.photo or [ROOT / "tests" / "fixtures" / name for name in PORTRAITS]
    styles = [s for s in STYLES if not args.only or s.id in args.only]

    engine = OfflineEngine(rng_seed=7)
    rows: list[list[Image.Image]] = []
    totals: dict[str, list[float]] = {s.id: [] for s in styles}
    for n, photo in enumerate(photos):
        face = load(photo, args.size)
        selfie = jpeg(face)
        row = [face]
        print(f"{photo.name}: {face.size[0]}x{face.size[1]}")
        for style in styles:
            await engine.stylize(selfie, style)  # warm-up (cascades, caches)
            start = time.perf_counter()
            result = await engine.stylize(selfie, style)
            ms = (time.perf_counter() - start) * 1000
            totals[style.id].append(ms)
            save(args.out, f"style_{photo.stem}_{style.id}", result.image, result.mime)
            row.append(Image.open(io.BytesIO(result.image)))
            print(f"  {style.id:11s} {ms:6.0f} ms  {len(result.image) // 1024:5d} KiB  {result.commentary}")
        rows.append(row)
        if n == 0 and not args.styles_only:
            await edits_and_posters(engine, face, selfie, args.out)
    print("median ms per style: " + ", ".join(f"{sid} {sorted(v)[len(v) // 2]:.0f}" for sid, v in totals.items()))
    names = ["photo", *(s.id for s in styles)]
    styles_sheet(rows, names, args.out / "styles.png")
    print(f"wrote {args.out / 'styles.png'}")
    if args.sheet:
        styles_sheet(rows, names, args.sheet, cell=160)
        print(f"wrote {args.sheet} ({args.sheet.stat().st_size // 1024} KiB)")
    await engine.aclose()


async def edits_and_posters(engine: OfflineEngine, face: Image.Image, selfie: bytes, out: Path) -> None:
    items: list[tuple[str, Path]] = []
    styled = {sid: (await engine.stylize(selfie, get_style(sid))).image  # type: ignore[arg-type]
              for sid in ("anime",)}
    for i, instruction in enumerate(EDITS):
        base = styled["anime"] if i == 4 else selfie
        start = time.perf_counter()
        result = await engine.edit(base, instruction, identity=selfie)
        ms = (time.perf_counter() - start) * 1000
        items.append((instruction[:28], save(out, f"edit_{i}", result.image, result.mime)))
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
        items.append((f"fuse {sid}", save(out, f"fuse_{sid}", result.image, result.mime)))
        print(f"fuse {sid:7s} {ms:6.0f} ms  {result.commentary}")
    contact_sheet(items, out / "contact_sheet.png")
    print(f"wrote {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    asyncio.run(main())
