"""`pixme`: run the bots, or render and edit images from the command line.

This is the composition root: settings are built once here and everything else is handed what it
needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from bots.ops import OpsError, OpsServer
from core.config import (
    ConfigError,
    DiscordSettings,
    PlaygroundSettings,
    Settings,
    TelegramSettings,
    load_settings,
    problems,
    unknown_keys,
)
from core.engines.base import EngineError, ImageEngine
from core.engines.factory import build_engine
from core.errors import StorageError
from core.intake import IntakeError, prepare
from core.intake_pool import Intake
from core.logsafe import configure_logging
from core.metrics import NO_OBSERVER, JobObserver, Metrics
from core.shared_jobs import Leases
from core.studio import Shared, Studio
from core.styles import STYLES, get_style
from storage.backend import migrate, open_storage
from storage.files import UMASK
from storage.postgres import PostgresStore

log = logging.getLogger("pixme")

ROLES = ("all", "gateway", "worker")  # `pixme run --role`: front-ends and workers, or one of the two

# At SIGTERM, after the grace period: how long a picture already being sent may take to be recorded (a send cut
# off between the platform taking it and our record would be sent again after the restart).
SHUTDOWN_DRAIN_S = 1.5

NO_TOKEN = (
    "pixme: no bot token is set, so only the local playground runs (see the address below).\n"
    "  Telegram: talk to @BotFather, create a bot, then set TELEGRAM_BOT_TOKEN=<token>\n"
    "            (or [telegram] token = \"…\" in config.toml).\n"
    "  Discord:  set DISCORD_BOT_TOKEN=<token> (or [discord] token in config.toml).\n"
    "  Optional: GEMINI_API_KEY=<key> for the Gemini engine; without it the offline engine is used."
)


@contextlib.asynccontextmanager
async def open_studio(settings: Settings, engine: ImageEngine | None = None,
                      observer: JobObserver = NO_OBSERVER, role: str = "all") -> AsyncIterator[Studio]:
    """The core, wired to the storage `[storage]` names: SQLite and image files under `dir`, or PostgreSQL at
    `url` (migrated first, one process at a time); `observer` counts what happens. On PostgreSQL jobs are claimed
    under leases, so any number of processes share them (a gateway only persists them)."""
    storage = await open_storage(settings.storage)
    store = storage.store
    shared = None
    if isinstance(store, PostgresStore):
        s = settings.storage
        shared = Shared(store, owner=f"{socket.gethostname()}:{os.getpid()}", works=role != "gateway",
                        leases=Leases(lease_s=s.lease_s, heartbeat_s=s.heartbeat_s, poll_s=s.poll_s))
    engine = engine or build_engine(settings)
    studio = Studio(store=store, images=storage.images, engine=engine,
                    limits=settings.limits, access=settings.access, input_max_px=settings.engine.input_max_px,
                    party=settings.party, intake=Intake(settings.intake),
                    model_choices=settings.gemini.choices if engine.name == "gemini" else None,
                    sizes=list(settings.gemini.sizes), variants=settings.gemini.variants, credits=settings.credits,
                    likeness=settings.likeness, observer=observer, shared=shared)
    try:
        yield studio
    finally:
        await studio.aclose()
        await engine.aclose()
        await storage.close()


async def run_bots(settings: Settings, stop: asyncio.Event | None = None, role: str = "all") -> int:
    """Start every platform with a token in this event loop; return when `stop` is set (or a signal). A `worker`
    starts only the platforms' senders (it claims jobs and delivers them); a `gateway` runs no jobs."""
    if role == "worker":
        return await _run_worker(settings, stop or asyncio.Event())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    async with open_studio(settings, observer=metrics, role=role) as studio, \
            contextlib.AsyncExitStack() as closing:
        ops: OpsServer | None = None
        if settings.ops.port:  # first, so /healthz answers while the platforms connect (and /readyz says so)
            ops = OpsServer(settings.ops, metrics=metrics, store_problem=studio.store_problem)
            try:
                await ops.start()
            except OpsError as exc:
                log.error("%s", exc)
                return 1
            closing.push_async_callback(ops.stop)
        warning = await studio.engine.check()
        if warning:
            log.warning("%s", warning)
        log.info("engine: %s (%s)", studio.engine.name, studio.engine.model)
        await studio.intake.start()  # decoding processes ready before the first photo
        started: list[Any] = []  # each platform's bot: start() and stop()
        telegram = None
        if settings.telegram.token.get_secret_value():
            from bots.telegram import TelegramBot

            telegram = TelegramBot(settings.telegram, studio, engine_name=studio.engine.name)
            if ops is not None:
                ops.watch("telegram", telegram)
            try:
                await telegram.start()
            except Exception as exc:
                log.error("telegram: could not start: %s", exc)
                await telegram.stop()
                return 1
            started.append(telegram)
        if settings.discord.token.get_secret_value():
            from bots.discord import DiscordBot

            discord_bot = DiscordBot(settings.discord, studio, engine_name=studio.engine.name)
            if ops is not None:
                ops.watch("discord", discord_bot)
            try:
                await discord_bot.start()
            except Exception as exc:
                log.error("discord: could not start: %s", type(exc).__name__)
                await discord_bot.stop()
                for bot in started:
                    await bot.stop()
                return 1
            started.append(discord_bot)
        if role == "all" and (settings.playground.enabled or not started):  # with no platform: the playground
            from bots.playground import Playground

            playground = Playground(settings.playground, studio, engine_name=studio.engine.name,
                                    engine_model=studio.engine.model)
            try:
                await playground.start()
            except OSError as exc:
                log.error("playground: cannot listen on %s:%s (%s); set [playground] port or PIXME_PLAYGROUND__PORT",
                          settings.playground.host, settings.playground.port, exc.strerror)
                for bot in started:
                    await bot.stop()
                return 1
            if not settings.playground.is_loopback:
                print(f"pixme: warning: the playground is open to other machines on {settings.playground.host} and "
                      "has no login: anyone with its address can send photos, read the chat and use /forget",
                      file=sys.stderr, flush=True)
            print(f"Pix Me! playground: open {playground.url} in your browser (Ctrl-C stops it)", flush=True)
            started.append(playground)
            if ops is not None:
                ops.watch("playground", playground)
        await studio.resume()
        # Retention runs once now and then hourly (and party deadlines, when processes share the database; one
        # process at a time); it never stops the bot if it fails.
        housekeeping = asyncio.create_task(studio.chores(settings.storage.retention_days))
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            housekeeping.cancel()
            if telegram is not None:
                await telegram.stop_taking_updates()  # what is not fetched yet waits at Telegram for the next start
            # The core first, while the platforms can still send: running jobs get the grace period, pictures
            # being sent finish and are recorded; the rest stays queued in the database for the next start.
            await studio.aclose(grace_s=settings.ops.grace_s, drain_s=SHUTDOWN_DRAIN_S)
            for bot in started:
                await bot.stop()
            log.info("stopped")
    return 0


