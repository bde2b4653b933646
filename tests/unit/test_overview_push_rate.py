"""The supervisors' overview push sends at most once a second, however often its figures
change (a busy queue changes them on every request): console section 10 promises pushes
"at most once a second". Mock clock (autojump), no waiting."""

from __future__ import annotations

import itertools
from typing import Any, cast

import trio
import trio.testing

from lcx.overview import Overview, OverviewFeed, QueueFigures
from services.overview_feed import push_overview


class EverChangingFeed:
    """An overview whose waiting count grows on every computation."""

    def __init__(self) -> None:
        self.computed = 0

    async def current(self, org_id: str) -> Overview:
        self.computed += 1
        return Overview(queues=[QueueFigures(
            user_group_id="g1", waiting=self.computed, longest_wait_seconds=0,
            agents_online=1, agents_away=0, active_conversations=0)], agents=[],
            at=str(trio.current_time()))


async def test_figures_changing_all_the_time_are_pushed_once_a_second(
        autojump_clock: trio.testing.MockClock) -> None:
    """Over 10 s of figures that change at every look, pushes are at least 1 s apart
    and about one per second (the first at once)."""
    sent_at: list[float] = []

    def send(frame: dict[str, Any]) -> None:
        assert frame["data"]["kind"] == "overview"
        sent_at.append(trio.current_time())

    start = trio.current_time()
    with trio.move_on_after(10.05):
        await push_overview(cast(OverviewFeed, EverChangingFeed()), "o1", send)
    assert sent_at[0] == start
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert min(gaps) >= 1.0
    assert len(sent_at) == 11

