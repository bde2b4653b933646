"""Bad frames get ERROR and leave the socket up; bad tokens close it with 4401."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from e2e_env import Env
from support.agent_client import agent_connection
from trio_websocket import ConnectionClosed, open_websocket_url

from lcx.auth import mint_token


@pytest.fixture
def env_options() -> dict[str, Any]:
    return {"heartbeat_seconds": 0.2}


BAD_FRAMES: list[tuple[Any, str]] = [
    ("not json at all", "invalid_request"),
    ([1, 2, 3], "invalid_request"),
    ({"type": "event", "event": "NO_SUCH_EVENT", "data": {}}, "invalid_request"),
    ({"type": "nonsense"}, "invalid_request"),
    ({"type": "event", "event": "REQUEST_ACCEPT", "data": {}}, "invalid_request"),
    ({"type": "event", "event": "REQUEST_ACCEPT", "data": {"requestId": 42}},
     "invalid_request"),
    ({"type": "event", "event": "REQUEST_ACCEPT", "data": {"requestId": "nope"}}, "not_found"),
    ({"type": "event", "event": "CONVERSATION_END", "data": {"conversationId": "nope"}},
     "not_found"),
    ({"type": "event", "event": "CONVERSATION_TYPING", "data": {"conversationId": "x"}},
     "invalid_request"),
    ({"type": "event", "event": "CONVERSATION_READ",
      "data": {"conversationId": "x", "seq": "seven"}}, "invalid_request"),
    ({"type": "event", "event": "TRANSFER", "data": {"conversationId": "x"}},
     "invalid_request"),
    ({"type": "event", "event": "AGENT_STATUS", "data": {"status": "asleep"}},
     "invalid_request"),
    ({"type": "event", "event": "RESUME", "data": {"conversations": {"x": "y"}}},
     "invalid_request"),
    ({"type": "event", "event": "REQUEST_CREATE", "data": {"tenantId": "t2",
                                                          "subHandle": "s"}}, "not_found"),
    ({"type": "message", "data": {"conversationId": "x"}}, "invalid_request"),
    ({"type": "message", "data": {"conversationId": "x", "text": "a" * 70_000}},
     "invalid_request"),
    ({"type": "message", "data": {"conversationId": "x", "text": "nul\u0000here"}},
     "invalid_request"),
]


async def test_bad_frames_get_error_and_the_socket_stays_up(env: Env) -> None:
    """Each malformed or refused frame is answered by ERROR with its ref and code."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        for index, (frame, code) in enumerate(BAD_FRAMES):
            ref = f"bad-{index}"
            if isinstance(frame, dict):
                frame = {**frame, "ref": ref}
            await alice.ws.send_message(frame if isinstance(frame, str) else json.dumps(frame))
            error = await alice.wait_for(lambda f: f.get("event") == "ERROR")
            assert error["data"]["code"] == code, (frame, error)
            assert error["ref"] == (ref if isinstance(frame, dict) else None)
            alice.frames.clear()
        await alice.send({"type": "ping", "ref": "still-there"})
        pong = await alice.wait_for(lambda f: f["type"] == "pong")
        assert pong["ref"] == "still-there"


async def test_other_organizations_conversations_are_invisible(env: Env) -> None:
    """An agent of another organization cannot touch, resume or message a conversation."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice, \
            agent_connection(env.url, env.agent_token("mallory", org="o2")) as mallory:
        created = await env.create_request("u-iso")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        for event, data in (("REQUEST_ACCEPT", {"requestId": created["id"]}),
                            ("CONVERSATION_JOIN", {"conversationId": conversation_id}),
                            ("RESUME", {"conversations": {conversation_id: 0}})):
            refused = await mallory.call(event, data)
            assert refused["data"]["code"] == "not_found", (event, refused)
        message = await mallory.call(None, {"conversationId": conversation_id, "text": "hi"},
                                     kind="message")
        assert message["data"]["code"] == "not_found"


@pytest.mark.parametrize("token", ["garbage", "expired", "bot", "wrong-key"])
async def test_bad_token_closes_with_4401(env: Env, token: str) -> None:
    """A bad, expired, wrongly scoped or wrongly signed token closes the socket with 4401."""
    tokens = {"garbage": "garbage",
              "expired": mint_token("e2e-jwt-secret-with-more-than-32-bytes", sub="a",
                                    org="o1", scopes="agent", ttl_seconds=-60),
              "bot": mint_token("e2e-jwt-secret-with-more-than-32-bytes", sub="a",
                                org="o1", scopes="bot"),
              "wrong-key": mint_token("another-secret-that-is-also-32-bytes-long", sub="a",
                                      org="o1", scopes="agent")}
    url = env.url.replace("http://", "ws://") + f"/ws?token={tokens[token]}"
    async with open_websocket_url(url) as ws:
        error = json.loads(await ws.get_message())
        assert error["event"] == "ERROR"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4401
        await ws._stream.aclose()


async def test_auth_frame_works_and_silence_is_refused(env: Env) -> None:
    """The token may come in an auth frame; no frame within 5 s closes with 4401."""
    url = env.url.replace("http://", "ws://") + "/ws"
    async with open_websocket_url(url) as ws:
        await ws.send_message(json.dumps({"type": "auth", "token": env.agent_token("alice")}))
        granted = json.loads(await ws.get_message())
        assert granted["event"] == "AUTHORIZATION_GRANTED"
        heartbeat = json.loads(await ws.get_message())
        assert heartbeat["event"] == "HEARTBEAT"
        await ws.aclose()
    with trio.fail_after(8):
        async with open_websocket_url(url) as ws:
            json.loads(await ws.get_message())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 4401
            await ws._stream.aclose()
