"""The bot API (API.md section 3) over real HTTP against a whole in-process instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support.livechat_app import LivechatApp, accept, connect_agent, livechat_app

from actors.livechat import Livechat
from lcx.store.conversations import find_open, messages_after

RequestBody = dict[str, Any]


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error envelope of ``status``/``code``; return its ``error`` object."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


async def open_request(app: LivechatApp, sub: str = "u1", **fields: Any) -> httpx.Response:
    """POST /requests for ``sub`` of t1 with a bot token of o1."""
    body: RequestBody = {"tenantId": "t1", "subHandle": sub, **fields}
    return await app.client.post("/requests", json=body, headers=app.tokens.bot())


async def send(app: LivechatApp, text: str | None = "hello", sub: str = "u1",
               **fields: Any) -> httpx.Response:
    """POST /messages from ``sub`` of t1."""
    body: RequestBody = {"tenantId": "t1", "subHandle": sub, "text": text, **fields}
    return await app.client.post("/messages", json=body, headers=app.tokens.bot())


async def conversation_id(hub: Livechat, sub: str = "u1", tenant: str = "t1") -> str:
    """The id of the subscriber's open conversation (hidden from bots while pending)."""
    found = await hub.store.read(lambda tx: find_open(tx, tenant, sub))
    assert found is not None
    return found.id


async def state_of(app: LivechatApp, sub: str = "u1") -> dict[str, Any]:
    """GET livechat-state of ``sub`` in t1."""
    response = await app.client.get(f"/subscribers/{sub}/livechat-state",
                                    params={"tenantId": "t1"}, headers=app.tokens.bot())
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


# --- requests ------------------------------------------------------------------------------

async def test_create_request_is_201_with_the_request(tmp_path: Path) -> None:
    """POST /requests answers 201 with the request id, status, position, wait and provider."""
    async with livechat_app(tmp_path) as app:
        response = await open_request(app, subscriber={"name": "Ada"},
                                      context={"transcript": [{"author": "user",
                                                               "text": "I need a human"}]})
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert "x-request-id" in response.headers
        body = response.json()
        assert body["status"] == "pending"
        assert body["position"] == 1
        assert isinstance(body["estimatedWaitSeconds"], int)
        assert body["conversationId"] is None
        assert body["provider"] == "helvia"
        stored = await app.hub.store.read(lambda tx: find_open(tx, "t1", "u1"))
        assert stored is not None
        assert stored.request_id == body["id"]
        assert stored.user_group_id == "g1"
        assert stored.subscriber.name == "Ada"


async def test_second_request_is_ordered_behind_the_first(tmp_path: Path) -> None:
    """A second subscriber's request waits at position 2 of the same queue."""
    async with livechat_app(tmp_path) as app:
        assert (await open_request(app, "u1")).json()["position"] == 1
        assert (await open_request(app, "u2")).json()["position"] == 2


async def test_second_open_request_is_409_with_details(tmp_path: Path) -> None:
    """A subscriber with an open request gets 409 naming it."""
    async with livechat_app(tmp_path) as app:
        first = (await open_request(app)).json()
        error = error_of(await open_request(app), 409, "conflict")
        assert error["details"]["requestId"] == first["id"]
        assert error["details"]["conversationId"] is None


