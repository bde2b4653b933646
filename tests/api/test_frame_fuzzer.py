"""A seeded fuzzer of agent frames, beside the schemathesis run of the HTTP API: every
frame type with mutated fields, deep nesting, huge numbers and long strings, against a
real lcx and a real socket. No frame may get an ``internal`` ERROR, log a traceback or
close the socket (a bad frame never closes it, API.md section 5)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
import trio
from support.agent_client import AgentClient, agent_connection
from support.livechat_app import LivechatApp, livechat_app

SEED = 20261202
FRAMES = 600
TIME_LIMIT_SECONDS = 120

HUGE_NUMBERS = (2**63, 2**63 - 1, 2**64 - 1, 2**64, 2**53, -(2**63) - 1, 10**30, -1)
ROOMY = {"o1": {"maxConcurrentChats": 1000}}
MOVES_THE_CONVERSATION = ("CONVERSATION_END", "CONVERSATION_LEAVE", "TRANSFER")
EVENTS = ("REQUEST_ACCEPT", "REQUEST_CREATE", "CONVERSATION_JOIN", "CONVERSATION_LEAVE",
          "CONVERSATION_END", "CONVERSATION_TYPING", "CONVERSATION_READ", "PARTICIPANT_FLAG",
          "TRANSFER", "AGENT_STATUS", "RESUME")


def _valid_data(event: str, ids: dict[str, str]) -> dict[str, Any]:
    c, r = ids["conversation"], ids["request"]
    return {
        "REQUEST_ACCEPT": {"requestId": r},
        "REQUEST_CREATE": {"tenantId": "t1", "subHandle": "fz", "userGroupId": "g1"},
        "CONVERSATION_JOIN": {"conversationId": c},
        "CONVERSATION_LEAVE": {"conversationId": c},
        "CONVERSATION_END": {"conversationId": c, "reason": "done"},
        "CONVERSATION_TYPING": {"conversationId": c, "typing": True},
        "CONVERSATION_READ": {"conversationId": c, "seq": 1},
        "PARTICIPANT_FLAG": {"conversationId": c, "flag": "vip", "value": True},
        "TRANSFER": {"conversationId": c, "toUserGroupId": "g1"},
        "AGENT_STATUS": {"status": "online"},
        "RESUME": {"conversations": {c: 0}},
        "message": {"conversationId": c, "text": "hello", "id": "fz-1",
                    "attachments": [{"url": "https://example.com/a.png", "size": 10}]},
    }[event]


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


def _odd_value(rng: random.Random) -> Any:
    """One hostile value: huge or negative numbers, long or odd strings, wrong types."""
    choices: list[Any] = [
        2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -1, 0, 1.5, 1e308, -1e308,
        True, False, None, "", "x" * rng.choice((257, 1_001, 10_000, 70_000)),
        "nul\u0000byte", "\u202e\u2066rtl", "😀" * 300,
        [], {}, [1, "a", None], {"k": {"k": {"k": 2**70}}}, _nested(rng.choice((30, 40, 500))),
        {"$ref": "#"}, "2026-11-21T10:00:00.000Z", "0001-01-01T00:00:00.000+14:00",
    ]
    return rng.choice(choices)


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) inside ``value``, nested ones included."""
    slots: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            slots += [(value, key), *_slots(item)]
    elif isinstance(value, list):
        for key, item in enumerate(value):
            slots += [(value, key), *_slots(item)]
    return slots


