"""One description per HTTP endpoint: it registers the route and feeds ``/openapi.json``.

Each route module declares its endpoints as a tuple of :class:`Endpoint` (path in Quart
syntax, method, handler name, and the msgspec types the handler really decodes and
encodes) and registers them with :func:`register`. The OpenAPI document is generated from
the same tuples (``lcx.api.openapi``), so it cannot drift from the handlers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quart import Blueprint


@dataclass(frozen=True)
class Endpoint:
    """An HTTP endpoint: where it is, what it takes and what it answers."""

    path: str
    """Quart path syntax: ``/organizations/<org_id>/livechat-settings``."""
    method: str
    handler: str
    """The name of the handler method on the route module's API object."""
    summary: str
    tag: str
    body: Any = None
    """The msgspec type of the JSON body, or ``None``."""
    body_media_type: str = "application/json"
    query: Any = None
    """A msgspec Struct whose fields are the query parameters, or ``None``."""
    responses: Mapping[int, Any] = field(default_factory=dict)
    """Status -> msgspec type of the JSON body (``None``: no body)."""
    response_media_types: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    """Status -> media types other than JSON (downloads)."""
    response_headers: Mapping[str, str] = field(default_factory=dict)
    """Header name -> description, on the success response."""
    scopes: tuple[str, ...] = ()
    """Token scopes that may call it (empty: no authentication)."""
    errors: tuple[int, ...] = (400, 401, 403, 404)
    """Error statuses it may answer (always with the error envelope)."""
    operation_id: str = ""
    """The OpenAPI ``operationId`` when the handler's name (camelCased) is not unique or
    does not say what the operation does."""

    @property
    def operation(self) -> str:
        """The OpenAPI ``operationId``: :attr:`operation_id`, else the handler's name in
        camelCase (``create_request`` -> ``createRequest``)."""
        if self.operation_id:
            return self.operation_id
        head, *rest = self.handler.split("_")
        return head + "".join(part.capitalize() for part in rest)


MAX_PATH_PARAMETER = 256
"""The longest id a path segment may carry; longer ones are 400 (the schema says so)."""

ENDPOINTS: list[Endpoint] = []
"""Every endpoint registered by a route module, in registration order."""


def declare(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """Record endpoints for the OpenAPI document (idempotent per path and method)."""
    known = {(e.path, e.method) for e in ENDPOINTS}
    declared = tuple(endpoints)
    ENDPOINTS.extend(e for e in declared if (e.path, e.method) not in known)
    return declared


def register(blueprint: Blueprint, api: object, endpoints: Iterable[Endpoint]) -> None:
    """Add a route to ``blueprint`` for each endpoint, served by ``api.<handler>``."""
    for endpoint in declare(endpoints):
        blueprint.add_url_rule(endpoint.path, f"{endpoint.handler}_{endpoint.method}",
                               getattr(api, endpoint.handler), methods=[endpoint.method])
