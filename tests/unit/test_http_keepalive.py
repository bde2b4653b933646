"""Idle connections: the server keeps them longer than a balancer does, the bot client
keeps its own for the next events."""

from __future__ import annotations

from adapters.bot_events import KEEPALIVE_SECONDS
from lcx.api.http_server import KEEP_ALIVE_SECONDS, _limits


def test_the_server_keeps_idle_connections_75_seconds() -> None:
    """hypercorn's 5 s default would close a bot's connection between two messages."""
    assert _limits().keep_alive == KEEP_ALIVE_SECONDS == 75.0


def test_the_bot_client_keeps_idle_connections_longer_than_hypercorns_default() -> None:
    """Events a few seconds apart reuse their connection."""
    assert KEEPALIVE_SECONDS > 5.0