async def test_request_without_any_group_is_400(tmp_path: Path) -> None:
    """A tenant without a default group needs userGroupId (400 naming the field)."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.post("/requests", json={"tenantId": "t2",
                                                            "subHandle": "u1"},
                                         headers=app.tokens.bot())
        assert error_of(response, 400, "invalid_request")["details"]["fields"] == [
            "userGroupId"]


async def test_reject_when_unavailable_is_422_no_agents(tmp_path: Path) -> None:
    """With rejectWhenUnavailable and nobody online, the request is refused with no_agents."""
    overrides = {"o1": {"rejectWhenUnavailable": True}}
    async with livechat_app(tmp_path, settings_overrides=overrides) as app:
        error = error_of(await open_request(app), 422, "unprocessable")
        assert error["details"]["reason"] == "no_agents"
        await connect_agent(app.hub, "alice")
        assert (await open_request(app)).status_code == 201


async def test_auto_routing_answers_the_assigned_conversation(tmp_path: Path) -> None:
    """With routing auto and an agent online, the 201 already shows the accepted conversation."""
    async with livechat_app(tmp_path, settings_overrides={"o1": {"routing": "auto"}}) as app:
        sink = await connect_agent(app.hub, "alice")
        response = await open_request(app)
        assert response.status_code == 201
        body = response.json()
        assert (body["status"], body["position"]) == ("accepted", None)
        assert body["conversationId"] == await conversation_id(app.hub)
        kinds = [f["data"].get("kind") for f in sink.frames]
        assert "request_assigned" in kinds


# --- messages ------------------------------------------------------------------------------

async def test_messages_while_pending_are_stored_in_order(tmp_path: Path) -> None:
    """Messages sent while the request is pending are accepted (202) with seq 1, 2."""
    async with livechat_app(tmp_path) as app:
        request_id = (await open_request(app)).json()["id"]
        first = await send(app, "hello", id="m1")
        second = await send(app, "anyone?", id="m2")
        assert first.status_code == second.status_code == 202
        assert [first.json()["seq"], second.json()["seq"]] == [1, 2]
        assert first.json()["requestId"] == request_id
        assert first.json()["conversationId"] == await conversation_id(app.hub)


async def test_resent_message_returns_first_result_and_is_stored_once(tmp_path: Path) -> None:
    """The same (tenant, id) answers the first result, even after the end, stored once."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        cid = await conversation_id(app.hub)
        first = await send(app, "hello", id="bot-msg-981")
        again = await send(app, "hello", id="bot-msg-981")
        assert again.status_code == 202
        assert again.json() == first.json()
        await app.client.delete("/sessions/tenants/t1/subscribers/u1",
                                headers=app.tokens.bot())
        late = await send(app, "hello", id="bot-msg-981")
        assert late.status_code == 202
        assert late.json() == first.json()
        stored = await app.hub.store.read(lambda tx: messages_after(tx, cid, 0))
        assert [m.text for m in stored] == ["hello"]
        assert stored[0].author.type == "subscriber"
        assert stored[0].author.id == "u1"


async def test_message_types_and_attachments(tmp_path: Path) -> None:
    """File, rich and postback messages keep their attachments and payloads."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        attachment = {"url": "https://files.example/a.png", "name": "a.png",
                      "contentType": "image/png", "size": 1234}
        assert (await send(app, type="file", text=None,
                           attachments=[attachment])).status_code == 202
        assert (await send(app, type="postback", text="Yes",
                           payload={"action": "yes"})).status_code == 202
        cid = await conversation_id(app.hub)
        stored = await app.hub.store.read(lambda tx: messages_after(tx, cid, 0))
        assert stored[0].attachments[0].content_type == "image/png"
        assert stored[1].payload == {"action": "yes"}


async def test_message_without_open_request_is_404(tmp_path: Path) -> None:
    """A message from a subscriber with nothing open is 404 not_found."""
    async with livechat_app(tmp_path) as app:
        error_of(await send(app), 404, "not_found")


@pytest.mark.parametrize(("fields", "field"), [
    ({"text": None}, "text"),
    ({"type": "file"}, "attachments"),
    ({"type": "rich"}, "payload"),
    ({"type": "video"}, "type"),
    ({"text": "x" * 65_537}, "text"),
    ({"attachments": [{"name": "no url"}]}, "attachments[0].url"),
])
async def test_invalid_message_is_400_naming_the_field(tmp_path: Path, fields: RequestBody,
                                                       field: str) -> None:
    """A message missing what its type needs, or malformed, is 400 naming the field."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        error = error_of(await send(app, **fields), 400, "invalid_request")
        assert error["details"]["fields"] == [field]


# --- update, cancel, end -------------------------------------------------------------------

async def test_patch_updates_the_pending_request(tmp_path: Path) -> None:
    """PATCH moves the request to another group and merges the context; 200 with the state."""
    async with livechat_app(tmp_path) as app:
        await open_request(app, context={"metadata": {"a": 1}})
        response = await app.client.patch(
            "/requests/subscribers/u1", params={"tenantId": "t1"}, headers=app.tokens.bot(),
            json={"userGroupId": "g2", "context": {"metadata": {"b": 2}},
                  "subscriber": {"name": "Ada"}})
        assert response.status_code == 200, response.text
        state = response.json()
        assert state["state"] == "pending"
        assert state["userGroupId"] == "g2"
        assert state["position"] == 1
        stored = await app.hub.store.read(lambda tx: find_open(tx, "t1", "u1"))
        assert stored is not None
        assert stored.context.metadata == {"a": 1, "b": 2}
        assert stored.subscriber.name == "Ada"


