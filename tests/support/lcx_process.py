"""Run a real ``lcx serve`` process for end-to-end and cluster tests."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

LISTENING = "lcx is listening on "


class LcxProcess:
    """One ``lcx serve`` child process on a free port, with its log captured to a file.

    ``start`` returns once the server printed where it listens; ``stop`` sends a signal
    and returns the exit code. Used as a context manager it kills the process on exit.
    """

    def __init__(self, workdir: Path, config: str | None, *, name: str = "lcx",
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.args = args
        """More arguments of ``lcx serve`` (e.g. ``--port 0`` with no config)."""
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = workdir / f"{name}.toml"
            self.config_path.write_text(config)
        self.log_path = workdir / f"{name}.log"
        inherited = {k: v for k, v in os.environ.items() if k != "LCX_CONFIG"}
        self.env = {**inherited, **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> LcxProcess:
        """Start the process and wait until it listens; raises with its log if it does not."""
        self._close_pipe()
        with self.log_path.open("a") as log:
            args = [sys.executable, "-m", "lcx", "serve"]
            if self.config_path is not None:
                args += ["--config", str(self.config_path)]
            args += self.args
            self.process = subprocess.Popen(args, cwd=self.workdir, env=self.env,
                                            stdout=subprocess.PIPE, stderr=log, text=True)
        self.url = self._wait_for_url(timeout)
        return self

    def _wait_for_url(self, timeout: float) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        poll = select.poll()  # not select(): a bench holding 10,000 sockets has fds > 1024
        poll.register(self.process.stdout, select.POLLIN)
        while time.monotonic() < deadline:
            if poll.poll(100):
                line = self.process.stdout.readline()
                if line.startswith(LISTENING):
                    return line[len(LISTENING):].strip()
                if not line and self.process.poll() is not None:
                    break
        raise RuntimeError(f"lcx did not start (exit {self.process.poll()}):\n{self.log()}")

    def printed_line(self) -> str:
        """The next line printed on stdout after the listening line ("" at the end).

        Blocks: use it only for lines printed together with the listening line (they may
        already sit in the pipe's read buffer, where ``select`` cannot see them).
        """
        assert self.process is not None
        assert self.process.stdout is not None
        return self.process.stdout.readline().rstrip("\n")

    def log(self) -> str:
        """Everything the process logged so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process and return its exit code."""
        self.send_signal(signum)
        code = self.wait(timeout)
        self._close_pipe()
        return code

    def kill(self) -> None:
        """SIGKILL the process (a crash), reap it and close its pipe."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> LcxProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()


def basic_config(workdir: Path, *, shutdown_timeout: float = 5.0, extra: str = "") -> str:
    """A config for a single instance on a free port with its SQLite file in ``workdir``."""
    return f"""
[server]
host = "127.0.0.1"
port = 0
shutdown_timeout_seconds = {shutdown_timeout}

[store]
url = "sqlite:///{workdir}/lcx.db"

[log]
level = "info"
format = "json"
{extra}
"""
