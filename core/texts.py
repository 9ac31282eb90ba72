"""Every sentence the bot says to people, in one place, in the language of the person answered.

Constants are written in English, marked with `N_` for the catalog, and translated when read:
`texts.PICK_STYLE` looks the sentence up in the current language (`core.i18n`) each time, so a
module-level constant never freezes one language. Functions translate their template, then fill it
in; templates use named fields (`{name}`) so translators can reorder them.
"""

from __future__ import annotations

import datetime as dt
import time

from core.actions import PartyVerb
from core.engines.base import EngineError, EngineNotice, NoImage, QuotaExhausted
from core.i18n import N_, _, ngettext
from core.styles import STYLES, Style

PICK_STYLE = N_("Nice photo! Pick a style and I'll turn you into an avatar:")
DEFAULT_CAPTION = N_("Here you are ✨")
# A result sent again because its first sending was cut off (the bot stopped) before it was recorded: it may have
# arrived already, and the platform offers no way to ask.
SENT_AGAIN = N_("↻ Sent again after an interruption: if this picture came twice, the two are the same.")
REPLY_TO_RESULT = N_("Reply to one of my pictures with what to change — for example “add a crown”.")
EMPTY_INSTRUCTION = N_("Tell me what to change — for example “add a crown” or “make the lighting warmer”.")
UNDO_HOW = N_("Reply to one of my pictures with /undo to go back a step.")
UNDO_FIRST_STEP = (N_("That's the first step — there's nothing before it. "
                   "Reply to it with another style command to restyle your original photo."))
DOWNLOAD_FAILED = N_("I couldn't download that photo — please send it again.")
SOURCE_GONE = N_("The picture you replied to is no longer stored — please send the photo again.")
INTERNAL_ERROR = N_("Sorry, something went wrong on my side. Please try again in a moment.")
NOT_ALLOWED = N_("Sorry, this bot is private — its operator hasn't given you access.")
ADMINS_ONLY = N_("Only the bot's admins can see its stats.")
WORKING = N_("🎨 Working on it…")
SERVICE_DOWN_SAVED = (N_("The image service is down right now — your request is saved "
                      "and will run as soon as it's back."))
FORGET_CONFIRM = (N_("This deletes everything I keep about you: your photos and every picture made from them "
                  "(whoever asked for it, group pictures you're in too), every picture I made for you, "
                  "your edit history and any waiting requests. It can't be undone. Go ahead?"))
FORGET_YES = N_("🗑 Yes, delete everything")
FORGET_NO = N_("Keep my data")
FORGET_KEPT = N_("OK — nothing was deleted.")
NOT_YOUR_BUTTON = N_("That button belongs to someone else.")
UNKNOWN_BUTTON = N_("That button has expired.")
STORAGE_FULL = N_("Sorry, I'm out of storage space right now — please try again later.")
STORAGE_FULL_KEPT = (N_("Your picture is ready, but I'm out of storage space — "
                     "I'll send it as soon as there's room. No need to ask again."))
STORAGE_BUSY = N_("Sorry, I'm overloaded for a moment — please try again in a few seconds.")
SEND_A_PHOTO = N_("Send me a selfie and I'll offer you styles — or send it with a caption like /zombie.")


def unknown_style(name: str) -> str:
    return _("I don't know the style “{name}”. /styles lists the ones I have.").format(name=name)


def style_hint(style: Style, platform: str = "telegram") -> str:
    """How to use a style command typed with no photo: each front-end names its own gestures."""
    if platform == "playground":  # no captions there: a photo is uploaded, then replied to
        return _("Upload a selfie and pick {style} under it, or reply to your photo with {command}.").format(
            style=style.label, command=style.command)
    return _("Send {command} as the caption of a selfie, or reply to a photo with {command}.").format(
        command=style.command)


def instruction_too_long(limit: int) -> str:
    return _("That instruction is too long — please keep it under {limit} characters.").format(limit=limit)


def undo_caption(depth: int, commentary: str) -> str:
    step = _("↩️ Back to step {depth}. Reply to this picture to keep editing from here.").format(depth=depth)
    return f"{step}\n\n{commentary}" if commentary else step


