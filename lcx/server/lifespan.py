"""The ASGI lifespan of a served app: startup before serving, shutdown after.

An app that does not speak the lifespan protocol (it raises on the ``lifespan`` scope)
is served without it, with a warning, as hypercorn does. quart-trio needs it: its
startup runs the app's ``before_serving`` functions and keeps the nursery of its
background tasks open until shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from lcx.server.http1 import ASGIApp

__all__ = ["LIFESPAN_TIMEOUT_SECONDS", "LifespanFailure", "lifespan"]

log = logging.getLogger("lcx.server")

LIFESPAN_TIMEOUT_SECONDS = 60.0
"""How long the app's startup, and its shutdown, may take (hypercorn's default)."""


class LifespanFailure(RuntimeError):
    """The app reported its startup or shutdown failed (``lifespan.*.failed``)."""


class _Lifespan:
    """Drives one app's lifespan task through a channel of events."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.supported = True
        self.started = trio.Event()
        self.stopped = trio.Event()
        self.failure: str | None = None
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](2)

    async def run(self) -> None:
        """Run the app's lifespan scope until it returns (or is cancelled)."""
        scope = {"type": "lifespan", "asgi": {"spec_version": "2.0", "version": "3.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._receive.receive, self._on_send)
        except Exception:
            if not self.started.is_set():
                self.supported = False
                log.warning("the ASGI app does not support the lifespan protocol; "
                            "serving without it", exc_info=True)
            else:
                log.exception("the ASGI app's lifespan failed")
        finally:
            self.started.set()
            self.stopped.set()

    async def _on_send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind.endswith(".failed"):
            self.failure = f"{kind}: {message.get('message', '')}"
        if kind.startswith("lifespan.startup."):
            self.started.set()
        elif kind.startswith("lifespan.shutdown."):
            self.stopped.set()

    async def step(self, kind: str, done: trio.Event) -> None:
        """Send ``lifespan.<kind>`` and wait for the app's answer."""
        if not self.supported:
            return
        await self._send.send({"type": f"lifespan.{kind}"})
        with trio.fail_after(LIFESPAN_TIMEOUT_SECONDS):
            await done.wait()
        if self.failure is not None:
            raise LifespanFailure(self.failure)


@asynccontextmanager
async def lifespan(app: ASGIApp, state: dict[str, Any]) -> AsyncIterator[None]:
    """Run the app's lifespan startup, the body, then its shutdown (unless cancelled).

    Raises:
        LifespanFailure: the app reported a failed startup or shutdown.
        trio.TooSlowError: it took longer than :data:`LIFESPAN_TIMEOUT_SECONDS`.
    """
    driver = _Lifespan(app, state)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run)
        await driver.step("startup", driver.started)
        yield
        await driver.step("shutdown", driver.stopped)
        nursery.cancel_scope.cancel()
