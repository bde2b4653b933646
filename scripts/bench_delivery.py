"""The delivery service alone: CPU per event from the outbox to the stub bot.

Enqueues one bot event at a time at ``--rate`` events/s (each in its own transaction, then
``wake(conversation)``, as a conversation actor does) over ``--conversations`` lanes of a
scratch SQLite store, lets one :class:`~services.bot_delivery.DeliveryService` POST them to
the stub bot (``bench_bot.py``, its own process), and prints how long it took and this
process's CPU per event. ``--enqueue-only`` measures the enqueueing alone, to subtract;
``--posts N`` the bot client alone (N event POSTs, ``--conversations`` in flight at once);
``--per-commit K`` enqueues K events of K conversations per transaction (less of the
figure is then the enqueueing's commit).
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

from adapters.bot_events import open_bot_client
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
               conversations: int, per_commit: int = 1) -> None:
    """Enqueue ``count`` events open loop at ``rate``/s, ``per_commit`` of them (of as many
    conversations) per transaction, then wait until all are delivered."""
    seq = [0] * conversations

    async def one(first: int) -> None:
        rows = []
        for index in range(first, min(first + per_commit, count)):
            conversation = index % conversations
            seq[conversation] += 1
            rows.append(event(conversation, seq[conversation]))

        def insert(tx: Tx) -> None:
            for row in rows:
                enqueue(tx, row)

        await store.transaction(insert)
        if service is not None:
            for row in rows:
                service.wake(row.conversation_id)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for first in range(0, count, per_commit):
            await trio.sleep_until(start + first / rate)
            nursery.start_soon(one, first)
    # the service's counter has no change notification: poll it
    while service is not None and service.statistics().delivered < count:  # noqa: ASYNC110
        await trio.sleep(0.01)


async def posts(bot_url: str, count: int, concurrency: int) -> None:
    """POST ``count`` events through the bot client, ``concurrency`` at a time, and print
    this process's CPU per POST (the client alone: no store, no delivery service)."""
    url = bot_url + "/livechat-events"
    rows = [event(index % concurrency, index) for index in range(count)]
    async with open_bot_client() as client:
        for row in rows[:concurrency]:  # warm up: connections open, URL parsed
            await client.post(url, row.body, event_id=row.id, secret=WEBHOOK_SECRET)

        async def worker(first: int) -> None:
            for row in rows[first::concurrency]:
                outcome = await client.post(url, row.body, event_id=row.id,
                                            secret=WEBHOOK_SECRET)
                assert type(outcome).__name__ == "Delivered", outcome

        cpu, wall = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for first in range(concurrency):
                nursery.start_soon(worker, first)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{count} POSTs, {concurrency} at a time, in {wall:.1f} s; "
          f"process CPU per POST {cpu / count * 1e6:.0f} us")


async def main(arguments: argparse.Namespace) -> None:
    """Run one measurement and print it."""
    count = int(arguments.rate * arguments.seconds)
    if arguments.posts:
        with stub_bot() as bot_url:
            await posts(bot_url, arguments.posts, arguments.conversations)
        return
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
            await load(store, service, arguments.rate, count, arguments.conversations,
                       arguments.per_commit)
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
    parser.add_argument("--per-commit", type=int, default=1,
                        help="events (of as many conversations) per enqueueing transaction")
    parser.add_argument("--posts", type=int, default=0,
                        help="only the bot client: this many POSTs, no store, no service")
    trio.run(main, parser.parse_args())