async def test_patch_cancel_then_404(tmp_path: Path) -> None:
    """PATCH status=cancelled cancels the request (state ended/cancelled); then 404."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        patch = {"status": "cancelled"}
        response = await app.client.patch("/requests/subscribers/u1", json=patch,
                                          params={"tenantId": "t1"}, headers=app.tokens.bot())
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "ended"
        assert response.json()["status"] == "cancelled"
        assert response.json()["endedBy"] == "subscriber"
        again = await app.client.patch("/requests/subscribers/u1", json=patch,
                                       params={"tenantId": "t1"}, headers=app.tokens.bot())
        error_of(again, 404, "not_found")
        assert (await open_request(app)).status_code == 201


async def test_patch_after_accept_is_409(tmp_path: Path) -> None:
    """A request an agent already accepted cannot be patched (409: end the session)."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        await connect_agent(app.hub, "alice")
        await accept(app.hub, await conversation_id(app.hub), "alice")
        response = await app.client.patch("/requests/subscribers/u1",
                                          json={"status": "cancelled"},
                                          params={"tenantId": "t1"}, headers=app.tokens.bot())
        error_of(response, 409, "conflict")


async def test_patch_needs_tenant_id(tmp_path: Path) -> None:
    """PATCH without ?tenantId= is 400 naming tenantId."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.patch("/requests/subscribers/u1", json={},
                                          headers=app.tokens.bot())
        assert error_of(response, 400, "invalid_request")["details"]["fields"] == ["tenantId"]


async def test_delete_session_ends_the_conversation_then_404(tmp_path: Path) -> None:
    """DELETE ends an active conversation (204, endedBy subscriber); a second one is 404."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        await connect_agent(app.hub, "alice", name="Alice")
        await accept(app.hub, await conversation_id(app.hub), "alice", name="Alice")
        path = "/sessions/tenants/t1/subscribers/u1"
        response = await app.client.delete(path, headers=app.tokens.bot())
        assert response.status_code == 204
        assert response.content == b""
        state = await state_of(app)
        assert (state["state"], state["status"], state["endedBy"]) == (
            "ended", "ended", "subscriber")
        error_of(await app.client.delete(path, headers=app.tokens.bot()), 404, "not_found")


# --- counts, metrics, state, availability --------------------------------------------------

async def test_head_requests_counts_pending(tmp_path: Path) -> None:
    """HEAD requests answers X-Total-Count for the org, a tenant and a group."""
    async with livechat_app(tmp_path) as app:
        await open_request(app, "u1")
        await open_request(app, "u2")
        await app.client.post("/requests", headers=app.tokens.bot(), json={
            "tenantId": "t2", "subHandle": "u3", "userGroupId": "g2"})

        async def count(**params: str) -> str:
            response = await app.client.head("/organizations/o1/requests",
                                             params={"status": "pending", **params},
                                             headers=app.tokens.bot())
            assert response.status_code == 200
            assert response.content == b""
            return response.headers["x-total-count"]

        assert await count() == "3"
        assert await count(tenantId="t1") == "2"
        assert await count(userGroupId="g2") == "1"
        assert await count(tenantId="t2", userGroupId="g1") == "0"


