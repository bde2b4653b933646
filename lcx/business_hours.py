"""Business hours of a user group (API.md section 6): shape, validation, open or closed.

Pure logic, no store and no web framework: :class:`BusinessHours` is the stored and wire
document, :func:`problems` / :func:`validate` check it, :func:`is_open`,
:func:`next_change` and :func:`current_state` answer for an instant.

The rules, where API.md is silent:

* **Wall time.** Intervals are ``["HH:MM", "HH:MM"]`` in the group's local time
  (``timezone``, an IANA name); the start is inclusive, the end exclusive. ``"24:00"`` is
  allowed as an end only and means the next midnight.
* **Overnight.** An interval whose end is not after its start (``["22:00", "02:00"]``, and
  ``["09:00", "09:00"]``: a whole 24 hours) runs into the next day. Sunday's overnight
  interval runs into Monday.
* **A day owns the intervals that start on it.** A holiday (a local date) cancels every
  interval *starting* that day; an overnight interval of the day before still runs into
  the holiday's morning. Intervals may not overlap anywhere in the week (Sunday night
  into Monday included); touching ones (``17:00`` end, ``17:00`` start) are one opening.
* **Daylight saving.** A wall time that does not exist (the spring-forward gap) is the
  moment the clocks jump: an interval covering the gap just has fewer real minutes, and one
  lying wholly inside it never opens. A wall time that happens twice (fall back) is its
  first occurrence (``fold=0``): an interval spanning the repeated hour lasts an hour
  longer; one ending inside it ends the first time the clocks show its end.
* **Disabled** hours (``"enabled": false``) are always open, with no next change.
* :func:`next_change` looks :data:`SEARCH_DAYS` ahead; ``None`` when nothing flips by then
  (always open, always closed, or closed by holidays for that long).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Annotated, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "DAYS", "SEARCH_DAYS", "BusinessHours", "BusinessHoursPatch", "OpenState", "Problem",
    "current_state", "is_open", "merge", "next_change", "problems", "validate", "zone",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""The keys of ``weekly``, Monday first (``date.weekday()`` order)."""
SEARCH_DAYS = 14
"""How far ahead :func:`next_change` looks."""
MAX_INTERVALS_PER_DAY = 48
MAX_HOLIDAYS = 1000
MAX_TIMEZONE_CHARS = 64

_DAY_MINUTES = 24 * 60
_WEEK_MINUTES = 7 * _DAY_MINUTES
_TIME = re.compile(r"(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)")
_END_OF_DAY = "24:00"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NOT_ZONES = frozenset({"localtime", "posixrules"})
"""Names on a machine's zone path that are not IANA zones (``localtime`` is the host's)."""

Interval = tuple[str, str]
Intervals = Annotated[list[Interval], msgspec.Meta(max_length=MAX_INTERVALS_PER_DAY)]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TIMEZONE_CHARS)]
Holidays = Annotated[list[str], msgspec.Meta(max_length=MAX_HOLIDAYS)]


class BusinessHours(msgspec.Struct, rename="camel", kw_only=True, frozen=True,
                    forbid_unknown_fields=True):
    """When a user group takes requests; see the module docstring for the rules.

    Decoding checks types and sizes only; :func:`problems` checks the values.
    """

    timezone: TimezoneName
    """IANA time zone of the wall times and holiday dates (``Europe/Athens``)."""
    weekly: dict[str, Intervals]
    """Day key (``mon`` .. ``sun``) -> ``[start, end]`` pairs; a missing day is closed."""
    holidays: Holidays = []
    """Local dates (``YYYY-MM-DD``) on which no interval starts."""
    enabled: bool = True
    """``False``: always open."""


