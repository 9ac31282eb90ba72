"""manage.py's first install: a status line a newcomer can follow instead of pip's ~200 lines, with
setuptools' editable-install banner and the index warnings hidden, and pip's own error shown if it fails.

The transcripts in tests/fixtures are pip 26.3's real output (stdout and stderr together, as manage.py
reads them): this project's `pip install -e .[test]` (trimmed), and a project whose metadata fails.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import manage

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BANNER = ("BuildBackendWarning", "Please be careful with folders", "!!", "WheelFile(wheel_path",
          "********")


def _transcript(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines(keepends=True)


def test_the_banner_filter_hides_setuptools_banner_and_index_noise_but_keeps_the_rest() -> None:
    output = PipOutputFed(_transcript("pip-install.txt"))
    kept = "\n".join(output.kept)
    for fragment in (*BANNER, "WARNING: Location", "━━━"):
        assert fragment not in kept, fragment
    # What happened is all still there, in order.
    assert "Created wheel for pixme" in kept and "Installing collected packages: sortedcontainers" in kept
    assert "Collecting discord.py" in kept and "Successfully installed aiohappyeyeballs" in kept


def test_errors_right_after_a_banner_are_kept() -> None:
    banner = [line for line in _transcript("pip-install.txt")
              if "BuildBackendWarning" in line or line.strip() in ("!!", "") or "Please be careful" in line]
    output = PipOutputFed([*banner[:4], "  !!\n", "ERROR: Could not install packages due to an OSError: "
                           "[Errno 28] No space left on device\n"])
    assert output.kept == ["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"]
    # A one-line warning (no !! block) hides itself and its echoed source line, not the error after it.
    output = PipOutputFed(["  /x/setuptools/dist.py:1: SetuptoolsDeprecationWarning: License classifiers\n",
                           "    dist._finalize_license_expression()\n",
                           "  error: subprocess-exited-with-error\n"])
    assert output.kept == ["  error: subprocess-exited-with-error"]


def test_the_status_follows_pip_through_its_phases() -> None:
    output = manage.PipOutput()
    phases: list[str] = []
    statuses: list[str] = []
    for line in _transcript("pip-install.txt"):
        output.feed(line)
        if output.phase and output.phase not in phases:
            phases.append(output.phase)
        statuses.append(output.status)
    assert phases == ["preparing the project's build", "collecting packages", "building the project",
                      "installing 66 packages (the longest part)"]
    assert "collecting packages: 2 — discord.py" in statuses
    assert "collecting packages: 4 — downloading aiohttp (1.9 MB)" in statuses
    assert "collecting packages: 6 — aiosqlite" in statuses  # "Processing" a wheel already on disk counts too


def test_an_install_shows_one_line_per_phase_and_logs_everything(tmp_path: Path) -> None:
    screen = io.StringIO()
    log_path = tmp_path / "pip-install.log"
    with log_path.open("w", encoding="utf-8") as log:
        manage.run_pip(_replay("pip-install.txt"), log, log_path, status=manage.Status(screen, live=False))
    assert screen.getvalue().splitlines() == [
        "pixme:   preparing the project's build …",
        "pixme:   collecting packages …",
        "pixme:   building the project …",
        "pixme:   installing 66 packages (the longest part) …",
    ]
    assert log_path.read_text(encoding="utf-8") == (FIXTURES / "pip-install.txt").read_text(encoding="utf-8")


def test_on_a_terminal_the_line_is_redrawn_in_place_and_cleared(tmp_path: Path) -> None:
    screen = io.StringIO()
    with (tmp_path / "log").open("w") as log:
        manage.run_pip(_replay("pip-install.txt"), log, tmp_path / "log", status=manage.Status(screen, live=True))
    drawn = screen.getvalue()
    assert "\n" not in drawn and drawn.endswith("\r\x1b[K")
    assert re.search(r"\r\x1b\[Kpixme:   collecting packages: 4 — downloading aiohttp \(1\.9 MB\) … \d+ s", drawn)
    assert "Please be careful" not in drawn


def test_a_failed_install_shows_pips_error_and_where_the_log_is(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    log_path = tmp_path / "pip-install.log"
    with log_path.open("w") as log, pytest.raises(SystemExit) as exit_:
        manage.run_pip(_replay("pip-install-failed.txt", code=1), log, log_path,
                       status=manage.Status(io.StringIO(), live=False))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "× Preparing editable metadata (pyproject.toml) did not run successfully." in err
    assert "error: invalid command 'bdist_wheel'" in err
    assert "hint: See above for details." in err
    assert f"pip failed (exit 1); its full output is in {log_path}" in err
    assert "WARNING: Location" not in err and "Checking if build backend" not in err


class PipOutputFed(manage.PipOutput):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        for line in lines:
            self.feed(line)


def _replay(name: str, code: int = 0) -> list[str]:
    """A stand-in for pip: a process that prints a recorded transcript a line at a time and exits with `code`."""
    script = ("import sys\n"
              "for line in open(sys.argv[1], encoding='utf-8'):\n"
              "    sys.stdout.write(line); sys.stdout.flush()\n"
              "sys.exit(int(sys.argv[2]))\n")
    return [sys.executable, "-c", script, str(FIXTURES / name), str(code)]


def test_pips_own_warnings_still_show_after_a_successful_install(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    transcript = tmp_path / "pip.txt"
    transcript.write_text("".join(_transcript("pip-install.txt")[:3])
                          + "WARNING: pixme 0.1.0 does not provide the extra 'tset'\n"
                          + "".join(_transcript("pip-install.txt")[3:]), encoding="utf-8")
    with (tmp_path / "log").open("w") as log:
        manage.run_pip(_replay(str(transcript)), log, tmp_path / "log", status=manage.Status(io.StringIO(), live=False))
    err = capsys.readouterr().err
    assert err == "  WARNING: pixme 0.1.0 does not provide the extra 'tset'\n"  # and not the index noise


def test_fast_leaves_out_the_slow_tests_and_passes_everything_else_on() -> None:
    assert manage.pytest_args(["-q", "-k", "telegram"]) == ["-q", "-k", "telegram"]
    two_a_core = str(2 * (os.cpu_count() or 1))
    assert manage.pytest_args(["--fast", "-q"]) == ["-m", "not slow", "-n", two_a_core, "--dist", "worksteal", "-q"]
    assert manage.pytest_args(["-q", "--fast", "-m", "asyncio", "-n", "1"]) == [
        "-q", "-m", "(asyncio) and not slow", "-n", "1"]


def test_the_test_run_keeps_compiled_bytecode_outside_the_source_tree(tmp_path: Path) -> None:
    """Where PYTHONDONTWRITEBYTECODE is set (as on some CI machines) every test process would compile the project
    anew; the test run caches it under the prefix instead, and nothing lands beside the sources."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    manage.keep_bytecode(env)
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pyc")
    subprocess.run([sys.executable, "-c", "import core.styles"], env=env, cwd=manage.ROOT, check=True)
    assert list((tmp_path / "pyc").rglob("core/styles.*.pyc"))

    default: dict[str, str] = {"PYTHONDONTWRITEBYTECODE": "1"}
    manage.keep_bytecode(default)
    assert default == {"PYTHONPYCACHEPREFIX": str(manage.VENV / "pycache")}
