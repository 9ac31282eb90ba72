#!/usr/bin/env python3
"""Set-up and entry point that needs nothing but python3.

    python3 manage.py run      # create/reuse .venv, install, start the bot
    python3 manage.py test     # create/reuse .venv, install with test extras, run pytest (everything)
    python3 manage.py test --fast  # the same without the tests marked `slow` (real processes, Chromium,
                               # the soak, the benchmarks), two processes a core: for running often
    python3 manage.py lint     # the same .venv: ruff on everything, mypy on the packages

Anything after the command is passed on (`python3 manage.py run --config my.toml`,
`python3 manage.py test -k telegram`). The virtual environment is reinstalled only when
pyproject.toml changes, so the second run starts at once. While it installs, one status line says what
pip is doing; pip's full output goes to .venv/pip-install.log and is shown only if it fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
import venv
from collections.abc import MutableMapping
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _stamp_for(extras: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest}:{extras}"


def ensure_venv(extras: str) -> None:
    """Create .venv and install the project into it unless the stamp says it is current."""
    stamp_file = VENV / ".pixme-installed"
    wanted = _stamp_for(extras)
    if stamp_file.exists() and stamp_file.read_text() in (wanted, _stamp_for("test")):
        return
    started = time.monotonic()
    target = f".[{extras}]" if extras else "."
    fresh = not (BIN / "python").exists()
    step = iter(f"[{n}/{3 if fresh else 2}]" for n in range(1, 4))
    if fresh:
        _say(f"{next(step)} creating the virtual environment in .venv …")
        venv.EnvBuilder(with_pip=True).create(VENV)
    log_path = VENV / "pip-install.log"
    # -u: pip's lines arrive as it prints them, so the status line moves while it works.
    pip = [str(BIN / "python"), "-u", "-m", "pip", "--disable-pip-version-check"]
    with log_path.open("w", encoding="utf-8") as log:
        _say(f"{next(step)} updating pip …")
        run_pip([*pip, "install", "--upgrade", "pip"], log, log_path)
        _say(f"{next(step)} installing {target} and its dependencies into .venv (a minute or two the first time) …")
        run_pip([*pip, "install", "-e", target], log, log_path)
    stamp_file.write_text(wanted)
    _say(f"ready in {time.monotonic() - started:.0f} s (pip's full output: {_shown(log_path)})")


def _say(text: str) -> None:
    print(f"pixme: {text}", file=sys.stderr, flush=True)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class PipOutput:
    """Reads pip's output a line at a time: what it is doing now, and what is worth showing if it fails.

    Everything pip prints goes to the log file; on screen there is one status line instead, because a
    first install is ~200 lines of "Collecting"/"Downloading", machine-specific index warnings and
    setuptools' editable-install banner ("Please be careful with folders in your working directory…"),
    none of which a newcomer can act on.
    """

    _PACKAGE = re.compile(r"^(?:Collecting|Requirement already satisfied:) ([A-Za-z0-9][A-Za-z0-9._-]*)"
                          r"|^Processing \S*?([A-Za-z0-9][A-Za-z0-9._]*)-\d")
    _DOWNLOAD = re.compile(r"^\s+Downloading (\S+?)-\d\S* \(([^)]+)\)")
    _WARNING_HEADER = re.compile(r"^\s+\S.*\b\w*Warning: ")  # a build backend's warnings.warn(), indented by pip

    def __init__(self) -> None:
        self.phase = ""  # what pip is doing, e.g. "collecting packages"
        self.status = ""  # the same with the detail of the moment, e.g. which package
        self.packages = 0
        self._seen: set[str] = set()
        self.kept: list[str] = []  # every line but the noise, for the failure report
        self._banner = ""  # "" | "open" (inside a warning's !! block) | "echo" (its source line may follow)
        self._bangs = 0
        self._inside = 0

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not self.is_noise(line):
            self.kept.append(line)
        self._follow(line)

    def is_noise(self, line: str) -> bool:
        """Setuptools' warning banners (a header, a block between `!!` lines, the echoed source line),
        pip's index-location warnings and its progress bars; errors are never noise."""
        if line.lstrip().startswith(("ERROR:", "error:")):
            self._banner = ""
            return False
        if self._banner == "open":
            if line.strip() == "!!":
                self._bangs += 1
                self._banner = "echo" if self._bangs == 2 else "open"
                return True
            self._inside += 1
            if self._bangs == 1 and self._inside < 40:  # inside the !! block (which setuptools keeps short)
                return True
            self._banner = "echo"  # a warning without a block: at most its source line follows
        if self._banner == "echo":
            self._banner = ""
            if line.startswith("    ") and line.strip():
                return True
        if self._WARNING_HEADER.match(line):
            self._banner, self._bangs, self._inside = "open", 0, 0
            return True
        if line.startswith("WARNING: Location ") and line.endswith("is ignored: it is neither a file nor a directory."):
            return True
        return line.lstrip().startswith(("━", "Looking in indexes:", "Looking in links:")) or not line.strip()

    def _follow(self, line: str) -> None:
        if match := self._PACKAGE.match(line):
            name = match.group(1) or match.group(2)
            self._seen.add(re.sub(r"[-_.]+", "-", name).lower())  # pip may name a package twice ("pip")
            self.packages = len(self._seen)
            self._set("collecting packages", f"collecting packages: {self.packages} — {name}")
        elif match := self._DOWNLOAD.match(line):
            self._set("collecting packages",
                      f"collecting packages: {self.packages} — downloading {match.group(1)} ({match.group(2)})")
        elif line.startswith("Obtaining ") or "Installing build dependencies" in line:
            self._set("preparing the project's build")
        elif line.startswith("Building wheels for collected packages") or "Building editable for" in line:
            self._set("building the project")
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            plural = "s (the longest part)" if count > 9 else "s" if count > 1 else ""
            self._set(f"installing {count} package{plural}")
        elif line.startswith("Successfully installed"):
            self._set("", "")

    def _set(self, phase: str, status: str | None = None) -> None:
        self.phase, self.status = phase, phase if status is None else status

    def failure_report(self, limit: int = 40) -> list[str]:
        """What to show when pip fails: from its first error to the end, else its last lines."""
        first = next((i for i, line in enumerate(self.kept)
                      if line.lstrip().startswith(("ERROR:", "error:", "×"))), None)
        lines = self.kept[first:] if first is not None else self.kept
        return lines[-limit:]


