"""A queue that never heard of a request (its notification was lost, e.g. posted to an
instance that had just died) still lets an agent accept it: the store is the truth."""

from __future__ import annotations

from pathlib import Path

from support.livechat_app import accept, connect_agent, livechat_app

from actors.messages import CreateRequest
from lcx.livechat.conversation import new_request
from lcx.model import utc_now


async def test_accepting_a_request_the_queue_was_not_told_of(tmp_path: Path) -> None:
    """A pending request stored without its Enqueue notice is accepted on first try."""
    async with livechat_app(tmp_path) as (_, _, hub):
        await connect_agent(hub, "alice")
        request = new_request(org_id="o1", tenant_id="t1", sub_handle="lost-notice",
                              user_group_id="g1", provider="helvia", channel="bot",
                              now=utc_now())
        await hub.conversations.ask(request.id, CreateRequest(conversation=request,
                                                              enqueue=False))
        accepted = await accept(hub, request.id, "alice")
        assert accepted.conversation.status == "active"
        assert accepted.conversation.agent_id == "alice"
