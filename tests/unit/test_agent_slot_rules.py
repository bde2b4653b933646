"""The rules of an agent's chat slots (lcx.livechat.agent_slots.ChatSlots): the one place
where ``maxConcurrentChats`` holds."""

from __future__ import annotations

import pytest

from lcx.livechat.agent_slots import ChatSlots


def test_reserve_holds_the_limit() -> None:
    """Slots are given up to the limit, then refused without taking one."""
    slots = ChatSlots()
    assert slots.reserve("c1", status="online", limit=2, assigned=True)
    assert slots.reserve("c2", status="online", limit=2, assigned=False)
    assert not slots.reserve("c3", status="online", limit=2, assigned=True)
    assert not slots.reserve("c3", status="online", limit=2, assigned=False)
    assert slots.active == {"c1", "c2"}


def test_a_retried_reserve_of_the_same_conversation_succeeds_at_the_limit() -> None:
    """Reserving a conversation the agent already has succeeds, even at the limit, and
    takes no second slot."""
    slots = ChatSlots()
    assert slots.reserve("c1", status="online", limit=1, assigned=True)
    assert slots.reserve("c1", status="online", limit=1, assigned=True)
    assert slots.active == {"c1"}


def test_assignment_needs_the_agent_online() -> None:
    """Auto routing never assigns to an away agent."""
    slots = ChatSlots()
    assert not slots.reserve("c1", status="away", limit=3, assigned=True)
    assert slots.active == set()


def test_an_accept_the_agent_asked_for_works_when_away() -> None:
    """An agent who is away may still accept a request itself."""
    slots = ChatSlots()
    assert slots.reserve("c1", status="away", limit=3, assigned=False)
    assert slots.active == {"c1"}


@pytest.mark.parametrize("assigned", [True, False])
def test_an_offline_agent_gets_no_slot(assigned: bool) -> None:
    """Offline agents can be neither assigned nor accept."""
    slots = ChatSlots()
    assert not slots.reserve("c1", status="offline", limit=3, assigned=assigned)
    assert slots.active == set()


def test_release_frees_the_slot_and_says_whether_it_was_held() -> None:
    """Release answers True and frees the slot when held (so another fits), else False."""
    slots = ChatSlots()
    slots.reserve("c1", status="online", limit=1, assigned=True)
    assert slots.release("c1") is True
    assert slots.release("c1") is False
    assert slots.release("never") is False
    assert slots.reserve("c2", status="online", limit=1, assigned=True)
    assert slots.active == {"c2"}
