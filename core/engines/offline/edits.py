"""Offline edits: a fixed vocabulary parsed from an instruction (accessories, colour adjustments, a
caption), applied to a picture, and the line of commentary that goes with the result."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from core.engines.base import Unsupported
from core.engines.offline.drawing import ACCESSORIES, ACCESSORY_ORDER, caption
from core.engines.offline.faces import Face, default_face, main_face
from core.engines.offline.filters import Array, luminance, to_float, to_u8
from core.i18n import N_, _

OFFLINE_EDIT_HELP = N_(
    "The offline engine understands: add a crown, party hat, sunglasses, mustache, halo or horns; "
    "warmer, cooler, brighter, darker, more contrast, black and white, sepia; write \"TEXT\". "
    "Free-form edits need the Gemini engine."
)


# --------------------------------------------------------------------------------------------
# Edits: the parser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditOp:
    """One understood edit: an accessory, a colour adjustment, or a caption."""

    kind: Literal["accessory", "adjust", "text"]
    name: str  # crown, party_hat, sunglasses, mustache, halo, horns; warmer ... sepia; write
    text: str = ""


_W = r"(?<![\w&/])"
_E = r"(?![\w&/])"
_PHRASES: tuple[tuple[str, EditOp], ...] = (
    (r"(?:gold(?:en)?\s+|royal\s+|king'?s\s+|queen'?s\s+)?crowns?|tiara", EditOp("accessory", "crown")),
    (r"(?:party|birthday)\s+hats?", EditOp("accessory", "party_hat")),
    (r"(?:(?:cool|dark|black)\s+)?(?:sun\s*glasses|shades|sunnies)", EditOp("accessory", "sunglasses")),
    (r"(?:handlebar\s+)?(?:moustache|mustache|mustachio)s?", EditOp("accessory", "mustache")),
    (r"(?:angel(?:ic)?\s+|golden\s+)?halos?", EditOp("accessory", "halo")),
    (r"(?:devil(?:ish)?\s+)?horns?", EditOp("accessory", "horns")),
    (r"(?:more\s+|higher\s+|increase\s+(?:the\s+)?|boost\s+(?:the\s+)?)contrast|contrasty|punchier",
     EditOp("adjust", "contrast")),
    (r"black\s*(?:and|&|'?n'?)\s*white|b\s*&\s*w|b/w|bnw|gr[ae]y\s*scale|monochrome",
     EditOp("adjust", "bw")),
    (r"sepia(?:\s+tone[ds]?)?|old[-\s]?tim(?:e|ey|y)", EditOp("adjust", "sepia")),
    (r"warm(?:er|th)?", EditOp("adjust", "warmer")),
    (r"cool(?:er)?|cold(?:er)?", EditOp("adjust", "cooler")),
    (r"bright(?:er|en)?|light(?:er|en)", EditOp("adjust", "brighter")),
    (r"dark(?:er|en)?|dimmer", EditOp("adjust", "darker")),
)
_PHRASE_RES = tuple((re.compile(_W + p + _E, re.IGNORECASE), op) for p, op in _PHRASES)

_TEXT_RE = re.compile(
    r"(?:\b(?:write|add\s+(?:a\s+|the\s+|some\s+)?(?:text|caption|words?|title)|caption(?:\s+it)?|"
    r"(?:that\s+)?says?|put|with\s+(?:the\s+)?(?:text|caption|words?))\s*:?\s*)?"
    r"(?:[\"“”„«»](?P<d>[^\"“”„«»]+)[\"“”„«»]|[‘’'](?P<s>[^‘’']+)[‘’'](?!\w))",
    re.IGNORECASE,
)

_FILLER = frozenset("""
a an the and also plus then with make it its it's me my this that these photo picture pic image avatar
please pls put on onto give him her them some bit little slightly lot much more very too just to turn
wear wearing of top head face in his their i want would like could you can tone tones toned colour
colours color colors look filter effect few slight tad extra super really over up draw pair set apply
let's lets add adding now pretty nice cute big small tiny bits kinda quite somewhat or be looking
style styled version go gimme get got i'd we'd maybe nicely
""".split())


def parse_edit(instruction: str) -> list[EditOp]:
    """The edits an instruction asks for, in order; raises `Unsupported` for anything else."""
    ops: list[tuple[int, EditOp]] = []
    rest = instruction
    for m in _TEXT_RE.finditer(instruction):
        text = (m.group("d") or m.group("s") or "").strip()
        if text:
            ops.append((m.start(), EditOp("text", "write", text[:80])))
    rest = _TEXT_RE.sub(" ", rest)
    for pattern, op in _PHRASE_RES:
        for m in pattern.finditer(rest):
            ops.append((m.start(), op))
        rest = pattern.sub(" ", rest)
    leftover = [w for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", rest.lower()) if w not in _FILLER]
    if leftover or not ops:
        if leftover and ops:
            words = " ".join(leftover[:4])
            sorry = _("Sorry, I can't do “{words}” offline.").format(words=words)
            raise Unsupported(f"{sorry} {_(OFFLINE_EDIT_HELP)}")
        raise Unsupported(_(OFFLINE_EDIT_HELP))
    result: list[EditOp] = []
    for _at, op in sorted(ops, key=lambda item: item[0]):
        if op not in result:
            result.append(op)
    return result


# --------------------------------------------------------------------------------------------
# Edits: colour adjustments
# --------------------------------------------------------------------------------------------


def _adjust(img: Array, name: str) -> Array:
    f = to_float(img)
    if name == "warmer":
        f = f * np.array([1.08, 1.01, 0.86], np.float32) + np.array([0.03, 0.01, 0.0], np.float32)
    elif name == "cooler":
        f = f * np.array([0.87, 0.99, 1.08], np.float32) + np.array([0.0, 0.01, 0.03], np.float32)
    elif name == "brighter":
        f = 1 - (1 - f) ** np.float32(1.45)
    elif name == "darker":
        f = f ** np.float32(1.5)
    elif name == "contrast":
        mean = float(luminance(f).mean())
        f = (f - mean) * 1.45 + mean
    elif name == "bw":
        f = np.repeat(luminance(f)[..., None], 3, axis=2)
    elif name == "sepia":
        lum = luminance(f)[..., None]
        f = lum * np.array([1.07, 0.9, 0.68], np.float32) + np.array([0.05, 0.03, 0.0], np.float32)
    return to_u8(np.clip(f, 0, 1))


# --------------------------------------------------------------------------------------------
# Edits: applying them
# --------------------------------------------------------------------------------------------


def _face_for_edit(rgb: Array, identity: Array | None) -> Face:
    """The one face overlays go on: a second crown on a raised hand or a poster's neighbour is a bug."""
    face = main_face(rgb)
    if face is not None:
        return face
    h, w = rgb.shape[:2]
    if identity is not None:
        ih, iw = identity.shape[:2]
        if abs(iw / ih - w / h) < 0.02:
            found = main_face(identity)
            if found is not None:
                return found.scaled(w / iw, h / ih)
    return default_face(w, h)


