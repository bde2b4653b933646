"""Actor-path benchmark: one message pair through lcx in-process, without HTTP or sockets.

A *pair* is what ``bench_relay.py`` times, minus the web server: the bot's message through
:meth:`lcx.api.bot_rules.BotRules.message_posted` (tenant check, the subscriber's open
conversation, the conversation actor's decide + commit + carry-out, a frame to the agent's
sink), then the agent's answer frame through :meth:`lcx.api.agent_frames.FrameHandler.handle`
(membership check, the actor again, the ack). The instance is the real composition root
(:class:`lcx.instance.Lcx`) on a scratch SQLite file with ``synchronous = full``; its
tenant delivers events to the stub bot (``bench_bot.py``, its own process), so the outbox
rows and their delivery are part of the cost as in production.

C conversations run at once, closed loop (each sends its next pair when the last is done).
Printed per run: pairs/s, process CPU per pair (all threads of this process; the stub bot
is another process), and p50/p99 of each half.

Run it against another tree for side-by-side figures::

    .venv/bin/python scripts/bench_actor.py --pairs 3000
    PYTHONPATH=/tmp/lcx-base .venv/bin/python scripts/bench_actor.py --pairs 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchkit import WEBHOOK_SECRET, stub_bot, summary_ms
from support.livechat_app import accept, instance_settings

import lcx
from actors.keys import agent_key
from actors.messages import Connect
from lcx.api.agent_frames import FrameHandler
from lcx.api.bot_rules import BotRules, CreateRequestBody, MessageBody
from lcx.auth import Principal
from lcx.config import TenantConfig
from lcx.instance import Lcx
from lcx.livechat.settings import LivechatSettings

LCX_ROOT = str(Path(lcx.__file__).resolve().parent.parent)
"""The tree of the ``lcx`` measured (the first on ``PYTHONPATH``)."""


class CountingSink:
    """An agent socket that keeps only the conversation ids of the message frames it gets."""

    def __init__(self) -> None:
        self.waiting: dict[str, trio.Event] = {}

    def offer(self, frame: bytes) -> bool:
        """Wake whoever waits for a message frame of this conversation."""
        decoded = msgspec.json.decode(frame)
        if decoded.get("type") == "message" and decoded["data"]["author"]["type"] == "subscriber":
            event = self.waiting.pop(decoded["data"]["conversationId"], None)
            if event is not None:
                event.set()
        return True

    def cut(self, reason: str) -> None:
        """Never behind."""


async def run(pairs: int, concurrency: int, bot_url: str, workdir: Path) -> dict[str, Any]:
    """Open ``concurrency`` conversations, then send ``pairs`` pairs through them."""
    tenant = TenantConfig(id="t1", organization_id="o1", default_user_group="g1",
                          bot_events_url=bot_url + "/livechat-events",
                          webhook_secret=WEBHOOK_SECRET)
    instance = Lcx(instance_settings(workdir, [tenant], max_body_bytes=1_048_576))
    with trio.fail_after(60):
        return await _run(instance, pairs, concurrency)


async def _run(instance: Lcx, pairs: int, concurrency: int) -> dict[str, Any]:
    bot = Principal(sub="bot", org="o1", scopes=frozenset({"bot"}))
    agent = Principal(sub="alice", org="o1", scopes=frozenset({"agent"}), groups=("g1",))
    post_ms: list[float] = []
    answer_ms: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(instance.run)
        hub = instance.livechat
        await hub.org_settings.put("o1", LivechatSettings(max_concurrent_chats=1000))
        rules = BotRules(hub)
        sink = CountingSink()
        await hub.agents.ask(agent_key("o1", "alice"), Connect(
            socket_id="bench", sink=sink, groups=("g1",)))
        acks: list[dict[str, Any]] = []
        handler = FrameHandler(hub, agent, acks.append)
        conversations = []
        for n in range(concurrency):
            created = await rules.request_created(bot, CreateRequestBody(
                tenant_id="t1", sub_handle=f"u{n}"))
            conversation_id = (await hub.store.read(
                lambda tx, rid=created.id: _by_request(tx, rid)))
            await accept(hub, conversation_id, "alice")
            conversations.append((f"u{n}", conversation_id))

        serial = iter(range(10**9))

        async def one(sub: str, conversation_id: str, count: int) -> None:
            for _ in range(count):
                k = next(serial)
                delivered = sink.waiting[conversation_id] = trio.Event()
                start = time.perf_counter()
                await rules.message_posted(bot, MessageBody(
                    tenant_id="t1", sub_handle=sub, id=f"{sub}-{k}", text=f"U {k}"))
                posted = time.perf_counter()
                post_ms.append((posted - start) * 1e3)
                await delivered.wait()
                start = time.perf_counter()
                await handler.handle(msgspec.json.encode({"type": "message", "ref": "r", "data": {
                    "conversationId": conversation_id, "text": f"R 0 {k} {time.monotonic_ns()}"}}))
                answer_ms.append((time.perf_counter() - start) * 1e3)

        each = max(1, pairs // concurrency)
        await _warm(one, conversations)
        post_ms.clear()
        answer_ms.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as load:
            for sub, conversation_id in conversations:
                load.start_soon(one, sub, conversation_id, each)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = each * len(conversations)
        errors = [ack for ack in acks if ack.get("type") != "ack"]
        instance.request_stop()
    return {"lcx": LCX_ROOT, "pairs": done,
            "pairs_per_s": round(done / wall, 1), "cpu_us_per_pair": round(cpu / done * 1e6),
            "post_ms": summary_ms(post_ms), "answer_ms": summary_ms(answer_ms),
            "errors": len(errors)}


async def _warm(one: Any, conversations: list[tuple[str, str]]) -> None:
    async with trio.open_nursery() as nursery:
        for sub, conversation_id in conversations:
            nursery.start_soon(one, sub + "", conversation_id, 3)


def _by_request(tx: Any, request_id: str) -> str:
    from lcx.store.conversations import find_by_request

    found = find_by_request(tx, request_id)
    assert found is not None
    return found.id


def main() -> None:
    """Parse the arguments, run the bench, print (and store) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--concurrency", "-C", type=int, default=20)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    with stub_bot() as bot_url, tempfile.TemporaryDirectory(prefix="lcx-bench-actor-") as tmp:
        result = trio.run(run, args.pairs, args.concurrency, bot_url, Path(tmp))
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
