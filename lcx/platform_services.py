"""Infrastructure services that live in the supervision tree: the store, the HTTP server
and the HTTP client of the edges.

Each is a supervisor child (``run(task_status=...)`` + ``request_stop()``): it reports
started only once ready (store open and migrated, socket bound) and releases what it
owns when stopped or cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import trio
from hypercorn.typing import ASGIFramework

from lcx.api.http_server import HttpBinding, serve_http
from lcx.errors import Unavailable
from lcx.store import Store, open_store
from lcx.store.base import StoreStatistics

if TYPE_CHECKING:
    from adapters.policy import EdgeHttp

log = logging.getLogger("lcx.platform_services")


class StoreService:
    """Opens the store (applying migrations), holds it while running, closes it on stop."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "full",
                 postgres_inline_connections: int = 4) -> None:
        self.url = url
        self.sqlite_synchronous = sqlite_synchronous
        self.postgres_inline_connections = postgres_inline_connections
        self._store: Store | None = None
        self._stop = trio.Event()

    @property
    def store(self) -> Store:
        """The open store.

        Raises:
            Unavailable: the store is not open (starting, restarting or stopped).
        """
        if self._store is None:
            raise Unavailable("the store is not open", details={"dependency": "store"})
        return self._store

    def statistics(self) -> StoreStatistics | None:
        """The open store's counters (None while it is not open)."""
        return None if self._store is None else self._store.statistics()

    async def ping(self) -> None:
        """Check that the store answers.

        Raises:
            Unavailable: it does not (``details.dependency`` is ``store``).
        """
        try:
            await self.store.ping()
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable("the store does not answer",
                              details={"dependency": "store"}) from exc

    def request_stop(self) -> None:
        """Close the store once callers are done with it."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Open and migrate the store, report started, hold it until stopped."""
        self._stop = trio.Event()
        async with open_store(
                self.url, sqlite_synchronous=self.sqlite_synchronous,
                postgres_inline_connections=self.postgres_inline_connections) as store:
            self._store = store
            try:
                task_status.started()
                await self._stop.wait()
            finally:
                self._store = None


class HttpService:
    """Serves the ASGI app; a graceful stop stops accepting and finishes in-flight requests."""

    def __init__(self, app: Callable[[], ASGIFramework], *, host: str, port: int,
                 graceful_timeout: float,
                 on_bound: Callable[[HttpBinding], None] | None = None) -> None:
        self._app = app
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self._on_bound = on_bound
        self.binding: HttpBinding | None = None
        self._stop = trio.Event()

    def request_stop(self) -> None:
        """Stop accepting connections; in-flight requests get the graceful timeout."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Bind, report started, serve until stopped."""
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binding: HttpBinding = await nursery.start(self._serve)
            self.binding = binding
            if self._on_bound is not None:
                self._on_bound(binding)
            task_status.started()

    async def _serve(self, *, task_status: trio.TaskStatus[HttpBinding]) -> None:
        await serve_http(self._app(), host=self.host, port=self.port,
                         shutdown_trigger=self._stop.wait,
                         graceful_timeout=self.graceful_timeout, task_status=task_status)


class EdgeClientService:
    """Owns the HTTP client of provider and channel calls for as long as it runs.

    Every run opens a fresh client (so a restart of the tree never leaves the edges holding
    a closed one) and hands it to :class:`~adapters.policy.EdgeHttp`; stopping closes it.
    """

    def __init__(self, edge_http: EdgeHttp) -> None:
        self.edge_http = edge_http
        self._stop = trio.Event()

    def request_stop(self) -> None:
        """Close the client."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Open a client, report started, close it when stopped (or cancelled)."""
        self._stop = trio.Event()
        client = httpx.AsyncClient(follow_redirects=False)
        self.edge_http.client = client
        try:
            task_status.started()
            await self._stop.wait()
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
