"""The bus's awaited publishes (RPC requests and replies): a lone call is sent at once, the
calls made while a send is in flight share one pipeline, each caller still gets its own
answer (how many received it), a caller that gave up before its turn is not published,
and a failure or a stop reaches every caller at once. On a real Redis."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from support.redis import require_redis, unique_namespace

from lcx.cluster.bus import BusUnavailable
from lcx.cluster.redis_link import open_link
from lcx.cluster.redis_publisher import Publisher


async def subscribed(url: str, channel: str) -> trio.SocketStream:
    """A raw RESP connection subscribed to ``channel`` (a receiver Redis counts)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    name = channel.encode()
    await stream.send_all(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
    seen = b""
    while b":1\r\n" not in seen:  # the subscription's confirmation ends with its count
        seen += await stream.receive_some(4096)
    return stream


async def test_calls_queued_together_share_one_pipeline_and_get_their_own_answer() -> None:
    url = require_redis()
    namespace = unique_namespace()
    listened = f"{namespace}:listened"
    publisher = Publisher()
    answers: dict[int, int] = {}

    async def one(index: int) -> None:
        channel = listened if index % 5 == 0 else f"{namespace}:nobody:{index}"
        answers[index] = await publisher.publish(channel, b"frame %d" % index)

    stream = await subscribed(url, listened)
    async with stream, open_link(url, timeout=2.0, name="publisher-test") as link, \
            trio.open_nursery() as nursery:
        nursery.start_soon(publisher.run, link)
        await trio.testing.wait_all_tasks_blocked()
        # a lone call is sent at once, by itself
        assert await publisher.publish(listened, b"alone") == 1
        assert (publisher.batches, publisher.sent) == (1, 1)
        # 20 at once: the first is sent directly, the 19 made meanwhile in one pipeline
        async with trio.open_nursery() as callers:
            for index in range(20):
                callers.start_soon(one, index)
        assert answers == {index: 1 if index % 5 == 0 else 0 for index in range(20)}
        assert (publisher.batches, publisher.sent) == (3, 21)
        nursery.cancel_scope.cancel()


async def test_a_caller_that_gave_up_before_its_turn_is_not_published() -> None:
    url = require_redis()
    publisher = Publisher()
    with trio.move_on_after(0.05):
        await publisher.publish(f"{unique_namespace()}:x", b"too late")
    async with open_link(url, timeout=2.0, name="publisher-test") as link, \
            trio.open_nursery() as nursery:
        nursery.start_soon(publisher.run, link)
        assert await publisher.publish(f"{unique_namespace()}:y", b"kept") == 0
        assert publisher.sent == 1
        nursery.cancel_scope.cancel()


async def test_a_failed_batch_fails_each_caller_and_the_next_is_sent() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    publisher = Publisher()
    failures: list[BaseException] = []

    async def one() -> None:
        try:
            await publisher.publish("nowhere", b"x")
        except BusUnavailable as exc:
            failures.append(exc)

    async with open_link(f"redis://127.0.0.1:{port}/0", timeout=0.5,
                         name="publisher-test") as link, trio.open_nursery() as nursery:
        nursery.start_soon(publisher.run, link)
        async with trio.open_nursery() as callers:
            for _ in range(3):
                callers.start_soon(one)
        assert len(failures) == 3
        with pytest.raises(BusUnavailable):  # the publisher still serves the next call
            await publisher.publish("nowhere", b"y")
        nursery.cancel_scope.cancel()


async def test_stopping_fails_the_queued_callers_at_once() -> None:
    publisher = Publisher()
    failed = trio.Event()

    async def waiting() -> None:
        with pytest.raises(BusUnavailable, match="the bus stopped"):
            await publisher.publish("anywhere", b"x")
        failed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting)
        await trio.testing.wait_all_tasks_blocked()
        publisher.close("the bus stopped")
        with trio.fail_after(1):
            await failed.wait()
