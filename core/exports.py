"""Image work on finished pictures: provenance metadata, and the sticker / profile picture / original exports.

Every picture the bot hands out says it was made by an AI model: XMP with the IPTC digital source
type `trainedAlgorithmicMedia` and the model's name. JPEG and PNG results are stamped without
re-encoding (an APP1 segment / an iTXt chunk is inserted), so nothing is lost. All of it is
blocking Pillow work: call the `*_async` functions from the event loop.
"""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageOps

from core.engines.offline import detect_faces

AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
STICKER_SIDE = 512
PROFILE_SIDE = 1024
_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ExportKind = Literal["sticker", "profile", "original"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("sticker", "profile", "original")


@dataclass(frozen=True)
class Exported:
    data: bytes
    mime: str
    file_name: str


def provenance_xmp(model: str) -> bytes:
    """The XMP packet marking a picture as made by a trained model, naming the model."""
    name = escape(model or "unknown", {'"': "&quot;"})
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'Iptc4xmpExt:DigitalSourceType="{AI_SOURCE_TYPE}" '
        f'xmp:CreatorTool="Pix Me! ({name})">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">AI-generated image, made with {name}</rdf:li>'
        '</rdf:Alt></dc:description>'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def has_provenance(data: bytes) -> bool:
    """Whether the image carries our AI-generated marker (read back with Pillow)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp") or b""
    except Exception:
        return False
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    return AI_SOURCE_TYPE in text


def stamp(data: bytes, mime: str, model: str) -> bytes:
    """`data` with the provenance XMP added (JPEG/PNG losslessly; other formats re-saved as PNG)."""
    if has_provenance(data):
        return data
    xmp = provenance_xmp(model)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_with_xmp(data, xmp)
    if data.startswith(_PNG_SIGNATURE):
        return _png_with_xmp(data, xmp)
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.convert("RGBA" if "A" in im.getbands() else "RGB").save(out, "PNG", optimize=False)
    return _png_with_xmp(out.getvalue(), xmp)


async def stamp_async(data: bytes, mime: str, model: str) -> bytes:
    return await asyncio.to_thread(stamp, data, mime, model)


def export(data: bytes, kind: ExportKind, model: str, name: str = "pixme") -> Exported:
    """The picture as a sticker (512 px WebP around the face), a profile picture (1024 px JPEG) or itself."""
    xmp = provenance_xmp(model)
    if kind == "original":
        stamped = stamp(data, "", model)
        extension = "png" if stamped.startswith(_PNG_SIGNATURE) else "jpg"
        return Exported(stamped, "image/png" if extension == "png" else "image/jpeg", f"{name}.{extension}")
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    square = _face_square(image)
    out = io.BytesIO()
    if kind == "sticker":
        square.resize((STICKER_SIDE, STICKER_SIDE), Image.Resampling.LANCZOS).save(
            out, "WEBP", quality=90, method=4, xmp=xmp)
        return Exported(out.getvalue(), "image/webp", f"{name}-sticker.webp")
    square.resize((PROFILE_SIDE, PROFILE_SIDE), Image.Resampling.LANCZOS).save(
        out, "JPEG", quality=92, optimize=True, xmp=xmp)
    return Exported(out.getvalue(), "image/jpeg", f"{name}-profile.jpg")


async def export_async(data: bytes, kind: ExportKind, model: str, name: str = "pixme") -> Exported:
    return await asyncio.to_thread(export, data, kind, model, name)


def _face_square(image: Image.Image) -> Image.Image:
    """The largest square that keeps the largest face as near the middle as the picture allows."""
    width, height = image.size
    side = min(width, height)
    faces = detect_faces(np.asarray(image))
    cx, cy = width / 2, height / 2
    if faces:
        face = faces[0]
        cx, cy = face.cx, face.cy
    left = int(min(max(cx - side / 2, 0), width - side))
    top = int(min(max(cy - side / 2, 0), height - side))
    return image.crop((left, top, left + side, top + side))


def _jpeg_with_xmp(data: bytes, xmp: bytes) -> bytes:
    """Insert an APP1 XMP segment after SOI and any APP0 (JFIF) segment, leaving the pixels alone."""
    payload = _XMP_JPEG_HEADER + xmp
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("XMP packet too large for one JPEG segment")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    at = 2
    if data[2:4] == b"\xff\xe0":  # keep JFIF first, as readers expect
        at = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:at] + segment + data[at:]


def _png_with_xmp(data: bytes, xmp: bytes) -> bytes:
    """Insert an uncompressed iTXt `XML:com.adobe.xmp` chunk right after IHDR."""
    body = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    ihdr_end = len(_PNG_SIGNATURE) + 8 + struct.unpack(">I", data[8:12])[0] + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]