_DONE = {
    "crown": "crown on", "party_hat": "party hat on", "sunglasses": "sunglasses on",
    "mustache": "mustache on", "halo": "halo on", "horns": "horns on", "warmer": "warmed up",
    "cooler": "cooled down", "brighter": "brightened", "darker": "darkened", "contrast": "contrast boosted",
    "bw": "black and white", "sepia": "sepia-toned",
}
_FLAVOUR = {
    "crown": "looking regal.", "party_hat": "party time!", "sunglasses": "too cool.",
    "mustache": "très distingué.", "halo": "positively angelic.", "horns": "a little devilish.",
    "warmer": "nice and cosy.", "cooler": "cool as ice.", "brighter": "lights up.",
    "darker": "moody.", "contrast": "punchy.", "bw": "timeless.", "sepia": "very vintage.",
    "write": "says it all.",
}


def edit_commentary(ops: list[EditOp]) -> str:
    parts = [f"captioned “{op.text}”" if op.kind == "text" else _DONE[op.name] for op in ops]
    first = next((op for op in ops if op.kind == "accessory"), ops[0])
    text = ", ".join(parts)
    return f"{text[0].upper()}{text[1:]} — {_FLAVOUR[first.name]}"


def apply_edits(rgb: Array, ops: list[EditOp], identity: Array | None = None) -> Array:
    """Apply parsed edits to an RGB uint8 image: accessories, then adjustments, then captions."""
    accessories = [op.name for op in ops if op.kind == "accessory"]
    out = rgb
    if accessories:
        face = _face_for_edit(rgb, identity)
        pil = Image.fromarray(rgb).convert("RGBA")
        for name in ACCESSORY_ORDER:
            if name in accessories:
                ACCESSORIES[name](pil, face)
        out = np.asarray(pil.convert("RGB"))
    for op in ops:
        if op.kind == "adjust":
            out = _adjust(out, op.name)
    texts = [op.text for op in ops if op.kind == "text"]
    if texts:
        pil = Image.fromarray(out).convert("RGBA")
        caption(pil, " ".join(texts))
        out = np.asarray(pil.convert("RGB"))
    return np.ascontiguousarray(out)
