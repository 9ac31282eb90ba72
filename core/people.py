"""Personal settings, persona, history and exports: the same use cases on every platform.

A person's own choices (model, aspect ratio, size, delivery, persona) apply in their private chat
with the bot; in a group, the defaults its admins chose win, and the person's own fill the gaps.
Choices a model cannot honour are never silently dropped: the settings view and the result's
caption say so in one line. Buttons carry short actions (`set:ratio:16:9`, `export:sticker:42`)
that come back through `Studio.press`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from core import i18n, texts
from core.access import Access
from core.actions import LanguagePress, Outcome, SettingPress, encode
from core.config import MAX_VARIANTS
from core.engines.models import model_info
from core.exports import EXPORT_KINDS, ExportKind, export_async
from core.gate import Gate
from core.i18n import _
from core.languages import Languages
from core.likeness_review import note as likeness_note
from core.ports import MAX_PERSONA_CHARS, Delivery, ImageStore, Node, Preferences, PreferenceScope, Store
from core.replies import Replies
from core.requests import Button, Context, ImageReply, Messenger, ReplyTarget
from core.routing import OFFLINE, EngineRouter
from core.styles import get_style

log = logging.getLogger(__name__)

HISTORY_SIZE = 10
DELIVERIES: tuple[Delivery, ...] = ("photo", "file", "both")
RATIO_CHOICES = ("1:1", "3:4", "4:3", "9:16", "16:9", "4:5", "21:9")
_MENUS = ("main", "model", "ratio", "size", "delivery", "variants")
VARIANT_CHOICES = tuple(str(n) for n in range(1, MAX_VARIANTS + 1))


@dataclass(frozen=True)
class Choice:
    """One option of a setting: what is stored, what people read, whether it is the current one."""

    value: str
    label: str
    current: bool
    note: str = ""  # the price difference, or why the model can't honour it


@dataclass(frozen=True)
class SettingsForm:
    text: str
    menus: dict[str, tuple[str, list[Choice]]]  # setting -> (title, choices), in display order


class People:
    """Settings, persona, history and exports; the studio owns one (`studio.people`)."""

    def __init__(self, *, store: Store, images: ImageStore, router: EngineRouter, languages: Languages,
                 access: Access, replies: Replies, gate: Gate,
                 node_here: Callable[[Context, int], Awaitable[Node | None]], variants: int = 1,
                 show_likeness: bool = True) -> None:
        self.variants = variants  # `[gemini] variants`: candidates a request makes unless a person chose
        self.show_likeness = show_likeness  # `[likeness] show`: /history lists how much of the face each kept
        self.store = store
        self.images = images
        self.router = router  # the engine, model and options a person's choices come to
        self.languages = languages
        self.access = access
        self.replies = replies
        self.gate = gate
        self._node_here = node_here  # the node behind a button, if this presser may act on it

    # -- /settings and /model ------------------------------------------------------------------

    async def show_settings(self, ctx: Context, menu: str = "main") -> None:
        async with self.gate.handling(ctx) as allowed:
            if allowed:
                text, buttons = await self._view(ctx, menu)
                await self.replies.to(ctx).send_buttons(self.replies.target(ctx), text, buttons)

    async def set_model(self, ctx: Context, model: str) -> None:
        """`/model <id>`: choose directly; `/model` alone opens the model menu."""
        if not model.strip():
            await self.show_settings(ctx, "model")
            return
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            answer = await self._choose(ctx, "model", model.strip())
            text, _buttons = await self._view(ctx, "main")
            await self.replies.say(ctx, text if answer.kind == "ok" else answer.text)

    async def press(self, ctx: Context, press: SettingPress) -> Outcome:
        """`set:menu:<name>` switches the keyboard; `set:<key>:<value>` saves; both edit the message in place."""
        if press.key == "menu":
            menu = press.value if press.value in _MENUS else "main"
            answer = Outcome.ok("")
        else:
            answer = await self._choose(ctx, press.key, press.value)
            menu = "main"
        text, buttons = await self._view(ctx, menu)
        await self.replies.to(ctx).edit_text(self.replies.target(ctx), ctx.message_id, text, buttons)
        return answer

    async def _scope(self, ctx: Context) -> tuple[PreferenceScope, str]:
        if ctx.chat.is_private:
            return "person", ctx.person.id
        return "chat", ctx.chat.id

    async def _choose(self, ctx: Context, key: str, value: str) -> Outcome:
        """Store one choice: saved (ok), or refused (not one of the choices, or a group's and not an admin)."""
        scope, owner = await self._scope(ctx)
        if scope == "chat" and not (self.access.is_admin(ctx) or await ctx.is_chat_admin()):
            return Outcome.refused(texts.SETTINGS_ADMINS_ONLY)
        store, platform = self.store, ctx.chat.platform
        current = await store.get_preferences(scope, platform, owner)
        auto = value in ("", texts.SETTING_AUTO, "auto")
        if key == "model" and (auto or value in self.router.choices):
            updated = _replace(current, model=None if auto else value)
        elif key == "ratio" and (auto or value in (*RATIO_CHOICES, *model_info(OFFLINE).aspect_ratios)):
            updated = _replace(current, aspect_ratio=None if auto else value)
        elif key == "size" and (auto or value in self.router.sizes):
            updated = _replace(current, image_size=None if auto else value)
        elif key == "delivery" and (auto or value in DELIVERIES):
            updated = _replace(current, delivery=None if auto else cast(Delivery, value))
        elif key == "variants" and (auto or value in VARIANT_CHOICES):
            updated = _replace(current, variants=None if auto else int(value))
        else:
            return Outcome.refused(texts.unknown_setting(value), alert=False)
        await store.set_preferences(scope, platform, owner, updated)
        return Outcome.ok(texts.SETTINGS_SAVED)

    async def form(self, ctx: Context) -> SettingsForm:
        """The settings as text plus one list of choices per setting (Discord shows them as select menus)."""
        platform = ctx.chat.platform
        scope, owner = await self._scope(ctx)
        shown = await self.store.get_preferences(scope, platform, owner)
        effective = await self.router.effective(platform, ctx.chat.id, ctx.person.id) if scope == "person" else shown
        model = self.router.model_of(effective)
        info = model_info(model)
        title = texts.SETTINGS_TITLE_PERSON if scope == "person" else texts.SETTINGS_TITLE_CHAT
        text = texts.settings_view(title, model, info.price(effective.image_size), effective.aspect_ratio,
                                   effective.image_size, effective.delivery or "photo", bool(effective.persona),
                                   self.router.warnings(effective))
        variants = min(effective.variants or self.variants, MAX_VARIANTS)
        text = f"{text}\n{texts.variants_setting(variants)}"
        base = info.price(effective.image_size)
        models = [Choice(m, m, m == model, _cost_delta(model_info(m).price(None) - base)) for m in self.router.choices]
        ratios = [Choice("auto", texts.SETTING_AUTO, effective.aspect_ratio is None)]
        ratios += [Choice(r, r, r == effective.aspect_ratio,
                          "" if r in info.aspect_ratios else _("⚠️ not on {model}").format(model=model))
                   for r in RATIO_CHOICES]
        unsized = info.price(None)
        sizes = [Choice("auto", texts.SETTING_AUTO, effective.image_size is None)]
        sizes += [Choice(s, s, s == effective.image_size,
                         _cost_delta(info.price(s) - unsized) if s in info.image_sizes
                         else _("⚠️ not on {model}").format(model=model)) for s in self.router.sizes]
        current = effective.delivery or "photo"
        deliveries = [Choice(d, texts.delivery_name(d), d == current) for d in DELIVERIES]
        counts = [Choice("auto", texts.SETTING_AUTO, effective.variants is None)]
        counts += [Choice(n, texts.variants_choice(int(n)), n == str(effective.variants)) for n in VARIANT_CHOICES]
        menus = {"model": (_("🤖 Model"), models), "ratio": (_("📐 Aspect ratio"), ratios),
                 "size": (_("🔍 Size"), sizes), "delivery": (_("📨 Delivery"), deliveries),
                 "variants": (texts.VARIANTS_MENU, counts)}
        return SettingsForm(text, menus)

    async def choose(self, ctx: Context, key: str, value: str) -> Outcome:
        """One choice from a settings menu (Discord's selects)."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return Outcome.refused(texts.NOT_ALLOWED)
            return await self._choose(ctx, key, value)
        return Outcome.refused(texts.INTERNAL_ERROR)

    async def _view(self, ctx: Context, menu: str) -> tuple[str, list[Button]]:
        """The settings as text and buttons: the main menu, or one setting's choices (Telegram, playground)."""
        form = await self.form(ctx)
        if menu in form.menus:
            choices = form.menus[menu][1]
            buttons = [Button(_mark(c.current, f"{c.label} ({c.note})" if c.note else c.label),
                              encode(SettingPress(menu, c.value))) for c in choices]
            return form.text, [*buttons, Button(texts.SETTINGS_BACK, encode(SettingPress("menu", "main")))]
        return form.text, [Button(title, encode(SettingPress("menu", key)))
                           for key, (title, _choices) in form.menus.items()]

    # -- /language ---------------------------------------------------------------------------------

    async def language(self, ctx: Context, wanted: str) -> None:
        """`/language` shows the choices as buttons; `/language es` (or `Spanish`, `auto`) sets it."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            if not wanted.strip():
                await self.replies.to(ctx).send_buttons(
                    self.replies.target(ctx), texts.language_choose(i18n.LANGUAGES[i18n.current()]),
                    self._language_buttons())
                return
            code = "auto" if wanted.strip().casefold() in ("auto", "default", "app") else i18n.language_named(wanted)
            if code is None:
                await self.replies.say(ctx, texts.language_unknown(wanted.strip()[:40], list(i18n.LANGUAGES.values())))
                return
            await self.replies.say(ctx, await self._set_language(ctx, code))

    async def press_language(self, ctx: Context, code: str) -> Outcome:
        """A /language button: save, then show the message again in the new language."""
        if code != "auto" and code not in i18n.LANGUAGES:
            return Outcome.settled(texts.UNKNOWN_BUTTON, alert=True)
        answer = await self._set_language(ctx, code)
        await self.replies.to(ctx).edit_text(self.replies.target(ctx), ctx.message_id, answer, None)
        return Outcome.ok(answer)

    async def _set_language(self, ctx: Context, code: str) -> str:
        """Store the choice ("auto": follow the app again) and switch to it at once; returns the answer."""
        store, platform = self.store, ctx.chat.platform
        current = await store.get_preferences("person", platform, ctx.person.id)
        chosen = None if code == "auto" else code
        await store.set_preferences("person", platform, ctx.person.id, _replace(current, language=chosen))
        self.languages.remember(platform, ctx.person.id, chosen)
        spoken = i18n.set_language(await self.languages.language_for(ctx))
        name = i18n.LANGUAGES[spoken]
        return texts.language_auto(name) if chosen is None else texts.language_set(name)

    @staticmethod
    def _language_buttons() -> list[Button]:
        buttons = [Button(_mark(code == i18n.current(), name), encode(LanguagePress(code)))
                   for code, name in i18n.LANGUAGES.items()]
        return [*buttons, Button(_("🔄 Follow my app's language"), encode(LanguagePress("auto")))]

    # -- /persona ----------------------------------------------------------------------------------

    async def persona(self, ctx: Context, text: str) -> None:
        """`/persona <text>` saves, `/persona` shows, `/persona clear` removes; always the person's own."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            store, platform = self.store, ctx.chat.platform
            current = await store.get_preferences("person", platform, ctx.person.id)
            wanted = " ".join(text.split())
            if not wanted:
                await self.replies.say(ctx, texts.persona_shown(current.persona) if current.persona
                                       else texts.PERSONA_NONE)
            elif wanted.lower() in ("clear", "delete", "remove", "off", "none"):
                await store.set_preferences("person", platform, ctx.person.id, _replace(current, persona=""))
                await self.replies.say(ctx, texts.PERSONA_CLEARED)
            elif len(wanted) > MAX_PERSONA_CHARS:
                await self.replies.say(ctx, texts.persona_too_long(MAX_PERSONA_CHARS))
            else:
                await store.set_preferences("person", platform, ctx.person.id, _replace(current, persona=wanted))
                await self.replies.say(ctx, texts.persona_saved(wanted))

    # -- /history ----------------------------------------------------------------------------------

    async def history(self, ctx: Context) -> None:
        """The person's last pictures in this chat, oldest first, each one replyable again."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            nodes = await self.store.recent_results(ctx.chat.platform, ctx.chat.id, ctx.person.id,
                                                           HISTORY_SIZE)
            if not nodes:
                await self.replies.say(ctx, texts.HISTORY_EMPTY)
                return
            messenger = self.replies.to(ctx)
            target = self.replies.target(ctx)
            await messenger.send_text(target, texts.history_intro(len(nodes)))
            shown = list(reversed(nodes))
            replies = [await self._history_reply(node) for node in shown]
            await self.replies.linking(self._send_gallery_linked(messenger, target, shown, replies))

    async def _send_gallery_linked(self, messenger: Messenger, target: ReplyTarget, shown: list[Node],
                                   replies: list[ImageReply]) -> None:
        """The gallery, each message linked to its picture. One message may show several (Discord: one post,
        its attachments): it means the newest, linked once, so a reply never finds an older picture behind it."""
        sent = await messenger.send_gallery(ReplyTarget(target.platform, target.chat_id), replies)
        newest_in = {message_id: node for node, message_id in zip(shown, sent, strict=True)}
        for message_id, node in newest_in.items():
            await self.store.link_message(node, message_id)

    async def _send_linked(self, ctx: Context, node: Node, reply: ImageReply) -> None:
        """Send `node` in answer to the request and record that its message shows it."""
        await self.store.link_message(node, await self.replies.to(ctx).send_image(self.replies.target(ctx), reply))

    async def _history_reply(self, node: Node) -> ImageReply:
        """A past picture, captioned with its step (and how much of the face it kept)."""
        what = _step_label(node)
        kept = likeness_note(node) if self.show_likeness else None
        return ImageReply(node.id, await self.images.get(node.image_sha), node.mime,
                          texts.history_caption(node.depth, f"{what} · {kept}" if kept else what))

    async def show_step(self, ctx: Context, node_id: int) -> None:
        """One picture of a history gallery, brought out as a result of its own (with its buttons) so a
        reply to it, or an export, means that step."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = await self._node_here(ctx, node_id)
            if node is None:
                return
            reply = await self._history_reply(node)
            await self.replies.linking(self._send_linked(ctx, node, reply))

    # -- exports -------------------------------------------------------------------------------------

    async def export(self, ctx: Context, kind: str, replied_message_id: str | None) -> None:
        """`/export sticker|profile|original` as a reply to a result."""
        async with self.gate.handling(ctx) as allowed:
            if not allowed:
                return
            node = None
            if replied_message_id is not None:
                node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, replied_message_id)
            wanted = kind.strip().lower().split(" ")[0] if kind.strip() else ""
            wanted = {"profile-picture": "profile", "pfp": "profile", "avatar": "profile", "file": "original",
                      "full": "original"}.get(wanted, wanted)
            if node is None or node.kind == "photo" or wanted not in EXPORT_KINDS:
                await self.replies.say(ctx, texts.EXPORT_HOW)
                return
            await self._send_export(ctx, node, wanted)

    async def export_node(self, ctx: Context, kind: str, node_id: int,
                          pressed_message_id: str | None = None) -> Outcome:
        """An export button on a result; returns the toast. The button must name the picture its own message
        shows (`pressed_message_id`, else the context's message), so a forged id reads nothing else in the
        chat; and a person's photo goes to nobody but them."""
        pressed = pressed_message_id or ctx.message_id
        node = await self.store.node_for_message(ctx.chat.platform, ctx.chat.id, pressed)
        if node is None or node.id != node_id or kind not in EXPORT_KINDS \
                or (node.kind == "photo" and node.owner != ctx.person.id):
            return Outcome.refused(texts.UNKNOWN_BUTTON)
        await self._send_export(ctx, node, kind)
        return Outcome.ok(texts.EXPORT_SENT)

    async def _send_export(self, ctx: Context, node: Node, kind: ExportKind) -> None:
        data = await self.images.get(node.image_sha)
        made = await export_async(data, kind, node.model or node.engine or "unknown", f"pixme-{node.id}")
        messenger = self.replies.to(ctx)
        target = self.replies.target(ctx)
        if kind == "sticker":
            await messenger.send_sticker(target, made.data)
            return
        caption = texts.EXPORT_PROFILE_CAPTION if kind == "profile" else texts.EXPORT_ORIGINAL_CAPTION
        message_id = await messenger.send_file(target, ImageReply(node.id, made.data, made.mime, caption,
                                                                              made.file_name))
        if kind == "original":  # the same picture: replying to the file continues from it
            await self.store.link_message(node, message_id)


def _replace(prefs: Preferences, **changes: object) -> Preferences:
    import dataclasses

    return dataclasses.replace(prefs, **changes)  # type: ignore[arg-type]


def _mark(current: bool, label: str) -> str:
    return f"✓ {label}" if current else label


def _cost_delta(usd: float) -> str:
    if abs(usd) < 0.0005:
        return _("same price")
    return f"{'+' if usd > 0 else '−'}${abs(usd):.3f}"


def _step_label(node: Node) -> str:
    if node.kind == "style":
        style = get_style(node.style or "")
        return style.label if style else (node.style or _("style"))
    if node.kind == "fuse":
        return _("🎉 group picture")
    what = node.instruction or _("edit")
    return f"✏️ {what}"[:120]
