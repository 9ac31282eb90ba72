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
NOT_ALLOWED = "Sorry, this bot is private — its operator hasn't given you access."
ADMINS_ONLY = "Only the bot's admins can see its stats."
WORKING = "🎨 Working on it…"
SERVICE_DOWN_SAVED = ("The image service is down right now — your request is saved "
                      "and will run as soon as it's back.")
FORGET_CONFIRM = ("This deletes everything I keep about you: your photos, every picture I made for you, "
                  "your edit history and any waiting requests. It can't be undone. Go ahead?")
FORGET_YES = "🗑 Yes, delete everything"
FORGET_NO = "Keep my data"
FORGET_KEPT = "OK — nothing was deleted."
NOT_YOUR_BUTTON = "That button belongs to someone else."
UNKNOWN_BUTTON = "That button has expired."
STORAGE_FULL = "Sorry, I'm out of storage space right now — please try again later."
STORAGE_BUSY = "Sorry, I'm overloaded for a moment — please try again in a few seconds."
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


def in_line(position: int) -> str:
    return f"⏳ You're #{position} in line — your picture will appear here."


def cancelled(count: int) -> str:
    if count == 0:
        return "You have nothing waiting or in progress here."
    return f"Cancelled {count} request{'s' if count != 1 else ''}."


def one_at_a_time(pending: int) -> str:
    return (f"One at a time, please — you already have {pending} requests waiting. "
            "Send the next one when a picture arrives, or /cancel.")


def resets_in(seconds: float) -> str:
    hours, minutes = int(seconds // 3600), int(seconds % 3600 // 60)
    return f"at 00:00 UTC (in {hours} h {minutes} min)" if hours else f"at 00:00 UTC (in {minutes} min)"


def user_daily_limit(limit: int, resets: str) -> str:
    return f"You've had your {limit} pictures for today — the limit resets {resets}."


def chat_daily_limit(limit: int, resets: str) -> str:
    return f"This chat has had its {limit} pictures for today — the limit resets {resets}."


def bot_daily_limit(resets: str) -> str:
    return f"I've made all the pictures I can for today — I'll be back {resets}."


def forgotten(images: int) -> str:
    return f"Done — I deleted your history and {images} stored picture{'s' if images != 1 else ''}."


def stats(counts: dict[str, int], waiting: int, running: int, spend_usd: float, engine: str, model: str) -> str:
    total = sum(n for status, n in counts.items() if ":" not in status)
    blocked = counts.get("failed:Blocked", 0) + counts.get("failed:NoImage", 0)
    failed = counts.get("failed", 0) - blocked
    return (
        f"📊 Today (UTC): {total} jobs — {counts.get('delivered', 0)} delivered, {failed} failed, "
        f"{blocked} blocked, {counts.get('cancelled', 0)} cancelled.\n"
        f"Queue: {waiting} waiting, {running} running.\n"
        f"Estimated spend: ${spend_usd:.2f} ({engine}: {model})."
    )


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
        f"3. Reply with {prefix}undo to go back a step; {prefix}cancel stops what you asked for.\n"
        f"{prefix}forget deletes everything I keep about you.\n\n"
        f"{styles_list(prefix)}\n\n"
        f"Images are made with {engine}."
    )
