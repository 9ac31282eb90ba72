"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster in a temporary folder.

`PostgresCluster.start()` runs initdb and pg_ctl (as the `postgres` account when the tests run as root, since
PostgreSQL refuses to run as root), listening on 127.0.0.1 on a free port with its socket in the same folder,
and builds a template database migrated to the latest schema; each test gets its own database copied from it.
Durability is off (fsync, full-page writes): the cluster is deleted at the end of the session.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

TEMPLATE = "pixme_template"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps them in /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    if postgres_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` account to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self) -> None:
        bindir = postgres_bin()
        assert bindir is not None, unavailable()
        self._bin = bindir
        self._as_postgres = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="pixme-pg-"))
        self.port = 0
        self.user = "postgres"
        self._names = itertools.count(1)
        self._started = False

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "--encoding=UTF8", "--no-sync")
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:  # initdb -c is PostgreSQL 16+
            conf.write(f"fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                       f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.folder}'\n"
                       f"max_connections = 300\nshared_buffers = 32MB\n")
        for attempt in range(5):
            self.port = _free_port()
            started = self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                                "-o", f"-p {self.port}", "start", check=False)
            if started.returncode == 0:
                break
            if attempt == 4:
                log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log}")
        self._started = True
        self.psql(f"CREATE DATABASE {TEMPLATE}")

    def pause(self) -> None:
        """Stop the server as an operator restarting it would (`pg_ctl stop -m fast`: sessions cut, connections
        refused); `resume` starts it again on the same port with the same data."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "-t", "60", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port}", "start")

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)
            self._started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = self._run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.folder),
                         "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql)
        return done.stdout.strip()

    def create_database(self, template: str = TEMPLATE) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
