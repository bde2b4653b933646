"""A TCP proxy in the test process that can cut a link silently (a network partition).

Put it between one ``lcx serve`` and Redis::

    proxy = TcpProxy(redis.port)
    await nursery.start(proxy.run)
    ...  # the instance uses redis://127.0.0.1:{proxy.port}/0
    proxy.blackhole()   # bytes are swallowed both ways, new connections hang: no RST, no FIN
    proxy.heal()        # the held connections are closed; new ones are forwarded again

A blackhole is what a partition looks like from the instance: its sockets stay open and
nothing comes back, so only its own deadlines can tell it that Redis is gone.
"""

from __future__ import annotations

import trio


class TcpProxy:
    """Forwards connections on ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.blackholed = False
        self.connections = 0
        """Connections accepted so far."""
        self.swallowed = 0
        """Bytes dropped while blackholed."""
        self._scopes: set[trio.CancelScope] = set()
        self._healed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Listen on a free port (``self.port``) and forward until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def blackhole(self) -> None:
        """From now on, swallow every byte both ways and forward no new connection."""
        self.blackholed = True

    def heal(self) -> None:
        """Close every connection open now (their streams are broken) and forward the new
        ones again."""
        self.blackholed = False
        for scope in list(self._scopes):
            scope.cancel()
        self._healed.set()
        self._healed = trio.Event()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client:
                    if self.blackholed:  # accepted, never answered, closed on heal
                        await self._swallow(client)
                        return
                    upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._scopes.discard(scope)

    async def _swallow(self, stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            self.swallowed += len(data)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream,
                    both: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                if self.blackholed:
                    self.swallowed += len(data)
                    continue
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        both.cancel()