async def test_head_requests_refusals(tmp_path: Path) -> None:
    """HEAD requests: another org is 403, a status other than pending 400, a foreign tenant 404."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        assert (await app.client.head("/organizations/o2/requests",
                                      headers=bot)).status_code == 403
        assert (await app.client.head("/organizations/o1/requests", params={"status": "x"},
                                      headers=bot)).status_code == 400
        assert (await app.client.head("/organizations/o1/requests", params={"tenantId": "t9"},
                                      headers=bot)).status_code == 404


async def test_head_metrics_headers(tmp_path: Path) -> None:
    """HEAD metrics answers the average wait of accepted requests, pending and online counts."""
    async with livechat_app(tmp_path) as app:
        await open_request(app, "u1")
        await open_request(app, "u2")
        await connect_agent(app.hub, "alice")
        await accept(app.hub, await conversation_id(app.hub, "u1"), "alice")
        response = await app.client.head("/organizations/o1/tenants/t1/metrics",
                                         headers=app.tokens.bot())
        assert response.status_code == 200
        assert float(response.headers["x-average-waiting-time"]) >= 0.0
        assert "." in response.headers["x-average-waiting-time"]
        assert response.headers["x-requests-pending"] == "1"
        assert response.headers["x-agents-online"] == "1"
        other = await app.client.head("/organizations/o1/tenants/t9/metrics",
                                      headers=app.tokens.bot())
        assert other.status_code == 404


async def test_livechat_state_none_pending_active(tmp_path: Path) -> None:
    """livechat-state is none before a request, pending while queued, active with the agent."""
    async with livechat_app(tmp_path) as app:
        none = await state_of(app)
        assert none["state"] == "none"
        assert none["requestId"] is None
        request_id = (await open_request(app)).json()["id"]
        pending = await state_of(app)
        assert (pending["state"], pending["requestId"], pending["position"]) == (
            "pending", request_id, 1)
        assert pending["agent"] is None
        assert pending["conversationId"] is None
        await connect_agent(app.hub, "alice", name="Alice")
        cid = await conversation_id(app.hub)
        await accept(app.hub, cid, "alice", name="Alice")
        active = await state_of(app)
        assert (active["state"], active["conversationId"], active["position"]) == (
            "active", cid, None)
        assert active["agent"] == {"id": "alice", "name": "Alice"}


async def test_availability_counts_online_agents(tmp_path: Path) -> None:
    """availability reports online agents of the tenant's default group or of ?userGroupId=."""
    async with livechat_app(tmp_path) as app:
        async def availability(**params: str) -> dict[str, Any]:
            response = await app.client.get("/tenants/t1/availability", params=params,
                                            headers=app.tokens.bot())
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

        assert (await availability())["available"] is False
        await connect_agent(app.hub, "alice", groups=["g1"])
        body = await availability()
        assert (body["available"], body["agentsOnline"]) == (True, 1)
        assert body["businessHours"]["open"] is True
        assert body["businessHours"]["userGroupId"] == "g1"
        assert (await availability(userGroupId="g2"))["agentsOnline"] == 0


# --- authentication and authorization ------------------------------------------------------

ROUTES = [
    ("POST", "/requests"),
    ("PATCH", "/requests/subscribers/u1?tenantId=t1"),
    ("DELETE", "/sessions/tenants/t1/subscribers/u1"),
    ("POST", "/messages"),
    ("HEAD", "/organizations/o1/requests"),
    ("HEAD", "/organizations/o1/tenants/t1/metrics"),
    ("GET", "/subscribers/u1/livechat-state?tenantId=t1"),
    ("GET", "/tenants/t1/availability"),
]


async def test_every_route_needs_a_token_and_the_bot_scope(tmp_path: Path) -> None:
    """Without a token every bot route is 401; with an agent or admin token, 403."""
    async with livechat_app(tmp_path) as app:
        for method, path in ROUTES:
            anonymous = await app.client.request(method, path, json={})
            assert anonymous.status_code == 401, (method, path)
            for headers in (app.tokens.agent(), app.tokens.admin()):
                refused = await app.client.request(method, path, json={}, headers=headers)
                assert refused.status_code == 403, (method, path)


async def test_service_token_may_use_the_bot_api(tmp_path: Path) -> None:
    """A service token of the organization may create requests."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.post("/requests", headers=app.tokens.service(),
                                         json={"tenantId": "t1", "subHandle": "u1"})
        assert response.status_code == 201


async def test_bot_token_of_another_org_is_refused(tmp_path: Path) -> None:
    """A bot token of o2 may not act for o1's tenant t1 (403), on any route."""
    async with livechat_app(tmp_path) as app:
        await open_request(app)
        foreign = app.tokens.bot(org="o2")
        body = {"tenantId": "t1", "subHandle": "u1", "text": "hi"}
        assert (await app.client.post("/requests", json=body,
                                      headers=foreign)).status_code == 403
        assert (await app.client.post("/messages", json=body,
                                      headers=foreign)).status_code == 403
        assert (await app.client.get("/subscribers/u1/livechat-state",
                                     params={"tenantId": "t1"},
                                     headers=foreign)).status_code == 403


