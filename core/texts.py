"""Every sentence the bot says to people, in one place (so it can be translated later)."""

from __future__ import annotations

import datetime as dt

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


# -- Discord ----------------------------------------------------------------------------------------
NOTHING_TO_REPEAT = "There's no step to repeat here — pick a style for the photo instead."
NO_PICTURE_IN_MESSAGE = "That message has no picture I can use — pick a message with a photo attached."
NOT_AN_IMAGE = "That file isn't a picture I can read — please attach a JPEG, PNG, WebP, GIF or HEIC photo."
EDIT_PROMPT_TITLE = "Edit this picture"
EDIT_PROMPT_LABEL = "What should I change?"
EDIT_PROMPT_PLACEHOLDER = "add a crown and make it warmer"
RESTYLE_PROMPT = "Pick a new style for the original photo:"
BUTTON_EDIT = "Edit"
BUTTON_UNDO = "Undo"
BUTTON_AGAIN = "Again"
BUTTON_STYLE = "Style ▾"


def style_coming(label: str) -> str:
    return f"{label} coming up…"


def discord_help(engine_name: str) -> str:
    engine = ("Gemini" if engine_name == "gemini"
              else "the offline engine (no AI model: it understands a fixed set of edits)")
    return (
        "👋 I'm Pix Me! I turn selfies into avatars.\n\n"
        "1. `/avatar style:<pick one> photo:<your selfie>` — or right-click a message with a photo → "
        "Apps → **Pix Me** and pick a style.\n"
        "2. Under every picture: **Edit** (say what to change), **Undo**, **Again**, **Style ▾**. "
        "You can also reply to my picture with a change like “add a crown”.\n"
        "3. `/styles` lists the styles; `/cancel` stops what you asked for; "
        "`/forget` deletes everything I keep about you.\n"
        "4. Friends together: `/party open` starts an avatar party here (join with `/party join photo:` or "
        "by replying to the lobby with a selfie); `/fuse` blends 2–8 photos into one picture.\n\n"
        f"Images are made with {engine}."
    )


# -- parties and fusion -----------------------------------------------------------------------------

PARTY_GROUPS_ONLY = "Parties are for group chats — add me to a group and send /party there."
PARTY_ALREADY_OPEN = "There's already a party open here — join that one! (It's the message this replies to.)"
PARTY_NOT_OPEN = "That party isn't open any more."
PARTY_NOT_IN = "You're not in this party."
PARTY_LEFT = "You left the party — your selfie won't be used."
PARTY_ALREADY_IN = "You're in! Your selfie is ready."
PARTY_SEND_SELFIE = "You're in! Now reply to the party message with a selfie."
PARTY_REUSE = "📸 Use my last selfie"
PARTY_REUSED = "Your last selfie is in the party."
PARTY_HOST_ONLY = "Only the host or a chat admin can do that."
PARTY_CANCELLED_TOAST = "Party cancelled."
PARTY_STARTING = "Starting the party!"
PARTY_JOIN_HOW = "To join a party, reply to its message with a selfie (or press its Join button)."
PARTY_BUTTONS = (("join", "🙋 Join"), ("leave", "🚪 Leave"), ("start", "▶️ Start"), ("cancel", "✖️ Cancel"))


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def party_lobby(style: Style, theme: str, roster: list[tuple[str, bool, bool]], deadline: float,
                min_members: int, max_members: int) -> str:
    """The lobby message: style, theme, deadline and who's in (name, has a selfie, is the host)."""
    at = dt.datetime.fromtimestamp(deadline, dt.UTC).strftime("%H:%M UTC")
    lines = [f"🎉 Avatar party — {style.label}" + (f": {theme}" if theme else ""),
             f"Starts by itself at {at} with at least {min_members} selfies (room for {max_members}).", "",
             f"Who's in ({len(roster)}/{max_members}):"]
    for i, (name, ready, host) in enumerate(roster, 1):
        state = "📸 selfie in" if ready else "⏳ waiting for a selfie"
        lines.append(f"{i}. {name}{' (host)' if host else ''} — {state}")
    lines += ["", "Press Join, then reply to this message with your selfie."]
    return "\n".join(lines)


def party_reuse_offer(name: str) -> str:
    return f"{name}, reply to the party message with a selfie — or use the one you sent me before:"


def party_full(limit: int) -> str:
    return f"Sorry, the party is full ({limit} people)."


