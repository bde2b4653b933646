"""A fake AEX chat window back end: the ``ReturnEndpoints.url`` an AEX ``initiate``
names, served for real on loopback. It records every POST (its ``Authorization`` header
and JSON body) and can fail the next ones (e.g. 503) to show they are retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from lcx.api.http_server import serve_http

PATH = "/aex/return"


@dataclass
class FakeReturnEndpoint:
    """What the chat window's back end received; see the module docstring."""

    token: str = "aex-return-token"
    base_url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    """Accepted bodies, in arrival order."""
    refused: int = 0
    _failures: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.base_url + PATH

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` POSTs."""
        self._failures.extend([status] * times)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The accepted bodies of one ``type`` (``message``, ``typing``, ``end``)."""
        return [body for body in self.received if body.get("type") == kind]

    def app(self) -> QuartTrio:
        app = QuartTrio("fake_aex_return")

        @app.post(PATH)
        async def receive() -> Response:
            raw = await request.get_data()  # always read: an unread body stalls keep-alive
            if request.headers.get("Authorization") != self.token:
                self.refused += 1
                return Response(json.dumps({"error": "unauthorized"}), status=401)
            if self._failures:
                return Response("unavailable", status=self._failures.pop(0))
            self.received.append(json.loads(raw))
            return Response("", status=204)

        return app


@asynccontextmanager
async def open_fake_return_endpoint() -> AsyncIterator[FakeReturnEndpoint]:
    """Serve a :class:`FakeReturnEndpoint` on 127.0.0.1, a free port, for the block."""
    fake = FakeReturnEndpoint()
    async with trio.open_nursery() as nursery:
        binding = await nursery.start(partial(serve_http, fake.app(), host="127.0.0.1",
                                              port=0))
        fake.base_url = binding.url
        yield fake
        nursery.cancel_scope.cancel()
