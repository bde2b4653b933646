"""Which messages are resent after their owner died holding them is an explicit decision
for every message that travels between instances."""

from __future__ import annotations

from actors.messages import WIRE_MESSAGES, Accept, GetState, PostMessage
from actors.resend import IDEMPOTENT, NOT_RESENT, safe_to_resend
from lcx.model import AgentRef, Author


def test_every_wire_message_is_classified_once() -> None:
    """A new wire message cannot be resent by default: it must be put in one set."""
    classified = IDEMPOTENT | NOT_RESENT | {PostMessage}
    assert set(WIRE_MESSAGES) == classified
    assert not IDEMPOTENT & NOT_RESENT
    assert PostMessage not in IDEMPOTENT | NOT_RESENT


def test_a_post_is_resent_only_with_a_client_id_in_a_scope() -> None:
    """The store remembers a post's answer under (scope, client id): only then is a
    second post the first one's result."""
    author = Author(type="subscriber")
    assert safe_to_resend(PostMessage(author=author, text="hi", client_id="m1",
                                      idempotency_scope="bot:t1"))
    assert not safe_to_resend(PostMessage(author=author, text="hi", client_id="m1"))
    assert not safe_to_resend(PostMessage(author=author, text="hi"))


def test_reads_are_resent_and_state_changes_are_not() -> None:
    """A read is resent; an accept (a second one is refused) is not."""
    assert safe_to_resend(GetState())
    assert not safe_to_resend(Accept(agent=AgentRef(id="a", name="A")))
