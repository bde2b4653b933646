"""Timestamps: ``iso`` writes RFC 3339 UTC with milliseconds from any aware datetime, and
``parse_iso`` reads it back, refusing what falls outside years 1-9999 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lcx.model import iso, parse_iso


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC), "2026-11-21T10:00:00.123Z"),
    (datetime(2026, 11, 21, 12, 30, 5, 999, tzinfo=timezone(timedelta(hours=2))),
     "2026-11-21T10:30:05.000Z"),
    (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05.000Z"),
])
def test_iso_is_utc_with_milliseconds(moment: datetime, text: str) -> None:
    """Other offsets are converted to UTC; years before 1000 keep four digits."""
    assert iso(moment) == text
    assert parse_iso(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                  "2026-11-21T10:00:00", "not a time"])
def test_parse_iso_refuses_out_of_range_and_naive_text(text: str) -> None:
    """Before year 1 or after 9999 once in UTC, no timezone, or no timestamp: ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_iso(text)


def _formatted(moment: datetime) -> str:
    """The text by definition: what ``iso`` wrote before it cached the second."""
    moment = moment.astimezone(UTC)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


def test_iso_reuses_the_second_only_within_that_second() -> None:
    """The cached text of a second never leaks into the next or the previous one, nor
    into the same second of another day; the edges of the calendar are formatted too."""
    base = datetime(2026, 12, 3, 10, 0, 59, 999_999, tzinfo=UTC)
    moments = [base, base + timedelta(microseconds=1), base - timedelta(seconds=1),
               base, base + timedelta(days=1), base - timedelta(microseconds=999_999),
               base.astimezone(timezone(timedelta(hours=-5))),
               datetime.max.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
               datetime.min.replace(tzinfo=UTC), base]
    moments += [base + timedelta(microseconds=n * 37_777) for n in range(200)]
    # now and a deadline in turn, as a message formats them
    moments += [base + timedelta(seconds=900 * (n % 2), microseconds=n * 1_111)
                for n in range(50)]
    for moment in moments:
        assert iso(moment) == _formatted(moment)
