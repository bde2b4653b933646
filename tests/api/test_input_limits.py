"""Every integer and string a client sends is range-checked: huge seq numbers, sizes and
free-form numbers, and websocket fields over the HTTP API's limits, are
``invalid_request`` (400 or an ERROR frame) and change nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from support.agent_client import AgentClient, agent_connection
from support.livechat_app import LivechatApp, livechat_app

from lcx.api.common import MAX_FLAG_VALUE_BYTES, MAX_ID_CHARS, MAX_REASON_CHARS


async def _conversation(app: LivechatApp, alice: AgentClient, sub: str = "u-1") -> str:
    created = await app.client.post("/requests", headers=app.tokens.bot(),
                                    json={"tenantId": "t1", "subHandle": sub})
    assert created.status_code == 201, created.text
    accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created.json()["id"]})
    assert accepted["type"] == "ack", accepted
    return str(accepted["data"]["conversationId"])


def _refused_frames(conversation_id: str) -> list[tuple[str | None, Any, str]]:
    long_id = "x" * (MAX_ID_CHARS + 1)
    c = conversation_id
    return [
        ("RESUME", {"conversations": {c: 2**63}}, "seq 2**63"),
        ("RESUME", {"conversations": {c: -1}}, "negative seq"),
        ("RESUME", {"conversations": {long_id: 0}}, "long conversation id"),
        ("CONVERSATION_READ", {"conversationId": c, "seq": 2**64 - 1}, "seq 2**64-1"),
        ("CONVERSATION_READ", {"conversationId": c, "seq": 2**53}, "seq over 2**53-1"),
        ("CONVERSATION_READ", {"conversationId": c, "seq": -5}, "negative read"),
        ("PARTICIPANT_FLAG", {"conversationId": c, "flag": "f" * 100_000, "value": 1},
         "100 KB flag name"),
        ("PARTICIPANT_FLAG", {"conversationId": c, "flag": "vip", "value": 2**70},
         "huge flag value"),
        ("PARTICIPANT_FLAG", {"conversationId": c, "flag": "vip",
                              "value": "v" * MAX_FLAG_VALUE_BYTES}, "long flag value"),
        ("REQUEST_CREATE", {"tenantId": "t1", "subHandle": "s" * 10_000}, "long subHandle"),
        ("REQUEST_CREATE", {"tenantId": long_id, "subHandle": "s"}, "long tenantId"),
        ("CONVERSATION_END", {"conversationId": c, "reason": "r" * (MAX_REASON_CHARS + 1)},
         "long reason"),
        ("TRANSFER", {"conversationId": c, "toAgentId": long_id}, "long agent id"),
        (None, {"conversationId": c, "text": "hi", "id": long_id}, "long message id"),
        (None, {"conversationId": c, "text": "hi",
                "attachments": [{"url": "https://x/a", "size": 2**64}]}, "huge size"),
        (None, {"conversationId": c, "text": "hi",
                "attachments": [{"url": "https://x/a"}] * 21}, "21 attachments"),
    ]


async def test_out_of_range_frames_are_refused_and_store_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each frame gets ERROR invalid_request with its ref; the conversation keeps no read
    marker, flag, message or end, and no conversation is created for the long handle."""
    caplog.set_level(logging.INFO)
    async with livechat_app(tmp_path) as app:
        token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        async with agent_connection(str(app.client.base_url), token) as alice:
            conversation_id = await _conversation(app, alice)
            for event, data, what in _refused_frames(conversation_id):
                kind = "message" if event is None else "event"
                answer = await alice.call(event, data, kind=kind)
                assert answer.get("event") == "ERROR", (what, answer)
                assert answer["data"]["code"] == "invalid_request", (what, answer)
            long_ref = {"type": "event", "event": "AGENT_STATUS", "ref": "r" * 300,
                        "data": {"status": "away"}}
            alice.frames.clear()
            await alice.send(long_ref)
            error = await alice.wait_for(lambda f: f.get("event") == "ERROR")
            assert error["data"]["code"] == "invalid_request"
            read = await alice.call("CONVERSATION_READ", {"conversationId": conversation_id,
                                                          "seq": 2**53 - 1})
            assert read["type"] == "ack", read
        detail = await app.client.get(f"/organizations/o1/livechat-conversations/"
                                      f"{conversation_id}", headers=app.tokens.supervisor())
        body = detail.json()
        assert body["status"] == "active"
        assert body["flags"]["readMarkers"] == {"alice": 2**53 - 1}
        assert set(body["flags"]) == {"readMarkers"}
        assert body["lastSeq"] == 0
        state = await app.client.get("/subscribers/" + "s" * 10_000 + "/livechat-state",
                                     params={"tenantId": "t1"}, headers=app.tokens.bot())
        assert state.status_code == 400
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_huge_integers_in_http_bodies_are_invalid_requests(tmp_path: Path) -> None:
    """A 2**70 in free-form metadata or a payload, or a 2**64 attachment size, is 400 and
    creates or stores nothing; 2**53 - 1 is accepted."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        huge = await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": "u-2", "context": {"metadata": {"n": 2**70}}})
        assert huge.status_code == 400, huge.text
        assert huge.json()["error"]["code"] == "invalid_request"
        created = await app.client.post("/requests", headers=bot, json={
            "tenantId": "t1", "subHandle": "u-2", "context": {"metadata": {"n": 2**53 - 1}}})
        assert created.status_code == 201, created.text
        for message in ({"type": "postback", "payload": {"n": -(2**70)}},
                        {"text": "hi", "attachments": [{"url": "https://x/a",
                                                        "size": 2**64}]}):
            posted = await app.client.post("/messages", headers=bot, json={
                "tenantId": "t1", "subHandle": "u-2", "id": "m1", **message})
            assert posted.status_code == 400, posted.text
        fine = await app.client.post("/messages", headers=bot, json={
            "tenantId": "t1", "subHandle": "u-2", "id": "m1", "text": "hi"})
        assert fine.status_code == 202, fine.text
        assert fine.json()["seq"] == 1


async def test_oversized_frames_are_refused_and_huge_messages_close_with_1009(
        tmp_path: Path) -> None:
    """A 300 KB frame gets ERROR invalid_request and the socket serves on; a message over
    1 MiB is not assembled at all: the socket closes with 1009 (message too big)."""
    async with livechat_app(tmp_path) as app:
        token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        async with agent_connection(str(app.client.base_url), token) as alice:
            await alice.ws.send_message('{"type": "ping", "ref": "' + "r" * 300_000 + '"}')
            error = await alice.wait_for(lambda f: f.get("event") == "ERROR")
            assert error["data"]["code"] == "invalid_request"
            await alice.ws.send_message("[" + " " * (1024 * 1024 + 10) + "]")
            with pytest.raises(AssertionError, match=r"socket closed \(1009\)"):
                await alice.wait_for(lambda f: f.get("type") == "never")