def party_need_more(needed: int, have: int) -> str:
    return f"A party needs at least {needed} selfies to start — {have} so far."


def party_started(names: list[str]) -> str:
    return f"🎉 The party has started with {_names(names)} — your group picture is on its way!"


def party_cancelled(by: str) -> str:
    return f"✖️ The party was cancelled by {by}. No selfies were used."


def party_expired(needed: int) -> str:
    return f"⌛ Time's up — the party needed at least {needed} selfies, so it's closed. Send /party to try again."


def group_caption(commentary: str, names: list[str]) -> str:
    who = f"🎉 {_names(names)}"
    return f"{commentary}\n\n{who}" if commentary else who


def fuse_count(low: int, high: int, got: int) -> str:
    return f"Send {low} to {high} photos as one album with the caption /fuse to blend them — I got {got}."


# -- playground -------------------------------------------------------------------------------------
PLAYGROUND_HINT = ("Upload a selfie (📎, or drop it on the page) and pick a style — "
                   "or press Reply under one of my pictures to say what to change.")


# -- people: settings, persona, history, exports (core/people.py) ------------------------------------
SETTINGS_TITLE_PERSON = "⚙️ Your settings"
SETTINGS_TITLE_CHAT = "⚙️ This group's defaults (set by its admins; they apply to everyone here)"
SETTINGS_ADMINS_ONLY = ("Only this group's admins can change its defaults. "
                        "Your own settings live in a private chat with me: send me /settings there.")
SETTINGS_SAVED = "Saved ✓"
SETTINGS_BACK = "⬅️ Back"
SETTING_AUTO = "auto"
PERSONA_NONE = ("You have no persona yet. Send /persona followed by a few words about yourself "
                "(“a marathon runner who loves cats”), and your pictures will suit you.")
PERSONA_CLEARED = "Your persona is gone. Pictures no longer take it into account."
HISTORY_EMPTY = "Nothing here yet: send me a selfie with a style, e.g. /comic."
EXPORT_HOW = ("Reply to one of my pictures with /export sticker, /export profile or /export original "
              "to get it as a sticker, a square profile picture or the full-resolution file.")
EXPORT_PROFILE_CAPTION = "Your profile picture: 1024×1024."
EXPORT_ORIGINAL_CAPTION = "The original, full resolution."
EXPORT_SENT = "Sent ✓"
SYNTHID_NOTE = "Made by AI."


def settings_view(title: str, model: str, model_price: float, ratio: str | None, size: str | None,
                  delivery: str, has_persona: bool, warnings: list[str]) -> str:
    lines = [title, "",
             f"🤖 Model: {model} (≈${model_price:.3f} a picture)",
             f"📐 Aspect ratio: {ratio or 'auto (follows your photo)'}",
             f"🔍 Size: {size or 'standard'}",
             f"📨 Delivery: {delivery}",
             f"🪪 Persona: {'set (send /persona to see it)' if has_persona else 'none (/persona <about you>)'}"]
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines)


def setting_unsupported(model: str, what: str, value: str, supported: list[str]) -> str:
    return f"⚠️ {model} can't do {what} {value} (it does {', '.join(supported)}), so it uses its own."


def persona_saved(persona: str) -> str:
    return f"Saved. I'll keep this in mind for your pictures (your face stays yours):\n\n{persona}"


def persona_shown(persona: str) -> str:
    return f"Your persona:\n\n{persona}\n\nChange it with /persona <text>, remove it with /persona clear."


def persona_too_long(limit: int) -> str:
    return f"That's a bit long: a persona is at most {limit} characters."


def history_caption(step: int, what: str) -> str:
    return f"Step {step} · {what}\n(Reply to continue from here.)"


def history_intro(count: int) -> str:
    return f"Your last {count} picture{'s' if count != 1 else ''} here, oldest first:"


def unknown_setting(value: str) -> str:
    return f"“{value}” isn't one of the choices. Send /settings to pick from the buttons."


# -- parties and fusion on Discord --------------------------------------------------------------------

DISCORD_PARTY_SEND_SELFIE = ("You're in! Now add your selfie: `/party join photo:<your selfie>` — "
                             "or reply to the party message with it.")
DISCORD_PARTY_NONE = "There's no party open in this channel — start one with `/party open`."
DISCORD_PARTY_JOINED = "📸 Your selfie is in the party!"


def discord_party_already_open(link: str) -> str:
    return f"There's already a party open here — join that one: {link}"
