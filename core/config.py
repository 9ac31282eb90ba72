"""The one typed settings object: config.toml, overridden by the environment.

Built once by the CLI and passed down; no other module reads the environment. Precedence, highest
first: `PIXME_<SECTION>__<KEY>` variables, the conventional `GEMINI_API_KEY` /
`TELEGRAM_BOT_TOKEN` / `DISCORD_BOT_TOKEN`, then the TOML file, then the defaults below.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import PixmeError

DEFAULT_MODEL = "gemini-nano-banana-2.1"
MAX_VARIANTS = 4  # candidates one request may make
ImageSize = Literal["512", "1K", "2K", "4K"]


# What the platforms issue: checked before any network call, so a typo is one line, not a traceback.
# Telegram: the bot's numeric id, a colon, ~35 characters (a shorter tail is a truncated paste).
_TELEGRAM_TOKEN = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{30,}")
# Discord: base64url(bot id) . timestamp . HMAC.
# What setWebhook's secret_token may be.
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_DISCORD_TOKEN = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")


def _shape(token: str) -> str:
    """A description of a malformed secret that does not repeat it."""
    if token != token.strip():
        return "it has spaces or a line break around it"
    return f"{len(token)} characters" + (", with spaces in it" if any(c.isspace() for c in token) else "")


class TelegramSettings(BaseModel):
    token: SecretStr = SecretStr("")
    api_url: str = "https://api.telegram.org/bot"
    file_url: str = "https://api.telegram.org/file/bot"
    # Simultaneous HTTP connections to the Bot API; each in-flight upload or download holds one.
    connections: int = Field(default=32, ge=2, le=256)
    # An album arrives as one message per photo; wait this long after the last one before acting.
    album_wait_s: float = Field(default=1.0, gt=0, le=10)
    # Webhooks: the public https URL Telegram POSTs updates to (a reverse proxy in front of one or more
    # gateways); empty = long polling. The secret is what Telegram sends in X-Telegram-Bot-Api-Secret-Token.
    webhook_url: str = ""
    webhook_secret: SecretStr = SecretStr("")
    webhook_listen: str = "127.0.0.1"  # where this gateway's webhook server listens (behind the proxy)
    webhook_port: int = Field(default=8443, ge=0, le=65535)  # 0 = any free port
    # Telegram's send limits (its Bots FAQ): about 30 messages a second in all, 20 a minute in one group (or
    # channel), about one a second in one private chat. Kept by every process together (with PostgreSQL through
    # the database), a little under these figures; 0 messages = that limit is not kept.
    bot_messages: int = Field(default=30, ge=0)
    bot_window_s: float = Field(default=1.0, gt=0)
    group_messages: int = Field(default=20, ge=0)
    group_window_s: float = Field(default=60.0, gt=0)
    chat_messages: int = Field(default=1, ge=0)
    chat_window_s: float = Field(default=1.0, gt=0)
    # A 429 is waited out (its retry_after, by every process) and the call made again, this many times.
    flood_retries: int = Field(default=3, ge=0, le=10)

    @field_validator("webhook_url")
    @classmethod
    def _https_or_nothing(cls, value: str) -> str:
        url = value.strip()
        if url and (not url.startswith("https://") or not urlsplit(url).hostname):
            raise ValueError("webhook_url must be empty (long polling) or a public https:// URL; "
                             "Telegram delivers webhooks over TLS only")
        return url

    @model_validator(mode="after")
    def _secret_with_webhook(self) -> TelegramSettings:
        secret = self.webhook_secret.get_secret_value()
        if secret and not _WEBHOOK_SECRET.fullmatch(secret):
            raise ValueError(f"webhook_secret is malformed ({_shape(secret)}): Telegram accepts 1-256 characters "
                             "of A-Z, a-z, 0-9, _ and -")
        if self.webhook_url and not secret:
            raise ValueError("webhook_secret is required with webhook_url (1-256 characters of A-Z, a-z, 0-9, _ "
                             "and -, e.g. from `openssl rand -hex 32`): without it anyone could post updates")
        return self

    @property
    def webhook_path(self) -> str:
        """The path the webhook server answers on: the public URL's (a proxy passes it through)."""
        return urlsplit(self.webhook_url).path or "/"

    def token_problem(self) -> str | None:
        """Why the token cannot be a Bot API token, in one line (None if it looks right or is unset)."""
        token = self.token.get_secret_value()
        if not token or _TELEGRAM_TOKEN.fullmatch(token):
            return None
        return (f"the Telegram token (TELEGRAM_BOT_TOKEN or [telegram] token) is malformed ({_shape(token)}): "
                "@BotFather gives one like 7012345678:AAH… — digits, a colon, then about 35 letters, digits, - or _")


