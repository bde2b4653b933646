"""Serving an lcx app in-process on a real loopback socket, for API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import trio

from lcx.api.http_app import LcxApp
from lcx.api.http_server import serve_http


async def always_ready() -> None:
    """A readiness check that always passes."""


@asynccontextmanager
async def serving(app: LcxApp) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on 127.0.0.1 with a free port and yield a client for it."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(partial(serve_http, app, host="127.0.0.1", port=0))
            async with httpx.AsyncClient(base_url=binding.url) as client:
                yield client
            nursery.cancel_scope.cancel()
