"""Input whose bytes are not UTF-8 is malformed, never an internal error: a binary agent
frame gets ``ERROR invalid_request`` (before ``auth`` it is no token) and the socket keeps
serving; a JSON webhook body is 400 ``invalid_request`` before any channel parses it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fakes.livechat import tenant_for
from support.agent_client import agent_connection, ws_client
from support.livechat_app import DEFAULT_TENANTS, livechat_app

NOT_UTF8 = b'{"type": "ping", "ref": "\xff\xfe"}'


async def test_a_binary_frame_that_is_not_utf8_is_invalid_and_the_socket_stays_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bytes that do not decode as UTF-8 get ``invalid_request``; a ping after it gets
    its pong; no traceback is logged."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path) as app:
        token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        async with agent_connection(str(app.client.base_url), token) as alice:
            for frame in (NOT_UTF8, b'{"type": "event", "event": "RESUME", "ref": "r1",'
                                    b' "data": {"conversations": {"\xc3\x28": 1}}}'):
                alice.frames.clear()
                await alice.ws.send_message(frame)
                error = await alice.wait_for(lambda f: f.get("event") == "ERROR")
                assert error["data"]["code"] == "invalid_request", error
            await alice.send({"type": "ping", "ref": "alive"})
            pong = await alice.wait_for(lambda f: f["type"] == "pong")
            assert pong["ref"] == "alive"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_first_frame_that_is_not_utf8_is_no_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A socket opened without a token whose first frame is not UTF-8 is refused with
    ``ERROR unauthorized``, as for any first frame that is not an ``auth``."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path) as app:
        url = str(app.client.base_url).replace("http://", "ws://") + "/ws"
        async with ws_client(url) as ws:
            await ws.send_message(b'{"type": "auth", "token": "\xff"}')
            error = json.loads(await ws.get_message())
            assert error["event"] == "ERROR"
            assert error["data"]["code"] == "unauthorized", error
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_json_webhook_body_that_is_not_utf8_is_invalid(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """LiveChat's secret is inside its JSON body, so its parser runs before any check of
    the sender: bytes that are not UTF-8 are refused first, with 400."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path, tenants=(*DEFAULT_TENANTS, tenant_for())) as app:
        response = await app.client.post(
            "/events/livechat", headers={"Content-Type": "application/json"},
            content=b'{"secret_key": "whsec-1", "action": "\xff"}')
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
