"""Business hours of user groups (API.md section 6) and how the bot API uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.livechat_app import LivechatApp, connect_agent, livechat_app

from lcx.api.common import repo_for

PATH = "/organizations/o1/user-groups/g1/business-hours"
WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OFFICE: dict[str, Any] = {"timezone": "Europe/Athens", "weekly": {"mon": [["09:00", "17:00"]]},
                          "holidays": ["2026-12-25"], "enabled": True}
ALWAYS_OPEN: dict[str, Any] = {"timezone": "UTC",
                               "weekly": {day: [["00:00", "24:00"]] for day in WEEK}}
NEVER_OPEN: dict[str, Any] = {"timezone": "Europe/Athens", "weekly": {}}


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error envelope of ``status``/``code``; return its ``error`` object."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


async def create(app: LivechatApp, body: dict[str, Any], path: str = PATH) -> httpx.Response:
    """POST business hours as a supervisor of o1."""
    return await app.client.post(path, json=body, headers=app.tokens.supervisor())


async def availability(app: LivechatApp, **params: str) -> dict[str, Any]:
    """GET availability of t1 with a bot token."""
    response = await app.client.get("/tenants/t1/availability", params=params,
                                    headers=app.tokens.bot())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- CRUD ------------------------------------------------------------------------------------

async def test_create_read_patch_delete(tmp_path: Path) -> None:
    """POST 201, GET reads it back, PATCH merges by day, DELETE 204, then GET 404."""
    async with livechat_app(tmp_path) as app:
        created = await create(app, OFFICE)
        assert created.status_code == 201, created.text
        assert created.json() == OFFICE
        read = await app.client.get(PATH, headers=app.tokens.agent())
        assert (read.status_code, read.json()) == (200, OFFICE)
        patched = await app.client.patch(PATH, headers=app.tokens.service(), json={
            "weekly": {"tue": [["22:00", "02:00"]]}, "enabled": False})
        assert patched.status_code == 200, patched.text
        assert patched.json()["weekly"] == {"mon": [["09:00", "17:00"]],
                                            "tue": [["22:00", "02:00"]]}
        assert patched.json()["enabled"] is False
        assert patched.json()["holidays"] == ["2026-12-25"]
        assert (await app.client.get(PATH, headers=app.tokens.agent())).json() == patched.json()
        deleted = await app.client.delete(PATH, headers=app.tokens.supervisor())
        assert (deleted.status_code, deleted.content) == (204, b"")
        error_of(await app.client.get(PATH, headers=app.tokens.agent()), 404, "not_found")


async def test_defaults_of_optional_fields(tmp_path: Path) -> None:
    """holidays defaults to [] and enabled to true."""
    async with livechat_app(tmp_path) as app:
        created = await create(app, {"timezone": "UTC", "weekly": {}})
        assert created.status_code == 201, created.text
        assert created.json() == {"timezone": "UTC", "weekly": {}, "holidays": [],
                                  "enabled": True}


async def test_groups_are_separate(tmp_path: Path) -> None:
    """Hours of one group are not another group's."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, OFFICE)).status_code == 201
        other = "/organizations/o1/user-groups/g2/business-hours"
        error_of(await app.client.get(other, headers=app.tokens.agent()), 404, "not_found")


async def test_post_twice_is_409(tmp_path: Path) -> None:
    """A second POST for the same group is 409 and changes nothing."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, OFFICE)).status_code == 201
        error = error_of(await create(app, NEVER_OPEN), 409, "conflict")
        assert error["details"]["userGroupId"] == "g1"
        assert (await app.client.get(PATH, headers=app.tokens.agent())).json() == OFFICE


async def test_patch_and_delete_without_hours_are_404(tmp_path: Path) -> None:
    """PATCH and DELETE of a group without hours are 404."""
    async with livechat_app(tmp_path) as app:
        sam = app.tokens.supervisor()
        error_of(await app.client.patch(PATH, headers=sam, json={"enabled": False}),
                 404, "not_found")
        error_of(await app.client.delete(PATH, headers=sam), 404, "not_found")


@pytest.mark.parametrize(("body", "field"), [
    ({"weekly": {}}, "timezone"),
    ({"timezone": "UTC"}, "weekly"),
    ({"timezone": 3, "weekly": {}}, "timezone"),
    ({"timezone": "UTC", "weekly": {"mon": [["09:00"]]}}, "weekly[...][0]"),
    ({"timezone": "UTC", "weekly": {"mon": "09:00-17:00"}}, "weekly[...]"),
    ({"timezone": "UTC", "weekly": {}, "enabled": "yes"}, "enabled"),
    ({"timezone": "UTC", "weekly": {}, "open": True}, "open"),
])
async def test_bad_bodies_are_400(tmp_path: Path, body: dict[str, Any], field: str) -> None:
    """Wrong types, missing or unknown fields are 400 naming the field."""
    async with livechat_app(tmp_path) as app:
        error = error_of(await create(app, body), 400, "invalid_request")
        assert error["details"]["fields"] == [field]


async def test_bad_patch_bodies_are_400(tmp_path: Path) -> None:
    """A PATCH with null or an unknown field is 400."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, OFFICE)).status_code == 201
        sam = app.tokens.supervisor()
        for body, field in (({"timezone": None}, "timezone"), ({"days": {}}, "days")):
            error = error_of(await app.client.patch(PATH, headers=sam, json=body),
                             400, "invalid_request")
            assert error["details"]["fields"] == [field]


