"""The console's ``/console/<name>`` rule leaves more specific pages under ``/console/``
(such as the demo's ``/console/try``) to their own blueprints, whatever the order."""

from __future__ import annotations

from functools import partial

import httpx
import pytest
import trio
from quart import Blueprint
from quart_trio import QuartTrio

from lcx.api.console import STATIC_DIR, console_blueprint
from lcx.api.http_server import serve_http


def _other_page() -> Blueprint:
    other = Blueprint("other_page", __name__)

    @other.get("/console/try")
    async def try_page() -> str:
        return "the other page"

    return other


@pytest.mark.parametrize("console_first", [True, False])
async def test_a_more_specific_console_route_wins(console_first: bool) -> None:
    app = QuartTrio("console_routes")
    blueprints = [console_blueprint(), _other_page()]
    for blueprint in blueprints if console_first else reversed(blueprints):
        app.register_blueprint(blueprint)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            binding = await nursery.start(partial(serve_http, app, host="127.0.0.1", port=0))
            async with httpx.AsyncClient(base_url=binding.url) as client:
                assert (await client.get("/console/try")).text == "the other page"
                script = await client.get("/console/app.js")
                assert script.content == (STATIC_DIR / "app.js").read_bytes()
            nursery.cancel_scope.cancel()
