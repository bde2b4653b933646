"""Every LcxError crosses the bus as itself: class, message, details, headers and what
its class carries come back unchanged on the caller's side."""

from __future__ import annotations

import msgspec
import pytest

import lcx.errors as errors
from actors.routing import Answer
from lcx.cluster.bus import RemoteError
from lcx.cluster.errors import ErrorBox, box, rebuild, to_remote, unbox
from lcx.errors import ApiError, EdgeCallFailed, LcxError, RateLimited
from lcx.livechat.queue import NoFreeSlot


def _every_lcx_error() -> list[type[LcxError]]:
    """The error tree of lcx/errors.py (and the core's NoFreeSlot)."""
    found = [obj for obj in vars(errors).values()
             if isinstance(obj, type) and issubclass(obj, LcxError)]
    return sorted([*found, NoFreeSlot], key=lambda c: c.__name__)


def _example(cls: type[LcxError]) -> LcxError:
    if issubclass(cls, ApiError):
        return cls("refused", details={"fields": ["x"]}, headers={"X-Why": "test"})
    if issubclass(cls, EdgeCallFailed):
        return cls("edge down", retry=True, retry_after=2.5, auth=False, status=503)
    return cls("failed")


def _over_the_wire(boxed: ErrorBox) -> ErrorBox:
    raw = msgspec.msgpack.encode(Answer(error=boxed))
    answer = msgspec.msgpack.decode(raw, type=Answer)
    assert answer.error is not None
    return answer.error


@pytest.mark.parametrize("cls", _every_lcx_error(), ids=lambda c: c.__name__)
def test_each_error_class_comes_back_as_itself(cls: type[LcxError]) -> None:
    """box -> msgpack -> rebuild gives the same class with the same content."""
    original = _example(cls)
    again = rebuild(_over_the_wire(box(original, origin="i2")))
    assert type(again) is cls
    assert str(again) == str(original)
    if isinstance(original, ApiError):
        assert isinstance(again, ApiError)
        assert (again.details, again.headers) == (original.details, original.headers)
        assert (again.status, again.code) == (original.status, original.code)
    if isinstance(original, EdgeCallFailed):
        assert isinstance(again, EdgeCallFailed)
        assert (again.retry, again.retry_after, again.auth, again.status) == \
            (True, 2.5, False, 503)


def test_a_remote_retry_after_is_kept() -> None:
    """A 429's Retry-After raised on another instance reaches the caller's response."""
    again = rebuild(_over_the_wire(box(RateLimited("slow down",
                                                   headers={"Retry-After": "3"}),
                                       origin="i2")))
    assert isinstance(again, RateLimited)
    assert again.headers == {"Retry-After": "3"}


def test_an_unknown_class_comes_back_as_its_nearest_known_ancestor() -> None:
    """A subclass the caller does not know (another version) rebuilds as its base."""
    boxed = msgspec.structs.replace(box(NoFreeSlot("full"), origin="i2"), kind="Renamed")
    again = rebuild(boxed)
    assert type(again) is errors.Conflict


def test_a_bug_stays_a_remote_error() -> None:
    """An exception that is not an LcxError is never rebuilt as an expected outcome."""
    boxed = box(ValueError("bad payload"), origin="i2")
    again = rebuild(boxed)
    assert isinstance(again, RemoteError)
    assert (again.kind, again.origin) == ("ValueError", "i2")


def test_the_bus_error_of_an_lcx_error_unboxes_to_it() -> None:
    """What an RPC caller catches (a RemoteError) unboxes to the handler's own class."""
    error = to_remote(box(EdgeCallFailed("gone", retry=False, auth=True, status=401),
                          origin="i3"))
    assert isinstance(error, RemoteError)
    again = unbox(error)
    assert isinstance(again, EdgeCallFailed)
    assert (again.retry, again.auth, again.status) == (False, True, 401)


class _NeedsMore(EdgeCallFailed):
    """An adapter's error with a constructor of its own."""

    def __init__(self, message: str, *, vendor_code: str) -> None:
        super().__init__(message, retry=True)
        self.vendor_code = vendor_code


def test_a_class_that_cannot_be_rebuilt_from_the_box_comes_back_as_its_base() -> None:
    """A subclass whose constructor needs more than the box carries is rebuilt as its
    nearest buildable ancestor, with the same classification (rebuild never raises)."""
    again = rebuild(box(_NeedsMore("quota", vendor_code="Q1"), origin="i2"))
    assert type(again) is EdgeCallFailed
    assert again.retry is True
