"""Interim: a websocket upgrade handed to hypercorn's Trio connection.

lcx's own websocket protocol replaces this module; until then a connection whose request
is a websocket upgrade is served by hypercorn's ``TCPServer`` (its handshake, wsproto,
the ASGI websocket scope), with the settings ``lcx serve`` gave hypercorn before. The
bytes already read from the connection are given to hypercorn first; it then reads the
socket itself. hypercorn keeps the real ``SocketStream`` as its stream, which is what
``lcx.api.ws_wire``'s direct write path looks for.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app

__all__ = ["serve_websocket"]

_KEEP_ALIVE_SECONDS = 75.0
"""hypercorn's idle timer for the handshake (stopped once the upgrade request is in)."""


def _config(max_message_bytes: int) -> Config:
    config = Config()
    config.accesslog = None  # the app writes its own access line, with the request id
    # A Logger object is used as is: records go through our handlers, not hypercorn's.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.keep_alive_timeout = _KEEP_ALIVE_SECONDS
    config.websocket_max_message_size = max_message_bytes
    return config


class _PrimedTCPServer(TCPServer):
    """hypercorn's connection, given the bytes read before it took over first."""

    def __init__(self, app: Any, config: Config, stream: trio.SocketStream, raw: bytes
                 ) -> None:
        super().__init__(app, config, WorkerContext(None), {}, cast(Any, stream))
        self._raw = raw

    async def _read_data(self) -> None:
        await self.protocol.handle(RawData(self._raw))
        await super()._read_data()


async def serve_websocket(app: ASGIFramework, stream: trio.SocketStream, raw: bytes, *,
                          client: tuple[str, int] | None, server: tuple[str, int] | None,
                          max_message_bytes: int) -> None:
    """Serve the websocket whose upgrade request begins ``raw`` (every byte read from
    ``stream`` since its first) to ``app``; return when it is over.

    ``client`` and ``server`` are not needed here: hypercorn reads them off the socket.
    """
    config = _config(max_message_bytes)
    await _PrimedTCPServer(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                           stream, raw).run()
