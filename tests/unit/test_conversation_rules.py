"""The rules of one conversation (lcx.livechat.conversation): every transition of the
contract, decided purely from a state, a command, the settings and a fixed time."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from lcx.errors import Conflict, NotFound
from lcx.livechat import frames
from lcx.livechat.commands import (
    Accept,
    CreateRequest,
    EdgeInbound,
    End,
    Flag,
    GetState,
    HandOver,
    Join,
    Leave,
    PostMessage,
    PostResult,
    Read,
    Recover,
    Timeout,
    Transfer,
    Typing,
    UpdateRequest,
)
from lcx.livechat.conversation import (
    decide,
    idempotency_key,
    message_event_data,
    new_request,
    next_timeout,
)
from lcx.livechat.decision import (
    AgentFrame,
    Decision,
    HistoryFrame,
    OpenProviderLink,
    QueueRequest,
    ReleaseSlot,
    UnqueueRequest,
)
from lcx.livechat.edges import (
    SIDE_CHANNEL,
    SIDE_PROVIDER,
    AgentJoined,
    AgentLeft,
    AnyEdgeEvent,
    EdgeEnded,
    EdgeMessage,
    EdgeRead,
    EdgeTransferred,
    EdgeTyping,
    EdgeUndelivered,
    EndSession,
    SendMessage,
    SendTyping,
    Side,
)
from lcx.livechat.settings import DEFAULT_SETTINGS, LivechatSettings
from lcx.model import (
    AgentRef,
    Author,
    AuthorType,
    Context,
    Conversation,
    EndedBy,
    Subscriber,
    TranscriptLine,
    iso,
)

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
ALICE = AgentRef(id="alice", name="Alice")
BOB = AgentRef(id="bob", name="Bob")
CAROL = AgentRef(id="carol", name="Carol")
SUBSCRIBER = Author(type="subscriber", id="u-42", name="Ada")
EXTERNAL = "genesys"
CUSTOMER_CHANNEL = "livechat"


def at(seconds: float) -> datetime:
    """The fixed start time plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


class Ids:
    """A deterministic id source: ``prefix-001``, ``prefix-002``, ..."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n:03d}"


def pending(*, provider: str = "helvia", channel: str = "bot", group: str = "g1",
            now: datetime = T0) -> Conversation:
    """A fresh pending request queued at ``now``."""
    return new_request(org_id="o1", tenant_id="t1", sub_handle="u-42", user_group_id=group,
                       provider=provider, channel=channel, now=now,
                       subscriber=Subscriber(name="Ada"), ids=Ids("c"))


def run(state: Conversation | None, command: Any,
        settings: LivechatSettings = DEFAULT_SETTINGS, now: datetime | None = None,
        ids: Ids | None = None) -> Decision:
    """``decide`` at a fixed time (T0 + 60 s unless told) with deterministic ids."""
    return decide(state, command, settings, now or at(60), ids=ids or Ids("m"))


def state_of(decision: Decision) -> Conversation:
    """The decision's state, which must exist."""
    assert decision.state is not None
    return decision.state


def active(*agents: AgentRef, provider: str = "helvia", channel: str = "bot",
           settings: LivechatSettings = DEFAULT_SETTINGS) -> Conversation:
    """A conversation accepted by the first agent (at T0 + 10 s), joined by the others."""
    first, *others = agents or (ALICE,)
    state = state_of(run(pending(provider=provider, channel=channel), Accept(agent=first),
                         settings, now=at(10)))
    for other in others:
        state = state_of(run(state, Join(agent=other), settings, now=at(20)))
    return state


def closed(status: str) -> Conversation:
    """A conversation that is closed as ``status`` (ended, cancelled or missed)."""
    if status == "ended":
        return state_of(run(active(), End(by="agent")))
    if status == "cancelled":
        return state_of(run(pending(), End(by="subscriber")))
    return state_of(run(pending(), Timeout(kind="request", deadline=iso(at(120))),
                        now=at(120)))


def refuse(state: Conversation | None, command: Any, error: type[Exception],
           settings: LivechatSettings = DEFAULT_SETTINGS) -> None:
    """``command`` is refused with ``error`` and the input state is untouched."""
    before = copy.deepcopy(state)
    with pytest.raises(error):
        run(state, command, settings)
    assert state == before


def assert_changes_nothing(state: Conversation | None, decision: Decision) -> None:
    """The decision keeps ``state`` as it is and has no effect at all."""
    assert decision.state == state
    assert not decision.stores
    assert not decision.insert
    assert not decision.frames
    assert not decision.notes
    assert not decision.counted
    assert decision.remember is None


def agent_post(agent: AgentRef = ALICE, text: str = "Hi Ada", **kw: Any) -> PostMessage:
    """A text message written by ``agent``."""
    return PostMessage(author=Author(type="agent", id=agent.id, name=agent.name), text=text,
                       **kw)


def edge(side: Side, event: AnyEdgeEvent) -> EdgeInbound:
    """``event`` arriving from the edge ``side``."""
    return EdgeInbound(side=side, event=event)


# --- create -------------------------------------------------------------------------------

def test_new_request_reserves_both_ids_and_stamps_the_time() -> None:
    """A new request is pending with a conversation and a request id from the id source,
    created, queued and last active at ``now``."""
    state = pending()
    assert (state.id, state.request_id, state.status) == ("c-001", "c-002", "pending")
    assert state.created_at == state.queued_at == state.last_activity_at == iso(T0)
    assert (state.participants, state.last_seq, state.agent_id) == ([], 0, None)


def test_create_inserts_the_request_and_queues_it_in_its_group() -> None:
    """Creating a native request inserts it, answers it, counts it and queues it."""
    new = pending()
    decision = run(None, CreateRequest(conversation=new))
    assert decision.state == new
    assert decision.reply == new
    assert decision.write
    assert decision.insert
    assert decision.notes == [QueueRequest("g1", new)]
    assert decision.counted == ["requests_created"]
    assert not decision.events
    assert not decision.commands
    assert not decision.frames


def test_create_is_a_conflict_when_the_request_exists() -> None:
    """Creating over an existing conversation is a Conflict naming the request."""
    existing = pending()
    before = copy.deepcopy(existing)
    with pytest.raises(Conflict) as refused:
        run(existing, CreateRequest(conversation=pending(group="g2")))
    assert refused.value.details == {"requestId": existing.request_id}
    assert existing == before