class DiscordSettings(BaseModel):
    token: SecretStr = SecretStr("")
    api_url: str = ""
    gateway_url: str = ""
    cdn_url: str = ""  # where avatars are fetched from (a Discord-compatible server's CDN); empty: Discord's
    guild_ids: list[int] = Field(default_factory=list)
    # Gateway shards in all (0 = what Discord recommends, from GET /gateway/bot), and the ones this process
    # runs (empty = all of them). A guild belongs to shard (guild_id >> 22) % shard_count; DMs to shard 0.
    shard_count: int = Field(default=0, ge=0, le=65535)
    shard_ids: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shards_within_count(self) -> DiscordSettings:
        ids = self.shard_ids
        if ids and not self.shard_count:
            raise ValueError("shard_ids needs shard_count: say how many shards there are in all "
                             f"(e.g. shard_count = {max(ids) + 1})")
        wrong = [i for i in ids if not 0 <= i < self.shard_count]
        if wrong:
            raise ValueError(f"shard_ids {wrong} are not below shard_count = {self.shard_count} "
                             f"(shards are numbered 0 to {self.shard_count - 1})")
        if len(set(ids)) != len(ids):
            raise ValueError(f"shard_ids {ids} lists a shard twice")
        return self

    def token_problem(self) -> str | None:
        """Why the token cannot be a Discord bot token, in one line (None if it looks right or is unset)."""
        token = self.token.get_secret_value()
        if not token or _DISCORD_TOKEN.fullmatch(token):
            return None
        return (f"the Discord token (DISCORD_BOT_TOKEN or [discord] token) is malformed ({_shape(token)}): "
                "the Developer Portal's Bot page gives three parts joined by dots, e.g. MTA4…Nzg.GxYz12.AbC…, "
                "without a \"Bot \" prefix")


class GeminiSettings(BaseModel):
    api_key: SecretStr = SecretStr("")
    base_url: str = ""
    model: str = DEFAULT_MODEL
    # The image models people may pick with /settings (the offline engine is always offered too);
    # empty = just `model`.
    models: list[str] = Field(default_factory=list)
    # The output sizes people may pick in /settings (the model must also offer them); 4K only if listed.
    sizes: list[ImageSize] = Field(default_factory=lambda: list[ImageSize](["1K", "2K"]))
    request_timeout_s: float = Field(default=120.0, gt=0)
    retry_budget_s: float = Field(default=90.0, ge=0)
    # Candidates one request makes (parallel calls, each priced and counted); people may choose 1-4 in /settings.
    variants: int = Field(default=1, ge=1, le=MAX_VARIANTS)

    @property
    def choices(self) -> list[str]:
        """The models people may choose among, the default first, each once."""
        return list(dict.fromkeys(m.strip().removeprefix("models/") for m in [self.model, *self.models]
                                  if m.strip()))


class EngineSettings(BaseModel):
    default: Literal["gemini", "offline"] = "gemini"
    input_max_px: int = Field(default=1024, ge=256, le=4096)


class IntakeSettings(BaseModel):
    """Decoding what people send: in worker processes, each decode within a CPU budget and a memory budget."""

    # Decoding processes; 0 = cores - 1, at least 2 (so one person's file never holds them all).
    workers: int = Field(default=0, ge=0, le=64)
    # CPU seconds one file may take to decode (a 12 MP photo takes about 0.04 s); past it, it is refused.
    cpu_budget_s: float = Field(default=2.0, gt=0, le=60)
    # Largest picture, counted as decoded bytes (width × height × bytes per pixel, at least 4).
    max_decoded_mb: int = Field(default=192, ge=16, le=4096)
    # Decoded bytes of all decodes in flight together (at least max_decoded_mb).
    decoding_mb: int = Field(default=384, ge=16, le=16384)
    # Scans one JPEG may have (cameras write 1, progressive files about 10).
    max_jpeg_scans: int = Field(default=32, ge=1, le=10000)


