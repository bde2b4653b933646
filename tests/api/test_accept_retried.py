"""An agent that retries ``REQUEST_ACCEPT`` after its ack was lost (a reconnect, a
timeout on the client) gets the same ack again instead of 409: the winner's retry is not
"someone else took it". Others still get ``conflict``, and the retry neither takes a
second slot nor gives back the one the agent holds."""

from __future__ import annotations

from pathlib import Path

from support.agent_client import agent_connection
from support.livechat_app import livechat_app

ONE_SLOT = {"o1": {"maxConcurrentChats": 1}}


async def test_the_winner_retrying_an_accept_gets_its_ack_again(tmp_path: Path) -> None:
    """Alice accepts, then sends the same accept twice more: each answer is an ack for
    the same conversation with its queued messages; Bob's accept is 409; Alice's one slot
    is still hers (a second request cannot be accepted by her) and the first
    conversation goes on."""
    async with livechat_app(tmp_path, settings_overrides=ONE_SLOT) as app:
        bot = app.tokens.bot()
        created = await app.client.post("/requests", headers=bot,
                                        json={"tenantId": "t1", "subHandle": "u-1"})
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        posted = await app.client.post("/messages", headers=bot, json={
            "tenantId": "t1", "subHandle": "u-1", "text": "hello"})
        assert posted.status_code == 202, posted.text
        base = str(app.client.base_url)
        alice_token = app.tokens.token(sub="alice", scopes="agent", groups=["g1"])
        bob_token = app.tokens.token(sub="bob", scopes="agent", groups=["g1"])
        async with agent_connection(base, alice_token) as alice, \
                agent_connection(base, bob_token) as bob:
            first = await alice.call("REQUEST_ACCEPT", {"requestId": request_id})
            assert first["type"] == "ack", first
            for _ in range(2):
                again = await alice.call("REQUEST_ACCEPT", {"requestId": request_id})
                assert again["type"] == "ack", again
                assert again["data"]["conversationId"] == first["data"]["conversationId"]
                assert [m["text"] for m in again["data"]["messages"]] == \
                    [m["text"] for m in first["data"]["messages"]]
            taken = await bob.call("REQUEST_ACCEPT", {"requestId": request_id})
            assert taken["data"]["code"] == "conflict", taken

            other = await app.client.post("/requests", headers=bot,
                                          json={"tenantId": "t1", "subHandle": "u-2"})
            refused = await alice.call("REQUEST_ACCEPT",
                                       {"requestId": other.json()["id"]})
            assert refused["data"]["code"] == "conflict", refused
            conversation_id = first["data"]["conversationId"]
            sent = await alice.call(None, {"conversationId": conversation_id,
                                           "text": "still mine"}, kind="message")
            assert sent["type"] == "ack", sent