def test_create_for_an_external_provider_opens_a_link_instead_of_queueing() -> None:
    """A request for a non-native provider opens the provider link and is never queued."""
    new = pending(provider=EXTERNAL)
    decision = run(None, CreateRequest(conversation=new))
    assert decision.insert
    assert decision.notes == [OpenProviderLink()]


def test_create_without_enqueue_stays_out_of_the_queue() -> None:
    """``enqueue=False`` (an agent-initiated conversation) inserts it without queueing."""
    decision = run(None, CreateRequest(conversation=pending(), enqueue=False))
    assert decision.insert
    assert decision.write
    assert decision.notes == []


# --- pending -> active --------------------------------------------------------------------

def test_accept_makes_the_request_active_with_the_agent_as_participant() -> None:
    """Accept: active, the agent is primary and a participant, the bot gets
    CONVERSATION_BEGIN and the reply is to carry the queued messages."""
    request = pending()
    decision = run(request, Accept(agent=ALICE), now=at(30))
    new = state_of(decision)
    assert (new.status, new.agent_id, new.agent_name) == ("active", "alice", "Alice")
    assert (new.accepted_at, new.accepted_by, new.last_activity_at) == (
        iso(at(30)), "alice", iso(at(30)))
    assert [(p.id, p.joined_at, p.left_at) for p in new.participants] == [
        ("alice", iso(at(30)), None)]
    assert decision.events == [("CONVERSATION_BEGIN", {"agent": {"id": "alice",
                                                                 "name": "Alice"}})]
    assert decision.write
    assert decision.with_history
    assert decision.messages == []
    assert new.last_seq == 0
    assert request.status == "pending"


def test_accept_with_a_greeting_stores_it_as_the_next_system_message() -> None:
    """With ``settings.greeting`` the accept also stores the greeting (next seq, author
    system) and tells the bot a MESSAGE after CONVERSATION_BEGIN."""
    request = state_of(run(pending(), PostMessage(author=SUBSCRIBER, text="hello")))
    settings = LivechatSettings(greeting="Hi, I am here")
    decision = run(request, Accept(agent=ALICE), settings, ids=Ids("g"))
    [(greeting, client_id)] = decision.messages
    assert (greeting.seq, greeting.author.type, greeting.text) == (2, "system",
                                                                    "Hi, I am here")
    assert (greeting.message_id, greeting.at, client_id) == ("g-001", iso(at(60)), None)
    assert [name for name, _ in decision.events] == ["CONVERSATION_BEGIN", "MESSAGE"]
    assert decision.events[1][1] == message_event_data(greeting)
    assert state_of(decision).last_seq == 2


def test_greeting_goes_to_an_external_channel() -> None:
    """A greeting is a system message: a customer on a non-bot channel must be sent it
    (a SendMessage command to the channel), as any other system message."""
    settings = LivechatSettings(greeting="Hi, I am here")
    decision = run(pending(channel=CUSTOMER_CHANNEL), Accept(agent=ALICE), settings)
    [(greeting, _)] = decision.messages
    assert decision.commands == [(SIDE_CHANNEL, SendMessage(
        conversation_id=greeting.conversation_id, message_id=greeting.message_id,
        text="Hi, I am here", type="text", author_name=None))]


@pytest.mark.parametrize("status", ["active", "ended", "cancelled", "missed"])
def test_accept_is_a_conflict_unless_pending(status: str) -> None:
    """Only a pending request can be accepted (first accept wins); nothing changes."""
    state = active() if status == "active" else closed(status)
    refuse(state, Accept(agent=BOB), Conflict)


def test_an_accept_retried_by_its_winner_is_answered_again_and_changes_nothing() -> None:
    """The agent that accepted (and is still in the conversation) asking again gets the
    same answer (state and history) with nothing written, told or emitted; once it left,
    its accept is a conflict like anyone's."""
    state = active()
    decision = run(state, Accept(agent=ALICE), now=at(90))
    assert decision.state == state
    assert decision.with_history
    assert (decision.write, decision.events, decision.notes) == (False, [], [])
    assert (decision.commands, decision.messages) == ([], [])
    left = state_of(run(active(ALICE, BOB), Leave(agent=ALICE)))
    refuse(left, Accept(agent=ALICE), Conflict)


def test_accept_of_an_unknown_conversation_is_not_found() -> None:
    """Commands other than create, timers, edges and recover need an existing state."""
    refuse(None, Accept(agent=ALICE), NotFound)


# --- pending -> cancelled / missed --------------------------------------------------------

def test_end_while_pending_cancels_without_a_bot_event_and_dequeues() -> None:
    """Ending a pending request cancels it: no bot event, no frames, and its queue is told
    to dequeue it as 'cancelled'."""
    request = pending()
    decision = run(request, End(by="subscriber", reason="changed my mind"))
    new = state_of(decision)
    assert (new.status, new.ended_by, new.end_reason, new.ended_at) == (
        "cancelled", "subscriber", "changed my mind", iso(at(60)))
    assert decision.reply == new
    assert decision.write
    assert decision.events == []
    assert decision.frames == []
    assert decision.notes == [UnqueueRequest("g1", request.id, "cancelled")]
    assert decision.counted == []
    assert request.status == "pending"


def test_request_timeout_misses_the_request_with_the_time_waited() -> None:
    """A request timer due on a pending request misses it: REQUEST_MISSED with
    waitedSeconds, dequeued as 'missed', counted."""
    request = pending()
    decision = run(request, Timeout(kind="request", deadline=iso(at(120))), now=at(121))
    new = state_of(decision)
    assert (new.status, new.ended_by, new.end_reason) == ("missed", "system",
                                                          "request_timeout")
    assert decision.events == [("REQUEST_MISSED", {"waitedSeconds": 121})]
    assert decision.notes == [UnqueueRequest("g1", request.id, "missed")]
    assert decision.counted == ["requests_missed"]
    assert decision.commands == []


def test_request_timeout_ends_the_external_provider_session() -> None:
    """A missed request of an external provider ends the provider's session."""
    request = pending(provider=EXTERNAL)
    decision = run(request, Timeout(kind="request", deadline=iso(at(120))), now=at(120))
    assert decision.commands == [(SIDE_PROVIDER, EndSession(conversation_id=request.id,
                                                            reason="request_timeout"))]


def test_an_early_timer_does_nothing() -> None:
    """A timer that fires before its deadline changes nothing (the shell re-arms)."""
    request = pending()
    before = copy.deepcopy(request)
    decision = run(request, Timeout(kind="request", deadline=iso(at(120))), now=at(119))
    assert_changes_nothing(before, decision)
    assert request == before


