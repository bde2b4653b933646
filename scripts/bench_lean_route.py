"""A/B of the lean routes: CPU per ``POST /messages`` with them and with Quart serving it.

Runs a whole instance in-process (``tests/support/livechat_app.py``: SQLite in a scratch
directory, loopback HTTP), opens one request and POSTs ``N`` messages to it one after the
other, measuring the process's CPU (client + server, so only the difference between the
two paths means something). Rounds alternate between Quart and the lean routes, so both
see the same (shared, noisy) machine; the minimum per path is printed.

Run (from the repository, after ``scripts/test`` made ``.venv``)::

    .venv/bin/python scripts/bench_lean_route.py --messages 800 --rounds 3

``--client raw`` sends the request bytes over one keep-alive socket and reads the answer by
its ``content-length`` instead of through httpx (whose own CPU is most of a round
otherwise), so the figure is mostly the server's; ``--paths lean`` runs the lean routes
only. With ``PYTHONPATH=DIR`` another tree's lcx is measured (A/B of a change)::

    .venv/bin/python scripts/bench_lean_route.py --client raw --paths lean --messages 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.livechat_app import livechat_app

import lcx
import lcx.instance
from lcx.api.http_app import create_app

_BODY = b'{"tenantId":"t1","subHandle":"u1","text":"hello there"}'
_WARM_UP = 100


async def _raw_posts(base_url: str, headers: dict[str, str], count: int) -> int:
    """POST ``_BODY`` ``count`` times over one keep-alive connection; the last status."""
    url = httpx.URL(base_url)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (f"POST /messages HTTP/1.1\r\nhost: {url.host}:{url.port}\r\n{head}"
               f"content-length: {len(_BODY)}\r\n\r\n").encode("latin-1") + _BODY
    status = 0
    async with await trio.open_tcp_stream(url.host, url.port) as stream:
        buffer = b""
        for _ in range(count):
            await stream.send_all(request)
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                buffer += await stream.receive_some(65536)
            head_bytes = buffer[:end].decode("latin-1")
            status = int(head_bytes.split(" ", 2)[1])
            length = int(head_bytes.lower().split("content-length:", 1)[1].split("\r\n")[0])
            while len(buffer) < end + 4 + length:
                buffer += await stream.receive_some(65536)
            buffer = buffer[end + 4 + length:]
    return status


async def cpu_per_message(lean: bool, messages: int, raw: bool = False) -> float:
    """Process CPU µs per ``POST /messages`` on a fresh instance, lean routes on or off
    (``raw``: through a raw socket instead of httpx)."""
    lcx.instance.create_app = partial(create_app, lean=lean)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as scratch:
        async with livechat_app(Path(scratch)) as app:
            headers = app.tokens.bot()
            created = await app.client.post(
                "/requests", json={"tenantId": "t1", "subHandle": "u1"}, headers=headers)
            assert created.status_code == 201, created.text
            headers["Content-Type"] = "application/json"
            if raw:
                base = str(app.client.base_url)
                await _raw_posts(base, headers, _WARM_UP)
                started = time.process_time()
                status = await _raw_posts(base, headers, messages)
                spent = time.process_time() - started
                assert status == 202, status
                return spent / messages * 1e6
            for _ in range(_WARM_UP):
                await app.client.post("/messages", content=_BODY, headers=headers)
            started = time.process_time()
            for _ in range(messages):
                answer = await app.client.post("/messages", content=_BODY, headers=headers)
            spent = time.process_time() - started
            assert answer.status_code == 202, answer.text
    return spent / messages * 1e6


async def main(messages: int, rounds: int, raw: bool = False, paths: str = "both") -> None:
    """Alternate rounds and print each, then the minimum per path."""
    seen: dict[bool, list[float]] = {False: [], True: []}
    run = {"both": (False, True), "lean": (True,), "quart": (False,)}[paths]
    for _ in range(rounds):
        for lean in run:
            seen[lean].append(await cpu_per_message(lean, messages, raw))
            print(f"{'lean ' if lean else 'quart'} {seen[lean][-1]:7.0f} µs/message",
                  flush=True)
    if paths != "both":
        print(f"min: {paths} {min(seen[paths == 'lean']):.0f} µs per POST /messages "
              f"({'raw client' if raw else 'httpx'} + server CPU; lcx from {lcx.__file__})")
        return
    quart, lean_ = min(seen[False]), min(seen[True])
    print(f"min: quart {quart:.0f} µs, lean {lean_:.0f} µs, saved {quart - lean_:.0f} µs "
          "per POST /messages (client + server CPU)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx")
    parser.add_argument("--paths", choices=("both", "lean", "quart"), default="both")
    arguments = parser.parse_args()
    trio.run(main, arguments.messages, arguments.rounds, arguments.client == "raw",
             arguments.paths)
