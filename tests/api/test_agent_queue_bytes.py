"""The slow-consumer bound counts bytes as well as frames, per socket and per instance,
and a RESUME replays a long conversation without ever queueing more than that bound."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio
import trio.lowlevel
from support.livechat_app import accept, connect_agent, livechat_app

from lcx.api.agent_frames import FrameHandler
from lcx.api.socket_sink import QueueBudget, SocketSink
from lcx.auth import Principal
from lcx.store.conversations import find_open


def test_a_socket_is_refused_frames_past_its_byte_bound() -> None:
    """Three 300-byte frames fit in 1,000 bytes, the fourth does not; one frame larger
    than the bound alone is taken on an empty queue only."""
    sink = SocketSink(1000, max_bytes=1000)
    assert [sink.offer(b"x" * 300) for _ in range(4)] == [True, True, True, False]
    alone = SocketSink(1000, max_bytes=1000)
    assert alone.offer(b"x" * 5000)
    assert not alone.offer(b"y")


def test_the_instance_budget_bounds_all_sockets_together() -> None:
    """Two sockets sharing a 1,000-byte budget hold 1,000 bytes between them; what one
    releases on closing the other may use."""
    budget = QueueBudget(1000)
    first, second = SocketSink(100, budget=budget), SocketSink(100, budget=budget)
    assert first.offer(b"a" * 600)
    assert not second.offer(b"b" * 600)
    assert second.offer(b"b" * 400)
    assert budget.used == 1000
    first.release()
    assert budget.used == 400
    assert second.offer(b"b" * 600)


async def test_resume_of_a_long_conversation_stays_within_the_byte_bound(
        tmp_path: Path) -> None:
    """40 messages of 60 KB (2.4 MB) replayed to a socket bounded at 256 KB: all arrive
    in order, the queue never held more than the bound, and the socket is not cut."""
    async with livechat_app(tmp_path) as app:
        created = await app.client.post("/requests", headers=app.tokens.bot(),
                                        json={"tenantId": "t1", "subHandle": "u-long"})
        assert created.status_code == 201, created.text
        found = await app.hub.store.read(lambda tx: find_open(tx, "t1", "u-long"))
        assert found is not None
        conversation_id = found.id
        await connect_agent(app.hub, "alice")
        await accept(app.hub, conversation_id, "alice")
        for n in range(40):
            posted = await app.client.post("/messages", headers=app.tokens.bot(), json={
                "tenantId": "t1", "subHandle": "u-long", "id": f"m{n}", "text": "x" * 60_000})
            assert posted.status_code == 202, posted.text
        sink = SocketSink(1000, max_bytes=256 * 1024)
        peak, received, acked = 0, [], trio.Event()

        def send(frame: dict[str, object]) -> None:
            nonlocal peak
            sink.offer_json(frame)
            peak = max(peak, sink.bytes)

        async def slow_client() -> None:
            while True:
                received.append(msgspec.json.decode(await sink.next_frame()))
                if received[-1]["type"] == "ack":
                    acked.set()
                await trio.lowlevel.checkpoint()  # one frame a turn: slower than the replay

        principal = Principal(sub="alice", org="o1", scopes=frozenset({"agent"}),
                              groups=("g1",))
        handler = FrameHandler(app.hub, principal, send, room=sink.wait_room)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_client)
            await handler.handle(msgspec.json.encode({
                "type": "event", "event": "RESUME", "ref": "r",
                "data": {"conversations": {conversation_id: 0}}}))
            await acked.wait()
            nursery.cancel_scope.cancel()
        seqs = [f["data"]["seq"] for f in received if f["type"] == "message"]
        assert seqs == list(range(1, 41))
        assert sink.cut_reason is None
        assert peak <= 256 * 1024
        ack = next(f for f in received if f["type"] == "ack")
        assert ack["data"] == {"conversations": {conversation_id: 40}}