async def test_tenants_claim_restricts_a_bot_token(tmp_path: Path) -> None:
    """A bot token listing tenants may act only for those; a service token is not limited."""
    async with livechat_app(tmp_path) as app:
        limited = app.tokens.bot(tenants=["t2"])
        body = {"tenantId": "t1", "subHandle": "u1"}
        error = error_of(await app.client.post("/requests", json=body, headers=limited),
                         403, "forbidden")
        assert error["details"]["tenantId"] == "t1"
        allowed = await app.client.post("/requests", headers=limited, json={
            "tenantId": "t2", "subHandle": "u1", "userGroupId": "g2"})
        assert allowed.status_code == 201
        service = app.tokens.service(tenants=["t2"])
        assert (await app.client.post("/requests", json=body,
                                      headers=service)).status_code == 201


# --- bad input -----------------------------------------------------------------------------

async def test_malformed_json_is_400(tmp_path: Path) -> None:
    """A body that is not JSON is 400 invalid_request naming the whole body."""
    async with livechat_app(tmp_path) as app:
        headers = {**app.tokens.bot(), "Content-Type": "application/json"}
        response = await app.client.post("/requests", content=b"{not json", headers=headers)
        assert error_of(response, 400, "invalid_request")["details"]["fields"] == ["$"]


@pytest.mark.parametrize(("body", "field"), [
    ({"tenantId": "t1", "subHandle": 42}, "subHandle"),
    ({"tenantId": "t1"}, "subHandle"),
    ({"subHandle": "u1"}, "tenantId"),
    ({"tenantId": "t1", "subHandle": ""}, "subHandle"),
    ({"tenantId": "t1", "subHandle": "u" * 257}, "subHandle"),
    ({"tenantId": "t1", "subHandle": "u1", "subscriber": {"name": 7}}, "subscriber.name"),
    ({"tenantId": "t1", "subHandle": "u1", "provider": "acme"}, "provider"),
    ({"tenantId": "t1", "subHandle": "u1", "context": {"transcript": "x"}},
     "context.transcript"),
])
async def test_invalid_request_body_is_400_naming_the_field(tmp_path: Path, body: RequestBody,
                                                            field: str) -> None:
    """Wrong types, missing, empty or overlong fields are 400 with details.fields."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.post("/requests", json=body, headers=app.tokens.bot())
        assert error_of(response, 400, "invalid_request")["details"]["fields"] == [field]


async def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    """A body over server.max_body_bytes is 413 payload_too_large."""
    async with livechat_app(tmp_path, max_body_bytes=4096) as app:
        response = await send(app, "x" * 8192)
        error_of(response, 413, "payload_too_large")


async def test_wrong_content_type_is_415(tmp_path: Path) -> None:
    """A form body is 415 unsupported_media_type."""
    async with livechat_app(tmp_path) as app:
        response = await app.client.post("/requests", data={"tenantId": "t1"},
                                         headers=app.tokens.bot())
        error_of(response, 415, "unsupported_media_type")


async def test_unknown_tenant_is_404(tmp_path: Path) -> None:
    """A tenant lcx does not know is 404 not_found, in bodies, queries and paths."""
    async with livechat_app(tmp_path) as app:
        bot = app.tokens.bot()
        error_of(await app.client.post("/requests", headers=bot, json={
            "tenantId": "nope", "subHandle": "u1"}), 404, "not_found")
        error_of(await app.client.get("/subscribers/u1/livechat-state", headers=bot,
                                      params={"tenantId": "nope"}), 404, "not_found")
        error_of(await app.client.get("/tenants/nope/availability", headers=bot),
                 404, "not_found")


async def test_provider_without_settings_is_422(tmp_path: Path) -> None:
    """Asking for a provider the tenant has no settings for is 422 provider_not_configured."""
    async with livechat_app(tmp_path) as app:
        error = error_of(await open_request(app, provider="genesys"), 422, "unprocessable")
        assert error["details"]["reason"] == "provider_not_configured"