def test_a_timer_of_the_other_kind_does_nothing() -> None:
    """A request timer on an active conversation, or an inactivity timer on a pending one,
    changes nothing."""
    conversation = active()
    assert_changes_nothing(conversation, run(
        conversation, Timeout(kind="request", deadline=iso(T0)), now=at(5000)))
    request = pending()
    assert_changes_nothing(request, run(
        request, Timeout(kind="inactivity", deadline=iso(T0)), now=at(5000)))


@pytest.mark.parametrize("status", ["ended", "cancelled", "missed", None])
def test_a_timer_of_a_closed_or_unknown_conversation_does_nothing(status: str | None) -> None:
    """Timers that outlive their conversation change nothing."""
    state = None if status is None else closed(status)
    for kind in ("request", "inactivity"):
        assert_changes_nothing(state, run(state, Timeout(kind=kind, deadline=iso(T0)),
                                          now=at(9000)))


def test_inactivity_timeout_ends_an_active_conversation() -> None:
    """An inactivity timer due on an active conversation ends it by the system."""
    conversation = active()
    deadline = at(10 + DEFAULT_SETTINGS.inactivity_timeout_seconds)
    decision = run(conversation, Timeout(kind="inactivity", deadline=iso(deadline)),
                   now=deadline)
    new = state_of(decision)
    assert (new.status, new.ended_by, new.end_reason) == ("ended", "system", "inactivity")
    assert decision.events == [("CONVERSATION_END", {"endedBy": "system",
                                                     "reason": "inactivity"})]


def test_a_stale_inactivity_timer_after_later_activity_does_nothing() -> None:
    """An inactivity timer armed before the last activity (one already in the mailbox when
    a message moved ``lastActivityAt``) must not end a conversation that was active less
    than ``inactivityTimeoutSeconds`` ago."""
    settings = LivechatSettings(inactivity_timeout_seconds=100)
    conversation = active(settings=settings)  # active since T0 + 10 s: due at T0 + 110 s
    conversation = state_of(run(conversation, agent_post(), settings, now=at(105)))
    decision = run(conversation, Timeout(kind="inactivity", deadline=iso(at(110))), settings,
                   now=at(110))
    assert_changes_nothing(conversation, decision)


def test_next_timeout_runs_the_request_timer_while_pending() -> None:
    """Pending: the request timer, due ``requestTimeoutSeconds`` after ``queuedAt``."""
    settings = LivechatSettings(request_timeout_seconds=45)
    assert next_timeout(pending(), settings) == Timeout(kind="request",
                                                        deadline=iso(at(45)))


def test_next_timeout_runs_the_inactivity_timer_while_active() -> None:
    """Active: the inactivity timer, due ``inactivityTimeoutSeconds`` after the last
    activity."""
    settings = LivechatSettings(inactivity_timeout_seconds=300)
    conversation = state_of(run(active(), agent_post(), now=at(50)))
    assert next_timeout(conversation, settings) == Timeout(kind="inactivity",
                                                           deadline=iso(at(350)))


@pytest.mark.parametrize("status", ["ended", "cancelled", "missed", None])
def test_next_timeout_is_none_once_closed(status: str | None) -> None:
    """A closed (or unknown) conversation runs no timer."""
    state = None if status is None else closed(status)
    assert next_timeout(state, DEFAULT_SETTINGS) is None


# --- active -> ended ----------------------------------------------------------------------

@pytest.mark.parametrize("by", ["agent", "subscriber", "system", "provider"])
def test_end_of_an_active_conversation_tells_the_bot_and_every_agent_still_in(
        by: EndedBy) -> None:
    """Ending: the bot gets CONVERSATION_END (endedBy, reason), every agent still in gets
    the CONVERSATION_END frame (not those who left), and it is counted."""
    conversation = state_of(run(active(ALICE, BOB, CAROL), Leave(agent=CAROL), now=at(30)))
    decision = run(conversation, End(by=by, reason="done"))
    new = state_of(decision)
    assert (new.status, new.ended_by, new.end_reason, new.ended_at) == (
        "ended", by, "done", iso(at(60)))
    assert decision.events == [("CONVERSATION_END", {"endedBy": by, "reason": "done"})]
    frame = frames.event("CONVERSATION_END", {"conversationId": new.id, "endedBy": by,
                                              "reason": "done"})
    assert decision.frames == [AgentFrame("alice", frame), AgentFrame("bob", frame)]
    assert decision.counted == ["conversations_ended"]
    assert decision.reply == new
    assert decision.write


def test_end_releases_the_slot_of_every_participant() -> None:
    """Ending releases a chat slot for every participant, those who left included."""
    conversation = state_of(run(active(ALICE, BOB), Leave(agent=BOB), now=at(30)))
    decision = run(conversation, End(by="agent"))
    assert decision.notes == [ReleaseSlot("alice"), ReleaseSlot("bob")]


@pytest.mark.parametrize(("by", "sides"), [
    ("agent", [SIDE_PROVIDER, SIDE_CHANNEL]),
    ("system", [SIDE_PROVIDER, SIDE_CHANNEL]),
    ("provider", [SIDE_CHANNEL]),
    ("subscriber", [SIDE_PROVIDER]),
])
def test_end_commands_go_only_to_the_sides_that_did_not_end_it(by: EndedBy,
                                                               sides: list[str]) -> None:
    """An external provider and an external channel each get EndSession, unless that side
    is the one that ended the conversation."""
    conversation = active(provider=EXTERNAL, channel=CUSTOMER_CHANNEL)
    decision = run(conversation, End(by=by, reason="bye"))
    assert decision.commands == [(side, EndSession(conversation_id=conversation.id,
                                                   reason="bye")) for side in sides]


def test_end_of_a_native_bot_conversation_has_no_edge_commands() -> None:
    """With lcx's own agents and the bot channel there is no edge to end."""
    assert run(active(), End(by="agent")).commands == []
    assert run(pending(), End(by="subscriber")).commands == []


@pytest.mark.parametrize("status", ["ended", "cancelled", "missed"])
def test_end_of_a_closed_conversation_is_not_found(status: str) -> None:
    """A closed conversation cannot be ended again; nothing changes."""
    refuse(closed(status), End(by="agent"), NotFound)


# --- transfer and hand-over ---------------------------------------------------------------

