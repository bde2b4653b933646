"""A POST on a kept-alive connection is bounded by its timeout without a cancel scope of
its own (the pool's deadline watchdog), and a slot waited for counts against it too."""

from __future__ import annotations

import trio
from fakes.bot import open_fake_bot

from adapters.bot_events import Delivered, Retry, open_bot_client
from adapters.http1 import DEADLINE_SLACK


async def test_a_bot_stalling_on_a_kept_alive_connection_times_out_in_time() -> None:
    """The second POST reuses the first one's connection; the bot stalls it: the POST is
    a transient failure after its timeout (plus the watchdog's slack at most), and the
    connection is not used again."""
    async with open_fake_bot() as bot, open_bot_client(timeout=0.3) as client:
        assert await client.post(bot.url, b"{}", event_id="e1") == Delivered(200)
        bot.mode = "stall"
        started = trio.current_time()
        outcome = await client.post(bot.url, b"{}", event_id="e2")
        took = trio.current_time() - started
        bot.release()
        assert await client.post(bot.url, b"{}", event_id="e3") == Delivered(200)
        opened = client._pool.opened
    assert isinstance(outcome, Retry)
    assert outcome.reason == "timeout after 0.3s"
    assert 0.3 <= took < 0.3 + DEADLINE_SLACK + 0.5
    assert opened == 2  # the timed-out connection was closed, a new one carried e3


async def test_a_post_waiting_for_a_connection_slot_times_out() -> None:
    """With one connection allowed and it stalled, a second POST waits for the slot
    within its own timeout, then is a transient failure."""
    async with open_fake_bot() as bot, open_bot_client(timeout=0.3,
                                                       max_connections=1) as client:
        bot.mode = "stall"
        outcomes: list[object] = []

        async def post(event_id: str) -> None:
            outcomes.append(await client.post(bot.url, b"{}", event_id=event_id))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, "e1")
            await trio.sleep(0.1)
            nursery.start_soon(post, "e2")
        took = trio.current_time() - started
        bot.release()
    assert [type(outcome) for outcome in outcomes] == [Retry, Retry]
    assert all(outcome.reason == "timeout after 0.3s" for outcome in outcomes
               if isinstance(outcome, Retry))
    assert took < 1.5
