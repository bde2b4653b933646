"""Reference servers the relay bench can measure next to lcx (``bench_relay.py --reference``).

A reference is not lcx: it is a small service in another runtime that does the same durable
work per message and speaks the part of lcx's contract the bench uses, so that lcx's CPU
per message pair can be compared with it on the same machine. ``node`` is
``scripts/reference/node_relay/server.js`` (Node.js, ``ws``, ``better-sqlite3`` in WAL mode
with ``synchronous=FULL``); see its README.md.

:func:`running_reference` starts one on a scratch SQLite file with the bench's JWT and
webhook secrets, delivering to the stub bot's port, and stops it afterwards; the bench then
targets it as it targets any running server (``--base-url``/``--pid``/``--bot-port``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchkit import GROUP, JWT_SECRET, ORG, ROOT, TENANT, WEBHOOK_SECRET

REFERENCES = {"node": ROOT / "scripts" / "reference" / "node_relay"}
"""Reference name -> the directory of its service."""
_READY = "node relay reference listening on "


@dataclass(frozen=True)
class Reference:
    """A running reference service: where it listens, its pid, the stub bot's port."""

    url: str
    pid: int
    bot_port: int


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (the stub bot's, chosen
    before the reference starts because the reference must know where to deliver)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def node_command(directory: Path, database: Path, bot_port: int) -> list[str]:
    """The command line of the Node reference on ``database``, delivering to the stub bot
    on ``bot_port``, with the bench's secrets and tenant."""
    node = shutil.which("node") or "node"
    return [node, str(directory / "server.js"), "--port", "0", "--db", str(database),
            "--jwt-secret", JWT_SECRET, "--webhook-secret", WEBHOOK_SECRET,
            "--bot-url", f"http://127.0.0.1:{bot_port}/livechat-events",
            "--tenant", TENANT, "--org", ORG, "--group", GROUP]


@contextmanager
def running_reference(name: str) -> Iterator[Reference]:
    """Start reference ``name`` on a scratch SQLite file; stop it (SIGTERM) on exit.

    Raises:
        RuntimeError: its dependencies are not installed, or it did not start.
    """
    directory = REFERENCES[name]
    if not (directory / "node_modules" / "better-sqlite3").is_dir() \
            or not (directory / "node_modules" / "ws").is_dir():
        raise RuntimeError(f"the {name} reference's packages are missing: "
                           f"run `npm install` in {directory}")
    bot_port = free_port()
    with tempfile.TemporaryDirectory(prefix="lcx-reference-") as tmp:
        process = subprocess.Popen(node_command(directory, Path(tmp) / "relay.db", bot_port),
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith(_READY):
                raise RuntimeError(f"the {name} reference did not start: {line!r}")
            yield Reference(line[len(_READY):].strip(), process.pid, bot_port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