def test_transfer_to_a_group_puts_the_conversation_back_to_pending() -> None:
    """Transfer to a group: pending again in the new group (queued now, no agent), every
    agent leaves, is released and notified, the bot gets TRANSFER_REQUEST, and it is
    requeued in the new group."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, Transfer(agent=ALICE, to_user_group_id="g2"), now=at(90))
    new = state_of(decision)
    assert (new.status, new.user_group_id, new.queued_at) == ("pending", "g2", iso(at(90)))
    assert (new.agent_id, new.agent_name) == (None, None)
    assert [p.left_at for p in new.participants] == [iso(at(90)), iso(at(90))]
    assert new.accepted_at == conversation.accepted_at
    assert decision.events == [("TRANSFER_REQUEST", {"from": {"id": "alice",
                                                             "name": "Alice"},
                                                    "toUserGroupId": "g2"})]
    note = frames.notification("conversation_transferred", {
        "conversationId": new.id, "requestId": new.request_id, "toUserGroupId": "g2"})
    assert decision.frames == [AgentFrame("alice", note), AgentFrame("bob", note)]
    assert decision.notes == [ReleaseSlot("alice"), ReleaseSlot("bob"),
                              QueueRequest("g2", new)]
    assert conversation.status == "active"
    assert conversation.user_group_id == "g1"


def test_transfer_without_a_group_requeues_in_the_same_group() -> None:
    """A transfer naming no group requeues the conversation in its own group."""
    decision = run(active(), Transfer(agent=ALICE))
    assert state_of(decision).user_group_id == "g1"
    assert decision.notes[-1] == QueueRequest("g1", state_of(decision))


def test_a_transferred_conversation_accepted_again_keeps_its_first_accept_time() -> None:
    """After a transfer the next accept makes it active with the new agent, keeping the
    first ``acceptedAt``."""
    transferred = state_of(run(active(), Transfer(agent=ALICE, to_user_group_id="g2")))
    new = state_of(run(transferred, Accept(agent=BOB), now=at(200)))
    assert (new.status, new.agent_id, new.accepted_by) == ("active", "bob", "bob")
    assert new.accepted_at == iso(at(10))
    assert [p.id for p in new.active_agents()] == ["bob"]


@pytest.mark.parametrize("status", ["pending", "ended"])
def test_transfer_is_a_conflict_unless_active(status: str) -> None:
    """Only an active conversation can be transferred; nothing changes."""
    state = pending() if status == "pending" else closed(status)
    refuse(state, Transfer(agent=ALICE, to_user_group_id="g2"), Conflict)


def test_hand_over_makes_the_target_the_agent_and_sends_it_the_history() -> None:
    """Hand-over: the target joins and becomes primary, the others leave, are released and
    notified, the bot gets TRANSFER_REQUEST toAgentId, the target gets a history frame."""
    conversation = active(ALICE)
    decision = run(conversation, HandOver(agent=ALICE, target=BOB), now=at(90))
    new = state_of(decision)
    assert (new.status, new.agent_id, new.agent_name) == ("active", "bob", "Bob")
    assert [(p.id, p.left_at) for p in new.participants] == [("alice", iso(at(90))),
                                                             ("bob", None)]
    assert decision.events == [("TRANSFER_REQUEST", {"from": {"id": "alice",
                                                             "name": "Alice"},
                                                    "toAgentId": "bob"})]
    told = frames.notification("conversation_transferred", {"conversationId": new.id,
                                                             "toAgentId": "bob"})
    welcome = frames.notification("conversation_transferred", {
        **frames.request_data(new), "conversationId": new.id, "fromAgentId": "alice"})
    assert decision.frames == [AgentFrame("alice", told), HistoryFrame("bob", welcome)]
    assert decision.notes == [ReleaseSlot("alice")]


def test_hand_over_to_a_participant_keeps_the_slot_reserved_for_the_target() -> None:
    """The shell reserves the target's slot before the hand-over, so the decision must not
    release it again when the target (a colleague who joined) was already in."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, HandOver(agent=ALICE, target=BOB))
    assert ReleaseSlot("bob") not in decision.notes
    assert ReleaseSlot("alice") in decision.notes
    assert [p.id for p in state_of(decision).active_agents()] == ["bob"]


def test_hand_over_is_a_conflict_unless_active() -> None:
    """Only an active conversation can be handed over; nothing changes."""
    refuse(pending(), HandOver(agent=ALICE, target=BOB), Conflict)


# --- join and leave -----------------------------------------------------------------------

def test_join_adds_the_agent_and_tells_every_agent_in() -> None:
    """Join: the colleague becomes a participant with its role; every agent in (the joiner
    too) gets CONVERSATION_JOIN; the primary agent stays."""
    conversation = active(ALICE)
    decision = run(conversation, Join(agent=BOB, role="supervisor"), now=at(40))
    new = state_of(decision)
    assert [(p.id, p.role, p.joined_at) for p in new.participants][1] == (
        "bob", "supervisor", iso(at(40)))
    assert new.agent_id == "alice"
    frame = frames.event("CONVERSATION_JOIN", {"conversationId": new.id,
                                               "agent": {"id": "bob", "name": "Bob"},
                                               "role": "supervisor"})
    assert decision.frames == [AgentFrame("alice", frame), AgentFrame("bob", frame)]
    assert decision.reply == new
    assert decision.write


