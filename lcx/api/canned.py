"""Canned responses (API.md section 6): saved replies agents insert with ``/`` in the console.

Routes:

- ``GET /organizations/{orgId}/canned-responses[?userGroupId=]``: ``{"items": [...]}``
  sorted by shortcut. With ``userGroupId``: the organization-wide ones and that group's.
  Without: every one for ``supervisor``, ``service`` and ``admin`` tokens; for an agent
  token the organization-wide ones and those of the token's ``groups``.
- ``POST`` the same path: ``{"shortcut", "title", "text", "userGroupId"?}``; 201 with the
  stored response (``id``, ``createdAt``, ``updatedAt`` added); 409 ``conflict`` when the
  shortcut is taken in that organization and group (``details.shortcut``).
- ``PATCH .../canned-responses/{id}``: any of those fields (``"userGroupId": null`` makes
  it organization-wide); 200; 404 when none; 409 as for ``POST``.
- ``DELETE .../canned-responses/{id}``: 204; 404 when none.

Reads need ``agent``, ``supervisor``, ``service`` or ``admin``; writes ``supervisor``,
``service`` or ``admin``. A shortcut is 1-32 of lower-case letters, digits, ``-`` and
``_``, starting with a letter or digit; a title at most 200 characters; a text 1-4000.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import msgspec
from quart import Blueprint, request
from quart_trio.wrappers import TrioResponse

from lcx.api.auth import authenticate
from lcx.api.bodies import json_response, read_json
from lcx.api.common import Id, read_query, require_livechat
from lcx.api.spec import Endpoint, register
from lcx.auth import Principal, TokenVerifier, require_org
from lcx.errors import Conflict, NotFound, Unauthorized
from lcx.store import canned
from lcx.store.base import Tx
from lcx.store.canned import CannedResponse

if TYPE_CHECKING:
    from lcx.api.deps import AppDeps
    from lcx.store import Store

__all__ = ["CannedApi", "canned_blueprint"]

READ_SCOPES = ("agent", "supervisor", "service", "admin")
WRITE_SCOPES = ("supervisor", "service", "admin")
PATH = "/organizations/<org_id>/canned-responses"
ITEM_PATH = PATH + "/<response_id>"
MAX_TEXT = 4000

Shortcut = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                                       description="1-32 of a-z 0-9 - _")]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


class CannedQuery(msgspec.Struct, kw_only=True):
    """``GET .../canned-responses`` query."""

    user_group_id: Id | None = msgspec.field(default=None, name="userGroupId")


class CannedBody(msgspec.Struct, rename="camel", kw_only=True):
    """``POST .../canned-responses``."""

    shortcut: Shortcut
    title: Title
    text: Text
    user_group_id: Id | None = None


class CannedPatch(msgspec.Struct, rename="camel", kw_only=True):
    """``PATCH .../canned-responses/{id}``: the fields to change."""

    shortcut: Shortcut | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType = msgspec.UNSET
    text: Text | msgspec.UnsetType = msgspec.UNSET
    user_group_id: Id | msgspec.UnsetType | None = msgspec.UNSET


class CannedPage(msgspec.Struct, kw_only=True):
    """The list answer."""

    items: list[CannedResponse]


def _taken(shortcut: str, user_group_id: str | None) -> Conflict:
    return Conflict(f"the shortcut {shortcut!r} is taken", details={
        "shortcut": shortcut, "userGroupId": user_group_id})


def _none(response_id: str) -> NotFound:
    return NotFound(f"no canned response {response_id!r}", details={"id": response_id})


def _patched(current: CannedResponse, patch: CannedPatch) -> CannedResponse:
    changes = {name: value for name in ("shortcut", "title", "text", "user_group_id")
               if (value := getattr(patch, name)) is not msgspec.UNSET}
    return msgspec.structs.replace(current, **changes)


class CannedApi:
    """The route handlers listed in the module docstring."""

    def __init__(self, store: Callable[[], Store], verifier: TokenVerifier | None) -> None:
        self._store = store
        self.verifier = verifier

    def caller(self, org_id: str, *scopes: str) -> Principal:
        """The principal, holding one of ``scopes`` and limited to ``org_id`` (401/403)."""
        if self.verifier is None:
            raise Unauthorized("authentication is not configured")
        principal = authenticate(request, self.verifier, *scopes)
        require_org(principal, org_id)
        return principal

    @property
    def store(self) -> Store:
        """The open store (raises Unavailable while it is not open)."""
        return self._store()

    async def list_responses(self, org_id: str) -> TrioResponse:
        """``GET``: the list (see the module docstring for which ones)."""
        principal = self.caller(org_id, *READ_SCOPES)
        query = read_query(CannedQuery)
        groups: tuple[str, ...] | None
        if query.user_group_id is not None:
            groups = (query.user_group_id,)
        elif principal.has_any(*WRITE_SCOPES):
            groups = None
        else:
            groups = principal.groups
        items = await self.store.read(lambda tx: canned.listed(tx, org_id, groups))
        return json_response(CannedPage(items=items))

    async def create_response(self, org_id: str) -> TrioResponse:
        """``POST``: store a new one (201; 409 when its shortcut is taken)."""
        self.caller(org_id, *WRITE_SCOPES)
        body = await read_json(request, CannedBody)
        created = await self.store.transaction(lambda tx: canned.insert(
            tx, org_id, shortcut=body.shortcut, title=body.title, text=body.text,
            user_group_id=body.user_group_id))
        if created is None:
            raise _taken(body.shortcut, body.user_group_id)
        return json_response(created, 201)

    async def patch_response(self, org_id: str, response_id: str) -> TrioResponse:
        """``PATCH``: change some fields (200; 404 when none; 409 for a taken shortcut)."""
        self.caller(org_id, *WRITE_SCOPES)
        patch = await read_json(request, CannedPatch)

        def write(tx: Tx) -> CannedResponse:
            current = canned.get(tx, org_id, response_id)
            if current is None:
                raise _none(response_id)
            changed = _patched(current, patch)
            if canned.taken(tx, org_id, changed.user_group_id, changed.shortcut, current.id):
                raise _taken(changed.shortcut, changed.user_group_id)
            return canned.update(tx, org_id, changed)

        return json_response(await self.store.transaction(write))

    async def delete_response(self, org_id: str, response_id: str) -> TrioResponse:
        """``DELETE``: 204; 404 when none."""
        self.caller(org_id, *WRITE_SCOPES)
        if not await self.store.transaction(lambda tx: canned.delete(tx, org_id, response_id)):
            raise _none(response_id)
        return TrioResponse(b"", status=204)


ENDPOINTS = (
    Endpoint(PATH, "GET", "list_responses", "Canned responses of an organization",
             "canned-responses", query=CannedQuery, responses={200: CannedPage},
             scopes=READ_SCOPES),
    Endpoint(PATH, "POST", "create_response", "Save a canned response", "canned-responses",
             body=CannedBody, responses={201: CannedResponse}, scopes=WRITE_SCOPES,
             errors=(400, 401, 403, 409, 413, 415)),
    Endpoint(ITEM_PATH, "PATCH", "patch_response", "Change a canned response",
             "canned-responses", body=CannedPatch, responses={200: CannedResponse},
             scopes=WRITE_SCOPES, errors=(400, 401, 403, 404, 409, 413, 415)),
    Endpoint(ITEM_PATH, "DELETE", "delete_response", "Delete a canned response",
             "canned-responses", responses={204: None}, scopes=WRITE_SCOPES),
)


def canned_blueprint(deps: AppDeps) -> Blueprint:
    """Return the blueprint of the canned-response routes."""
    livechat = require_livechat(deps)
    api = CannedApi(lambda: livechat.store, deps.verifier)
    blueprint = Blueprint("canned", __name__)
    register(blueprint, api, ENDPOINTS)
    return blueprint
