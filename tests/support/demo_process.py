"""``lcx serve`` with no configuration (the demo), and what it printed."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from support.lcx_process import LcxProcess


class Printed:
    """The demo's base URL and the lines of its welcome."""

    def __init__(self, url: str, lines: list[str]) -> None:
        self.url = url
        self.lines = lines

    def url_of(self, label: str) -> str:
        """The URL on the welcome line ``label`` ("agent Alice", "customer simulator"...)."""
        for line in self.lines:
            if found := re.fullmatch(rf"demo:\s+{label}:\s+(\S+)", line):
                return found.group(1)
        raise AssertionError(f"no {label!r} line in {self.lines}")

    def token_of(self, label: str) -> str:
        """The sign-in token of the URL on line ``label``."""
        return parse_qs(urlsplit(self.url_of(label)).query)["token"][0]


def start_demo(workdir: Path, *, env: dict[str, str] | None = None
               ) -> tuple[LcxProcess, Printed]:
    """Start ``lcx serve --port 0`` with no configuration in ``workdir``; read its welcome."""
    lcx = LcxProcess(workdir, None, env=env, args=("--port", "0")).start()
    lines = [lcx.printed_line()]
    while lines[-1] and not lines[-1].startswith("demo: production"):
        lines.append(lcx.printed_line())
    return lcx, Printed(lcx.url, lines)