async def test_invalid_hours_are_422(tmp_path: Path) -> None:
    """Rule-breaking values are 422 invalid_business_hours naming each field."""
    async with livechat_app(tmp_path) as app:
        body = {"timezone": "Mars/Olympus", "holidays": ["2026-13-01"],
                "weekly": {"mon": [["09:00", "17:00"], ["16:00", "25:00"]], "xyz": []}}
        error = error_of(await create(app, body), 422, "unprocessable")
        assert error["details"]["reason"] == "invalid_business_hours"
        assert error["details"]["fields"] == ["timezone", "weekly.mon[1]", "weekly.xyz",
                                              "holidays[0]"]
        assert len(error["details"]["problems"]) == 4
        error_of(await app.client.get(PATH, headers=app.tokens.agent()), 404, "not_found")


async def test_patch_result_is_validated(tmp_path: Path) -> None:
    """A PATCH whose result overlaps is 422 and changes nothing."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, OFFICE)).status_code == 201
        sam = app.tokens.supervisor()
        response = await app.client.patch(PATH, headers=sam, json={
            "weekly": {"sun": [["20:00", "10:00"]]}})
        error = error_of(response, 422, "unprocessable")
        assert sorted(error["details"]["fields"]) == ["weekly.mon[0]", "weekly.sun[0]"]
        assert (await app.client.get(PATH, headers=app.tokens.agent())).json() == OFFICE


async def test_scopes(tmp_path: Path) -> None:
    """Agents read but do not write; bots do neither; admins do both; no token is 401."""
    async with livechat_app(tmp_path) as app:
        tokens = app.tokens
        error_of(await app.client.post(PATH, json=OFFICE, headers=tokens.agent()),
                 403, "forbidden")
        error_of(await app.client.get(PATH, headers=tokens.bot()), 403, "forbidden")
        error_of(await app.client.get(PATH), 401, "unauthorized")
        created = await app.client.post(PATH, json=OFFICE, headers=tokens.admin())
        assert created.status_code == 201, created.text
        for agent_write in (app.client.patch(PATH, json={}, headers=tokens.agent()),
                            app.client.delete(PATH, headers=tokens.agent())):
            error_of(await agent_write, 403, "forbidden")
        assert (await app.client.get(PATH, headers=tokens.admin())).status_code == 200


async def test_other_organization_is_403(tmp_path: Path) -> None:
    """A token of o2 may neither read nor write o1's hours."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, OFFICE)).status_code == 201
        o2 = app.tokens.supervisor(org="o2")
        error_of(await app.client.get(PATH, headers=o2), 403, "forbidden")
        error_of(await app.client.delete(PATH, headers=o2), 403, "forbidden")
        assert (await app.client.get(PATH, headers=app.tokens.agent())).status_code == 200


async def test_over_long_group_id_is_400(tmp_path: Path) -> None:
    """A user group id over 256 characters is 400 naming userGroupId."""
    async with livechat_app(tmp_path) as app:
        path = f"/organizations/o1/user-groups/{'g' * 257}/business-hours"
        error = error_of(await app.client.get(path, headers=app.tokens.agent()),
                         400, "invalid_request")
        assert error["details"]["fields"] == ["userGroupId"]


# --- availability and requests ---------------------------------------------------------------

async def test_availability_without_hours_is_not_configured(tmp_path: Path) -> None:
    """A group without hours is open and says configured=false."""
    async with livechat_app(tmp_path) as app:
        hours = (await availability(app))["businessHours"]
        assert hours == {"open": True, "configured": False, "timezone": None,
                         "nextChangeAt": None, "userGroupId": "g1"}


