"""The supervisors' live overview as a service: one feed per instance, and the socket push.

:func:`feed_for` gives the one :class:`~lcx.overview.OverviewFeed` of an instance (the
route ``GET .../livechat-overview`` and every supervisor socket share it, so many supervisor tabs
cost one computation a second per organization and instance). :func:`push_overview` is run
by each supervisor websocket: it sends ``NOTIFICATION`` kind ``overview`` at once, then
whenever a figure changed, checked once a second.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import trio

from actors.livechat import Livechat
from lcx.errors import LcxError
from lcx.livechat import frames
from lcx.overview import (
    PERIOD_SECONDS,
    OpenFigures,
    Overview,
    OverviewFeed,
    PresenceView,
    open_figures,
    same_figures,
)

__all__ = ["feed_for", "push_overview"]

_feeds: weakref.WeakKeyDictionary[Livechat, OverviewFeed] = weakref.WeakKeyDictionary()


def _presence(livechat: Livechat, org_id: str) -> list[PresenceView]:
    return [PresenceView(agent_id=agent_id, name=entry.name, status=entry.status,
                         groups=tuple(entry.groups), connected_since=entry.connected_since)
            for (org, agent_id), entry in livechat.presence_book.current().items()
            if org == org_id]


def feed_for(livechat: Livechat) -> OverviewFeed:
    """The one overview feed of ``livechat``, created on first use (it holds ``livechat``
    by a weak reference, so it does not keep it alive)."""
    feed = _feeds.get(livechat)
    if feed is None:
        livechat_ref = weakref.ref(livechat)

        def alive() -> Livechat:
            found = livechat_ref()
            if found is None:
                raise RuntimeError("the livechat of this feed is gone")
            return found

        async def rows(org_id: str) -> OpenFigures:
            return await alive().store.read(lambda tx: open_figures(tx, org_id))

        async def max_chats(org_id: str) -> int:
            return (await alive().settings(org_id)).max_concurrent_chats

        feed = _feeds[livechat] = OverviewFeed(rows, lambda org: _presence(alive(), org),
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
            overview: Overview | None = await feed.current(org_id)
        except LcxError:
            overview = None
        if overview is not None and (last is None or not same_figures(last, overview)):
            send(frames.notification("overview", frames.plain(overview)))
            last = overview
        await trio.sleep(PERIOD_SECONDS)
