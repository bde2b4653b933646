"""``ws.max_queued_bytes`` and ``ws.max_queued_bytes_total`` default to the former
constants and reach the running instance (its livechat domain and its queue budget, which
the agent websocket's sinks use)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio
from support.livechat_app import DEFAULT_TENANTS, instance_settings

from lcx.api.socket_sink import instance_budget
from lcx.config import WsConfig
from lcx.instance import Lcx


def test_default_byte_bounds_are_the_former_constants() -> None:
    """The defaults are the bounds lcx always had (1 MiB per socket, 64 MiB in all)."""
    assert WsConfig().max_queued_bytes == 1024 * 1024
    assert WsConfig().max_queued_bytes_total == 64 * 1024 * 1024


async def test_a_socket_gets_the_configured_byte_bound(tmp_path: Path) -> None:
    """An instance started with small bounds holds them."""
    settings = instance_settings(tmp_path, DEFAULT_TENANTS, max_body_bytes=1_048_576)
    settings = msgspec.structs.replace(settings, ws=WsConfig(
        max_queued_bytes=4096, max_queued_bytes_total=65536))
    lcx = Lcx(settings)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(lcx.run)
            assert lcx.livechat.max_queued_bytes == 4096
            assert instance_budget(lcx.livechat).limit == 65536
            lcx.request_stop()