def test_join_when_already_in_changes_nothing() -> None:
    """Joining a conversation one is already in is idempotent: same state, no effects."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, Join(agent=BOB))
    assert_changes_nothing(conversation, decision)
    assert decision.reply == conversation


def test_join_is_a_conflict_unless_active() -> None:
    """Nobody joins a pending request; nothing changes."""
    refuse(pending(), Join(agent=BOB), Conflict)


def test_last_agent_leaving_ends_it_when_end_on_last_leave() -> None:
    """With ``endOnLastLeave`` the last agent leaving ends the conversation by the agent:
    the leaver gets CONVERSATION_LEAVE, the bot CONVERSATION_END, slots are released."""
    conversation = active(ALICE)
    decision = run(conversation, Leave(agent=ALICE),
                   LivechatSettings(end_on_last_leave=True))
    new = state_of(decision)
    assert (new.status, new.ended_by, new.end_reason) == ("ended", "agent",
                                                          "last agent left")
    left = frames.event("CONVERSATION_LEAVE", {"conversationId": new.id,
                                               "agent": {"id": "alice", "name": "Alice"}})
    assert decision.frames == [AgentFrame("alice", left)]
    assert decision.events == [("CONVERSATION_END", {"endedBy": "agent",
                                                     "reason": "last agent left"})]
    assert ReleaseSlot("alice") in decision.notes
    assert decision.reply == new


def test_last_agent_leaving_keeps_it_open_without_end_on_last_leave() -> None:
    """Without ``endOnLastLeave`` the conversation stays active with nobody in, the slot
    is released and the bot is not told."""
    conversation = active(ALICE)
    decision = run(conversation, Leave(agent=ALICE),
                   LivechatSettings(end_on_last_leave=False))
    new = state_of(decision)
    assert new.status == "active"
    assert new.active_agents() == []
    assert new.agent_id is None
    assert decision.events == []
    assert decision.notes == [ReleaseSlot("alice")]


def test_last_agent_leaving_clears_the_primary_agent_entirely() -> None:
    """Once nobody is left, the conversation names no agent: neither an id nor a stale
    name (the transcript's 'Agent:' line reads both)."""
    decision = run(active(ALICE), Leave(agent=ALICE), LivechatSettings(end_on_last_leave=False))
    new = state_of(decision)
    assert (new.agent_id, new.agent_name) == (None, None)


def test_primary_agent_leaving_moves_primary_to_a_remaining_agent() -> None:
    """When the primary agent leaves, the first remaining participant becomes primary;
    the leaver and those remaining get CONVERSATION_LEAVE."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, Leave(agent=ALICE))
    new = state_of(decision)
    assert (new.status, new.agent_id, new.agent_name) == ("active", "bob", "Bob")
    left = frames.event("CONVERSATION_LEAVE", {"conversationId": new.id,
                                               "agent": {"id": "alice", "name": "Alice"}})
    assert decision.frames == [AgentFrame("alice", left), AgentFrame("bob", left)]
    assert decision.notes == [ReleaseSlot("alice")]
    assert decision.events == []


def test_a_colleague_leaving_keeps_the_primary_agent() -> None:
    """When a colleague leaves, the primary agent stays."""
    new = state_of(run(active(ALICE, BOB), Leave(agent=BOB)))
    assert (new.agent_id, new.agent_name) == ("alice", "Alice")
    assert [p.id for p in new.active_agents()] == ["alice"]


def test_leave_is_a_conflict_for_an_agent_not_in() -> None:
    """Leaving a conversation one is not in (or has left, or that is pending) is refused;
    nothing changes."""
    refuse(active(ALICE), Leave(agent=BOB), Conflict)
    refuse(state_of(run(active(ALICE, BOB), Leave(agent=BOB))), Leave(agent=BOB), Conflict)
    refuse(pending(), Leave(agent=ALICE), Conflict)


# --- messages -----------------------------------------------------------------------------

def test_messages_get_gap_free_seq_from_last_seq() -> None:
    """Each stored message takes ``lastSeq + 1`` and moves ``lastSeq`` to it."""
    state = active()
    ids = Ids("m")
    for expected in (1, 2, 3):
        decision = run(state, agent_post(text=f"n{expected}"), ids=ids)
        [(message, _)] = decision.messages
        assert (message.seq, message.text) == (expected, f"n{expected}")
        assert decision.reply == PostResult(id=message.message_id, conversation_id=state.id,
                                            request_id=state.request_id, seq=expected)
        state = state_of(decision)
        assert state.last_seq == expected
    assert ids.n == 3


def test_a_subscriber_message_while_pending_is_kept_without_frames() -> None:
    """A pending request keeps the subscriber's messages: stored and counted, no frames, no
    bot event, and the request's activity time does not move."""
    request = pending()
    decision = run(request, PostMessage(author=SUBSCRIBER, text="anyone?"))
    new = state_of(decision)
    [(message, _)] = decision.messages
    assert (message.seq, message.author, message.at) == (1, SUBSCRIBER, iso(at(60)))
    assert new.last_seq == 1
    assert new.last_activity_at == request.last_activity_at
    assert decision.frames == []
    assert decision.events == []
    assert decision.counted == ["messages_stored"]


def test_an_agent_message_is_a_conflict_while_pending() -> None:
    """Agents cannot write to a request nobody accepted; nothing changes."""
    refuse(pending(), agent_post(), Conflict)


@pytest.mark.parametrize("status", ["ended", "cancelled", "missed"])
@pytest.mark.parametrize("author", ["subscriber", "agent", "system", "bot"])
def test_any_message_is_not_found_once_closed(status: str, author: AuthorType) -> None:
    """No message of any author is stored in a closed conversation; nothing changes."""
    refuse(closed(status), PostMessage(author=Author(type=author), text="late"), NotFound)


def test_an_agent_message_frames_every_agent_and_tells_the_bot() -> None:
    """An agent message on an active conversation: a message frame for every agent still
    in, a MESSAGE event for the bot, and the activity time moves."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, agent_post(), now=at(70))
    [(message, _)] = decision.messages
    frame = frames.message(message)
    assert frame["data"]["seq"] == 1
    assert frame["data"]["text"] == "Hi Ada"
    assert decision.frames == [AgentFrame("alice", frame), AgentFrame("bob", frame)]
    assert decision.events == [("MESSAGE", message_event_data(message))]
    assert decision.events[0][1]["author"] == {"type": "agent", "id": "alice",
                                               "name": "Alice"}
    assert state_of(decision).last_activity_at == iso(at(70))


def test_a_system_message_is_an_event_to_the_bot() -> None:
    """System messages are told to the bot as MESSAGE."""
    decision = run(active(), PostMessage(author=Author(type="system"), text="note"))
    assert [name for name, _ in decision.events] == ["MESSAGE"]


@pytest.mark.parametrize("author", [SUBSCRIBER, Author(type="bot", id="bot")])
def test_subscriber_and_bot_messages_are_no_event_to_the_bot(author: Author) -> None:
    """The bot is not told of messages that came from its own side; agents are framed."""
    decision = run(active(ALICE), PostMessage(author=author, text="hello"))
    assert decision.events == []
    assert [f.agent_id for f in decision.frames] == ["alice"]


def test_a_post_with_a_client_id_remembers_its_answer() -> None:
    """A message with a client id and scope stores its answer under them (an idempotent
    resend), and the message carries the client id."""
    post = PostMessage(author=SUBSCRIBER, text="hi", client_id="bot-msg-981",
                       idempotency_scope="t1")
    decision = run(active(), post)
    assert decision.remember == ("t1", "bot-msg-981", decision.reply)
    assert decision.messages[0][1] == "bot-msg-981"
    assert run(active(), PostMessage(author=SUBSCRIBER, text="hi")).remember is None


def test_an_agent_message_goes_to_an_external_channel() -> None:
    """A customer on a non-bot channel is sent agent messages (SendMessage to the
    channel); the provider side gets nothing."""
    conversation = active(provider=EXTERNAL, channel=CUSTOMER_CHANNEL)
    decision = run(conversation, agent_post())
    [(message, _)] = decision.messages
    assert decision.commands == [(SIDE_CHANNEL, SendMessage(
        conversation_id=conversation.id, message_id=message.message_id, text="Hi Ada",
        type="text", author_name="Alice"))]


def test_a_subscriber_message_goes_to_an_external_provider() -> None:
    """A non-native provider is sent the subscriber's messages (SendMessage to the
    provider), even while pending."""
    request = pending(provider=EXTERNAL)
    decision = run(request, PostMessage(author=SUBSCRIBER, text="help"))
    [(message, _)] = decision.messages
    assert decision.commands == [(SIDE_PROVIDER, SendMessage(
        conversation_id=request.id, message_id=message.message_id, text="help",
        author_name="Ada"))]


def test_messages_of_a_native_bot_conversation_have_no_edge_commands() -> None:
    """With lcx's agents and the bot channel, no message leaves through an edge."""
    assert run(active(), agent_post()).commands == []
    assert run(active(), PostMessage(author=SUBSCRIBER, text="x")).commands == []