async def test_availability_reflects_business_hours(tmp_path: Path) -> None:
    """Closed hours make the group unavailable even with agents online; open ones do not."""
    async with livechat_app(tmp_path) as app:
        await connect_agent(app.hub, "alice", groups=["g1"])
        assert (await create(app, NEVER_OPEN)).status_code == 201
        body = await availability(app)
        assert (body["available"], body["agentsOnline"]) == (False, 1)
        assert body["businessHours"] == {"open": False, "configured": True,
                                         "timezone": "Europe/Athens", "nextChangeAt": None,
                                         "userGroupId": "g1"}
        patched = await app.client.patch(PATH, json=ALWAYS_OPEN,
                                         headers=app.tokens.supervisor())
        assert patched.status_code == 200, patched.text
        body = await availability(app)
        assert body["available"] is True
        assert body["businessHours"]["open"] is True
        assert body["businessHours"]["timezone"] == "UTC"


async def test_availability_gives_the_next_change(tmp_path: Path) -> None:
    """Hours with one opening a week name when they flip next, as RFC 3339 UTC."""
    async with livechat_app(tmp_path) as app:
        body = {"timezone": "UTC", "weekly": {"wed": [["12:00", "12:30"]]}}
        assert (await create(app, body)).status_code == 201
        hours = (await availability(app))["businessHours"]
        assert hours["configured"] is True
        assert hours["nextChangeAt"].endswith(("T12:00:00.000Z", "T12:30:00.000Z"))


async def test_availability_of_a_chosen_group(tmp_path: Path) -> None:
    """?userGroupId= selects whose hours count."""
    async with livechat_app(tmp_path) as app:
        other = "/organizations/o1/user-groups/g2/business-hours"
        assert (await create(app, NEVER_OPEN, other)).status_code == 201
        assert (await availability(app))["businessHours"]["open"] is True
        chosen = (await availability(app, userGroupId="g2"))["businessHours"]
        assert (chosen["open"], chosen["userGroupId"]) == (False, "g2")


async def test_disabled_hours_are_open(tmp_path: Path) -> None:
    """Disabled hours are configured but always open."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, {**NEVER_OPEN, "enabled": False})).status_code == 201
        hours = (await availability(app))["businessHours"]
        assert (hours["open"], hours["configured"], hours["nextChangeAt"]) == (
            True, True, None)


async def test_request_outside_business_hours_is_refused(tmp_path: Path) -> None:
    """With rejectWhenUnavailable, closed hours refuse a request with outside_business_hours,
    even when agents are online, and before no_agents."""
    overrides = {"o1": {"rejectWhenUnavailable": True}}
    async with livechat_app(tmp_path, settings_overrides=overrides) as app:
        assert (await create(app, NEVER_OPEN)).status_code == 201
        request = {"tenantId": "t1", "subHandle": "u1"}
        refused = await app.client.post("/requests", json=request, headers=app.tokens.bot())
        error = error_of(refused, 422, "unprocessable")
        assert error["details"]["reason"] == "outside_business_hours"
        assert error["details"]["userGroupId"] == "g1"
        await connect_agent(app.hub, "alice", groups=["g1"])
        refused = await app.client.post("/requests", json=request, headers=app.tokens.bot())
        assert error_of(refused, 422, "unprocessable")["details"]["reason"] == (
            "outside_business_hours")
        deleted = await app.client.delete(PATH, headers=app.tokens.supervisor())
        assert deleted.status_code == 204
        accepted = await app.client.post("/requests", json=request, headers=app.tokens.bot())
        assert accepted.status_code == 201, accepted.text


async def test_open_hours_without_agents_is_no_agents(tmp_path: Path) -> None:
    """Open hours and nobody online still refuse with no_agents."""
    overrides = {"o1": {"rejectWhenUnavailable": True}}
    async with livechat_app(tmp_path, settings_overrides=overrides) as app:
        assert (await create(app, ALWAYS_OPEN)).status_code == 201
        refused = await app.client.post("/requests", json={"tenantId": "t1", "subHandle": "u1"},
                                        headers=app.tokens.bot())
        assert error_of(refused, 422, "unprocessable")["details"]["reason"] == "no_agents"


async def test_closed_hours_without_reject_setting_queue_the_request(tmp_path: Path) -> None:
    """Without rejectWhenUnavailable a request is queued even outside business hours."""
    async with livechat_app(tmp_path) as app:
        assert (await create(app, NEVER_OPEN)).status_code == 201
        created = await app.client.post("/requests", json={"tenantId": "t1", "subHandle": "u1"},
                                        headers=app.tokens.bot())
        assert created.status_code == 201, created.text


async def test_one_repo_per_hub(tmp_path: Path) -> None:
    """The routes and the bot API share the hub's repo, so writes are seen at once."""
    async with livechat_app(tmp_path) as app:
        repo = repo_for(app.hub)
        assert repo_for(app.hub) is repo
        assert await repo.get("o1", "g1") is None
        assert (await create(app, NEVER_OPEN)).status_code == 201
        cached = await repo.get("o1", "g1")
        assert cached is not None
        assert cached.timezone == "Europe/Athens"
