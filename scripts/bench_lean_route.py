"""A/B of the lean routes: CPU per ``POST /messages`` with them and with Quart serving it.

Runs a whole instance in-process (``tests/support/livechat_app.py``: SQLite in a scratch
directory, loopback HTTP), opens one request and POSTs ``N`` messages to it one after the
other, measuring the process's CPU (client + server, so only the difference between the
two paths means something). Rounds alternate between Quart and the lean routes, so both
see the same (shared, noisy) machine; the minimum per path is printed.

Run (from the repository, after ``scripts/test`` made ``.venv``)::

    .venv/bin/python scripts/bench_lean_route.py --messages 800 --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.livechat_app import livechat_app

import lcx.instance
from lcx.api.http_app import create_app

_BODY = b'{"tenantId":"t1","subHandle":"u1","text":"hello there"}'
_WARM_UP = 100


async def cpu_per_message(lean: bool, messages: int) -> float:
    """Process CPU µs per ``POST /messages`` on a fresh instance, lean routes on or off."""
    lcx.instance.create_app = partial(create_app, lean=lean)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as scratch:
        async with livechat_app(Path(scratch)) as app:
            headers = app.tokens.bot()
            created = await app.client.post(
                "/requests", json={"tenantId": "t1", "subHandle": "u1"}, headers=headers)
            assert created.status_code == 201, created.text
            headers["Content-Type"] = "application/json"
            for _ in range(_WARM_UP):
                await app.client.post("/messages", content=_BODY, headers=headers)
            started = time.process_time()
            for _ in range(messages):
                answer = await app.client.post("/messages", content=_BODY, headers=headers)
            spent = time.process_time() - started
            assert answer.status_code == 202, answer.text
    return spent / messages * 1e6


async def main(messages: int, rounds: int) -> None:
    """Alternate rounds and print each, then the minimum per path."""
    seen: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for lean in (False, True):
            seen[lean].append(await cpu_per_message(lean, messages))
            print(f"{'lean ' if lean else 'quart'} {seen[lean][-1]:7.0f} µs/message",
                  flush=True)
    quart, lean_ = min(seen[False]), min(seen[True])
    print(f"min: quart {quart:.0f} µs, lean {lean_:.0f} µs, saved {quart - lean_:.0f} µs "
          "per POST /messages (client + server CPU)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    trio.run(main, arguments.messages, arguments.rounds)