class StorageSettings(BaseModel):
    dir: Path = Path("data")
    retention_days: int = Field(default=30, ge=0)
    # Empty: SQLite and image files in `dir`. "postgresql://user:pass@host:port/db": PostgreSQL for everything.
    url: SecretStr = SecretStr("")
    # With PostgreSQL, workers hold each job they run under a lease renewed every `heartbeat_s`; a worker that
    # dies (kill -9, a lost machine) loses it after `lease_s`, and another resumes the job. Idle workers also
    # look for jobs every `poll_s` (new jobs normally wake them at once, by NOTIFY).
    lease_s: float = Field(default=20.0, gt=0, le=3600)
    heartbeat_s: float = Field(default=5.0, gt=0, le=600)
    poll_s: float = Field(default=2.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _postgres_or_nothing(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip()
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("url must be empty (SQLite in [storage] dir) or postgresql://user:password@host:port/db")
        return SecretStr(url)

    @property
    def password(self) -> str:
        """The password in `url`, if any (for log redaction)."""
        return urlsplit(self.url.get_secret_value()).password or ""


class LimitsSettings(BaseModel):
    concurrency: int = Field(default=8, ge=1, le=512)
    queue_per_user: int = Field(default=3, ge=1)
    user_daily: int = Field(default=0, ge=0)
    chat_daily: int = Field(default=0, ge=0)
    daily_images: int = Field(default=0, ge=0)
    # Estimated US dollars of paid pictures a day (UTC); at it, paid calls stop until midnight. 0 = none.
    daily_usd: float = Field(default=0.0, ge=0)
    # "You're #N in line" is posted only for waits longer than this (shorter ones would just flash).
    queue_note_after_s: float = Field(default=1.0, ge=0, le=60)


class PartySettings(BaseModel):
    min_members: int = Field(default=2, ge=2, le=8)
    max_members: int = Field(default=8, ge=2, le=14)
    deadline_minutes: float = Field(default=10.0, gt=0, le=24 * 60)


class LikenessSettings(BaseModel):
    """How recognisable each result keeps the person's face (core/likeness.py; scored on this machine)."""

    # Score each result at all (about 0.1-0.2 s of CPU a picture in the image-work processes). Off: no scores,
    # no likeness line, no retries, nothing for /history or /stats to show.
    enabled: bool = True
    show: bool = True  # end each caption with the score ("face kept 87%")
    # A Gemini result scoring under this percentage is retried once with a stronger identity instruction
    # and the better of the two delivered; 0 = never.
    retry_below: int = Field(default=0, ge=0, le=100)


class PlaygroundSettings(BaseModel):
    """The local web chat: always started by `pixme run` with no bot token, beside the bots if enabled."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback only by default: the page has no login
    port: int = Field(default=8080, ge=0, le=65535)  # 0 = any free port
    # Another host than loopback serves the page to other machines, with no login: only if asked for.
    public: bool = False

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach the page (localhost, 127.0.0.0/8, ::1)."""
        host = self.host.strip().removeprefix("[").removesuffix("]")
        if host.casefold() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: whatever it resolves to, it is not ours to trust
            return False

    @model_validator(mode="after")
    def _loopback_unless_public(self) -> PlaygroundSettings:
        if not self.is_loopback and not self.public:
            raise ValueError(f"host {self.host} is not loopback, and the playground has no login; "
                             "add --public (or [playground] public = true) to serve it to other machines anyway")
        return self


class CreditPack(BaseModel):
    """A pack of pictures sold for Telegram Stars."""

    stars: int = Field(ge=1, le=10000)
    images: int = Field(ge=1, le=10000)


class CreditsSettings(BaseModel):
    """Pictures per person per day for free, then credits bought with Telegram Stars."""

    # Pictures each person gets free every UTC day before credits are needed; 0 = credits off (all free).
    free_daily: int = Field(default=0, ge=0, le=10000)
    # What is for sale: e.g. [{stars = 50, images = 10}, {stars = 200, images = 50}].
    packs: list[CreditPack] = Field(default_factory=list, max_length=10)
    # Where people get help with a payment (/paysupport): an @username, an e-mail address or a web page.
    support: str = Field(default="", max_length=200)

    @property
    def enabled(self) -> bool:
        return self.free_daily > 0

    @field_validator("packs")
    @classmethod
    def _distinct(cls, packs: list[CreditPack]) -> list[CreditPack]:
        seen = {(p.stars, p.images) for p in packs}
        if len(seen) != len(packs):
            raise ValueError("the same pack is listed twice")
        return sorted(packs, key=lambda p: (p.stars, p.images))
class OpsSettings(BaseModel):
    """The operator's endpoints, served by `pixme run`: /healthz, /readyz and /metrics (Prometheus)."""

    # Loopback by default: the numbers say how busy the bot is and what it spends; open it to a scraper on purpose.
    listen: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)  # 0 = not served
    # On SIGTERM, running jobs get this long to finish before they are handed back (container runtimes kill
    # after 10 s; closing takes the rest).
    grace_s: float = Field(default=7.0, ge=0, le=60)


class LogSettings(BaseModel):
    # "text": one readable line per record; "json": one JSON object per line (time, level, logger, message,
    # exception), for log collectors. Secrets are masked in both.
    format: Literal["text", "json"] = "text"


class AccessSettings(BaseModel):
    admins: list[str] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    @field_validator("admins", "allow", "deny", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        # Ids may be written as TOML integers; platforms hand them to us as strings.
        return [str(v) for v in value] if isinstance(value, list) else value


_config_file: ContextVar[Path | None] = ContextVar("pixme_config_file", default=None)

# Conventional variable names people already have set, mapped onto our settings.
_CONVENTIONAL_ENV = {
    "GEMINI_API_KEY": ("gemini", "api_key"),
    "GOOGLE_API_KEY": ("gemini", "api_key"),
    "TELEGRAM_BOT_TOKEN": ("telegram", "token"),
    "DISCORD_BOT_TOKEN": ("discord", "token"),
}


class _ConventionalEnv(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for var, (section, key) in _CONVENTIONAL_ENV.items():
            value = os.environ.get(var)
            if value and key not in found.get(section, {}):
                found.setdefault(section, {})[key] = value
        return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PIXME_", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    gemini: GeminiSettings = Field(default_factory=GeminiSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    party: PartySettings = Field(default_factory=PartySettings)
    likeness: LikenessSettings = Field(default_factory=LikenessSettings)
    credits: CreditsSettings = Field(default_factory=CreditsSettings)
    playground: PlaygroundSettings = Field(default_factory=PlaygroundSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _ConventionalEnv(settings_cls)]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def engine_name(self) -> Literal["gemini", "offline"]:
        """The engine actually used: Gemini needs a key, so without one the bot runs offline."""
        if self.engine.default == "gemini" and self.gemini.api_key.get_secret_value():
            return "gemini"
        return "offline"

    def secrets(self) -> list[str]:
        """Every secret value set, so log redaction can scrub them."""
        values = [self.telegram.token, self.telegram.webhook_secret, self.discord.token, self.gemini.api_key]
        return [v.get_secret_value() for v in values if v.get_secret_value()] + \
            [p for p in (self.storage.password,) if p]


class ConfigError(PixmeError):
    """The configuration file is missing or invalid; the message says what to fix."""


def problems(exc: ValidationError) -> str:
    """A validation error as one line: where, and what is wrong."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) + ': ' if err['loc'] else ''}{err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Read `path` (if it exists) plus the environment. A named but missing file is an error."""
    if path is not None and not path.exists():
        raise ConfigError(f"config file {path} not found (copy config.example.toml to start one)")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {problems(exc)}") from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"could not read {path}: {exc}") from None
    finally:
        _config_file.reset(token)


def unknown_keys(path: Path) -> list[str]:
    """One line per section or key in the TOML file that no setting reads, naming the closest known one.

    The settings ignore what they do not know (so an older file keeps working); this tells the operator
    that `tokn` or `[playgrond]` was ignored instead of leaving them to wonder.
    """
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    keys_of: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        model = field.annotation
        keys_of[name] = list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
    homes: dict[str, str] = {}  # a key written above every section -> the first section that has it
    for section, keys in keys_of.items():
        for key in keys:
            homes.setdefault(key, f"[{section}] {key}")
    found: list[str] = []
    for name, value in data.items():
        if name in keys_of:
            if isinstance(value, dict):
                known = {k: k for k in keys_of[name]}
                found += [f"ignored unknown key {key!r} in [{name}]{_closest(key, known)}"
                          for key in value if key not in known]
        elif isinstance(value, dict):
            found.append(f"ignored unknown section [{name}]{_closest(name, {s: f'[{s}]' for s in keys_of})}")
        else:
            found.append(f"ignored unknown key {name!r} outside any section{_closest(name, homes)}")
    return found


def _closest(word: str, known: dict[str, str]) -> str:
    """'; did you mean X?' for the nearest name in `known` (shown as its value), else the known names."""
    match = difflib.get_close_matches(word.lower(), list(known), n=1, cutoff=0.6)
    if match:
        return f"; did you mean {known[match[0]]}?"
    return f" (known: {', '.join(known.values())})" if len(known) <= 12 else ""
