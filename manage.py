#!/usr/bin/env python3
"""Set-up and entry point that needs nothing but python3.

    python3 manage.py run      # create/reuse .venv, install, start the bot
    python3 manage.py test     # create/reuse .venv, install with test extras, run pytest

Anything after the command is passed on (`python3 manage.py run --config my.toml`,
`python3 manage.py test -k telegram`). The virtual environment is reinstalled only when
pyproject.toml changes, so the second run starts at once.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

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
    if not (BIN / "python").exists():
        print("pixme: creating virtual environment in .venv …", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    target = f".[{extras}]" if extras else "."
    print(f"pixme: installing {target} into .venv …", file=sys.stderr)
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([*pip, "install", "-e", target], check=True, cwd=ROOT)
    stamp_file.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_venv("test")
        return _exec([str(BIN / "python"), "-m", "pytest", *rest])
    ensure_venv("")
    # Everything else is a pixme sub-command: run, render, edit, styles, …
    return _exec([str(BIN / "pixme"), command, *rest])


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