class Status:
    """One line of progress: redrawn in place (with a seconds counter) on a terminal, printed once per
    phase otherwise (CI logs, pipes)."""

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.started = time.monotonic()
        self._text = ""
        self._phase = ""
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.live:  # pip is silent for long stretches (installing); the counter shows it is not stuck
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def show(self, phase: str, text: str) -> None:
        with self._lock:
            self._text = text
            if self.live:
                if text:
                    self._draw()
            elif phase and phase != self._phase:
                self.stream.write(f"pixme:   {phase} …\n")
                self.stream.flush()
            self._phase = phase

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.live:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def _draw(self) -> None:
        line = f"pixme:   {self._text} … {time.monotonic() - self.started:.0f} s"
        width = _terminal_width()
        if len(line) > width - 1:
            line = line[: width - 2] + "…"
        self.stream.write(f"\r\x1b[K{line}")
        self.stream.flush()

    def _tick(self) -> None:
        while not self._done.wait(1.0):
            with self._lock:
                if self._text:
                    self._draw()


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 100  # 0: a pseudo-terminal with no size set
    except (OSError, ValueError):
        return 100


def run_pip(command: list[str], log: TextIO, log_path: Path, *, status: Status | None = None) -> None:
    """Run pip with its output in `log` and a status line on stderr; exit with pip's own error if it fails."""
    status = status or Status(sys.stderr)
    output = PipOutput()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace", stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            output.feed(line)
            status.show(output.phase, output.status)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        status.close()
        log.flush()
    if code != 0:
        for line in output.failure_report():
            print(f"  {line}", file=sys.stderr)
        _say(f"pip failed (exit {code}); its full output is in {_shown(log_path)}")
        raise SystemExit(1)
    for line in output.kept:  # pip's own warnings still matter (a misspelt extra, a broken dependency)
        if line.startswith("WARNING:"):
            print(f"  {line}", file=sys.stderr)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_venv("test")
        keep_bytecode(os.environ)
        return _exec([str(BIN / "python"), "-m", "pytest", *pytest_args(rest)])
    if command == "lint":
        ensure_venv("test")
        os.chdir(ROOT)
        ruff = subprocess.call([str(BIN / "ruff"), "check", "."])
        mypy = subprocess.call([str(BIN / "mypy"), "core", "bots", "storage", "manage.py"])
        return ruff or mypy
    ensure_venv("")
    # Everything else is a pixme sub-command: run, render, edit, styles, …
    return _exec([str(BIN / "pixme"), command, *rest])


def pytest_args(rest: list[str]) -> list[str]:
    """`--fast` becomes `-m "not slow"` (joined to a `-m` given too) and runs two test processes a core that
    steal each other's work (many tests spend part of their time waiting on a stand-in's reply: a second process
    per core fills it), unless `-n` is given; everything else goes to pytest as given."""
    if "--fast" not in rest:
        return rest
    args = [arg for arg in rest if arg != "--fast"]
    if not any(arg.startswith(("-n", "--numprocesses")) for arg in args):
        args = ["-n", str(2 * (os.cpu_count() or 1)), "--dist", "worksteal", *args]
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            args[i + 1] = f"({args[i + 1]}) and not slow"
            return args
    return ["-m", "not slow", *args]


def keep_bytecode(env: MutableMapping[str, str]) -> None:
    """The test run keeps compiled bytecode, under .venv/pycache (out of the source tree), even where
    PYTHONDONTWRITEBYTECODE is set: without it every pytest worker and every `pixme` process a test starts
    compiles the project and rewrites the tests' asserts anew, about 5 s of CPU each."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(VENV / "pycache"))


def _exec(args: list[str]) -> int:
    """Replace this process, so SIGTERM/SIGINT reach the bot itself and its exit code is ours."""
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(args)
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
