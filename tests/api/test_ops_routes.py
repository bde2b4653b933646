"""Operations routes and request plumbing, over a real socket on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from quart import Blueprint
from support.http import always_ready, serving

from lcx.api.bodies import json_response
from lcx.api.http_app import AppDeps, LcxApp, create_app
from lcx.api.http_server import serve_http
from lcx.api.ops import readiness_checks
from lcx.errors import StoreUnavailable
from lcx.logs import JsonFormatter
from lcx.metrics import Metrics, runtime_collector
from lcx.version import lcx_version

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def make_app(**overrides: Any) -> LcxApp:
    fields: dict[str, Any] = {"instance_id": "i-test", "max_body_bytes": 1024,
                              "readiness": always_ready, "metrics": Metrics()}
    return create_app(AppDeps(**(fields | overrides)))


class ListHandler(logging.Handler):
    """Formats records as JSON while the emitting task's logging context is current."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass(frozen=True)
class FakeSnapshot:
    actors_by_kind: Mapping[str, int]
    mailbox_depth_by_kind: Mapping[str, int]
    restarts_by_kind: Mapping[str, int]


async def test_healthz_reports_ok_and_instance() -> None:
    """GET /healthz answers 200 with the status, the instance id and lcx's version."""
    async with serving(make_app()) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "ok", "instanceId": "i-test",
                               "version": lcx_version()}


async def test_readyz_ready() -> None:
    """GET /readyz answers 200 when the readiness check passes."""
    async with serving(make_app()) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_names_the_failing_dependency() -> None:
    """GET /readyz answers 503 unavailable naming the named check that failed."""
    async def store_down() -> None:
        raise StoreUnavailable("connection refused to postgresql://user:secret@db")

    readiness = readiness_checks({"store": always_ready, "redis": store_down})
    async with serving(make_app(readiness=readiness)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert error["details"] == {"dependency": "redis"}
    assert "secret" not in response.text


async def test_readyz_bare_store_error_names_store() -> None:
    """A readiness callable raising a bare store error still yields 503 naming the store."""
    async def store_down() -> None:
        raise StoreUnavailable("down")

    async with serving(make_app(readiness=store_down)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["dependency"] == "store"


async def test_readyz_slow_dependency_times_out() -> None:
    """A check slower than its timeout makes /readyz answer 503 with reason timeout."""
    readiness = readiness_checks({"store": partial(trio.sleep, 5)}, timeout=0.05)
    async with serving(make_app(readiness=readiness)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"] == {"dependency": "store", "reason": "timeout"}


async def test_readyz_draining_is_unavailable() -> None:
    """A draining instance answers /readyz with 503 unavailable but stays live."""
    async with serving(make_app(draining=lambda: True)) as client:
        ready = await client.get("/readyz")
        live = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["error"] == {"code": "unavailable", "message": "draining for shutdown",
                                     "details": {"reason": "draining"}}
    assert live.status_code == 200


async def test_metrics_exports_http_counters_and_runtime_gauges() -> None:
    """GET /metrics is Prometheus text with request counts by route and runtime gauges."""
    metrics = Metrics()
    snapshot = FakeSnapshot({"conversation": 3}, {"conversation": 7}, {"queue": 2})
    metrics.add_collector(runtime_collector(lambda: snapshot))
    async with serving(make_app(metrics=metrics)) as client:
        await client.get("/healthz")
        await client.get("/no/such/route")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    assert 'lcx_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'lcx_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'lcx_http_request_duration_seconds_count{method="GET",route="/healthz"} 1.0' in text
    assert 'lcx_actors_live{kind="conversation"} 3.0' in text
    assert 'lcx_mailbox_depth{kind="conversation"} 7.0' in text
    assert 'lcx_actor_restarts_total{kind="queue"} 2.0' in text


async def test_failing_metrics_source_does_not_break_the_scrape() -> None:
    """A collector that raises is left out and the rest of /metrics still renders."""
    def broken() -> list[Any]:
        raise RuntimeError("snapshot failed")

    metrics = Metrics()
    metrics.add_collector(broken)
    async with serving(make_app(metrics=metrics)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "lcx_http_requests_total" in response.text


async def test_request_id_is_generated() -> None:
    """A response to a request without X-Request-Id carries a fresh UUIDv7 one."""
    async with serving(make_app()) as client:
        first = await client.get("/healthz")
        second = await client.get("/healthz")
    assert UUID7.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_request_id_is_echoed() -> None:
    """A sane client X-Request-Id is echoed unchanged."""
    async with serving(make_app()) as client:
        response = await client.get("/healthz", headers={"X-Request-Id": "abc-123.X_y"})
    assert response.headers["x-request-id"] == "abc-123.X_y"


@pytest.mark.parametrize("bogus", ["has space", "x" * 129, "semi;colon", "ünï"])
async def test_bogus_request_id_is_replaced(bogus: str) -> None:
    """An X-Request-Id that is too long or has odd characters is replaced by a fresh id."""
    async with serving(make_app()) as client:
        response = await client.get("/healthz", headers=[(b"X-Request-Id", bogus.encode())])
    assert UUID7.fullmatch(response.headers["x-request-id"])


async def test_access_log_line_has_request_id(caplog: pytest.LogCaptureFixture) -> None:
    """Each request writes one access line with method, path, status, duration, requestId."""
    handler = ListHandler()
    access = logging.getLogger("lcx.access")
    access.addHandler(handler)
    caplog.set_level(logging.INFO, logger="lcx.access")
    try:
        async with serving(make_app()) as client:
            await client.get("/healthz", headers={"X-Request-Id": "req-1"})
    finally:
        access.removeHandler(handler)
    [line] = handler.lines
    entry = json.loads(line)
    assert entry["requestId"] == "req-1"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/healthz", 200)
    assert entry["durationMs"] >= 0


async def test_serve_http_reports_a_taken_port_as_oserror() -> None:
    """Binding a port in use raises a plain OSError, before the app starts."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with trio.fail_after(5), pytest.raises(OSError, match="in use"):
            await serve_http(make_app(), host="127.0.0.1", port=taken.getsockname()[1])


async def test_shutdown_finishes_in_flight_requests() -> None:
    """On shutdown an in-flight request completes, serve_http returns without waiting out
    graceful_timeout, and the port no longer accepts connections."""
    entered, shutdown = trio.Event(), trio.Event()
    slow = Blueprint("slow", __name__)

    @slow.get("/slow")
    async def slow_route() -> Any:
        entered.set()
        await trio.sleep(0.2)
        return json_response({"done": True})

    app = make_app()
    app.register_blueprint(slow)
    responses: list[httpx.Response] = []

    async def call(client: httpx.AsyncClient, url: str) -> None:
        responses.append(await client.get(f"{url}/slow"))

    with trio.fail_after(5):
        async with httpx.AsyncClient() as client:
            async with trio.open_nursery() as nursery:
                binding = await nursery.start(partial(
                    serve_http, app, host="127.0.0.1", port=0, shutdown_trigger=shutdown.wait,
                    graceful_timeout=30))
                nursery.start_soon(call, client, binding.url)
                await entered.wait()
                shutdown.set()
                # Nothing cancels this nursery: it ends only because serve_http returns.
            [response] = responses
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{binding.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"done": True}
