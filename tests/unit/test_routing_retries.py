"""What routing sends again, and what it refuses, when the bus fails under a call: a call
that never left (NotSent) waits for the bus within the settle bound; a call that may
have been read (our reply channel lost, its owner died holding it) is sent again only
when it is safe to repeat; otherwise 503 with a documented reason at once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import msgspec
import pytest
import trio
import trio.testing

from actors.messages import Flag, Msg, Position
from actors.routing import ActorRouter, Answer
from lcx.cluster.bus import Bus, BusUnavailable, MemberLost, MemberSet, NotSent
from lcx.cluster.placement import Placement
from lcx.errors import Unavailable
from lcx.model import AgentRef
from lcx.runtime import KeyedSupervisor

SETTLE = 3.4
SAFE: Msg = Position(conversation_id="c1")
UNSAFE: Msg = Flag(agent=AgentRef(id="alice"), flag="vip", value=True)


class ScriptedBus:
    """Instance ``a``; members ``b`` and ``c`` own the keys. Each request raises the next
    scripted error, then answers (a position of (1, 2))."""

    instance_id = "a"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []
        self.candidates: tuple[str, ...] = ("b",)

    def member_set(self) -> MemberSet:
        return MemberSet(1, self.candidates)

    async def request(self, instance_id: str, method: str, payload: bytes, *,
                      timeout: float) -> bytes:
        self.calls.append(instance_id)
        await trio.sleep(0.01)
        if self.errors:
            raise self.errors.pop(0)
        value = msgspec.msgpack.encode((1, 2))
        return msgspec.msgpack.encode(Answer(value=msgspec.Raw(value)))


def router(bus: ScriptedBus) -> ActorRouter:
    local = cast(KeyedSupervisor, SimpleNamespace(kind="conversation"))
    fake = cast(Bus, bus)
    return ActorRouter(local, fake, Placement(fake, suspect_seconds=SETTLE),
                       settle_seconds=SETTLE)


async def test_a_call_that_never_left_waits_for_the_bus(
        autojump_clock: trio.testing.MockClock) -> None:
    """NotSent twice (our link reconnects), then the bus is back: answered, even for a
    message that is not safe to repeat."""
    bus = ScriptedBus(NotSent("reconnecting"), NotSent("reconnecting"))
    assert await router(bus).ask("c1", UNSAFE) is None
    assert bus.calls == ["b", "b", "b"]


async def test_a_bus_that_stays_down_is_503_bus_after_the_bound(
        autojump_clock: trio.testing.MockClock) -> None:
    """NotSent until the bound passes: 503 ``dependency = bus`` with Retry-After."""
    bus = ScriptedBus(*[NotSent("reconnecting") for _ in range(1000)])
    began = trio.current_time()
    with pytest.raises(Unavailable) as refused:
        await router(bus).ask("c1", SAFE)
    assert SETTLE - 0.3 <= trio.current_time() - began <= SETTLE
    assert refused.value.details == {"dependency": "bus"}
    assert dict(refused.value.headers)["Retry-After"] == "1"


@pytest.mark.parametrize(("message", "answered"), [(SAFE, True), (UNSAFE, False)])
async def test_a_lost_reply_channel_resends_only_what_is_safe(
        autojump_clock: trio.testing.MockClock, message: Msg, answered: bool) -> None:
    """The call was published, then our reply channel dropped: a position is asked
    again; a flag (maybe stored) is refused at once with 503 bus."""
    bus = ScriptedBus(BusUnavailable("our reply channel was disconnected"))
    if answered:
        assert await router(bus).ask("c1", message) == (1, 2)
        assert bus.calls == ["b", "b"]
    else:
        with pytest.raises(Unavailable) as refused:
            await router(bus).ask("c1", message)
        assert refused.value.details == {"dependency": "bus"}
        assert bus.calls == ["b"]


@pytest.mark.parametrize(("message", "answered"), [(SAFE, True), (UNSAFE, False)])
async def test_an_owner_dying_with_the_call_resends_only_what_is_safe(
        autojump_clock: trio.testing.MockClock, message: Msg, answered: bool) -> None:
    """``b`` dies holding the call: it is suspected (its keys go to ``c``); a position is
    asked of ``c``; a flag is refused with 503 owner_moving."""
    bus = ScriptedBus(MemberLost("b stopped listening"))
    bus.candidates = ("b", "c")
    routed = router(bus)
    key = next(k for k in (f"c{i}" for i in range(100)) if routed.owner(k) == "b")
    if answered:
        assert await routed.ask(key, message) == (1, 2)
        assert bus.calls == ["b", "c"]
    else:
        with pytest.raises(Unavailable) as refused:
            await routed.ask(key, message)
        assert refused.value.details == {"reason": "owner_moving"}
        assert bus.calls == ["b"]
        assert routed.owner(key) == "c"

