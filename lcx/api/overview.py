"""``GET /organizations/{orgId}/livechat-overview`` (API.md section 6).

``supervisor``, ``service`` or ``admin`` tokens of the organization get the
:class:`~lcx.overview.Overview` document, at most a second old. Supervisors' websockets
get the same body pushed (:mod:`services.overview_feed`, which both share).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response
from lcx.api.common import require_livechat
from lcx.api.spec import Endpoint, register
from lcx.auth import TokenVerifier, require_org
from lcx.errors import Unauthorized
from lcx.overview import Overview, OverviewFeed
from services.overview_feed import feed_for

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps

__all__ = ["OverviewApi", "overview_blueprint"]

SCOPES = ("supervisor", "service", "admin")
PATH = "/organizations/<org_id>/livechat-overview"

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
