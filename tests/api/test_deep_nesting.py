"""JSON nested deeper than the documented limit is 400 ``invalid_request`` on every JSON
endpoint and an ``ERROR invalid_request`` frame on the agent socket, with no traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fakes.livechat import envelope, message_event, tenant_for
from support.agent_client import agent_connection
from support.livechat_app import DEFAULT_TENANTS, livechat_app

from lcx.api.bodies import MAX_JSON_DEPTH

DEEP = b"[" * 10_000 + b"]" * 10_000
UNCLOSED = b"[" * 10_000
JUST_TOO_DEEP = b'{"tenantId": "t1", "subHandle": "u-1", "context": {"metadata": ' + \
    b'{"a": ' * (MAX_JSON_DEPTH - 1) + b"1" + b"}" * (MAX_JSON_DEPTH - 1) + b"}}"
DEEP_IN_A_FIELD = b'{"tenantId": "t1", "subHandle": "u-1", "context": {"metadata": ' + \
    DEEP + b"}}"

JSON_ENDPOINTS = [
    ("POST", "/requests", "bot"),
    ("PATCH", "/requests/subscribers/u-1?tenantId=t1", "bot"),
    ("POST", "/messages", "bot"),
    ("PUT", "/organizations/o1/livechat-settings", "supervisor"),
    ("POST", "/organizations/o1/livechat-messages", "supervisor"),
    ("POST", "/organizations/o1/user-groups/g1/business-hours", "supervisor"),
    ("PATCH", "/organizations/o1/user-groups/g1/business-hours", "supervisor"),
]


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


async def test_deep_bodies_are_invalid_requests_on_every_json_endpoint(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """10,000 nested arrays, closed or not, at the top or inside a field, are 400 with
    ``details.maxDepth``; one level over the limit is refused, nothing is created."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path) as app:
        for method, path, scope in JSON_ENDPOINTS:
            headers = {**getattr(app.tokens, scope)(), "Content-Type": "application/json"}
            for body in (DEEP, UNCLOSED, DEEP_IN_A_FIELD):
                response = await app.client.request(method, path, headers=headers,
                                                    content=body)
                assert response.status_code == 400, (method, path, response.text)
                error = response.json()["error"]
                assert error["code"] == "invalid_request", (method, path, error)
                assert "X-Request-Id" in response.headers
        bot = {**app.tokens.bot(), "Content-Type": "application/json"}
        over = await app.client.post("/requests", headers=bot, content=JUST_TOO_DEEP)
        assert over.status_code == 400
        assert over.json()["error"]["details"]["maxDepth"] == MAX_JSON_DEPTH
        state = await app.client.get("/subscribers/u-1/livechat-state",
                                     params={"tenantId": "t1"}, headers=bot)
        assert state.json()["state"] == "none"
        at_limit = JUST_TOO_DEEP.replace(b'{"a": ', b"", 1).replace(b"}", b"", 1)
        created = await app.client.post("/requests", headers=bot, content=at_limit)
        assert created.status_code == 201, created.text
    _no_tracebacks(caplog)


async def test_deep_frames_get_an_invalid_request_error_and_the_socket_stays_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A deeply nested frame, as the first ``auth`` frame's neighbour or any later frame,
    is answered with ``ERROR invalid_request``; the socket keeps serving."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path) as app:
        token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        base = str(app.client.base_url)
        async with agent_connection(base, token) as alice:
            frames = [DEEP, UNCLOSED,
                      b'{"type": "event", "event": "RESUME", "ref": "r1", "data": '
                      b'{"conversations": ' + DEEP + b"}}",
                      b'{"type": "message", "ref": "r2", "data": ' + DEEP + b"}"]
            for frame in frames:
                alice.frames.clear()
                await alice.ws.send_message(frame.decode())
                error = await alice.wait_for(lambda f: f.get("event") == "ERROR")
                assert error["data"]["code"] == "invalid_request", error
            await alice.send({"type": "ping", "ref": "alive"})
            pong = await alice.wait_for(lambda f: f["type"] == "pong")
            assert pong["ref"] == "alive"
    _no_tracebacks(caplog)


async def test_deep_webhook_bodies_are_invalid_requests(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A channel webhook (LiveChat, whose secret is inside the JSON body) nested 10,000
    deep is 400 before anything parses it; a well-formed delivery is still taken."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path, tenants=(*DEFAULT_TENANTS, tenant_for())) as app:
        headers = {"Content-Type": "application/json"}
        for body in (DEEP, UNCLOSED, b'{"secret_key": "whsec-1", "payload": ' + DEEP + b"}"):
            response = await app.client.post("/events/livechat", headers=headers,
                                             content=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "invalid_request"
        event = message_event("ev-1", "customer-1", "hello")
        fine = json.dumps(envelope("incoming_event", {"chat_id": "CH1", "thread_id": "TH1",
                                                      "event": event},
                                   secret_key="whsec-1", organization_id="org-1"))
        accepted = await app.client.post("/events/livechat", headers=headers, content=fine)
        assert accepted.status_code == 200, accepted.text
    _no_tracebacks(caplog)
