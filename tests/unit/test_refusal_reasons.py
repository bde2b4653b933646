"""A refusal by the actor runtime (or by an owner that moves) tells the client a documented
reason, over HTTP and in ERROR frames alike, and never an internal class name."""

from __future__ import annotations

import json

import pytest

from actors.routing import owner_died
from lcx.api.agent_frames import error_frame
from lcx.api.errors import envelope, error_reply
from lcx.cluster.bus import BusUnavailable, MemberLost, RemoteError
from lcx.errors import (
    ActorStopped,
    AskTimeout,
    LcxError,
    MailboxClosed,
    MailboxFull,
    StaleState,
    StoreUnavailable,
)

INTERNAL_NAMES = ("MailboxClosed", "AskTimeout", "MailboxFull", "ActorStopped",
                  "StaleState", "StoreUnavailable", "BusUnavailable", "MemberLost",
                  "MemberGone", "RemoteError", "KeyError")

REFUSALS: list[tuple[LcxError, str]] = [
    (MailboxClosed("conversation:c1: its owner is moving (MemberGone: b)"), "owner_moving"),
    (ActorStopped("the actor stopped while handling the message"), "owner_moving"),
    (AskTimeout("conversation:c1 on b did not answer"), "overloaded"),
    (MailboxFull("queue:o1/g1 is full"), "overloaded"),
    (StaleState("conversations c1: StaleState seq 4"), "owner_moving"),
    (owner_died("conversation", "c1"), "owner_moving"),
]


def _without_internal_names(text: str) -> None:
    for name in INTERNAL_NAMES:
        assert name not in text, text


@pytest.mark.parametrize(("exc", "reason"), REFUSALS,
                         ids=[type(e).__name__ for e, _ in REFUSALS])
def test_http_answers_503_with_the_documented_reason_and_retry_after(
        exc: LcxError, reason: str) -> None:
    """503 ``unavailable``, ``details.reason`` documented, ``Retry-After`` set."""
    reply = error_reply(exc)
    assert (reply.status, reply.code) == (503, "unavailable")
    assert reply.details == {"reason": reason}
    assert reply.headers.get("Retry-After") == "1"
    _without_internal_names(json.dumps(envelope(reply)))


@pytest.mark.parametrize(("exc", "reason"), REFUSALS,
                         ids=[type(e).__name__ for e, _ in REFUSALS])
def test_error_frames_carry_the_documented_reason(exc: LcxError, reason: str) -> None:
    """An ERROR frame for the same refusal says the same reason."""
    frame = error_frame("r1", exc)
    assert frame["data"]["code"] == "unavailable"
    assert frame["data"]["details"] == {"reason": reason}
    _without_internal_names(json.dumps(frame))


@pytest.mark.parametrize("exc", [
    BusUnavailable("redis does not answer (BusUnavailable)"),
    MemberLost("b stopped listening"),
    RemoteError("boom", origin="b", kind="KeyError"),
    StoreUnavailable("psycopg: StoreUnavailable"),
], ids=lambda e: type(e).__name__)
def test_error_frames_of_dependencies_name_no_class(exc: LcxError) -> None:
    """A dependency's failure names the dependency, not the exception."""
    frame = error_frame(None, exc)
    assert frame["data"]["code"] == "unavailable"
    assert frame["data"]["details"]["dependency"] in {"bus", "store"}
    _without_internal_names(json.dumps(frame))
