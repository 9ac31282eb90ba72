"""Every sentence the bot says to people, in one place (so it can be translated later)."""

from __future__ import annotations

from core.engines.base import EngineError, NoImage
from core.styles import STYLES, Style

PICK_STYLE = "Nice photo! Pick a style and I'll turn you into an avatar:"
DEFAULT_CAPTION = "Here you are ✨"
REPLY_TO_RESULT = "Reply to one of my pictures with what to change — for example “add a crown”."
EMPTY_INSTRUCTION = "Tell me what to change — for example “add a crown” or “make the lighting warmer”."
UNDO_HOW = "Reply to one of my pictures with /undo to go back a step."
UNDO_FIRST_STEP = ("That's the first step — there's nothing before it. "
                   "Reply to it with another style command to restyle your original photo.")
DOWNLOAD_FAILED = "I couldn't download that photo — please send it again."
SOURCE_GONE = "The picture you replied to is no longer stored — please send the photo again."
INTERNAL_ERROR = "Sorry, something went wrong on my side. Please try again in a moment."
SEND_A_PHOTO = "Send me a selfie and I'll offer you styles — or send it with a caption like /zombie."


def unknown_style(name: str) -> str:
    return f"I don't know the style “{name}”. /styles lists the ones I have."


def style_hint(style: Style) -> str:
    return (f"Send {style.command} as the caption of a selfie, "
            f"or reply to a photo with {style.command}.")


def instruction_too_long(limit: int) -> str:
    return f"That instruction is too long — please keep it under {limit} characters."


def undo_caption(depth: int, commentary: str) -> str:
    step = f"↩️ Back to step {depth}. Reply to this picture to keep editing from here."
    return f"{step}\n\n{commentary}" if commentary else step


def engine_failure(failure: EngineError) -> str:
    if isinstance(failure, NoImage) and failure.text:
        return f"{failure.message}\n\n“{failure.text[:600]}”"
    return failure.message


def styles_list(prefix: str = "/") -> str:
    lines = [f"{s.emoji} {prefix}{s.id} — {s.description}" for s in STYLES]
    return "Styles:\n" + "\n".join(lines)


def help_text(engine_name: str, prefix: str = "/") -> str:
    engine = ("Gemini" if engine_name == "gemini"
              else "the offline engine (no AI model: it understands a fixed set of edits)")
    return (
        "👋 I'm Pix Me! I turn selfies into avatars.\n\n"
        f"1. Send a selfie with a style command as its caption, e.g. {prefix}zombie — "
        "or send a photo alone and pick a style.\n"
        "2. Reply to my picture with changes like “add a crown” or “make the lighting warmer”. "
        "Replying to an older picture continues from that one.\n"
        f"3. Reply with {prefix}undo to go back a step.\n\n"
        f"{styles_list(prefix)}\n\n"
        f"Images are made with {engine}."
    )