class BusinessHoursPatch(msgspec.Struct, rename="camel", kw_only=True, frozen=True,
                         forbid_unknown_fields=True):
    """A partial update (``PATCH``): see :func:`merge`; ``null`` is not a value here."""

    timezone: TimezoneName | UnsetType = UNSET
    weekly: dict[str, Intervals] | UnsetType = UNSET
    holidays: Holidays | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class Problem(NamedTuple):
    """One invalid value: the field's path on the wire and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class OpenState(NamedTuple):
    """Whether hours are open at an instant, and when that next flips (UTC, or ``None``)."""

    open: bool
    next_change: datetime | None


# --- validation ------------------------------------------------------------------------------

@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def zone(name: str) -> ZoneInfo:
    """The time zone named ``name``.

    Raises:
        ValueError: ``name`` is not an IANA time zone known here.
    """
    if name not in _zone_names():
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _minutes(text: str, *, end: bool) -> int | None:
    """Minutes after midnight of ``HH:MM`` (``24:00`` only as an end); ``None`` if bad."""
    if end and text == _END_OF_DAY:
        return _DAY_MINUTES
    match = _TIME.fullmatch(text)
    return None if match is None else int(match["h"]) * 60 + int(match["m"])


def _span(interval: Interval) -> tuple[int, int] | None:
    """``(start, end)`` minutes after the day's midnight; overnight ends pass 1440."""
    start, end = _minutes(interval[0], end=False), _minutes(interval[1], end=True)
    if start is None or end is None:
        return None
    return start, end if end > start else end + _DAY_MINUTES


def _interval_problems(day: str, intervals: list[Interval]) -> list[Problem]:
    found = []
    for index, (start, end) in enumerate(intervals):
        path = f"weekly.{day}[{index}]"
        if _minutes(start, end=False) is None:
            found.append(Problem(path, f"start {start!r} is not a time HH:MM (00:00-23:59)"))
        if _minutes(end, end=True) is None:
            found.append(Problem(path, f"end {end!r} is not a time HH:MM (00:00-24:00)"))
    return found


def _overlaps(weekly: dict[str, list[Interval]]) -> list[Problem]:
    """Intervals that overlap another on the weekly timeline (Sunday wraps to Monday)."""
    spans: list[tuple[int, int, str]] = []
    for day_index, day in enumerate(DAYS):
        for index, interval in enumerate(weekly.get(day, ())):
            span = _span(interval)
            if span is not None:
                offset = day_index * _DAY_MINUTES
                spans.append((offset + span[0], offset + span[1], f"weekly.{day}[{index}]"))
    spans += [(s - _WEEK_MINUTES, e - _WEEK_MINUTES, f) for s, e, f in spans
              if e > _WEEK_MINUTES]
    bad: dict[str, None] = {}
    reach, owner = None, ""
    for start, end, field in sorted(spans):
        if reach is not None and start < reach:
            bad.update({owner: None, field: None})
        if reach is None or end > reach:
            reach, owner = end, field
    return [Problem(field, "overlaps another interval") for field in bad]


def _holiday_problems(holidays: list[str]) -> list[Problem]:
    found = []
    for index, text in enumerate(holidays):
        try:
            valid = _DATE.fullmatch(text) is not None and bool(date.fromisoformat(text))
        except ValueError:
            valid = False
        if not valid:
            found.append(Problem(f"holidays[{index}]", f"{text!r} is not a date YYYY-MM-DD"))
    return found


def problems(hours: BusinessHours) -> list[Problem]:
    """Every invalid value of ``hours``, in field order (empty when valid).

    Checks: the time zone is a known IANA name; day keys are ``mon`` .. ``sun``; times are
    ``HH:MM`` (``24:00`` as an end only); no two intervals overlap in the week; holidays
    are real ``YYYY-MM-DD`` dates. Never raises.
    """
    found = []
    try:
        zone(hours.timezone)
    except ValueError:
        found.append(Problem("timezone", f"unknown IANA time zone {hours.timezone!r}"))
    for day, intervals in hours.weekly.items():
        if day in DAYS:
            found += _interval_problems(day, intervals)
        else:
            found.append(Problem(f"weekly.{day}", f"unknown day; use one of {', '.join(DAYS)}"))
    found += _overlaps(hours.weekly)
    found += _holiday_problems(hours.holidays)
    return found


