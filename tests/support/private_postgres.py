"""A private PostgreSQL cluster for tests that restart the database.

The shared server (tests/support/postgres.py) must never be restarted: other tests use it.
:class:`PrivatePostgres` runs ``initdb`` into a temporary directory with the server
binaries of the machine (``/usr/lib/postgresql/<version>/bin``), on a port of its own,
trust authentication on loopback only, and stops (or crashes) and starts it at will. It
keeps PostgreSQL's durability defaults (``fsync``, ``synchronous_commit``): a test that
crashes it proves that what was acknowledged survives.

When run as root it runs the server as the ``postgres`` user (``initdb`` refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from support.redis import free_port, unavailable

SERVER_USER = "postgres"


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb``, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name)
                   if Path(path).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """One PostgreSQL cluster in a temporary directory (removed by :meth:`destroy`)."""

    def __init__(self) -> None:
        binaries = server_binaries()
        if binaries is None:
            unavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self._bin = binaries or Path("/usr/lib/postgresql/bin")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lcx-private-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as_user, str(self._bin / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                cwd=self.root, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}):\n{result.stdout}"
                               f"{result.stderr}\n{self.log()}")

    def init(self) -> None:
        """``initdb`` (trust auth, UTF-8) into the temporary directory."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions")

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (a crash: recovery on the
        next start replays the WAL)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default as a crash) and start again on the same port."""
        self.stop(mode)
        self.start()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, while it runs."""
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        """The server's log so far."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        """Kill the server if it still runs and remove its directory."""
        pid = self.pid
        if pid is not None:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()
