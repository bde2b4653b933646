"""A lean Redis connection for the bus's hot path: PUBLISH pipelines and the pub/sub reader.

coredis carries every command through its connection pool, retry policy, telemetry hooks
and per-request objects: ~130 µs of CPU for a lone PUBLISH here, against ~20 µs for the
same command written on a Trio stream and parsed by hiredis (redis's own C reply parser).
A message pair crossing instances costs about five PUBLISH commands and their pub/sub
deliveries, so the bus sends those on connections of this module and keeps coredis for
everything else (scripts, membership, leader lease: a few commands per heartbeat).

:class:`RespConnection` is one connection: :meth:`~RespConnection.execute` writes a batch
of commands at once and reads their replies in order (a pipeline), :meth:`~RespConnection.
send` and :meth:`~RespConnection.read` serve a subscribed connection. Replies are hiredis
values: bytes, int, list, or :class:`hiredis.ReplyError` for an error reply (returned, not
raised, so that one refused command of a pipeline does not hide its neighbours' answers).
Anything that breaks the stream raises :class:`RespBroken`; the connection is then closed
and must not be used again. The URL forms are those of ``cluster.redis_url``:
``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS, verified against the
system's CAs) and ``unix:///path[?db=N]``; the password may also come as ``?password=``.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import trio

__all__ = ["RespBroken", "RespConnection", "RespTarget", "encode_command", "parse_url"]

Arg = bytes | str | int

_READ_SIZE = 65536
_LOST = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, hiredis.ProtocolError)


class RespBroken(Exception):
    """The connection failed (refused, reset, closed, or it answered nonsense)."""


@dataclass(frozen=True, slots=True)
class RespTarget:
    """Where and how to connect, from a ``cluster.redis_url``."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    """A unix socket path (then host and port are unused)."""
    tls: bool = False
    username: str | None = None
    password: str | None = None
    db: int = 0


def parse_url(url: str) -> RespTarget:
    """The :class:`RespTarget` of a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    password = unquote(parts.password) if parts.password else None
    password = password or (query["password"][0] if "password" in query else None)
    username = unquote(parts.username) if parts.username else None
    db_text = query["db"][0] if "db" in query else (parts.path.strip("/") or "0")
    if parts.scheme == "unix":
        return RespTarget(path=parts.path, username=username, password=password,
                          db=int(query["db"][0]) if "db" in query else 0)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis URL: {parts.scheme}://")
    return RespTarget(host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
                      tls=parts.scheme == "rediss", username=username, password=password,
                      db=int(db_text))


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection:
    """One connection to Redis; use it from one task at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        """Wrap a connected stream (use :meth:`connect`)."""
        self._stream = stream
        self._reader = hiredis.Reader()
        self._broken = False

    @classmethod
    async def connect(cls, target: RespTarget, *, name: str,
                      replies: bool = True) -> RespConnection:
        """Connect, authenticate, select the database and name the client.

        With ``replies=False`` the connection then turns Redis's replies off (``CLIENT
        REPLY OFF``): it may only :meth:`send`, and nothing it sends is answered, so a
        fire-and-forget command costs its write and no read (no wake-up for an answer
        nobody needs). A command Redis refuses on it goes unnoticed; a lost connection
        shows at a later write.

        Raises:
            RespBroken: Redis cannot be reached or refused the handshake.
        """
        try:
            stream: trio.abc.Stream
            if target.path is not None:
                stream = await trio.open_unix_socket(target.path)
            else:
                stream = await trio.open_tcp_stream(target.host, target.port)
                if target.tls:
                    tls = trio.SSLStream(stream, ssl.create_default_context(),
                                         server_hostname=target.host)
                    await tls.do_handshake()
                    stream = tls
        except (OSError, trio.BrokenResourceError) as exc:
            raise RespBroken(f"cannot connect to redis: {exc}") from exc
        connection = cls(stream)
        handshake: list[list[Arg]] = []
        if target.password is not None:
            handshake.append(["AUTH", target.password] if target.username is None
                             else ["AUTH", target.username, target.password])
        if target.db:
            handshake.append(["SELECT", target.db])
        handshake.append(["CLIENT", "SETNAME", name])
        try:
            for reply in await connection.execute(handshake):
                if isinstance(reply, hiredis.ReplyError):
                    raise RespBroken(f"redis refused the connection's set-up: {reply}")
            if not replies:
                await connection.send([("CLIENT", "REPLY", "OFF")])
        except BaseException:
            await connection.aclose()
            raise
        return connection

    @property
    def broken(self) -> bool:
        """Whether the connection failed or was closed (it must be replaced)."""
        return self._broken

    async def execute(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies, in order.

        Cancellation part-way breaks the connection (replies would be misattributed).
        """
        await self.send(commands)
        return [await self.read() for _ in commands]

    async def send(self, commands: Sequence[Sequence[Arg]]) -> None:
        """Write ``commands`` without waiting for replies."""
        self._check()
        data = b"".join(encode_command(command) for command in commands)
        try:
            await self._stream.send_all(data)
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, _LOST):
                raise RespBroken(f"redis connection lost: {exc!r}") from exc
            raise

    async def read(self) -> Any:
        """The next reply (or pushed pub/sub message)."""
        self._check()
        try:
            while (reply := self._reader.gets()) is False:
                data = await self._stream.receive_some(_READ_SIZE)
                if not data:
                    raise RespBroken("redis closed the connection")
                self._reader.feed(bytes(data))
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, _LOST):
                raise RespBroken(f"redis connection lost: {exc!r}") from exc
            raise
        return reply

    async def wait_closed(self) -> None:
        """Return once the connection is closed or lost (then it is broken), reading and
        discarding whatever arrives meanwhile: the watch of a connection whose replies
        are off, which otherwise could not tell that Redis closed it before a write fails.
        """
        try:
            while not self._broken and await self._stream.receive_some(_READ_SIZE):
                pass
        except _LOST:
            pass
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the stream (idempotent)."""
        self._broken = True
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    def _check(self) -> None:
        if self._broken:
            raise RespBroken("the connection is closed")
