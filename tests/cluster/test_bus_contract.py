"""The Bus contract, run against LocalBus and RedisBus (the ``pair`` fixture)."""

from __future__ import annotations

import pytest
import trio
from support.waiting import eventually

from lcx.cluster.bus import MemberGone, RemoteError, RpcTimeout, TopicHandler
from lcx.cluster.errors import unbox
from lcx.cluster.redis_bus import RedisBus
from lcx.errors import Conflict, NotFound
from tests.cluster.conftest import Pair


async def test_request_returns_the_handlers_reply(pair: Pair) -> None:
    """A request reaches the callee's handler with the caller's id and returns its reply."""
    async def echo(sender: str, payload: bytes) -> bytes:
        return f"{sender}:".encode() + payload

    pair.callee.handle("echo", echo)
    with trio.fail_after(10):
        await pair.start()
        reply = await pair.caller.request(pair.callee.instance_id, "echo", b"hi", timeout=2)
    assert reply == f"{pair.caller.instance_id}:hi".encode()


async def test_api_error_is_boxed_and_unboxed_as_the_same_class(pair: Pair) -> None:
    """An ApiError raised by the handler reaches the caller as a RemoteError that unboxes
    to the same class, message (and, over Redis, details)."""
    async def missing(sender: str, payload: bytes) -> bytes:
        raise NotFound("no such conversation", details={"conversationId": "c1"})

    pair.callee.handle("missing", missing)
    with trio.fail_after(10):
        await pair.start()
        with pytest.raises(RemoteError) as caught:
            await pair.caller.request(pair.callee.instance_id, "missing", b"", timeout=2)
    error = caught.value
    assert (error.origin, error.kind) == (pair.callee.instance_id, "NotFound")
    api_error = unbox(error)
    assert type(api_error) is NotFound
    assert str(api_error) == "no such conversation"
    if pair.kind == "redis":
        assert error.details == {"conversationId": "c1"}
        assert isinstance(api_error, NotFound)
        assert api_error.details == {"conversationId": "c1"}


async def test_other_exceptions_are_boxed_with_their_kind(pair: Pair) -> None:
    """A non-API exception is boxed with its class name; unbox leaves it a RemoteError."""
    async def broken(sender: str, payload: bytes) -> bytes:
        raise ValueError("bad payload")

    pair.callee.handle("broken", broken)
    with trio.fail_after(10):
        await pair.start()
        with pytest.raises(RemoteError) as caught:
            await pair.caller.request(pair.callee.instance_id, "broken", b"", timeout=2)
    assert caught.value.kind == "ValueError"
    assert "bad payload" in caught.value.message
    assert unbox(caught.value) is caught.value


async def test_unknown_method_is_a_remote_error(pair: Pair) -> None:
    """A method nobody serves fails with a RemoteError, not a timeout."""
    with trio.fail_after(10):
        await pair.start()
        with pytest.raises(RemoteError) as caught:
            await pair.caller.request(pair.callee.instance_id, "nope", b"", timeout=2)
    assert caught.value.origin == pair.callee.instance_id


async def test_timeout_raises_at_the_deadline_and_cleans_the_waiter(pair: Pair) -> None:
    """A handler that never answers gives RpcTimeout at the caller's deadline, and no
    waiter (nor serving task) is left behind."""
    async def silent(sender: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    pair.callee.handle("silent", silent)
    with trio.fail_after(10):
        await pair.start()
        start = trio.current_time()
        with pytest.raises(RpcTimeout):
            await pair.caller.request(pair.callee.instance_id, "silent", b"", timeout=0.3)
        assert 0.3 <= trio.current_time() - start < 1.0
        if isinstance(pair.caller, RedisBus) and isinstance(pair.callee, RedisBus):
            assert pair.caller.statistics().pending_requests == 0
            callee = pair.callee
            await eventually(lambda: callee.statistics().serving_requests == 0, timeout=2)


async def test_request_to_an_unknown_member_fails_at_once(pair: Pair) -> None:
    """MemberGone, immediately, for an instance that is not a live member."""
    with trio.fail_after(10):
        await pair.start()
        with trio.fail_after(0.5), pytest.raises(MemberGone):
            await pair.caller.request("nobody-here", "echo", b"", timeout=5)


def collector(inbox: list[tuple[str, bytes]]) -> TopicHandler:
    """A topic handler that appends (sender, payload) to ``inbox``."""
    def collect(sender: str, payload: bytes) -> None:
        inbox.append((sender, payload))
    return collect


async def test_publish_to_one_and_to_all(pair: Pair) -> None:
    """publish(id) reaches that instance only; publish(None) reaches every instance."""
    received: dict[str, list[tuple[str, bytes]]] = {}
    for bus in {id(b): b for b in (pair.caller, pair.callee)}.values():
        bus.subscribe("news", collector(received.setdefault(bus.instance_id, [])))
    with trio.fail_after(10):
        await pair.start()
        assert pair.caller.publish(pair.callee.instance_id, "news", b"one")
        assert pair.caller.publish(None, "news", b"all")
        callee_inbox = received[pair.callee.instance_id]
        caller_inbox = received[pair.caller.instance_id]
        await eventually(lambda: len(callee_inbox) >= 2 and len(caller_inbox) >= 1, timeout=3)
        await trio.sleep(0.1)  # nothing more arrives
    sender = pair.caller.instance_id
    assert sorted(received[pair.callee.instance_id]) == [(sender, b"all"), (sender, b"one")]
    if pair.kind == "redis":
        assert received[pair.caller.instance_id] == [(sender, b"all")]


async def test_members_and_leadership_at_start(pair: Pair) -> None:
    """Once started every instance is a member and exactly one of them leads."""
    with trio.fail_after(10):
        await pair.start()
    buses = {pair.caller.instance_id: pair.caller, pair.callee.instance_id: pair.callee}
    for bus in buses.values():
        members = bus.members()
        assert set(members) == set(buses)
        assert members[bus.instance_id].last_heartbeat_at.endswith("Z")
    leaders = [bus for bus in buses.values() if bus.is_leader()]
    assert len(leaders) == 1
    leadership = leaders[0].leadership()
    assert leadership is not None
    assert leadership.instance_id == leaders[0].instance_id
    assert leadership.term >= 1
    assert all(bus.leadership() == leadership for bus in buses.values())
    assert pair.cluster.events[leaders[0].instance_id] == [leadership]


async def test_stop_releases_leadership(pair: Pair) -> None:
    """A graceful stop ends leadership at once: handlers hear None, is_leader is False."""
    with trio.fail_after(10):
        await pair.start()
        leader = next(bus for bus in (pair.caller, pair.callee) if bus.is_leader())
        await pair.cluster.stop(leader)
    assert not leader.is_leader()
    assert pair.cluster.events[leader.instance_id][-1] is None
    assert leader.members() == {}


async def test_unboxed_conflict_keeps_its_status() -> None:
    """unbox rebuilds ApiErrors by class name even from a bare RemoteError (LocalBus)."""
    error = RemoteError("stale version", origin="a", kind="Conflict",
                        details={"expected": 3})
    rebuilt = unbox(error)
    assert isinstance(rebuilt, Conflict)
    assert (rebuilt.status, rebuilt.code, rebuilt.details) == (409, "conflict", {"expected": 3})
