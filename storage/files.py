"""The data folder is private to the account that runs pixme: it holds names, personas and instructions.

New folders are created 0700; files get 0600 from the umask `pixme run` sets at start. A folder made
by an earlier version (0755, database 0644) is tightened once, with a line in the log saying so.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
UMASK = 0o077  # what `pixme run` and `pixme playground` create from here on: owner only
_DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def keep_private(data_dir: Path, database: Path) -> list[Path]:
    """Create `data_dir` owner-only, or take group and other access away from it and the database's
    files; returns what had to be tightened (and says so in the log)."""
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tightened = [path for path, mode in ((data_dir, PRIVATE_DIR),
                                        *((Path(f"{database}{s}"), PRIVATE_FILE) for s in _DATABASE_SUFFIXES))
                 if _tighten(path, mode)]
    if tightened:
        log.warning("storage: %s could be read by other users; now only by this one (%s)",
                    data_dir, ", ".join(p.name for p in tightened))
    return tightened


def _tighten(path: Path, mode: int) -> bool:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    if current & 0o077 == 0:
        return False
    try:
        path.chmod(current & mode)
    except OSError as exc:  # not ours to change (another owner, a read-only mount): say so, carry on
        log.warning("storage: %s can be read by other users and could not be changed: %s", path, exc.strerror)
        return False
    return True
