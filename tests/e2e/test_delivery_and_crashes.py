"""Events survive a bot outage, dead letters replay, and nothing acknowledged is lost to a
kill -9 of lcx."""

from __future__ import annotations

import subprocess
import sys

import trio
from e2e_env import Env
from fakes.bot import Reply
from support.agent_client import agent_connection
from support.waiting import eventually


async def _active_conversation(env: Env, sub_handle: str) -> tuple[str, str]:
    """Create a request and let alice accept it; (request id, conversation id)."""
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request(sub_handle)
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        return created["id"], accepted["data"]["conversationId"]


async def test_bot_down_then_back_gets_every_event_once_in_order(env: Env) -> None:
    """While the bot answers 503 events wait and retry; once it is back each event is
    accepted exactly once, in seq order."""
    env.bot.mode = "down"
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-down")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        for index in range(5):
            ack = await alice.call(None, {"conversationId": conversation_id,
                                          "text": f"m{index}"}, kind="message")
            assert ack["type"] == "ack"
        await env.bot.wait_for(3)
        env.bot.mode = "ok"
    await eventually(lambda: sum(1 for r in env.bot.received if r.status == 200) >= 6,
                     timeout=10)
    await trio.sleep(0.3)
    delivered = [r.event for r in env.bot.received if r.status == 200]
    assert [e["type"] for e in delivered] == ["CONVERSATION_BEGIN"] + ["MESSAGE"] * 5
    assert [e["data"].get("text") for e in delivered[1:]] == [f"m{i}" for i in range(5)]
    assert len({e["id"] for e in delivered}) == 6
    first_ok = min(i for i, r in enumerate(env.bot.received) if r.status == 200)
    assert all(r.status == 503 for r in env.bot.received[:first_ok])


async def test_dead_letters_are_listed_and_replayed(env: Env) -> None:
    """An event the bot refuses with 400 is dead; `lcx dlq replay` delivers it."""
    env.bot.script(Reply(400))
    request_id, conversation_id = await _active_conversation(env, "u-dlq")
    await env.bot.wait_for(1)
    config = str(env.lcx.config_path)

    def dlq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lcx", "dlq", *args, "--config", config],
                              capture_output=True, text=True, timeout=60, check=False,
                              cwd=env.lcx.workdir)

    async def listed_dead() -> str:
        listed = await trio.to_thread.run_sync(dlq, "list")
        return listed.stdout

    listing = ""
    for _ in range(50):
        listing = await listed_dead()
        if conversation_id in listing:
            break
        await trio.sleep(0.1)
    assert "CONVERSATION_BEGIN" in listing
    replayed = await trio.to_thread.run_sync(dlq, "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    received = await env.bot.wait_for(2, timeout=10)
    assert received[1].status == 200
    assert received[1].event["type"] == "CONVERSATION_BEGIN"
    assert received[1].event_id == received[0].event_id
    assert received[1].event["requestId"] == request_id


async def test_kill_right_after_202_loses_nothing(env: Env) -> None:
    """A message answered 202 is in the transcript after kill -9 and a restart."""
    await env.create_request("u-kill")
    answered = await env.post_message("u-kill", "k-1", "survive this")
    assert answered.status_code == 202
    await env.restart(kill=True)
    transcript = await env.transcript(answered.json()["conversationId"])
    assert [m["text"] for m in transcript] == ["survive this"]
    again = await env.post_message("u-kill", "k-1", "survive this")
    assert again.json() == answered.json()


async def test_kill_right_after_an_agent_ack_loses_nothing(env: Env) -> None:
    """An agent message acked just before kill -9 is stored and still reaches the bot."""
    env.bot.mode = "stall"
    async with agent_connection(env.url, env.agent_token("alice")) as alice:
        created = await env.create_request("u-kill2")
        accepted = await alice.call("REQUEST_ACCEPT", {"requestId": created["id"]})
        conversation_id = accepted["data"]["conversationId"]
        ack = await alice.call(None, {"conversationId": conversation_id,
                                      "text": "acked then killed"}, kind="message")
        assert ack["type"] == "ack"
        await env.restart(kill=True)
    env.bot.release()
    transcript = await env.transcript(conversation_id)
    assert [m["text"] for m in transcript] == ["acked then killed"]
    await eventually(lambda: any(r.status == 200 and r.event["type"] == "MESSAGE"
                                 for r in env.bot.received), timeout=10)
    delivered = [r.event["type"] for r in env.bot.received if r.status == 200]
    assert delivered.count("MESSAGE") == 1


async def test_open_conversation_timers_survive_a_restart(env: Env) -> None:
    """A pending request whose lcx was killed is still missed on time after a restart."""
    await env.put_settings(requestTimeoutSeconds=2)
    created = await env.create_request("u-timer")
    await env.restart(kill=True)
    received = await env.bot.wait_for(1, timeout=10)
    assert received[0].event["type"] == "REQUEST_MISSED"
    assert received[0].event["requestId"] == created["id"]
