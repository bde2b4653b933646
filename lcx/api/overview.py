"""The supervisors' live overview (API.md section 6) over HTTP and on their sockets.

- ``GET /organizations/{orgId}/livechat-overview`` (``supervisor``, ``service`` or
  ``admin`` of the organization): the :class:`~lcx.overview.Overview` document.
- Every websocket of a ``supervisor`` token gets ``NOTIFICATION`` kind ``overview`` with the
  same body as soon as it is authorized, then whenever a figure changes, checked once a
  second (:func:`push_overview`, run by the socket).

One :class:`~lcx.overview.OverviewFeed` per hub (:func:`feed_for`) serves both, so many
supervisor tabs cost one computation a second per organization and instance.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response
from lcx.api.common import require_livechat
from lcx.api.spec import Endpoint, register
from lcx.auth import TokenVerifier, require_org
from lcx.errors import LcxError, Unauthorized
from lcx.livechat import frames
from lcx.overview import (
    PERIOD_SECONDS,
    OpenRow,
    Overview,
    OverviewFeed,
    PresenceView,
    open_rows,
    same_figures,
)

if TYPE_CHECKING:
    from actors.livechat import Livechat
    from lcx.api.deps import AppDeps

__all__ = ["feed_for", "overview_blueprint", "push_overview"]

SCOPES = ("supervisor", "service", "admin")
PATH = "/organizations/<org_id>/livechat-overview"

_feeds: weakref.WeakKeyDictionary[Livechat, OverviewFeed] = weakref.WeakKeyDictionary()


def _presence(hub: Livechat, org_id: str) -> list[PresenceView]:
    return [PresenceView(agent_id=agent_id, name=entry.name, status=entry.status,
                         groups=tuple(entry.groups),
                         connected_since=entry.connected_since)
            for (org, agent_id), entry in hub.presence_book.current().items() if org == org_id]


def feed_for(hub: Livechat) -> OverviewFeed:
    """The one overview feed of ``hub``, created on first use."""
    feed = _feeds.get(hub)
    if feed is None:
        hub_ref = weakref.ref(hub)

        def alive() -> Livechat:
            found = hub_ref()
            if found is None:
                raise RuntimeError("the livechat hub of this feed is gone")
            return found

        async def rows(org_id: str) -> list[OpenRow]:
            return await alive().store.read(lambda tx: open_rows(tx, org_id))

        async def max_chats(org_id: str) -> int:
            return (await alive().settings(org_id)).max_concurrent_chats

        feed = _feeds[hub] = OverviewFeed(rows, lambda org: _presence(alive(), org),
                                          max_chats)
    return feed


async def push_overview(feed: OverviewFeed, org_id: str,
                        send: Callable[[dict[str, Any]], None]) -> None:
    """Send the overview now and again whenever it changes; runs until cancelled.

    A failed computation (store down) is skipped: the next second tries again.
    """
    last: Overview | None = None
    while True:
        try:
            overview = await feed.current(org_id)
        except LcxError:
            overview = None
        if overview is not None and (last is None or not same_figures(last, overview)):
            send(frames.notification("overview", frames.plain(overview)))
            last = overview
        await trio.sleep(PERIOD_SECONDS)


class OverviewApi:
    """``GET .../livechat-overview``."""

    def __init__(self, feed: OverviewFeed, verifier: TokenVerifier | None) -> None:
        self.feed = feed
        self.verifier = verifier

    async def get_overview(self, org_id: str) -> TrioResponse:
        """The organization's overview (at most a second old)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        principal = authenticate(request, self.verifier, *SCOPES)
        require_org(principal, org_id)
        return json_response(await self.feed.current(org_id))


ENDPOINTS = (
    Endpoint(PATH, "GET", "get_overview", "Live queues and agents of an organization",
             "overview", responses={200: Overview}, scopes=SCOPES),
)


def overview_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of ``GET .../livechat-overview``."""
    api = OverviewApi(feed_for(require_livechat(deps)), deps.verifier)
    blueprint = Blueprint("overview", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