def _mutate(rng: random.Random, data: dict[str, Any]) -> Any:
    """``data`` with 1-3 of: a value anywhere replaced by a hostile one, a field dropped,
    an unknown field added, a value wrapped in another level; or all of it replaced."""
    mutated = json.loads(json.dumps(data))
    for _ in range(rng.randint(1, 3)):
        slots = _slots(mutated)
        move = rng.randrange(6)
        if move in (0, 1) and slots:
            container, key = rng.choice(slots)
            old = container[key]
            numeric = isinstance(old, int) and not isinstance(old, bool)
            container[key] = rng.choice(HUGE_NUMBERS) if numeric and rng.random() < 0.6 \
                else _odd_value(rng)
        elif move == 2 and slots:
            container, key = rng.choice(slots)
            if isinstance(container, dict):
                container.pop(key)
        elif move == 3:
            mutated[rng.choice(("extra", "x" * 300, "__proto__", ""))] = _odd_value(rng)
        elif move == 4 and slots:
            container, key = rng.choice(slots)
            item = container[key]
            container[key] = {"wrapped": item} if rng.random() < 0.5 else [item]
        elif move == 5:
            return _odd_value(rng)
    return mutated


def _frame(rng: random.Random, ids: dict[str, str], index: int) -> str:
    kind = rng.choice((*EVENTS, "message", "message", "ping", "auth", "raw"))
    if kind == "raw":
        return rng.choice(('{"type": "event", "event": "RESUME", "data": {"conv',
                           "[" * 3000, '{"type": 2**64}', "null", "12345678901234567890",
                           '{"type": "event", "data": ' + "[" * 100 + "]" * 100 + "}",
                           "\ufeff{}", '{"type": "message", "type": "event"}'))
    frame: dict[str, Any] = {"type": "event", "event": kind, "ref": f"f{index}"}
    if kind == "message":
        frame = {"type": "message", "ref": f"f{index}", "data": _valid_data(kind, ids)}
    elif kind in ("ping", "auth"):
        frame = {"type": kind, "ref": f"f{index}", "token": _odd_value(rng)}
    else:
        frame["data"] = _valid_data(kind, ids)
    if "data" in frame and rng.random() < 0.9:
        frame["data"] = _mutate(rng, frame["data"])
    if rng.random() < 0.15:
        frame[rng.choice(("ref", "event", "type"))] = _odd_value(rng)
    return json.dumps(frame)


async def _setup(app: LivechatApp, alice: AgentClient, index: int) -> dict[str, str]:
    """A fresh request that alice accepted (the fuzzer ends, leaves and moves some)."""
    created = await app.client.post("/requests", headers=app.tokens.bot(),
                                    json={"tenantId": "t1", "subHandle": f"u-fuzz-{index}"})
    assert created.status_code == 201, created.text
    accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created.json()["id"]})
    return {"request": created.json()["id"],
            "conversation": accepted["data"]["conversationId"]}


async def test_fuzzed_frames_never_get_internal_errors_or_close_the_socket(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """300 seeded frames, each followed by a ping: every answer before its pong is an ack,
    an ERROR with a documented code, or an ordinary event; the socket stays open."""
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED)
    codes: dict[str, int] = {}
    with trio.fail_after(TIME_LIMIT_SECONDS):
        async with livechat_app(tmp_path, settings_overrides=ROOMY) as app:
            token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
            async with agent_connection(str(app.client.base_url), token) as alice:
                ids = await _setup(app, alice, 0)
                for index in range(FRAMES):
                    start = len(alice.frames)
                    frame = _frame(rng, ids, index)
                    await alice.ws.send_message(frame)
                    await alice.send({"type": "ping", "ref": f"sync-{index}"})
                    await alice.wait_for(lambda f, i=index: f.get("type") == "pong"
                                         and f.get("ref") == f"sync-{i}", start=start)
                    for answer in alice.frames[start:]:
                        if answer.get("event") == "ERROR":
                            code = answer["data"]["code"]
                            assert code != "internal", (frame[:300], answer)
                            codes[code] = codes.get(code, 0) + 1
                        elif answer.get("type") == "ack":
                            codes["ack"] = codes.get("ack", 0) + 1
                    if any(word in frame for word in MOVES_THE_CONVERSATION):
                        ids = await _setup(app, alice, index + 1)
                assert alice.closed_code is None
    assert codes.get("invalid_request", 0) > FRAMES // 3, codes
    assert codes.get("ack", 0) > FRAMES // 10, codes
    assert not [r for r in caplog.records if r.exc_info is not None]