# --- typing, read, flags ------------------------------------------------------------------

def test_typing_frames_the_other_agents_and_tells_the_bot() -> None:
    """Typing: CONVERSATION_TYPING frames for every agent but the typist, and the bot gets
    CONVERSATION_TYPING; nothing is stored."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, Typing(agent=ALICE, typing=True))
    frame = frames.event("CONVERSATION_TYPING", {
        "conversationId": conversation.id, "agent": {"id": "alice", "name": "Alice"},
        "typing": True})
    assert decision.frames == [AgentFrame("bob", frame)]
    assert decision.events == [("CONVERSATION_TYPING", {
        "agent": {"id": "alice", "name": "Alice"}, "typing": True})]
    assert not decision.write
    assert decision.state == conversation


def test_typing_is_shown_on_an_external_channel() -> None:
    """A non-bot channel is sent a SendTyping command."""
    conversation = active(channel=CUSTOMER_CHANNEL)
    decision = run(conversation, Typing(agent=ALICE, typing=False))
    assert decision.commands == [(SIDE_CHANNEL, SendTyping(conversation_id=conversation.id,
                                                           typing=False))]


def test_read_stores_the_marker_and_frames_the_other_agents() -> None:
    """Read: the agent's marker is stored under ``readMarkers`` (others kept) and the other
    agents get CONVERSATION_READ."""
    conversation = state_of(run(active(ALICE, BOB), Read(agent=BOB, seq=2)))
    decision = run(conversation, Read(agent=ALICE, seq=5))
    assert state_of(decision).flags["readMarkers"] == {"bob": 2, "alice": 5}
    assert decision.write
    assert decision.events == []
    frame = frames.event("CONVERSATION_READ", {
        "conversationId": conversation.id, "agent": {"id": "alice", "name": "Alice"},
        "seq": 5})
    assert decision.frames == [AgentFrame("bob", frame)]
    assert conversation.flags["readMarkers"] == {"bob": 2}


def test_flag_is_stored_and_frames_the_other_agents() -> None:
    """A participant flag is stored on the conversation; the others get PARTICIPANT_FLAG."""
    conversation = active(ALICE, BOB)
    decision = run(conversation, Flag(agent=BOB, flag="vip", value=True))
    assert state_of(decision).flags == {"vip": True}
    assert decision.write
    frame = frames.event("PARTICIPANT_FLAG", {
        "conversationId": conversation.id, "agent": {"id": "bob", "name": "Bob"},
        "flag": "vip", "value": True})
    assert decision.frames == [AgentFrame("alice", frame)]
    assert conversation.flags == {}


@pytest.mark.parametrize("signal", [Typing(agent=ALICE, typing=True), Read(agent=ALICE, seq=1),
                                    Flag(agent=ALICE, flag="vip", value=1)])
def test_signals_are_a_conflict_unless_active(signal: Typing | Read | Flag) -> None:
    """Typing, read and flags need an active conversation; nothing changes."""
    refuse(pending(), signal, Conflict)
    refuse(closed("ended"), signal, Conflict)


# --- update request -----------------------------------------------------------------------

def test_update_merges_subscriber_and_context_and_refreshes_its_queue_entry() -> None:
    """Updating a pending request replaces the subscriber, appends the transcript, merges
    the metadata, and refreshes the request in its queue."""
    request = msgspec.structs.replace(pending(), context=Context(
        transcript=[TranscriptLine(author="user", text="one")], metadata={"a": 1, "b": 1}))
    update = UpdateRequest(subscriber=Subscriber(name="Ada L."), context=Context(
        transcript=[TranscriptLine(author="bot", text="two")], metadata={"b": 2}))
    decision = run(request, update)
    new = state_of(decision)
    assert new.subscriber == Subscriber(name="Ada L.")
    assert [line.text for line in new.context.transcript] == ["one", "two"]
    assert new.context.metadata == {"a": 1, "b": 2}
    assert decision.reply == new
    assert decision.write
    assert decision.notes == [QueueRequest("g1", new)]
    assert request.context.metadata == {"a": 1, "b": 1}


def test_update_moving_the_group_dequeues_it_as_moved_and_enqueues_it_in_the_new() -> None:
    """A new ``userGroupId`` moves the request: dequeued 'moved' from the old queue,
    queued in the new one."""
    request = pending()
    decision = run(request, UpdateRequest(user_group_id="g2",
                                          subscriber=Subscriber(name="Ada L.")))
    new = state_of(decision)
    assert (new.user_group_id, new.subscriber.name) == ("g2", "Ada L.")
    assert decision.notes == [UnqueueRequest("g1", request.id, "moved"),
                              QueueRequest("g2", new)]


@pytest.mark.parametrize("status", ["active", "ended", "cancelled"])
def test_update_is_not_found_unless_pending(status: str) -> None:
    """Only a pending request can be updated (404 otherwise); nothing changes."""
    state = active() if status == "active" else closed(status)
    refuse(state, UpdateRequest(user_group_id="g2"), NotFound)


def test_update_of_an_external_provider_request_does_not_queue_it() -> None:
    """A request routed to an external provider is never queued for lcx's agents (create
    opens a link instead), so updating it must not queue it either."""
    decision = run(pending(provider=EXTERNAL), UpdateRequest(subscriber=Subscriber(name="A")))
    assert not any(isinstance(note, QueueRequest) for note in decision.notes)


# --- the edges ----------------------------------------------------------------------------

def test_a_provider_message_on_a_pending_request_accepts_and_posts_in_one_decision() -> None:
    """The provider's first message accepts the request as its author and stores the
    message: one decision with CONVERSATION_BEGIN then MESSAGE, remembered by external id."""
    request = pending(provider=EXTERNAL)
    agent = AgentRef(id="g-7", name="Gina")
    decision = run(request, edge("provider", EdgeMessage(external_id="x1", author=agent,
                                                         text="Hello from Genesys")))
    new = state_of(decision)
    assert (new.status, new.agent_id, new.last_seq) == ("active", "g-7", 1)
    [(message, client_id)] = decision.messages
    assert (message.seq, message.author, client_id) == (
        1, Author(type="agent", id="g-7", name="Gina"), "x1")
    assert [name for name, _ in decision.events] == ["CONVERSATION_BEGIN", "MESSAGE"]
    assert decision.remember == (f"edge:{request.id}", "x1", PostResult(
        id=message.message_id, conversation_id=request.id, request_id=request.request_id,
        seq=1))
    assert decision.reply is None
    assert not decision.with_history
    assert request.status == "pending"


def test_a_provider_message_without_author_is_written_as_the_provider() -> None:
    """A provider message naming no agent is authored by the provider itself."""
    decision = run(active(provider=EXTERNAL), edge("provider", EdgeMessage(text="hi")))
    assert decision.messages[0][0].author == Author(type="agent", id=EXTERNAL)


def test_a_provider_agent_joining_a_pending_request_accepts_it() -> None:
    """AgentJoined on a pending request accepts it as that agent."""
    decision = run(pending(provider=EXTERNAL), edge("provider", AgentJoined(agent=ALICE)))
    assert (state_of(decision).status, state_of(decision).agent_id) == ("active", "alice")
    assert decision.events[0][0] == "CONVERSATION_BEGIN"


def test_a_provider_agent_joining_an_active_conversation_joins_once() -> None:
    """AgentJoined of a new agent joins it; of an agent already in changes nothing."""
    conversation = active(ALICE, provider=EXTERNAL)
    joined = state_of(run(conversation, edge("provider", AgentJoined(agent=BOB))))
    assert [p.id for p in joined.active_agents()] == ["alice", "bob"]
    assert_changes_nothing(joined, run(joined, edge("provider", AgentJoined(agent=BOB))))


def test_agent_left_marks_the_participant_left() -> None:
    """AgentLeft from the provider marks that participant left, and nothing else."""
    conversation = active(ALICE, BOB, provider=EXTERNAL)
    decision = run(conversation, edge("provider", AgentLeft(agent=BOB)), now=at(77))
    new = state_of(decision)
    assert [(p.id, p.left_at) for p in new.participants] == [("alice", None),
                                                             ("bob", iso(at(77)))]
    assert new.status == "active"
    assert decision.write
    assert not decision.events
    assert not decision.frames
    assert not decision.notes
    assert not decision.commands


def test_last_provider_agent_leaving_ends_it_by_the_provider() -> None:
    """With endOnLastLeave (the default) the provider's last agent leaving ends the
    conversation as for native agents, ``endedBy: "provider"``; nothing is sent back to
    the provider (it ended it), the customer's channel is told."""
    conversation = active(ALICE, provider=EXTERNAL, channel="livechat")
    decision = run(conversation, edge("provider", AgentLeft(agent=ALICE)), now=at(77))
    new = state_of(decision)
    assert (new.status, new.ended_by, new.end_reason) == ("ended", "provider",
                                                          "last agent left")
    assert [p.left_at for p in new.participants] == [iso(at(77))]
    assert decision.events == [("CONVERSATION_END", {"endedBy": "provider",
                                                     "reason": "last agent left"})]
    assert [(side, type(c).__name__) for side, c in decision.commands] == [
        (SIDE_CHANNEL, "EndSession")]


