"""Business hours of a user group (API.md section 6), and the repo shared by every route.

Routes, on ``/organizations/{orgId}/user-groups/{userGroupId}/business-hours``:

- ``GET``: 200 with the hours; 404 when the group has none.
- ``POST``: create them; 201 with them; 409 ``conflict`` when the group has some already.
- ``PATCH``: change some fields (:func:`lcx.business_hours.merge`: given fields replace,
  ``weekly`` merges by day, ``[]`` closes a day); 200 with the result; 404 when none.
- ``DELETE``: 204; 404 when none. Without hours a group is always open.

Who may: every token must be of ``orgId`` (``admin`` excepted; another organization's
token is 403). Reading needs ``agent``, ``supervisor``, ``service`` or ``admin``; writing
``supervisor``, ``service`` or ``admin``. User groups are not registered anywhere, so any
group id (1-256 characters) may have hours.

Bodies: a wrong type, a missing ``timezone`` or ``weekly``, an unknown field or ``null``
in a PATCH is 400 ``invalid_request`` (``details.fields``); values that break a rule of
:mod:`lcx.business_hours` (unknown time zone or day, bad time or date, overlapping
intervals) are 422 ``unprocessable`` with ``details.reason = "invalid_business_hours"``,
``details.fields`` and ``details.problems`` (one line each). A PATCH is validated on its
result, inside the transaction that writes it.

One repo per livechat. :func:`repo_for` memoizes a :class:`~lcx.store.business_hours.
BusinessHoursRepo` on the livechat object (weakly: it goes with the livechat), so these routes and
the bot API's availability read through one cache, and a write here is seen there at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response, read_json
from lcx.api.common import path_id, repo_for, require_livechat
from lcx.api.spec import Endpoint, register
from lcx.auth import Principal, TokenVerifier, require_org
from lcx.business_hours import BusinessHours, BusinessHoursPatch, merge, problems
from lcx.errors import Conflict, NotFound, Unauthorized, Unprocessable
from lcx.store.business_hours import BusinessHoursRepo

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps

__all__ = ["BusinessHoursApi", "business_hours_blueprint"]

READ_SCOPES = ("agent", "supervisor", "service", "admin")
WRITE_SCOPES = ("supervisor", "service", "admin")
PATH = "/organizations/<org_id>/user-groups/<user_group_id>/business-hours"
INVALID_REASON = "invalid_business_hours"

def checked(hours: BusinessHours) -> BusinessHours:
    """``hours`` when valid (idempotent).

    Raises:
        Unprocessable: a value breaks a rule; ``details`` has ``reason``
            (``invalid_business_hours``), ``fields`` and ``problems``.
    """
    found = problems(hours)
    if found:
        raise Unprocessable(f"invalid business hours: {'; '.join(map(str, found))}",
                            details={"reason": INVALID_REASON,
                                     "fields": list(dict.fromkeys(p.field for p in found)),
                                     "problems": [str(p) for p in found]})
    return hours


def _none(org_id: str, user_group_id: str) -> NotFound:
    return NotFound(f"user group {user_group_id!r} has no business hours",
                    details={"organizationId": org_id, "userGroupId": user_group_id})


class BusinessHoursApi:
    """The route handlers listed in the module docstring, over one repo."""

    def __init__(self, repo: BusinessHoursRepo, verifier: TokenVerifier | None) -> None:
        self.repo = repo
        self.verifier = verifier

    def caller(self, org_id: str, user_group_id: str, *scopes: str) -> Principal:
        """The principal, holding one of ``scopes`` and limited to ``org_id`` (401/403);
        400 when a path id is too long."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        principal = authenticate(request, self.verifier, *scopes)
        path_id(org_id, "orgId")
        path_id(user_group_id, "userGroupId")
        require_org(principal, org_id)
        return principal

    async def get_hours(self, org_id: str, user_group_id: str) -> TrioResponse:
        """``GET``: the group's hours (404 when none)."""
        self.caller(org_id, user_group_id, *READ_SCOPES)
        hours = await self.repo.get(org_id, user_group_id)
        if hours is None:
            raise _none(org_id, user_group_id)
        return json_response(hours)

    async def create_hours(self, org_id: str, user_group_id: str) -> TrioResponse:
        """``POST``: set the group's first hours (201; 409 when it has some)."""
        self.caller(org_id, user_group_id, *WRITE_SCOPES)
        hours = checked(await read_json(request, BusinessHours))
        if not await self.repo.create(org_id, user_group_id, hours):
            raise Conflict(f"user group {user_group_id!r} has business hours already; "
                           "change them with PATCH",
                           details={"organizationId": org_id, "userGroupId": user_group_id})
        return json_response(hours, 201)

    async def patch_hours(self, org_id: str, user_group_id: str) -> TrioResponse:
        """``PATCH``: merge the body into the group's hours (200; 404 when none)."""
        self.caller(org_id, user_group_id, *WRITE_SCOPES)
        patch = await read_json(request, BusinessHoursPatch)
        updated = await self.repo.update(org_id, user_group_id,
                                         lambda current: checked(merge(current, patch)))
        if updated is None:
            raise _none(org_id, user_group_id)
        return json_response(updated)

    async def delete_hours(self, org_id: str, user_group_id: str) -> TrioResponse:
        """``DELETE``: remove the group's hours (204; 404 when none)."""
        self.caller(org_id, user_group_id, *WRITE_SCOPES)
        if not await self.repo.delete(org_id, user_group_id):
            raise _none(org_id, user_group_id)
        return TrioResponse(b"", status=204)


ENDPOINTS = (
    Endpoint(PATH, "GET", "get_hours", "Business hours of a user group", "business-hours",
             responses={200: BusinessHours}, scopes=READ_SCOPES),
    Endpoint(PATH, "POST", "create_hours", "Set the business hours of a user group",
             "business-hours", body=BusinessHours, responses={201: BusinessHours},
             scopes=WRITE_SCOPES, errors=(400, 401, 403, 409, 413, 415, 422)),
    Endpoint(PATH, "PATCH", "patch_hours", "Change some business hours fields",
             "business-hours", body=BusinessHoursPatch, responses={200: BusinessHours},
             scopes=WRITE_SCOPES, errors=(400, 401, 403, 404, 413, 415, 422)),
    Endpoint(PATH, "DELETE", "delete_hours", "Remove the business hours of a user group",
             "business-hours", responses={204: None}, scopes=WRITE_SCOPES),
)


def business_hours_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the business-hours routes, over ``deps.livechat``'s repo."""

    api = BusinessHoursApi(repo_for(require_livechat(deps)), deps.verifier)
    blueprint = Blueprint("business_hours", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
