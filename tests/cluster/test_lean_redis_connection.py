"""The bus's lean Redis connection (lcx.cluster.resp) and what rides on it: URLs read as
coredis reads them, a pipeline's replies in order with a refused command answered in its
place, a reused connection that Redis dropped replaced without the caller noticing, a
Redis that stops answering mapped to BusUnavailable within the timeout, and a subscribed
connection that goes silent given up by its PING probe; publishes that nobody waits for
written on a connection with replies off, renewed as soon as Redis drops it. On a real
Redis, or on a fake server speaking RESP where the fault needs one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import hiredis
import pytest
import trio
from support.redis import kill_clients, open_admin, require_redis, unique_namespace
from support.waiting import eventually

from lcx.cluster.bus import BusUnavailable
from lcx.cluster.redis_link import open_link
from lcx.cluster.redis_pubsub import Subscriber
from lcx.cluster.resp import RespBroken, RespConnection, RespTarget, parse_url
from lcx.runtime.policy import Backoff


def test_urls_give_host_port_database_credentials_and_tls() -> None:
    assert parse_url("redis://10.0.0.5:6380/3") == RespTarget(host="10.0.0.5", port=6380, db=3)
    assert parse_url("redis://redis.internal") == RespTarget(host="redis.internal")
    assert parse_url("rediss://:s%40cret@r.example:6390/0") == RespTarget(
        host="r.example", port=6390, tls=True, password="s@cret")
    assert parse_url("redis://app:pw@h:1/2") == RespTarget(
        host="h", port=1, username="app", password="pw", db=2)
    assert parse_url("redis://h/0?password=pw&db=4") == RespTarget(host="h", password="pw", db=4)
    assert parse_url("unix:///run/redis.sock?db=2") == RespTarget(path="/run/redis.sock", db=2)
    with pytest.raises(ValueError, match="not a redis URL"):
        parse_url("http://h:6379")


async def test_a_pipeline_answers_in_order_with_a_refusal_in_its_place() -> None:
    url = require_redis()
    key = f"{unique_namespace()}:counter"
    connection = await RespConnection.connect(parse_url(url), name="resp-test")
    try:
        replies = await connection.execute([
            (b"SET", key, b"not a number"), (b"INCR", key), (b"GET", key), (b"DEL", key)])
    finally:
        await connection.aclose()
    assert replies[0] == b"OK"
    assert isinstance(replies[1], hiredis.ReplyError)
    assert replies[2:] == [b"not a number", 1]
    assert connection.broken
    with pytest.raises(RespBroken):
        await connection.execute([(b"PING",)])


async def test_a_publish_on_a_connection_redis_dropped_goes_out_on_a_fresh_one() -> None:
    url = require_redis()
    async with open_link(url, timeout=2.0, name="resp-test-killed") as link:
        assert await link.publish("publish", [(unique_namespace(), b"first")]) == [0]
        async with open_admin(url) as admin:
            # coredis's pool has not connected yet: only the link's own connection
            assert await kill_clients(admin, "resp-test-killed") == 1
        assert await link.publish("publish", [(unique_namespace(), b"again")]) == [0]
        assert link.healthy


@asynccontextmanager
async def lean_connection(name: str, *, replies: bool = True
                          ) -> AsyncIterator[RespConnection]:
    """A lean connection to the shared Redis, closed after the block."""
    connection = await RespConnection.connect(parse_url(require_redis()), name=name,
                                              replies=replies)
    try:
        yield connection
    finally:
        await connection.aclose()


async def received(channel: str, count: int,
                   publish: Callable[[], Awaitable[None]]) -> list[bytes]:
    """The first ``count`` messages a real subscriber of ``channel`` gets after ``publish``."""
    async with lean_connection("resp-test-listener") as connection:
        await connection.send([(b"SUBSCRIBE", channel)])
        assert (await connection.read())[0] == b"subscribe"
        await publish()
        with trio.fail_after(5):
            return [(await connection.read())[2] for _ in range(count)]


async def test_unanswered_publishes_arrive_in_order() -> None:
    url = require_redis()
    channel = unique_namespace()
    async with open_link(url, timeout=2.0, name="resp-test-unanswered") as link:
        async def publish() -> None:
            for index in range(3):
                await link.publish_unanswered("publish", [
                    (channel, b"m%d-a" % index), (channel, b"m%d-b" % index)])

        assert await received(channel, 6, publish) == [
            b"m0-a", b"m0-b", b"m1-a", b"m1-b", b"m2-a", b"m2-b"]
        assert link.healthy


async def test_a_connection_with_replies_off_answers_nothing_until_turned_back_on() -> None:
    async with lean_connection("resp-test-replies-off", replies=False) as connection:
        await connection.send([(b"PUBLISH", unique_namespace(), b"x"), (b"PING",),
                               (b"CLIENT", b"REPLY", b"ON"), (b"ECHO", b"first answer")])
        with trio.fail_after(5):
            assert await connection.read() == b"OK"  # CLIENT REPLY ON's own answer
            assert await connection.read() == b"first answer"


async def test_an_unanswered_publish_after_redis_dropped_the_connection_is_not_lost() -> None:
    url = require_redis()
    channel = unique_namespace()
    async with open_link(url, timeout=2.0, name="resp-test-dropped") as link:
        await link.publish_unanswered("publish", [(channel, b"before")])
        async with open_admin(url) as admin:
            assert await kill_clients(admin, "resp-test-dropped") == 1

        async def publish_after_the_watch_noticed() -> None:
            await trio.sleep(0.2)  # the close reaches the watch task (a loopback RTT)
            await link.publish_unanswered("publish", [(channel, b"after")])

        # without the watch, this write would go into the dead connection and vanish
        assert await received(channel, 1, publish_after_the_watch_noticed) == [b"after"]
        assert link.healthy


async def silent_redis(listener: trio.SocketListener, confirm_subscribe: bool) -> None:
    """A fake Redis: answers the set-up (and SUBSCRIBE, when asked), then nothing."""
    async def serve(stream: trio.SocketStream) -> None:
        reader = hiredis.Reader()
        async with stream:
            while data := await stream.receive_some(65536):
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    name = command[0].upper()
                    if name in (b"CLIENT", b"SELECT", b"AUTH"):
                        await stream.send_all(b"+OK\r\n")
                    elif name == b"SUBSCRIBE" and confirm_subscribe:
                        for index, channel in enumerate(command[1:], 1):
                            await stream.send_all(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:%d\r\n"
                                                  % (len(channel), channel, index))
    await trio.serve_listeners(serve, [listener])


async def test_redis_that_stops_answering_is_unavailable_within_the_timeout() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(silent_redis, listeners[0], False)
        async with open_link(f"redis://127.0.0.1:{port}/0", timeout=0.3,
                             name="resp-test-silent") as link:
            started = trio.current_time()
            with pytest.raises(BusUnavailable, match="did not answer"):
                await link.publish("publish", [("somewhere", b"data")])
            assert trio.current_time() - started < 1.0
            assert not link.healthy
        nursery.cancel_scope.cancel()


async def test_a_subscription_that_goes_silent_is_given_up_and_renewed() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    lost: list[float] = []
    subscriber = Subscriber(["ours"], lambda frame: None,
                            backoff=Backoff(initial_seconds=0.05, maximum_seconds=0.1),
                            idle_probe=0.2, on_lost=lambda: lost.append(trio.current_time()),
                            on_resubscribed=lambda: None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(silent_redis, listeners[0], True)
        async with open_link(f"redis://127.0.0.1:{port}/0", timeout=0.2,
                             name="resp-test-sub") as link:
            started = trio.current_time()
            await nursery.start(subscriber.run, link)
            assert subscriber.subscribed
            # no traffic for idle_probe, then a PING left unanswered for the timeout
            await eventually(lambda: subscriber.reconnects >= 1, timeout=5.0)
            assert lost
            assert 0.35 <= lost[0] - started < 2.0
        nursery.cancel_scope.cancel()