def test_last_provider_agent_leaving_keeps_it_open_without_end_on_last_leave() -> None:
    """Without endOnLastLeave the provider's last agent leaving only marks it left."""
    decision = run(active(ALICE, provider=EXTERNAL), edge("provider", AgentLeft(agent=ALICE)),
                   LivechatSettings(end_on_last_leave=False), now=at(77))
    new = state_of(decision)
    assert new.status == "active"
    assert not decision.events


def test_an_undeliverable_agent_message_is_told_to_the_agents() -> None:
    """The customer's channel refusing a message for good (e.g. WhatsApp's 24 h window)
    tells every agent in, in plain words; nothing is stored or sent anywhere."""
    conversation = active(ALICE, BOB, channel="twilio")
    decision = run(conversation, edge("channel", EdgeUndelivered(
        message_id="m-7", notice="a template is needed")))
    assert state_of(decision) == conversation
    assert not decision.write
    assert not decision.events
    assert not decision.commands
    assert [(f.agent_id, f.frame["data"]) for f in decision.frames] == [
        (agent, {"kind": "message_undeliverable", "conversationId": conversation.id,
                 "messageId": "m-7", "reason": "a template is needed"})
        for agent in ("alice", "bob")]


def test_customer_read_receipt_is_shown_to_the_agents_only() -> None:
    """The customer's read receipt (Messenger, X) reaches the agents, not the bot."""
    conversation = active(ALICE, channel="messenger")
    decision = run(conversation, edge("channel", EdgeRead(at="2026-11-21T10:00:30.000Z")))
    assert not decision.events
    assert not decision.write
    assert [f.frame["data"] for f in decision.frames] == [{
        "conversationId": conversation.id, "subscriber": True,
        "at": "2026-11-21T10:00:30.000Z"}]


