"""The edges' HTTP client is owned by the run that uses it: a restart of the tree gives
the edges a fresh, open client, never the one the previous run closed."""

from __future__ import annotations

import httpx
import trio

from adapters.policy import EdgeHttp
from lcx.platform_services import EdgeClientService


async def test_a_restarted_edge_client_service_hands_out_an_open_client() -> None:
    """Run, stop, run again (as rest_for_one does after an earlier child crashed): the
    client the edges call through is open, and not the closed one."""
    http = EdgeHttp(httpx.AsyncClient())
    await http.client.aclose()
    seen: list[httpx.AsyncClient] = []
    for _ in range(2):
        service = EdgeClientService(http)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert not http.client.is_closed
            seen.append(http.client)
            service.request_stop()
    assert seen[0] is not seen[1]
    assert all(client.is_closed for client in seen)  # each run closed its own
