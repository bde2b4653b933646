"""``GET /cluster`` (API.md section 8): members, leader and term, actors, bus latency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response
from lcx.api.spec import Endpoint, register
from lcx.auth import TokenVerifier
from lcx.errors import Unauthorized

CLUSTER_SCOPES = ("admin", "service")


class LeaderView(msgspec.Struct, rename="camel", kw_only=True):
    """The leader as this instance sees it."""

    instance_id: str
    term: int


class MemberView(msgspec.Struct, rename="camel", kw_only=True):
    """One live instance."""

    instance_id: str
    last_heartbeat_at: str
    draining: bool
    actors: dict[str, int]


class BusView(msgspec.Struct, rename="camel", kw_only=True):
    """Bus health from this instance."""

    rtt_ms: float | None


class ClusterView(msgspec.Struct, rename="camel", kw_only=True):
    """The ``GET /cluster`` document."""

    instance_id: str
    leader: LeaderView | None
    members: list[MemberView]
    bus: BusView


class ClusterRoutes:
    """Serves the cluster status."""

    def __init__(self, status: Callable[[], Awaitable[ClusterView]],
                 verifier: TokenVerifier | None) -> None:
        self._status = status
        self._verifier = verifier

    async def cluster(self) -> TrioResponse:
        """``GET /cluster``: admin or service tokens."""
        if self._verifier is None:
            raise Unauthorized("authentication is not configured")
        authenticate(request, self._verifier, *CLUSTER_SCOPES)
        return json_response(await self._status())


ENDPOINTS = (
    Endpoint("/cluster", "GET", "cluster", "Cluster members, leader and bus latency",
             "operations", responses={200: ClusterView}, scopes=CLUSTER_SCOPES,
             errors=(401, 403), operation_id="getCluster"),
)


def cluster_blueprint(status: Callable[[], Awaitable[ClusterView]],
                      verifier: TokenVerifier | None) -> Blueprint:
    """The blueprint serving ``/cluster``."""
    blueprint = Blueprint("cluster", __name__)
    register(blueprint, ClusterRoutes(status, verifier), ENDPOINTS)
    return blueprint
