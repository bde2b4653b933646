"""The instance's one heartbeat timer: every socket gets a HEARTBEAT every period, the
first one period after it connected rounded up to a tenth of a second, so that the
sockets that connected within the same tenth are beaten in the same wake-up."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest
import trio
import trio.testing

from lcx.api.agent_ws import HEARTBEAT_ALIGN_SECONDS, _Heartbeats


@dataclass
class BeatenSink:
    """Records when each frame was offered."""

    closed: bool = False
    beats: list[float] = field(default_factory=list)

    def offer(self, frame: bytes) -> bool:
        assert msgspec.json.decode(frame)["event"] == "HEARTBEAT"
        self.beats.append(trio.current_time())
        return True

    def cut(self, reason: str) -> None:
        raise AssertionError(f"cut: {reason}")


async def test_sockets_connected_within_a_tenth_are_beaten_together_every_period(
        autojump_clock: trio.testing.MockClock) -> None:
    beats = _Heartbeats(20.0)
    await trio.sleep((0.02 - trio.current_time()) % 1)  # to 0.02 s past a whole second
    start = trio.current_time()
    first, second, later = BeatenSink(), BeatenSink(), BeatenSink()
    beats.add(first)  # type: ignore[arg-type]
    await trio.sleep(0.05)
    beats.add(second)  # type: ignore[arg-type]
    await trio.sleep(0.06)
    beats.add(later)  # type: ignore[arg-type]  # 0.13 past: the next tenth
    await trio.sleep(45)
    tenth = start - 0.02 + 20.1
    assert first.beats == pytest.approx([tenth, tenth + 20])
    assert second.beats == first.beats
    assert later.beats == pytest.approx([tenth + HEARTBEAT_ALIGN_SECONDS,
                                         tenth + HEARTBEAT_ALIGN_SECONDS + 20])


async def test_a_closed_socket_is_beaten_no_more(
        autojump_clock: trio.testing.MockClock) -> None:
    beats = _Heartbeats(1.0)
    gone, staying = BeatenSink(), BeatenSink()
    beats.add(gone)  # type: ignore[arg-type]
    beats.add(staying)  # type: ignore[arg-type]
    await trio.sleep(1.5)
    gone.closed = True
    await trio.sleep(3)
    assert len(gone.beats) == 1
    assert len(staying.beats) == 4