async def _run_worker(settings: Settings, stop: asyncio.Event) -> int:
    """`pixme run --role worker`: claim jobs from the shared database, run them and deliver through the platforms'
    HTTP APIs; no front-end listens here."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    from bots.senders import DiscordSender, TelegramSender

    metrics = Metrics()
    async with open_studio(settings, observer=metrics, role="worker") as studio, \
            contextlib.AsyncExitStack() as closing:
        ops: OpsServer | None = None
        if settings.ops.port:
            ops = OpsServer(settings.ops, metrics=metrics, store_problem=studio.store_problem)
            try:
                await ops.start()
            except OpsError as exc:
                log.error("%s", exc)
                return 1
            closing.push_async_callback(ops.stop)
        log.info("engine: %s (%s); worker %s", studio.engine.name, studio.engine.model,
                 studio.shared.owner if studio.shared else "")
        await studio.intake.start()
        senders: list[TelegramSender | DiscordSender] = []
        if settings.telegram.token.get_secret_value():
            senders.append(TelegramSender(settings.telegram, studio))
        if settings.discord.token.get_secret_value():
            senders.append(DiscordSender(settings.discord, studio))
        for sender in senders:
            name = type(sender).__name__.removesuffix("Sender").lower()
            if ops is not None:
                ops.watch(name, sender)
            try:
                await sender.start()
            except Exception as exc:
                log.error("%s: could not start: %s", name, type(exc).__name__)
                await sender.stop()  # those started before it are stopped by `closing`
                return 1
            closing.push_async_callback(sender.stop)
        await studio.resume()
        housekeeping = asyncio.create_task(studio.chores(settings.storage.retention_days))
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            housekeeping.cancel()
            await studio.aclose(grace_s=settings.ops.grace_s, drain_s=SHUTDOWN_DRAIN_S)
            log.info("stopped")
    return 0


def _read_image(path: Path, max_px: int) -> bytes:
    try:
        return prepare(path.read_bytes(), max_px=max_px).data
    except IntakeError as refusal:
        raise SystemExit(f"pixme: {path}: {refusal.message}") from None
    except OSError as exc:
        raise SystemExit(f"pixme: {path}: {exc.strerror}") from None


async def _render(settings: Settings, args: argparse.Namespace) -> int:
    style = get_style(args.style)
    if style is None:
        raise SystemExit(f"pixme: unknown style {args.style!r}; `pixme styles` lists them")
    _output_format(args.output)
    engine = build_engine(settings, args.engine)
    try:
        result = await engine.stylize(_read_image(args.image, settings.engine.input_max_px), style)
    finally:
        await engine.aclose()
    return _write_result(args.output, result.image, result.commentary)


async def _edit(settings: Settings, args: argparse.Namespace) -> int:
    _output_format(args.output)
    engine = build_engine(settings, args.engine)
    identity = _read_image(args.identity, settings.engine.input_max_px) if args.identity else None
    try:
        result = await engine.edit(_read_image(args.image, settings.engine.input_max_px), args.instruction,
                                   identity=identity)
    finally:
        await engine.aclose()
    return _write_result(args.output, result.image, result.commentary)


# What `-o` may name, and the Pillow format written for it: the file is what its name says.
_OUTPUT_FORMATS = {".png": "PNG", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}


def _output_format(output: Path) -> str:
    """The Pillow format for `output`'s extension; refused before any work when there is none."""
    fmt = _OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise SystemExit(f"pixme: {output}: name the output .png, .webp or .jpg")
    return fmt


