"""The style catalogue: each style's command, title, description and model prompt.

A style's `id` is also its chat command (`/zombie`), so ids follow Telegram's command rules:
lowercase letters, digits and underscores only. The offline engine has one pipeline per id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.i18n import N_, _

# Said in every prompt: the reason people use the bot is to see *themselves*, so identity comes first.
IDENTITY_CLAUSE = (
    "Keep the person unmistakably recognisable as themselves: the same face shape and proportions, "
    "the same skin tone, the same hair colour, length and hairline, the same eye colour and expression, "
    "and any glasses, facial hair, freckles or marks they have. Do not beautify, age, slim, or change "
    "their ethnicity or gender presentation. Keep the pose, framing and composition of the photo."
)

COMMENTARY_CLAUSE = (
    "Return the image, then one short playful sentence (at most 25 words) speaking to the person "
    "about their new avatar. No hashtags, no preamble."
)


@dataclass(frozen=True)
class Style:
    id: str
    title: str
    emoji: str
    description: str
    look: str  # what the style looks like, written for the model
    quips: tuple[str, ...]  # offline commentary templates

    @property
    def command(self) -> str:
        return f"/{self.id}"

    @property
    def name(self) -> str:
        """The title in the current language (`title` itself stays English: it goes into prompts)."""
        return _(self.title)

    @property
    def blurb(self) -> str:
        """The description in the current language."""
        return _(self.description)

    @property
    def label(self) -> str:
        return f"{self.emoji} {self.name}"

    def prompt(self) -> str:
        """The full instruction sent with the selfie."""
        return (
            f"Transform the person in this photo into a {self.title.lower()} avatar. {self.look} "
            f"{IDENTITY_CLAUSE} {COMMENTARY_CLAUSE}"
        )


STYLES: tuple[Style, ...] = (
    Style(
        "zombie", N_("Zombie"), "🧟", N_("Undead you: green-grey skin, hollow eyes, horror-movie grain."),
        "Render them as a cinematic horror-film zombie: sickly grey-green mottled skin, dark sunken eye "
        "sockets, cracked lips, a few tasteful wounds, messy hair, cold desaturated lighting, film grain "
        "and a dark vignette. Gruesome but fun, no gore.",
        (N_("Braaains… and cheekbones. You make a very photogenic zombie."),
         N_("Fresh from the grave and still looking like you."),
         N_("The undead look suits you — a little pale, but very you.")),
    ),
    Style(
        "comic", N_("Comic"), "💥", N_("Western comic-book panel: bold inks, flat colour, halftone dots."),
        "Draw them as a classic American comic-book hero panel: bold black ink outlines, flat saturated "
        "colours, cel shading, Ben-Day halftone dots in the shadows, dramatic lighting.",
        (N_("Issue #1, starring you. Collectors are already lining up."),
         N_("Pow! Fresh off the printing press."),
         N_("Your origin story starts here.")),
    ),
    Style(
        "manga", N_("Manga"), "📖", N_("Black-and-white manga page: screentone and crisp ink lines."),
        "Draw them as a black-and-white Japanese manga illustration: crisp G-pen ink lines, screentone "
        "shading, expressive eyes kept true to their real eye shape, speed lines in the background.",
        (N_("Chapter one: the protagonist appears."), N_("Screentone suits you. Volume 2 when?"),
         N_("Straight off the manga page.")),
    ),
    Style(
        "anime", N_("Anime"), "🌸", N_("Bright anime key-visual: clean cel shading, soft glow."),
        "Paint them as a modern anime key visual: clean line art, soft cel shading, luminous eyes that "
        "keep their real shape and colour, vivid but natural hair colour matching theirs, a soft "
        "pastel sky background with a gentle bloom.",
        (N_("Main-character energy, fully unlocked."), N_("Opening credits, starring you."),
         N_("Ready for your anime debut.")),
    ),
    Style(
        "popart", N_("Pop Art"), "🎨", N_("Warhol-style pop-art grid in four loud colourways."),
        "Make a Warhol-style pop-art silkscreen: a 2x2 grid of the same portrait, each panel in a "
        "different loud flat colourway (hot pink, electric yellow, cyan, orange), high-contrast "
        "posterised tones.",
        (N_("Fifteen minutes of fame? Make it four panels."), N_("Gallery-ready. The Factory would approve."),
         N_("Four colourways, one icon.")),
    ),
    Style(
        "pixel", N_("Pixel Art"), "👾", N_("Retro 16-bit game sprite with a limited palette."),
        "Render them as a 16-bit retro video-game portrait: chunky visible pixels on a coarse grid, a "
        "limited palette of about 16 colours, crisp edges, no anti-aliasing, simple dithering.",
        (N_("Player one has entered the game."), N_("16 bits of pure you."), N_("Achievement unlocked: pixel avatar.")),
    ),
    Style(
        "sketch", N_("Pencil Sketch"), "✏️", N_("Graphite pencil portrait on textured paper."),
        "Draw them as a realistic graphite pencil portrait on off-white textured paper: confident "
        "contour lines, cross-hatched shading, smudged soft tones, a few loose construction lines.",
        (N_("Drawn from life, one pencil stroke at a time."), N_("Sketchbook-worthy."),
         N_("A portrait any art class would pin up.")),
    ),
    Style(
        "cyberpunk", N_("Cyberpunk"), "🌆", N_("Neon-soaked night city, magenta and cyan glow."),
        "Place them in a rain-soaked cyberpunk night city: neon magenta and cyan rim lighting, glowing "
        "signage bokeh behind them, subtle tech accessories, high contrast cinematic colour grade.",
        (N_("Night city's newest legend."), N_("Neon looks good on you."), N_("Jacked in and looking sharp.")),
    ),
    Style(
        "watercolor", N_("Watercolour"), "🖌️", N_("Loose watercolour painting with soft bleeding washes."),
        "Paint them as a loose watercolour portrait on cold-press paper: soft bleeding washes, visible "
        "paper texture, delicate pencil underdrawing, white paper left showing at the edges.",
        (N_("Fresh off the easel, still a little wet."), N_("Soft washes, unmistakably you."),
         N_("Frame-worthy watercolour.")),
    ),
    Style(
        "noir", N_("Film Noir"), "🕵️", N_("1940s black-and-white film still with hard shadows."),
        "Make them the star of a 1940s film-noir still: high-contrast black and white, hard key light, "
        "venetian-blind shadows across the scene, film grain, a smoky moody atmosphere.",
        (N_("It was a dark and stormy night… and you looked great."), N_("The detective will see you now."),
         N_("Straight out of a 1940s thriller.")),
    ),
)

_BY_ID = {style.id: style for style in STYLES}
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
assert all(_COMMAND_RE.match(s.id) for s in STYLES), "style ids must be valid chat commands"

# Spellings people type that mean a catalogue style.
ALIASES = {"pop_art": "popart", "pop": "popart", "pixelart": "pixel", "pencil": "sketch",
           "watercolour": "watercolor", "cyber": "cyberpunk", "undead": "zombie"}


def get_style(name: str) -> Style | None:
    """The style for a command or name (`zombie`, `/Zombie`, `pop-art`), or None."""
    key = name.strip().lstrip("/").lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    return _BY_ID.get(key)


def style_ids() -> list[str]:
    return [s.id for s in STYLES]
