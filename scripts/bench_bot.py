"""The stub bot of the benchmarks: a bare ASGI app on hypercorn that answers 200 at once.

It checks ``X-Lcx-Signature`` on every event and, for each agent ``MESSAGE`` whose text is
a bench stamp (``R <conversation> <n> <monotonic ns>``), records how long the message took
from the agent's send to its arrival here (CLOCK_MONOTONIC is one clock for every process
of the machine). ``GET /_results`` returns what was recorded since the last call and
forgets it. Run as a process (``python scripts/bench_bot.py --secret S``); it prints
``bench bot listening on <url>``.

It is a bare ASGI callable rather than a Quart app so that the bot's own cost stays small
next to the server's: the benchmark shares the machine with the server it measures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time
from functools import partial
from typing import Any

import msgspec
import trio

from lcx.api.http_server import serve_http


class Recorder:
    """What the stub bot has seen since the last ``/_results``."""

    def __init__(self, secret: str) -> None:
        self.key = secret.encode()
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded."""
        self.records: list[tuple[int, int, int, str]] = []
        """(conversation index, n, latency ns, event id) of each stamped agent message."""
        self.events = 0
        self.bad_signatures = 0

    def note(self, headers: dict[bytes, bytes], body: bytes) -> None:
        """Record one POSTed event."""
        arrived = time.monotonic_ns()
        self.events += 1
        expected = "sha256=" + hmac.new(self.key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get(b"x-lcx-signature", b"").decode(), expected):
            self.bad_signatures += 1
        event = msgspec.json.decode(body)
        if event.get("type") != "MESSAGE":
            return
        text = str(event.get("data", {}).get("text", ""))
        if not text.startswith("R "):
            return
        _, conversation, n, stamp = text.split(" ")
        self.records.append((int(conversation), int(n), arrived - int(stamp),
                             headers.get(b"idempotency-key", b"").decode()))

    def results(self) -> bytes:
        """The records as JSON, then forget them."""
        document = msgspec.json.encode({"records": self.records, "events": self.events,
                                        "badSignatures": self.bad_signatures})
        self.reset()
        return document


def asgi_app(recorder: Recorder) -> Any:
    """The ASGI callable serving ``recorder``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        answer = b""
        if scope["method"] == "GET" and scope["path"] == "/_results":
            answer = recorder.results()
        elif scope["method"] == "POST":
            recorder.note(dict(scope["headers"]), b"".join(chunks))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app


async def main(port: int, secret: str) -> None:
    """Serve until killed."""
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, asgi_app(Recorder(secret)),
                                              host="127.0.0.1", port=port))
        print(f"bench bot listening on {binding.url}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the benchmarks' stub bot")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", default="")
    arguments = parser.parse_args()
    trio.run(main, arguments.port, arguments.secret)
