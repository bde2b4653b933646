"""Internal notes (``private: true``): agents see them, the bot, channel and provider never.

The rules are pure (``decide``), so these run without a store or actors; the transcript
renderers mark the notes in every format.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count

import pytest

from lcx.errors import Conflict
from lcx.livechat.commands import Accept, PostMessage
from lcx.livechat.conversation import decide, new_request
from lcx.livechat.settings import LivechatSettings
from lcx.model import AgentRef, Author, Conversation
from lcx.transcripts import TranscriptFormat, message_line, render

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ALICE = Author(type="agent", id="alice", name="Alice")


def _ids() -> Callable[[], str]:
    numbers = count(1)
    return lambda: f"id{next(numbers)}"


def active(channel: str = "livechat", provider: str = "helvia") -> Conversation:
    """An active conversation of alice's on a channel that relays agents' messages."""
    ids = _ids()
    pending = new_request(org_id="o1", tenant_id="t1", sub_handle="u-1", user_group_id="g1",
                          provider=provider, channel=channel, now=NOW, ids=ids)
    accepted = decide(pending, Accept(agent=AgentRef(id="alice", name="Alice")),
                      LivechatSettings(), NOW, ids=ids)
    assert accepted.state is not None
    return accepted.state


def test_a_note_is_stored_and_shown_to_agents_but_sends_nothing_on() -> None:
    state = active()
    public = decide(state, PostMessage(author=ALICE, text="hello"), LivechatSettings(), NOW)
    note = decide(state, PostMessage(author=ALICE, text="VIP, be nice", private=True),
                  LivechatSettings(), NOW)
    assert [e[0] for e in public.events] == ["MESSAGE"]
    assert public.commands  # the channel gets a public message
    assert (note.events, note.commands) == ([], [])
    [(message, _)] = note.messages
    assert (message.private, message.seq, message.text) == (True, state.last_seq + 1,
                                                             "VIP, be nice")
    assert note.state is not None
    assert note.state.last_seq == message.seq
    assert [(f.agent_id, f.frame["data"].get("private")) for f in note.frames] == [
        ("alice", True)]
    assert "private" not in public.frames[0].frame["data"]


def test_only_agents_write_notes_and_only_in_active_conversations() -> None:
    state = active()
    subscriber = Author(type="subscriber", id="u-1")
    with pytest.raises(Conflict):
        decide(state, PostMessage(author=subscriber, text="x", private=True),
               LivechatSettings(), NOW)
    pending = new_request(org_id="o1", tenant_id="t1", sub_handle="u-2", user_group_id="g1",
                          provider="helvia", channel="bot", now=NOW)
    with pytest.raises(Conflict):
        decide(pending, PostMessage(author=ALICE, text="x", private=True),
               LivechatSettings(), NOW)


def test_transcripts_mark_notes_in_json_csv_and_pdf() -> None:
    state = active(channel="bot")
    first = decide(state, PostMessage(author=ALICE, text="public"), LivechatSettings(), NOW)
    assert first.state is not None
    second = decide(first.state, PostMessage(author=ALICE, text="secret", private=True),
                    LivechatSettings(), NOW)
    messages = [first.messages[0][0], second.messages[0][0]]
    conversations = {state.id: state}
    def rendered(fmt: TranscriptFormat) -> bytes:
        return render(messages, conversations, fmt, org_id="o1",
                      generated_at="2026-11-21T10:00:00.000Z", conversation_id=state.id).body

    json_body = rendered("json").decode()
    assert json_body.count('"private":true') == 1
    csv_lines = rendered("csv").decode().splitlines()
    assert csv_lines[0].endswith(",private")
    assert (csv_lines[1].endswith(","), csv_lines[2].endswith(",true")) == (True, True)
    assert rendered("pdf").startswith(b"%PDF")
    assert "[internal note]" in message_line(messages[1])
    assert "[internal note]" not in message_line(messages[0])