def test_customer_typing_is_shown_to_the_agents_only() -> None:
    """The customer typing on a channel that says so (X) reaches the agents, not the
    bot; before an agent accepted it, nothing."""
    conversation = active(ALICE, channel="x")
    decision = run(conversation, edge("channel", EdgeTyping(typing=True)))
    assert not decision.events
    assert not decision.commands
    assert [f.frame for f in decision.frames] == [{
        "type": "event", "event": "CONVERSATION_TYPING",
        "data": {"conversationId": conversation.id, "subscriber": True, "typing": True}}]
    assert not run(pending(channel="x"), edge("channel", EdgeTyping(typing=True))).frames


def test_a_provider_typing_signal_is_shown_to_agents_and_the_bot() -> None:
    """Provider typing on an active conversation is a typing signal of the provider."""
    decision = run(active(provider=EXTERNAL), edge("provider", EdgeTyping(typing=True)))
    assert decision.events == [("CONVERSATION_TYPING", {
        "agent": {"id": EXTERNAL, "name": None}, "typing": True})]


def test_the_provider_ending_ends_it_by_the_provider() -> None:
    """EdgeEnded from the provider ends the conversation by 'provider' and ends only the
    channel's side."""
    conversation = active(provider=EXTERNAL, channel=CUSTOMER_CHANNEL)
    decision = run(conversation, edge("provider", EdgeEnded(reason="agent closed")))
    assert (state_of(decision).status, state_of(decision).ended_by) == ("ended", "provider")
    assert decision.commands == [(SIDE_CHANNEL, EndSession(conversation_id=conversation.id,
                                                           reason="agent closed"))]


def test_a_customer_message_from_a_channel_is_posted_as_the_subscriber() -> None:
    """A message from the customer's channel is stored as the subscriber's, idempotent on
    its external id."""
    conversation = active(channel=CUSTOMER_CHANNEL)
    decision = run(conversation, edge("channel", EdgeMessage(external_id="w-1", text="yo")))
    [(message, client_id)] = decision.messages
    assert (message.author, message.text, client_id) == (SUBSCRIBER, "yo", "w-1")
    assert decision.remember is not None
    assert decision.remember[:2] == (f"edge:{conversation.id}", "w-1")
    assert decision.events == []
    assert decision.reply is None


def test_the_customer_ending_on_the_channel_ends_it_by_the_subscriber() -> None:
    """EdgeEnded from the channel ends it by 'subscriber' (cancels a pending request),
    without ending the channel again."""
    decision = run(active(channel=CUSTOMER_CHANNEL), edge("channel", EdgeEnded()))
    assert (state_of(decision).status, state_of(decision).ended_by) == ("ended", "subscriber")
    assert decision.commands == []
    request = pending(channel=CUSTOMER_CHANNEL)
    cancelled = run(request, edge("channel", EdgeEnded()))
    assert state_of(cancelled).status == "cancelled"
    assert cancelled.notes == [UnqueueRequest("g1", request.id, "cancelled")]


def test_a_channel_transfer_is_recorded_on_the_conversation() -> None:
    """EdgeTransferred from the channel records where the channel moved it."""
    decision = run(active(channel=CUSTOMER_CHANNEL),
                   edge("channel", EdgeTransferred(to={"queue": "sales"})))
    assert state_of(decision).flags["channelTransfer"] == {"queue": "sales"}
    assert decision.write


@pytest.mark.parametrize("status", ["ended", "cancelled", "missed", None])
@pytest.mark.parametrize(("side", "event"), [
    ("provider", EdgeMessage(external_id="x", text="late")),
    ("provider", AgentJoined(agent=BOB)),
    ("provider", AgentLeft(agent=ALICE)),
    ("provider", EdgeEnded()),
    ("channel", EdgeMessage(text="late")),
    ("channel", EdgeEnded()),
])
def test_edge_events_on_a_closed_conversation_change_nothing(
        status: str | None, side: Side, event: AnyEdgeEvent) -> None:
    """Late edge events of a closed (or unknown) conversation are dropped."""
    state = None if status is None else closed(status)
    before = copy.deepcopy(state)
    assert_changes_nothing(before, run(state, edge(side, event)))
    assert state == before


@pytest.mark.parametrize("event", [EdgeTyping(typing=True), AgentLeft(agent=ALICE)])
def test_provider_signals_on_a_pending_request_change_nothing(event: AnyEdgeEvent) -> None:
    """Typing and an agent leaving mean nothing before the request is accepted."""
    request = pending(provider=EXTERNAL)
    assert_changes_nothing(request, run(request, edge("provider", event)))


# --- idempotency, state, recovery ---------------------------------------------------------

def test_idempotency_key_names_where_an_earlier_answer_is_stored() -> None:
    """Posts with a client id and scope, and edge messages with an external id, have a key;
    anything else has none."""
    conversation = active()
    assert idempotency_key(conversation, PostMessage(
        author=SUBSCRIBER, client_id="b-1", idempotency_scope="t1")) == ("t1", "b-1")
    assert idempotency_key(conversation, PostMessage(author=SUBSCRIBER, client_id="b-1")) \
        is None
    assert idempotency_key(conversation, PostMessage(author=SUBSCRIBER)) is None
    assert idempotency_key(conversation, edge("provider", EdgeMessage(external_id="x9"))) \
        == (f"edge:{conversation.id}", "x9")
    assert idempotency_key(conversation, edge("provider", EdgeMessage())) is None
    assert idempotency_key(None, edge("provider", EdgeMessage(external_id="x9"))) is None
    assert idempotency_key(conversation, edge("provider", EdgeEnded(external_id="x9"))) \
        is None
    assert idempotency_key(conversation, End(by="agent")) is None


def test_get_state_answers_the_conversation_and_changes_nothing() -> None:
    """GetState answers the state; of an unknown conversation it is NotFound."""
    conversation = active()
    decision = run(conversation, GetState())
    assert decision.reply == conversation
    assert_changes_nothing(conversation, decision)
    refuse(None, GetState(), NotFound)


def test_recover_reopens_the_link_of_an_open_external_conversation() -> None:
    """Recover reopens the provider link of an open non-native conversation, and does
    nothing for native, closed or unknown ones."""
    external = active(provider=EXTERNAL)
    decision = run(external, Recover())
    assert decision.notes == [OpenProviderLink()]
    assert not decision.stores
    for state in (active(), None, state_of(run(external, End(by="agent")))):
        assert_changes_nothing(state, run(state, Recover()))


def test_an_unknown_command_is_a_type_error() -> None:
    """A command the rules do not know is a programming error, not a refusal."""
    with pytest.raises(TypeError):
        run(active(), object())
