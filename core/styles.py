"""The style catalogue: each style's command, title, description and model prompt.

A style's `id` is also its chat command (`/zombie`), so ids follow Telegram's command rules:
lowercase letters, digits and underscores only. The offline engine has one pipeline per id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    def label(self) -> str:
        return f"{self.emoji} {self.title}"

    def prompt(self) -> str:
        """The full instruction sent with the selfie."""
        return (
            f"Transform the person in this photo into a {self.title.lower()} avatar. {self.look} "
            f"{IDENTITY_CLAUSE} {COMMENTARY_CLAUSE}"
        )


STYLES: tuple[Style, ...] = (
    Style(
        "zombie", "Zombie", "🧟", "Undead you: green-grey skin, hollow eyes, horror-movie grain.",
        "Render them as a cinematic horror-film zombie: sickly grey-green mottled skin, dark sunken eye "
        "sockets, cracked lips, a few tasteful wounds, messy hair, cold desaturated lighting, film grain "
        "and a dark vignette. Gruesome but fun, no gore.",
        ("Braaains… and cheekbones. You make a very photogenic zombie.",
         "Fresh from the grave and still looking like you.",
         "The undead look suits you — a little pale, but very you."),
    ),
    Style(
        "comic", "Comic", "💥", "Western comic-book panel: bold inks, flat colour, halftone dots.",
        "Draw them as a classic American comic-book hero panel: bold black ink outlines, flat saturated "
        "colours, cel shading, Ben-Day halftone dots in the shadows, dramatic lighting.",
        ("Issue #1, starring you. Collectors are already lining up.",
         "Pow! Fresh off the printing press.",
         "Your origin story starts here."),
    ),
    Style(
        "manga", "Manga", "📖", "Black-and-white manga page: screentone and crisp ink lines.",
        "Draw them as a black-and-white Japanese manga illustration: crisp G-pen ink lines, screentone "
        "shading, expressive eyes kept true to their real eye shape, speed lines in the background.",
        ("Chapter one: the protagonist appears.", "Screentone suits you. Volume 2 when?",
         "Straight off the manga page."),
    ),
    Style(
        "anime", "Anime", "🌸", "Bright anime key-visual: clean cel shading, soft glow.",
        "Paint them as a modern anime key visual: clean line art, soft cel shading, luminous eyes that "
        "keep their real shape and colour, vivid but natural hair colour matching theirs, a soft "
        "pastel sky background with a gentle bloom.",
        ("Main-character energy, fully unlocked.", "Opening credits, starring you.",
         "Ready for your anime debut."),
    ),
    Style(
        "popart", "Pop Art", "🎨", "Warhol-style pop-art grid in four loud colourways.",
        "Make a Warhol-style pop-art silkscreen: a 2x2 grid of the same portrait, each panel in a "
        "different loud flat colourway (hot pink, electric yellow, cyan, orange), high-contrast "
        "posterised tones.",
        ("Fifteen minutes of fame? Make it four panels.", "Gallery-ready. The Factory would approve.",
         "Four colourways, one icon."),
    ),
    Style(
        "pixel", "Pixel Art", "👾", "Retro 16-bit game sprite with a limited palette.",
        "Render them as a 16-bit retro video-game portrait: chunky visible pixels on a coarse grid, a "
        "limited palette of about 16 colours, crisp edges, no anti-aliasing, simple dithering.",
        ("Player one has entered the game.", "16 bits of pure you.", "Achievement unlocked: pixel avatar."),
    ),
    Style(
        "sketch", "Pencil Sketch", "✏️", "Graphite pencil portrait on textured paper.",
        "Draw them as a realistic graphite pencil portrait on off-white textured paper: confident "
        "contour lines, cross-hatched shading, smudged soft tones, a few loose construction lines.",
        ("Drawn from life, one pencil stroke at a time.", "Sketchbook-worthy.",
         "A portrait any art class would pin up."),
    ),
    Style(
        "cyberpunk", "Cyberpunk", "🌆", "Neon-soaked night city, magenta and cyan glow.",
        "Place them in a rain-soaked cyberpunk night city: neon magenta and cyan rim lighting, glowing "
        "signage bokeh behind them, subtle tech accessories, high contrast cinematic colour grade.",
        ("Night city's newest legend.", "Neon looks good on you.", "Jacked in and looking sharp."),
    ),
    Style(
        "watercolor", "Watercolour", "🖌️", "Loose watercolour painting with soft bleeding washes.",
        "Paint them as a loose watercolour portrait on cold-press paper: soft bleeding washes, visible "
        "paper texture, delicate pencil underdrawing, white paper left showing at the edges.",
        ("Fresh off the easel, still a little wet.", "Soft washes, unmistakably you.",
         "Frame-worthy watercolour."),
    ),
    Style(
        "noir", "Film Noir", "🕵️", "1940s black-and-white film still with hard shadows.",
        "Make them the star of a 1940s film-noir still: high-contrast black and white, hard key light, "
        "venetian-blind shadows across the scene, film grain, a smoky moody atmosphere.",
        ("It was a dark and stormy night… and you looked great.", "The detective will see you now.",
         "Straight out of a 1940s thriller."),
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
