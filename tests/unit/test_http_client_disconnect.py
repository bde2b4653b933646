"""A client that leaves while its request is being answered: the app's ``receive`` says
``http.disconnect``, and lcx's app cancels the handler and counts the exchange as 499."""

from __future__ import annotations

import logging
from typing import Any

import trio
from quart import Blueprint
from support.http import always_ready
from support.raw_http import Receive, Send, answer_lifespan, connected, get, serving

from lcx.api.bodies import json_response
from lcx.api.http_app import AppDeps, create_app
from lcx.metrics import Metrics


class _Waiter(logging.Handler):
    """Keeps the access lines and sets ``seen`` on the first."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = trio.Event()
        self.statuses: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.statuses.append(record.__dict__["status"])
        self.seen.set()


async def test_receive_says_disconnect_when_the_client_leaves() -> None:
    entered, told = trio.Event(), trio.Event()
    events: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        events.append(await receive())  # the (empty) body
        entered.set()
        events.append(await receive())  # blocks until the client is gone
        told.set()

    async with serving(app) as binding:
        async with connected(binding) as reader:
            await reader.stream.send_all(get("/"))
            await entered.wait()
        await told.wait()
    assert [event["type"] for event in events] == ["http.request", "http.disconnect"]


async def test_a_quart_handler_is_cancelled_and_counted_as_499() -> None:
    entered, cancelled = trio.Event(), trio.Event()
    slow = Blueprint("slow", __name__)

    @slow.get("/slow")
    async def slow_route() -> Any:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()
        return json_response({})  # pragma: no cover

    app = create_app(AppDeps(instance_id="i-test", max_body_bytes=1024,
                             readiness=always_ready, metrics=Metrics()))
    app.register_blueprint(slow)
    waiter = _Waiter()
    access = logging.getLogger("lcx.access")
    access.addHandler(waiter)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        async with serving(app) as binding:
            async with connected(binding) as reader:
                await reader.stream.send_all(get("/slow"))
                await entered.wait()
            await cancelled.wait()
            await waiter.seen.wait()
    finally:
        access.removeHandler(waiter)
        access.setLevel(level)
    assert waiter.statuses == [499]