def validate(hours: BusinessHours) -> list[str]:
    """The problems of ``hours`` as ``"<field>: <what is wrong>"`` lines (empty when valid)."""
    return [str(problem) for problem in problems(hours)]


def merge(hours: BusinessHours, patch: BusinessHoursPatch) -> BusinessHours:
    """``hours`` with ``patch`` applied: given fields replace, ``weekly`` merges by day.

    A day named in ``patch.weekly`` gets exactly the patch's intervals (``[]`` closes it);
    days not named keep theirs. ``holidays`` is replaced as a whole. The result is not
    validated: call :func:`problems`.
    """
    weekly = hours.weekly if isinstance(patch.weekly, UnsetType) \
        else {**hours.weekly, **patch.weekly}
    return BusinessHours(
        timezone=hours.timezone if isinstance(patch.timezone, UnsetType) else patch.timezone,
        weekly=weekly,
        holidays=hours.holidays if isinstance(patch.holidays, UnsetType) else patch.holidays,
        enabled=hours.enabled if isinstance(patch.enabled, UnsetType) else patch.enabled)


# --- open or closed --------------------------------------------------------------------------

def _gap_end(tz: ZoneInfo, naive: datetime) -> datetime:
    """The instant the clocks jumped over ``naive``, a wall time that does not exist."""
    low = int(naive.replace(tzinfo=tz, fold=1).timestamp())   # offset after: before the jump
    high = int(naive.replace(tzinfo=tz, fold=0).timestamp())  # offset before: after it
    after = datetime.fromtimestamp(high, tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _instant(tz: ZoneInfo, day: date, minute: int) -> datetime:
    """The UTC instant the clocks of ``tz`` show ``minute`` after midnight of ``day``."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    moment = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: first of a repeated time
    if moment.astimezone(tz).replace(tzinfo=None) != naive:
        return _gap_end(tz, naive)
    return moment


def _openings(hours: BusinessHours, tz: ZoneInfo, first: date, days: int
              ) -> list[tuple[datetime, datetime]]:
    """The open spans (UTC) of intervals starting on ``days`` local dates from ``first``,
    merged where they touch or overlap, in order."""
    holidays = {date.fromisoformat(text) for text in hours.holidays}
    spans = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        if day in holidays:
            continue
        for interval in hours.weekly.get(DAYS[day.weekday()], ()):
            span = _span(interval)
            if span is None:
                raise ValueError(f"invalid interval {interval!r}: validate the hours first")
            start, end = _instant(tz, day, span[0]), _instant(tz, day, span[1])
            if start < end:
                spans.append((start, end))
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def current_state(hours: BusinessHours, at: datetime) -> OpenState:
    """Whether ``hours`` are open at ``at``, and the next flip within :data:`SEARCH_DAYS`.

    ``at`` must be timezone-aware; ``hours`` should be valid (see :func:`problems`).

    Raises:
        ValueError: ``at`` is naive, or ``hours`` has an unknown time zone, a bad time or
            a bad holiday date.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("business hours need a timezone-aware instant")
    if not hours.enabled:
        return OpenState(True, None)
    tz = zone(hours.timezone)
    first = at.astimezone(tz).date() - timedelta(days=2)  # an interval lasts about a day
    horizon = at + timedelta(days=SEARCH_DAYS)
    for start, end in _openings(hours, tz, first, SEARCH_DAYS + 4):
        if end <= at:
            continue
        is_open = start <= at
        flip = end if is_open else start
        return OpenState(is_open, flip if flip <= horizon else None)
    return OpenState(False, None)


def is_open(hours: BusinessHours, at: datetime) -> bool:
    """Whether ``hours`` are open at the aware instant ``at`` (raises as
    :func:`current_state`)."""
    return current_state(hours, at).open


def next_change(hours: BusinessHours, at: datetime) -> datetime | None:
    """The next instant (UTC) after ``at`` when ``hours`` open or close, at most
    :data:`SEARCH_DAYS` ahead; ``None`` when none (raises as :func:`current_state`)."""
    return current_state(hours, at).next_change
