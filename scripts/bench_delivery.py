"""The delivery service alone: CPU per event from the outbox to the stub bot.

Enqueues one bot event at a time at ``--rate`` events/s (each in its own transaction, then
``wake(conversation)``, as a conversation actor does) over ``--conversations`` lanes of a
scratch SQLite store, lets one :class:`~services.bot_delivery.DeliveryService` POST them to
the stub bot (``bench_bot.py``, its own process), and prints how long it took and this
process's CPU per event. ``--enqueue-only`` measures the enqueueing alone, to subtract.
To measure another tree's delivery code with the same venv (side by side, as
``bench_relay.py --lcx-root`` does), put that tree first with ``PYTHONPATH``:

    .venv/bin/python scripts/bench_delivery.py --rate 100 --seconds 8
    PYTHONPATH=/tmp/lcx-base .venv/bin/python scripts/bench_delivery.py --rate 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from lcx.config import DeliveryConfig, TenantConfig
from lcx.ids import new_id
from lcx.store import Store, Tx, open_store
from lcx.store.outbox import OutboxEvent, enqueue
from services.bot_delivery import DeliveryService

WEBHOOK_SECRET = "bench-webhook-secret"


@contextmanager
def stub_bot() -> Iterator[str]:
    """Run ``bench_bot.py`` in its own process; yield its base URL. (Not benchkit's: that
    one imports the test support, which would load this checkout's lcx whatever
    ``PYTHONPATH`` says.)"""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "bench_bot.py"), "--secret",
         WEBHOOK_SECRET], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("bench bot listening on "):
            raise RuntimeError(f"the stub bot did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.kill()
        process.wait()


def event(conversation: int, event_no: int) -> OutboxEvent:
    """One agent MESSAGE to the bot, the size of a short chat line."""
    body = json.dumps({"type": "MESSAGE", "conversationId": f"c{conversation}",
                       "seq": event_no, "data": {"text": "hello " * 20}}).encode()
    return OutboxEvent(new_id(), "o1", "t1", f"c{conversation}", event_no, "bot", "",
                       "MESSAGE", body, "2026-01-01T00:00:00.000Z")


async def load(store: Store, service: DeliveryService | None, rate: float, count: int,
               conversations: int) -> None:
    """Enqueue ``count`` events open loop at ``rate``/s, then wait until all are delivered."""
    seq = [0] * conversations

    async def one(index: int) -> None:
        conversation = index % conversations
        seq[conversation] += 1
        row = event(conversation, seq[conversation])

        def insert(tx: Tx) -> None:
            enqueue(tx, row)

        await store.transaction(insert)
        if service is not None:
            service.wake(row.conversation_id)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index in range(count):
            await trio.sleep_until(start + index / rate)
            nursery.start_soon(one, index)
    # the service's counter has no change notification: poll it
    while service is not None and service.statistics().delivered < count:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def main(arguments: argparse.Namespace) -> None:
    """Run one measurement and print it."""
    count = int(arguments.rate * arguments.seconds)
    with stub_bot() as bot_url, tempfile.TemporaryDirectory() as tmp:
        tenant = TenantConfig(id="t1", organization_id="o1",
                              bot_events_url=bot_url + "/livechat-events",
                              webhook_secret=WEBHOOK_SECRET)
        async with open_store(f"sqlite:///{tmp}/bench.db") as store, \
                trio.open_nursery() as nursery:
            service = None
            if not arguments.enqueue_only:
                service = DeliveryService(store, {"t1": tenant}, DeliveryConfig())
                await nursery.start(service.run)
            await trio.sleep(0.5)
            cpu, wall = time.process_time(), time.perf_counter()
            await load(store, service, arguments.rate, count, arguments.conversations)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            what = "enqueued" if service is None else "enqueued and delivered"
            print(f"{count} events {what} in {wall:.1f} s (load: {arguments.seconds:g} s); "
                  f"process CPU per event {cpu / count * 1e6:.0f} us")
            if service is not None:
                service.request_stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="CPU of the delivery service per event")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--enqueue-only", action="store_true",
                        help="no delivery service: the cost of enqueueing alone")
    trio.run(main, parser.parse_args())