def _encoded_as(image: bytes, fmt: str) -> bytes:
    """`image` in `fmt`: as it is when it already is (no second lossy pass), otherwise re-encoded."""
    with Image.open(io.BytesIO(image)) as picture:
        if picture.format == fmt:
            return image
        picture.load()
        out = io.BytesIO()
        if fmt == "JPEG":
            picture.convert("RGB").save(out, fmt, quality=92)
        elif fmt == "WEBP":
            picture.save(out, fmt, quality=92, method=4)
        else:
            picture.save(out, fmt, optimize=False, compress_level=6)
        return out.getvalue()


def _write_result(output: Path, image: bytes, commentary: str) -> int:
    data = _encoded_as(image, _output_format(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    print(f"wrote {output}" + (f" — {commentary}" if commentary else ""))
    return 0


def _serve(settings: Settings, role: str = "all") -> int:
    """`run_bots` with everything it creates (database, WAL, images) readable by this account only."""
    previous = os.umask(UMASK)
    try:
        return asyncio.run(run_bots(settings, role=role))
    finally:
        os.umask(previous)


def _likeness(image: Path, reference: Path) -> int:
    """`pixme likeness IMAGE REFERENCE`: "87% — likely the same person", exit 0; one line and exit 1 when a
    file cannot be read or has no face."""
    from core.likeness import LikenessError, NoFace, default_likeness

    pictures: dict[str, bytes] = {}
    for path in (image, reference):
        try:
            pictures[str(path)] = path.read_bytes()
        except OSError as exc:
            print(f"pixme: can't read {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    try:
        result = default_likeness().score(pictures[str(image)], pictures[str(reference)])
    except LikenessError as exc:
        bad = next((p for p in (image, reference) if not _readable_picture(pictures[str(p)])), None)
        print(f"pixme: {bad}: {exc}" if bad is not None else f"pixme: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, NoFace):
        print(f"pixme: no face found in {image if result.which == 'image' else reference}", file=sys.stderr)
        return 1
    verdict = "likely the same person" if result.same_person else "likely different people"
    print(f"{result.percent}% — {verdict}")
    return 0


def _readable_picture(data: bytes) -> bool:
    from core.likeness import LikenessError, decode

    try:
        decode(data)
    except LikenessError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixme", description="Pix Me! — turn selfies into avatars on Telegram and Discord.",
        epilog="Settings come from the config file and PIXME_<SECTION>__<KEY> environment variables "
               "(plus TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN, GEMINI_API_KEY). See config.example.toml.",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config file (default: ./config.toml if it exists)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    about_run = ("start every platform that has a token (Ctrl-C or SIGTERM stops it); "
                 "with no token, the local playground")
    run = sub.add_parser("run", help=about_run, description=about_run[0].upper() + about_run[1:] + ".")
    run.add_argument("--role", choices=ROLES, default="all",
                     help="all (default): front-ends and workers in this process; gateway: the front-ends, which "
                          "persist jobs; worker: claims jobs and delivers them. gateway and worker need PostgreSQL")
    playground = sub.add_parser("playground", help="only the local web chat, on http://127.0.0.1:8080/")
    playground.add_argument("--host", default=None, help="default: [playground] host (127.0.0.1)")
    playground.add_argument("--port", type=int, default=None, help="default: [playground] port (8080)")
    playground.add_argument("--public", action="store_true", default=None,
                            help="allow a --host other than loopback (the page has no login; a warning is printed)")
    sub.add_parser("styles", help="list the styles, one a line, command name first")
    about_migrate = "bring the database ([storage] url, or the SQLite file in [storage] dir) to this version's schema"
    sub.add_parser("migrate", help=about_migrate, description=about_migrate[0].upper() + about_migrate[1:] +
                   " (`pixme run` does it too at start).")

    render = sub.add_parser("render", help="turn an image into an avatar in one style")
    render.add_argument("image", type=Path)
    render.add_argument("--style", required=True, help="style name, e.g. zombie")
    render.add_argument("-o", "--output", type=Path, required=True)
    render.add_argument("--engine", choices=["offline", "gemini"], default=None,
                        help="default: gemini when an API key is set, otherwise offline")

    edit = sub.add_parser("edit", help="apply an edit instruction to an image")
    edit.add_argument("image", type=Path)
    edit.add_argument("instruction", help='e.g. "add a crown"')
    edit.add_argument("-o", "--output", type=Path, required=True)
    edit.add_argument("--engine", choices=["offline", "gemini"], default=None)
    edit.add_argument("--identity", type=Path, default=None,
                      help="the original selfie, to keep the face recognisable")
    likeness = sub.add_parser("likeness", help="how recognisably IMAGE keeps the face in REFERENCE, as a percentage")
    likeness.add_argument("image", type=Path, help="a picture, e.g. an avatar")
    likeness.add_argument("reference", type=Path, help="the person's original selfie")
    # Accepted before or after the command; SUPPRESS keeps a value given before it from being reset.
    for sp in (render, edit, *(sub.choices[n] for n in ("run", "styles", "playground", "migrate"))):
        sp.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="TOML config file (default: ./config.toml if it exists)")
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return parser


def _role_refusal(settings: Settings, role: str) -> str | None:
    """Why this process cannot take `role` (gateway or worker), in one line; None when it can."""
    if not settings.storage.url.get_secret_value():
        return (f"--role {role} needs [storage] url = \"postgresql://…\" (processes share jobs through PostgreSQL); "
                "with SQLite one process runs everything: pixme run")
    if not (settings.telegram.token.get_secret_value() or settings.discord.token.get_secret_value()):
        return f"--role {role} needs a Telegram or Discord token (the playground runs only with --role all)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "styles":
        for style in STYLES:
            print(f"{style.id}\t{style.title} — {style.description}")
        return 0
    if args.command == "likeness":
        return _likeness(args.image, args.reference)
    config = args.config
    if config is None and Path("config.toml").exists():
        config = Path("config.toml")
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(f"pixme: {exc}", file=sys.stderr)
        return 2
    for warning in unknown_keys(config) if config is not None else []:
        print(f"pixme: warning: {config}: {warning}", file=sys.stderr)
    configure_logging(settings.secrets(), level=logging.DEBUG if args.verbose else logging.INFO,
                      fmt=settings.log.format)
    try:
        if args.command == "run":
            bad_tokens = [p for p in (settings.telegram.token_problem(), settings.discord.token_problem()) if p]
            for problem in bad_tokens:
                print(f"pixme: {problem}", file=sys.stderr)
            if bad_tokens:
                return 2
            if args.role != "all":
                refusal = _role_refusal(settings, args.role)
                if refusal:
                    print(f"pixme: {refusal}", file=sys.stderr)
                    return 2
            if not (settings.telegram.token.get_secret_value() or settings.discord.token.get_secret_value()):
                print(NO_TOKEN, file=sys.stderr)
            return _serve(settings, args.role)
        if args.command == "playground":
            place = {k: v for k, v in (("host", args.host), ("port", args.port), ("public", args.public))
                     if v is not None}
            try:
                chosen = PlaygroundSettings.model_validate(
                    {**settings.playground.model_dump(), "enabled": True, **place})
            except ValidationError as exc:
                print(f"pixme: {problems(exc)}", file=sys.stderr)
                return 2
            # Just the page: no platforms, and no operators' endpoints (those come with `pixme run`).
            only_playground = settings.model_copy(update={
                "telegram": TelegramSettings(), "discord": DiscordSettings(), "playground": chosen,
                "ops": settings.ops.model_copy(update={"port": 0})})
            return _serve(only_playground)
        if args.command == "migrate":
            print(f"pixme: {asyncio.run(migrate(settings.storage))}")
            return 0
        if args.command == "render":
            return asyncio.run(_render(settings, args))
        return asyncio.run(_edit(settings, args))
    except (EngineError, ValueError) as exc:
        print(f"pixme: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    except StorageError as exc:  # the database in use by another pixme, or PostgreSQL out of reach
        print(f"pixme: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """`pixme` as a program: `main`, then out at once. Everything that matters was closed and flushed by then;
    tearing the interpreter down module by module (OpenCV, NumPy, google-genai…) takes a second or two more,
    which a SIGTERM from a container runtime (a kill after 10 s) cannot spare."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