def engine_failure(failure: EngineError) -> str:
    message = _(failure.message)  # engines mark their fixed sentences with N_; formatted ones are translated
    if isinstance(failure, QuotaExhausted):
        return message.format(resets=duration(failure.until - time.time()))
    if isinstance(failure, NoImage) and failure.text:
        return f"{message}\n\n“{failure.text[:600]}”"
    return message


def in_line(position: int) -> str:
    return _("⏳ You're #{position} in line — your picture will appear here.").format(position=position)


def cancelled(count: int) -> str:
    if count == 0:
        return _("You have nothing waiting or in progress here.")
    return ngettext("Cancelled {count} request.", "Cancelled {count} requests.", count).format(count=count)


def one_at_a_time(pending: int) -> str:
    return ngettext("One at a time, please — you already have {pending} request waiting. "
                    "Send the next one when a picture arrives, or /cancel.",
                    "One at a time, please — you already have {pending} requests waiting. "
                    "Send the next one when a picture arrives, or /cancel.", pending).format(pending=pending)


def resets_in(seconds: float) -> str:
    hours, minutes = int(seconds // 3600), int(seconds % 3600 // 60)
    if hours:
        return _("at 00:00 UTC (in {hours} h {minutes} min)").format(hours=hours, minutes=minutes)
    return _("at 00:00 UTC (in {minutes} min)").format(minutes=minutes)


def duration(seconds: float) -> str:
    """A wait as people say it: "3 h 20 min", "12 min"."""
    seconds = max(60.0, seconds)
    hours, minutes = int(seconds // 3600), int(seconds % 3600 // 60)
    if hours:
        return _("{hours} h {minutes} min").format(hours=hours, minutes=minutes)
    return _("{minutes} min").format(minutes=minutes)


def spend_limit(limit_usd: float, resets: str, offline_offered: bool) -> str:
    text = _("The bot has spent its ${limit} for paid pictures today, so it makes no more until the limit "
             "resets {resets}.").format(limit=f"{limit_usd:.2f}", resets=resets)
    if offline_offered:
        text += " " + _("The free offline engine still works: /model offline.")
    return text


def user_daily_limit(limit: int, resets: str) -> str:
    return ngettext("You've had your {limit} picture for today — the limit resets {resets}.",
                    "You've had your {limit} pictures for today — the limit resets {resets}.",
                    limit).format(limit=limit, resets=resets)


def chat_daily_limit(limit: int, resets: str) -> str:
    return ngettext("This chat has had its {limit} picture for today — the limit resets {resets}.",
                    "This chat has had its {limit} pictures for today — the limit resets {resets}.",
                    limit).format(limit=limit, resets=resets)


def bot_daily_limit(resets: str) -> str:
    return _("I've made all the pictures I can for today — I'll be back {resets}.").format(resets=resets)


def forgotten(images: int) -> str:
    return ngettext("Done — I deleted your history and {images} stored picture.",
                    "Done — I deleted your history and {images} stored pictures.", images).format(images=images)


def stats(counts: dict[str, int], waiting: int, running: int, spend: dict[tuple[str, str], tuple[int, float]],
          engine: str, model: str, notices: list[EngineNotice] | None = None, daily_usd: float = 0.0, *,
          retries: dict[tuple[str, str], tuple[int, float]] | None = None,
          likeness: dict[tuple[str, str], tuple[float, int]] | None = None) -> str:
    """Today's numbers for admins: jobs, queue, spend by model and size (likeness retries apart), what the engine
    had to do, and the average likeness by model and style."""
    total = sum(n for status, n in counts.items() if ":" not in status)
    blocked = counts.get("failed:Blocked", 0)
    failed = counts.get("failed", 0) - blocked
    retries = retries or {}
    spent = sum(usd for _n, usd in spend.values()) + sum(usd for _n, usd in retries.values())
    lines = [_(
        "📊 Today (UTC): {total} jobs — {delivered} delivered, {failed} failed, {blocked} blocked, "
        "{cancelled} cancelled.\nQueue: {waiting} waiting, {running} running.\n"
        "Estimated spend: ${spend} ({engine}: {model})."
    ).format(total=total, delivered=counts.get("delivered", 0), failed=failed, blocked=blocked,
             cancelled=counts.get("cancelled", 0), waiting=waiting, running=running, spend=f"{spent:.2f}",
             engine=engine, model=model)]
    if daily_usd:
        lines.append(_("Daily spending limit: ${limit}.").format(limit=f"{daily_usd:.2f}"))
    for (name, size), (n, usd) in sorted(spend.items(), key=lambda item: -item[1][1]):
        lines.append(f"  • {name or '?'} {size or '1K'}: {n} × ≈ ${usd / max(1, n):.3f} = ${usd:.2f}")
    for (name, size), (n, usd) in sorted(retries.items(), key=lambda item: -item[1][1]):
        lines.append("  ↻ " + ngettext("{model} {size}: {count} likeness retry (not charged to anyone) = ${usd}",
                                        "{model} {size}: {count} likeness retries (not charged to anyone) = ${usd}",
                                        n).format(model=name or "?", size=size or "1K", count=n, usd=f"{usd:.2f}"))
    for notice in notices or []:
        lines.append(engine_notice(notice))
    if likeness:
        lines.append(_("Face kept, on average (model · style: pictures):"))
        for (name, style), (mean, n) in sorted(likeness.items()):
            lines.append(f"  • {name or '?'} · {style or '—'}: {mean:.0f}% ({n})")
    return "\n".join(lines)


def engine_notice(notice: EngineNotice) -> str:
    if notice.kind == "switched":
        return _("⚠️ Model {old} {why}: using {new} instead.").format(old=notice.model, why=notice.why,
                                                                      new=notice.other)
    if notice.kind == "deprecated":
        return _("⚠️ Model {model} is deprecated (shuts down {date}); its successor is {successor}.").format(
            model=notice.model, date=notice.why or "?", successor=notice.other or "?")
    return _("⛔ Today's quota of {model} is used up: no calls to it for {wait} (it resets at midnight Pacific "
             "time).").format(model=notice.model, wait=duration(notice.until - time.time()))


def styles_list(prefix: str = "/") -> str:
    lines = [f"{s.emoji} {prefix}{s.id} — {s.blurb}" for s in STYLES]
    return _("Styles:") + "\n" + "\n".join(lines)


def _engine_phrase(engine_name: str) -> str:
    if engine_name == "gemini":
        return "Gemini"
    return _("the offline engine (no AI model: it understands a fixed set of edits)")


def help_text(engine_name: str, prefix: str = "/") -> str:
    return _(
        "👋 I'm Pix Me! I turn selfies into avatars.\n\n"
        "1. Send a selfie with a style command as its caption, e.g. {p}zombie — "
        "or send a photo alone and pick a style.\n"
        "2. Reply to my picture with changes like “add a crown” or “make the lighting warmer”. "
        "Replying to an older picture continues from that one.\n"
        "3. Reply with {p}undo to go back a step; {p}cancel stops what you asked for.\n"
        "{p}settings: model, shape, size and delivery; {p}persona: a few words about you; "
        "{p}history: your last pictures; {p}language: the language I speak.\n"
        "{p}forget deletes everything I keep about you.\n\n"
        "{styles}\n\n"
        "Images are made with {engine}."
    ).format(p=prefix, styles=styles_list(prefix), engine=_engine_phrase(engine_name))


# -- Discord ----------------------------------------------------------------------------------------
NOTHING_TO_REPEAT = N_("There's no step to repeat here — pick a style for the photo instead.")
NO_PICTURE_IN_MESSAGE = N_("That message has no picture I can use — pick a message with a photo attached.")
NOT_AN_IMAGE = N_("That file isn't a picture I can read — please attach a JPEG, PNG, WebP, GIF or HEIC photo.")
EDIT_PROMPT_TITLE = N_("Edit this picture")
EDIT_PROMPT_LABEL = N_("What should I change?")
EDIT_PROMPT_PLACEHOLDER = N_("add a crown and make it warmer")
RESTYLE_PROMPT = N_("Pick a new style for the original photo:")
BUTTON_EDIT = N_("Edit")
BUTTON_UNDO = N_("Undo")
BUTTON_AGAIN = N_("Again")
BUTTON_STYLE = N_("Style ▾")
PICK_A_STYLE = N_("Pick a style")
STICKER_CAPTION_DISCORD = N_("Your sticker (512×512 WebP): save it and add it to a server's stickers.")


def style_coming(label: str) -> str:
    return _("{label} coming up…").format(label=label)


def discord_help(engine_name: str) -> str:
    return _(
        "👋 I'm Pix Me! I turn selfies into avatars.\n\n"
        "1. `/avatar style:<pick one> photo:<your selfie>` — or right-click a message with a photo → "
        "Apps → **Pix Me** and pick a style.\n"
        "2. Under every picture: **Edit** (say what to change), **Undo**, **Again**, **Style ▾**. "
        "You can also reply to my picture with a change like “add a crown”.\n"
        "3. `/styles` lists the styles; `/cancel` stops what you asked for; "
        "`/forget` deletes everything I keep about you.\n"
        "4. Friends together: `/party open` starts an avatar party here (join with `/party join photo:` or "
        "by replying to the lobby with a selfie); `/fuse` blends 2–8 photos into one picture.\n"
        "5. Make it yours: `/settings` (model, shape, size, delivery), `/persona`, `/history`, `/language`.\n\n"
        "Images are made with {engine}."
    ).format(engine=_engine_phrase(engine_name))


# -- parties and fusion -----------------------------------------------------------------------------

PARTY_GROUPS_ONLY = N_("Parties are for group chats — add me to a group and send /party there.")
PARTY_ALREADY_OPEN = N_("There's already a party open here — join that one! (It's the message this replies to.)")
PARTY_NOT_OPEN = N_("That party isn't open any more.")
PARTY_NOT_IN = N_("You're not in this party.")
PARTY_LEFT = N_("You left the party — your selfie won't be used.")
PARTY_ALREADY_IN = N_("You're in! Your selfie is ready.")
PARTY_SEND_SELFIE = N_("You're in! Now reply to the party message with a selfie.")
PARTY_REUSE = N_("📸 Use my last selfie")
PARTY_REUSED = N_("Your last selfie is in the party.")
PARTY_HOST_ONLY = N_("Only the host or a chat admin can do that.")
PARTY_CANCELLED_TOAST = N_("Party cancelled.")
PARTY_STARTING = N_("Starting the party!")
PARTY_JOIN_HOW = N_("To join a party, reply to its message with a selfie (or press its Join button).")
def party_buttons() -> list[tuple[PartyVerb, str]]:
    return [("join", _("🙋 Join")), ("leave", _("🚪 Leave")), ("start", _("▶️ Start")), ("cancel", _("✖️ Cancel"))]


def _names(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return _("{names} and {last}").format(names=", ".join(names[:-1]), last=names[-1])


def party_lobby(style: Style, theme: str, roster: list[tuple[str, bool, bool]], deadline: float,
                min_members: int, max_members: int) -> str:
    """The lobby message: style, theme, deadline and who's in (name, has a selfie, is the host)."""
    at = dt.datetime.fromtimestamp(deadline, dt.UTC).strftime("%H:%M UTC")
    lines = [_("🎉 Avatar party — {style}").format(style=style.label) + (f": {theme}" if theme else ""),
             _("Starts by itself at {at} with at least {min} selfies (room for {max}).").format(
                 at=at, min=min_members, max=max_members), "",
             _("Who's in ({count}/{max}):").format(count=len(roster), max=max_members)]
    for i, (name, ready, host) in enumerate(roster, 1):
        state = _("📸 selfie in") if ready else _("⏳ waiting for a selfie")
        who = _("{name} (host)").format(name=name) if host else name
        lines.append(f"{i}. {who} — {state}")
    lines += ["", _("Press Join, then reply to this message with your selfie.")]
    return "\n".join(lines)


def party_reuse_offer(name: str) -> str:
    return _("{name}, reply to the party message with a selfie — or use the one you sent me before:").format(
        name=name)


def party_full(limit: int) -> str:
    return _("Sorry, the party is full ({limit} people).").format(limit=limit)


def party_need_more(needed: int, have: int) -> str:
    return _("A party needs at least {needed} selfies to start — {have} so far.").format(needed=needed, have=have)


def party_started(names: list[str]) -> str:
    return _("🎉 The party has started with {names} — your group picture is on its way!").format(
        names=_names(names))


def party_cancelled(by: str) -> str:
    return _("✖️ The party was cancelled by {by}. No selfies were used.").format(by=by)


def party_expired(needed: int) -> str:
    return _("⌛ Time's up — the party needed at least {needed} selfies, so it's closed. "
             "Send /party to try again.").format(needed=needed)


def group_caption(commentary: str, names: list[str]) -> str:
    who = f"🎉 {_names(names)}"
    return f"{commentary}\n\n{who}" if commentary else who


def fuse_count(low: int, high: int, got: int) -> str:
    return _("Send {low} to {high} photos as one album with the caption /fuse to blend them — I got {got}.").format(
        low=low, high=high, got=got)


# -- playground -------------------------------------------------------------------------------------
PLAYGROUND_HINT = (N_("Upload a selfie (the paperclip button, or drop it on the page) and pick a style — "
                   "or press Reply under a picture to say what to change."))


def playground_too_big(size: int) -> str:
    """An upload over the limit (the page has no "photo rather than file" choice to suggest)."""
    return _("That file is {size} MB; I can take photos up to 20 MB — please pick a smaller one.").format(
        size=f"{size / 1_048_576:.0f}")


def playground_help(engine_name: str) -> str:
    return _(
        "👋 I'm Pix Me! I turn selfies into avatars.\n\n"
        "1. Upload a selfie with the paperclip button (or drop it on the page) and pick a style under it — "
        "or press Reply under your photo and type a style command such as /zombie.\n"
        "2. Press Reply under one of my pictures and say what to change, like “add a crown” or "
        "“make the lighting warmer”. Replying to an older picture continues from that one.\n"
        "3. Undo, Again and Restyle are under every picture; the buttons below them make a sticker, "
        "a profile picture or the original file. /cancel stops what you asked for.\n"
        "4. Friends together: /party opens an avatar party; type another name under “You are” to join it "
        "as someone else.\n"
        "5. /settings: model, shape, size and delivery; /persona: a few words about you; "
        "/history: your last pictures; /language: the language I speak. /forget deletes everything "
        "I keep about you.\n\n"
        "{styles}\n\n"
        "Images are made with {engine}."
    ).format(styles=styles_list(), engine=_engine_phrase(engine_name))


# -- people: settings, persona, history, exports (core/people.py) ------------------------------------
SETTINGS_TITLE_PERSON = N_("⚙️ Your settings")
SETTINGS_TITLE_CHAT = N_("⚙️ This group's defaults (set by its admins; they apply to everyone here)")
SETTINGS_ADMINS_ONLY = (N_("Only this group's admins can change its defaults. "
                        "Your own settings live in a private chat with me: send me /settings there."))
SETTINGS_SAVED = N_("Saved ✓")
SETTINGS_BACK = N_("⬅️ Back")
SETTING_AUTO = N_("auto")
PERSONA_NONE = (N_("You have no persona yet. Send /persona followed by a few words about yourself "
                "(“a marathon runner who loves cats”), and your pictures will suit you."))
PERSONA_CLEARED = N_("Your persona is gone. Pictures no longer take it into account.")
HISTORY_EMPTY = N_("Nothing here yet: send me a selfie with a style, e.g. /comic.")
EXPORT_HOW = (N_("Reply to one of my pictures with /export sticker, /export profile or /export original "
              "to get it as a sticker, a square profile picture or the full-resolution file."))
EXPORT_PROFILE_CAPTION = N_("Your profile picture: 1024×1024.")
EXPORT_ORIGINAL_CAPTION = N_("The original, full resolution.")
EXPORT_SENT = N_("Sent ✓")
SYNTHID_NOTE = N_("Made by AI.")


def export_buttons() -> list[tuple[str, str]]:
    """The export buttons under a result: (label, kind) for `export:<kind>:<node id>` actions."""
    return [(_("🏷 Sticker"), "sticker"), (_("🖼 Profile pic"), "profile"), (_("📄 Original"), "original")]


def settings_view(title: str, model: str, model_price: float, ratio: str | None, size: str | None,
                  delivery: str, has_persona: bool, warnings: list[str]) -> str:
    lines = [title, "",
             _("🤖 Model: {model} (≈${price} a picture)").format(model=model, price=f"{model_price:.3f}"),
             _("📐 Aspect ratio: {ratio}").format(ratio=ratio or _("auto (follows your photo)")),
             _("🔍 Size: {size}").format(size=size or _("standard")),
             _("📨 Delivery: {delivery}").format(delivery=delivery_name(delivery)),
             _("🪪 Persona: {persona}").format(
                 persona=_("set (send /persona to see it)") if has_persona else _("none (/persona <about you>)"))]
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines)


def setting_unsupported(model: str, what: str, value: str, supported: list[str]) -> str:
    return _("⚠️ {model} can't do {what} {value} (it does {supported}), so it uses its own.").format(
        model=model, what=what, value=value, supported=", ".join(supported))


def persona_saved(persona: str) -> str:
    return _("Saved. I'll keep this in mind for your pictures (your face stays yours):") + f"\n\n{persona}"


def persona_shown(persona: str) -> str:
    return (_("Your persona:") + f"\n\n{persona}\n\n"
            + _("Change it with /persona <text>, remove it with /persona clear."))


def persona_too_long(limit: int) -> str:
    return _("That's a bit long: a persona is at most {limit} characters.").format(limit=limit)


def history_caption(step: int, what: str) -> str:
    return _("Step {step} · {what}\n(Reply to continue from here.)").format(step=step, what=what)


def history_intro(count: int) -> str:
    return ngettext("Your last picture here:", "Your last {count} pictures here, oldest first:", count).format(
        count=count)


def unknown_setting(value: str) -> str:
    return _("“{value}” isn't one of the choices. Send /settings to pick from the buttons.").format(value=value)


# -- parties and fusion on Discord --------------------------------------------------------------------

DISCORD_PARTY_SEND_SELFIE = (N_("You're in! Now add your selfie: `/party join photo:<your selfie>` — "
                             "or reply to the party message with it."))
DISCORD_HISTORY_PICK = N_("Continue from a step…")
DISCORD_HISTORY_HINT = N_("Pick a step in the menu to bring it out and reply to it; a reply to this message "
                          "continues from the newest.")
DISCORD_PARTY_NONE = N_("There's no party open in this channel — start one with `/party open`.")
DISCORD_PARTY_JOINED = N_("📸 Your selfie is in the party!")


def discord_party_already_open(link: str) -> str:
    return _("There's already a party open here — join that one: {link}").format(link=link)


# -- languages ---------------------------------------------------------------------------------------

def language_choose(name: str) -> str:
    return _("🌐 Which language should I speak with you? Now: {language}.").format(language=name)


def language_set(name: str) -> str:
    # TRANSLATORS: {language} is the language's own name, e.g. "Español".
    return _("🌐 I'll speak {language} with you from now on.").format(language=name)


def language_unknown(value: str, choices: list[str]) -> str:
    return _("I don't speak “{value}” yet — I can speak {choices}.").format(value=value, choices=", ".join(choices))


def language_auto(name: str) -> str:
    return _("🌐 I'll follow your app's language again (now: {language}).").format(language=name)


def delivery_name(delivery: str) -> str:
    """How a delivery mode is called in the settings."""
    names = {"photo": _("photo"), "file": _("full-resolution file"), "both": _("photo and file")}
    return names.get(delivery, delivery)


# -- variants and style packs -------------------------------------------------------------------------
VARIANTS_PICK = N_("Pick one to continue from — or reply to any of them with a change.")
VARIANT_PICKED = N_("Here it is — reply to it with a change to continue from it.")
VARIANTS_PLACEHOLDER = N_("Continue from…")
VARIANTS_MENU = N_("🎲 Variants")


def album_caption(number: int, style_label: str, commentary: str) -> str:
    """One picture of several made together: its number (to pick it by), a style pack's style, its commentary."""
    return f"{number}. {style_label} — {commentary}" if style_label else f"{number}. {commentary}"


def variant_label(number: int) -> str:
    """A button or menu entry choosing the picture numbered `number`."""
    return _("Continue from {number}").format(number=number)


def variants_setting(count: int) -> str:
    """The settings line saying how many candidates a request makes."""
    return ngettext("🎲 Variants: {count} picture a request",
                    "🎲 Variants: {count} pictures a request (each counts as a picture)", count).format(count=count)


def variants_choice(count: int) -> str:
    return ngettext("{count} picture", "{count} pictures", count).format(count=count)


def not_enough_left(pictures: int, left: int, resets: str) -> str:
    """A request for several pictures when fewer are left today: refused whole, up front, in one line."""
    return ngettext("That takes {pictures} pictures, and only {left} is left for today — ask for fewer "
                    "(the limit resets {resets}).",
                    "That takes {pictures} pictures, and only {left} are left for today — ask for fewer "
                    "(the limit resets {resets}).", left).format(pictures=pictures, left=left, resets=resets)


def pack_how(platform: str, default: int, most: int) -> str:
    """How to ask for a style pack, as each front-end's people do it."""
    if platform == "discord":
        return _("Use `/pack photo:<your selfie>` for the same selfie in {default} styles at once "
                 "(`count:` up to {most}).").format(default=default, most=most)
    return _("Send /pack as the caption of a selfie (or reply to one with it) for the same selfie in {default} "
             "styles at once; /pack 3 makes 3, at most {most}.").format(default=default, most=most)


def pack_count(most: int, got: str) -> str:
    return _("A style pack has 1 to {most} styles — “{got}” isn't one of those numbers.").format(most=most, got=got)
# -- sharing: inline results, /me, the group photo (part 12) -------------------------------------------
INLINE_NONE = N_("No pictures to share yet — make one")
ME_NO_PROFILE_PHOTO = N_("I can't see a profile picture of yours — set one (visible to everyone), "
                         "or send me a selfie instead.")
ME_NOT_HERE = N_("There are no profile pictures here — send me a selfie instead.")
GROUP_PHOTO_BUTTON = N_("🖼 Set as group photo")
GROUP_PHOTO_SET = N_("Done — it's the group photo now ✓")
GROUP_PHOTO_ADMINS_ONLY = N_("Only the group's admins can change its photo.")
GROUP_PHOTO_NO_RIGHT = N_("I'm not allowed to change this group's photo — an admin can give me that right.")


def inline_none_for(style_name: str) -> str:
    """The button over an empty inline answer to a style filter (`@bot zombie`)."""
    return _("No {style} pictures to share yet — make one").format(style=style_name)
# -- credits (core/credits.py) -------------------------------------------------------------------------

PACK_GONE = N_("That pack isn't on sale any more — ask for a picture again to see the current packs.")
CREDITS_OFF = N_("Pictures are free here — there are no credits to count.")
CREDITS_ADMIN = N_("You're one of the bot's admins: your pictures need no credits.")
REFUND_ADMINS_ONLY = N_("Only the bot's admins can refund payments.")
REFUND_HOW = N_("Send /refund followed by the payment's charge id (it's in the payment's receipt).")
REFUND_UNKNOWN = N_("I have no payment with that charge id.")
REFUND_NOT_HERE = N_("That payment was made on another platform, which isn't running now.")


def out_of_pictures(free_daily: int, resets: str, packs_here: bool) -> str:
    text = ngettext("You've had your {free} free picture for today — more {resets}.",
                    "You've had your {free} free pictures for today — more {resets}.",
                    free_daily).format(free=free_daily, resets=resets)
    if packs_here:
        text += " " + _("Or pick a pack of pictures below, paid with Telegram Stars ⭐:")
    return text


def pack_title(images: int) -> str:
    return ngettext("{images} picture", "{images} pictures", images).format(images=images)


def pack_description(images: int) -> str:
    return ngettext("{images} avatar picture from Pix Me!, in any chat with me. It doesn't expire, and a "
                    "picture that fails gives its credit back.",
                    "{images} avatar pictures from Pix Me!, in any chat with me. They don't expire, and a "
                    "picture that fails gives its credit back.", images).format(images=images)


def pack_paid(images: int, credits: int) -> str:
    added = ngettext("⭐ Thank you! {images} picture added.", "⭐ Thank you! {images} pictures added.",
                     images).format(images=images)
    return added + " " + ngettext("You have {credits} credit now.", "You have {credits} credits now.",
                                  credits).format(credits=credits)


def balance(free_left: int, free_daily: int, resets: str, credits: int, packs: list[tuple[int, int]]) -> str:
    """/balance: free pictures left today, credits, and (where they are sold) the packs."""
    lines = [_("🎟 Free pictures left today: {left} of {daily} (more {resets}).").format(
                 left=free_left, daily=free_daily, resets=resets),
             ngettext("⭐ Credits: {credits} picture.", "⭐ Credits: {credits} pictures.", credits).format(
                 credits=credits)]
    if packs:
        offers = ", ".join(_("{images} for {stars} ⭐").format(images=images, stars=stars) for stars, images in packs)
        lines.append(_("Packs: {offers} — offered when your free pictures run out.").format(offers=offers))
    return "\n".join(lines)


def pay_support(contact: str) -> str:
    if contact:
        return _("💬 Help with a payment: pictures that fail, are blocked or are cancelled give their credit back "
                 "by themselves, and /balance shows what you have. If a pack didn't arrive or you paid by mistake, "
                 "write to {contact} with the date of the payment — pictures you haven't used can be "
                 "refunded.").format(contact=contact)
    return _("💬 Help with a payment: pictures that fail, are blocked or are cancelled give their credit back by "
             "themselves, and /balance shows what you have. If a pack didn't arrive or you paid by mistake, tell "
             "the bot's operator the date of the payment — pictures you haven't used can be refunded.")


def refund_done(stars: int, removed: int, images: int) -> str:
    return ngettext("Refunded: {stars} ⭐ went back to the payer; {removed} of the pack's {images} picture was "
                    "unused and taken back.",
                    "Refunded: {stars} ⭐ went back to the payer; {removed} of the pack's {images} pictures were "
                    "unused and taken back.", images).format(stars=stars, removed=removed, images=images)


def refund_refused(reason: str) -> str:
    return _("Telegram didn't refund it: {reason}").format(reason=reason)


# -- every constant above is read through the current language ----------------------------------------
# The English sentences move out of the module namespace into _SOURCE, so `texts.NAME` reaches
# __getattr__ and is translated at the moment it is read, in the language of the person answered.
_SOURCE: dict[str, str] = {name: value for name, value in globals().items()
                           if name.isupper() and not name.startswith("_") and isinstance(value, str)}
for _name in _SOURCE:
    del globals()[_name]


def __getattr__(name: str) -> str:
    try:
        return _(_SOURCE[name])
    except KeyError:
        raise AttributeError(f"module 'core.texts' has no attribute {name!r}") from None


def party_send_selfie(platform: str) -> str:
    """What to do after joining a party: on Discord the ways in are a command or a reply with the photo."""
    return _(_SOURCE["DISCORD_PARTY_SEND_SELFIE" if platform == "discord" else "PARTY_SEND_SELFIE"])


def help_for(platform: str, engine_name: str) -> str:
    """/help as each front-end's people do things: the playground has no captions, only uploads and Reply;
    Discord has slash commands with parameters and message menus."""
    if platform == "playground":
        return playground_help(engine_name)
    return discord_help(engine_name) if platform == "discord" else help_text(engine_name)


def styles_for(platform: str) -> str:
    """/styles: where a style is not a command of its own (Discord's /avatar style:), no slash before it."""
    return styles_list(prefix="" if platform == "discord" else "/")


# -- likeness -------------------------------------------------------------------------------------------


def face_kept(percent: int) -> str:
    """How much of the person's face a picture kept (core/likeness.py), as its caption ends."""
    return _("face kept {percent}%").format(percent=percent)


def no_face_found() -> str:
    """A picture in which the face model found no face, said instead of a score."""
    return _("no face found")


def group_likeness(names: list[str], recognisable: int, total: int) -> str:
    """Who a group picture keeps recognisable: named at a party, counted for a /fuse album."""
    if names and recognisable == total:
        return _("Everyone recognisable: {names}").format(names=_names(names))
    if names:
        return _("Recognisable: {names} ({count} of {total})").format(names=_names(names), count=recognisable,
                                                                      total=total)
    return ngettext("{count} of {total} face recognisable", "{count} of {total} faces recognisable",
                    total).format(count=recognisable, total=total)
