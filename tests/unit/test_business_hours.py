"""Business hours rules: open or closed, next change, DST, holidays, validation, merge."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from lcx.business_hours import (
    BusinessHours,
    BusinessHoursPatch,
    current_state,
    is_open,
    merge,
    next_change,
    problems,
    validate,
)

ATHENS = ZoneInfo("Europe/Athens")
NEW_YORK = ZoneInfo("America/New_York")
Weekly = dict[str, list[tuple[str, str]]]

# 2026-11-23 is a Monday; no DST change in Athens or New York between it and 2026-12-31.


def hours(weekly: Weekly, tz: str = "Europe/Athens", holidays: tuple[str, ...] = (),
          enabled: bool = True) -> BusinessHours:
    """Business hours from a compact description."""
    return BusinessHours(timezone=tz, weekly=weekly, holidays=list(holidays), enabled=enabled)


def at(day: str, clock: str, tz: ZoneInfo = ATHENS, fold: int = 0) -> datetime:
    """The instant the clocks of ``tz`` show ``day`` ``clock`` (``2026-11-23``, ``09:00``)."""
    naive = datetime.fromisoformat(f"{day}T{clock}")
    return naive.replace(tzinfo=tz, fold=fold)


def utc(text: str) -> datetime:
    """A UTC instant from ``2026-03-29T01:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


OFFICE = hours({"mon": [("09:00", "17:00")]})


# --- weekly intervals ------------------------------------------------------------------------

def test_interval_start_is_inclusive_and_end_exclusive() -> None:
    """09:00-17:00 is open at 09:00 and 16:59:59, closed at 08:59:59 and 17:00."""
    assert not is_open(OFFICE, at("2026-11-23", "08:59:59"))
    assert is_open(OFFICE, at("2026-11-23", "09:00"))
    assert is_open(OFFICE, at("2026-11-23", "16:59:59"))
    assert not is_open(OFFICE, at("2026-11-23", "17:00"))


def test_other_weekdays_are_closed() -> None:
    """A day without intervals is closed all day."""
    assert not is_open(OFFICE, at("2026-11-24", "10:00"))


def test_next_change_is_the_close_when_open_and_the_open_when_closed() -> None:
    """Open: next change is today's close; closed after hours: next Monday's opening."""
    assert next_change(OFFICE, at("2026-11-23", "10:00")) == at("2026-11-23", "17:00")
    assert next_change(OFFICE, at("2026-11-23", "17:00")) == at("2026-11-30", "09:00")
    assert next_change(OFFICE, at("2026-11-23", "08:00")) == at("2026-11-23", "09:00")


def test_next_change_is_utc() -> None:
    """next_change answers a UTC datetime."""
    change = next_change(OFFICE, at("2026-11-23", "10:00"))
    assert change is not None
    assert change.tzinfo is UTC
    assert change == utc("2026-11-23T15:00")


def test_overnight_interval_runs_past_midnight() -> None:
    """Friday 22:00-02:00 is open Friday 23:00 and Saturday 01:59, closed at 02:00."""
    night = hours({"fri": [("22:00", "02:00")]})
    assert not is_open(night, at("2026-11-27", "21:59"))
    assert is_open(night, at("2026-11-27", "23:00"))
    assert is_open(night, at("2026-11-28", "01:59"))
    assert not is_open(night, at("2026-11-28", "02:00"))
    assert next_change(night, at("2026-11-27", "23:00")) == at("2026-11-28", "02:00")


def test_sunday_overnight_interval_runs_into_monday() -> None:
    """Sunday 22:00-02:00 wraps the week: open Monday 01:00, closed Monday 02:00."""
    night = hours({"sun": [("22:00", "02:00")]})
    assert is_open(night, at("2026-11-29", "23:30"))
    assert is_open(night, at("2026-11-30", "01:00"))
    assert not is_open(night, at("2026-11-30", "02:00"))
    assert next_change(night, at("2026-11-30", "01:00")) == at("2026-11-30", "02:00")


def test_equal_start_and_end_is_a_whole_day() -> None:
    """An interval with end equal to start lasts 24 hours (it is overnight)."""
    day = hours({"tue": [("09:00", "09:00")]})
    assert is_open(day, at("2026-11-25", "08:59"))
    assert not is_open(day, at("2026-11-25", "09:00"))


def test_end_of_day_24_00_closes_at_midnight() -> None:
    """An interval ending 24:00 is open at 23:59 and closed at the next midnight."""
    evening = hours({"mon": [("18:00", "24:00")]})
    assert is_open(evening, at("2026-11-23", "23:59:59"))
    assert not is_open(evening, at("2026-11-24", "00:00"))
    assert next_change(evening, at("2026-11-23", "20:00")) == at("2026-11-24", "00:00")


def test_touching_intervals_do_not_flip() -> None:
    """Monday 18:00-24:00 followed by Tuesday 00:00-06:00 changes only at 06:00."""
    late = hours({"mon": [("18:00", "24:00")], "tue": [("00:00", "06:00")]})
    assert next_change(late, at("2026-11-23", "20:00")) == at("2026-11-24", "06:00")


def test_always_open_and_always_closed_have_no_next_change() -> None:
    """24/7 hours are open and an empty week is closed, both without a next change."""
    always = hours({day: [("00:00", "24:00")]
                    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    assert current_state(always, at("2026-11-25", "03:00")) == (True, None)
    assert current_state(hours({}), at("2026-11-25", "03:00")) == (False, None)


def test_disabled_hours_are_always_open() -> None:
    """enabled=false means open whatever the schedule says, with no next change."""
    off = hours({}, enabled=False)
    assert is_open(off, at("2026-11-25", "03:00"))
    assert next_change(off, at("2026-11-25", "03:00")) is None


def test_naive_instant_is_refused() -> None:
    """is_open needs a timezone-aware instant."""
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(OFFICE, datetime(2026, 11, 23, 10, 0))


# --- holidays --------------------------------------------------------------------------------

def test_holiday_closes_the_day() -> None:
    """A holiday closes the intervals of its local date."""
    closed = hours({"mon": [("09:00", "17:00")]}, holidays=("2026-11-23",))
    assert not is_open(closed, at("2026-11-23", "10:00"))
    assert is_open(closed, at("2026-11-30", "10:00"))


def test_holiday_is_a_local_date() -> None:
    """A holiday is the local date of the group's zone, not the UTC date."""
    early = hours({"mon": [("00:30", "05:00")]}, holidays=("2026-11-23",))
    assert not is_open(early, utc("2026-11-22T23:00"))  # 01:00 on Monday in Athens


def test_overnight_interval_before_a_holiday_still_runs_into_it() -> None:
    """An interval belongs to the day it starts: Sunday night runs into a Monday holiday."""
    night = hours({"sun": [("22:00", "02:00")]}, holidays=("2026-11-30",))
    assert is_open(night, at("2026-11-30", "01:00"))
    sunday_off = hours({"sun": [("22:00", "02:00")]}, holidays=("2026-11-29",))
    assert not is_open(sunday_off, at("2026-11-29", "23:00"))
    assert not is_open(sunday_off, at("2026-11-30", "01:00"))


def test_next_change_skips_a_holiday() -> None:
    """Weekdays 09-17 with Tuesday off: after Monday's close the next opening is Wednesday."""
    week = hours({day: [("09:00", "17:00")] for day in ("mon", "tue", "wed", "thu", "fri")},
                 holidays=("2026-11-24",))
    assert next_change(week, at("2026-11-23", "17:30")) == at("2026-11-25", "09:00")


def test_next_change_is_none_beyond_the_search_window() -> None:
    """When holidays close everything for over 14 days, next_change is None."""
    closed = hours({"mon": [("09:00", "17:00")]}, holidays=("2026-11-30", "2026-12-07"))
    assert current_state(closed, at("2026-11-23", "18:00")) == (False, None)


# --- daylight saving time --------------------------------------------------------------------

def test_athens_spring_forward_interval_covering_the_gap_is_shorter() -> None:
    """Athens, 2026-03-29: 02:00-05:00 covers 03:00->04:00 and lasts 2 real hours."""
    sunday = hours({"sun": [("02:00", "05:00")]})
    assert next_change(sunday, utc("2026-03-28T23:00")) == utc("2026-03-29T00:00")
    assert is_open(sunday, utc("2026-03-29T00:59"))  # 02:59 EET
    assert is_open(sunday, utc("2026-03-29T01:00"))  # 04:00 EEST
    assert next_change(sunday, utc("2026-03-29T00:30")) == utc("2026-03-29T02:00")
    assert not is_open(sunday, utc("2026-03-29T02:00"))


def test_athens_interval_starting_in_the_gap_opens_when_the_clocks_jump() -> None:
    """Athens, 2026-03-29: an interval from 03:30 (which never happens) opens at 04:00."""
    sunday = hours({"sun": [("03:30", "06:00")]})
    assert next_change(sunday, utc("2026-03-28T22:00")) == utc("2026-03-29T01:00")
    assert is_open(sunday, at("2026-03-29", "04:00"))
    assert not is_open(sunday, utc("2026-03-29T00:59"))


def test_athens_interval_inside_the_gap_never_opens() -> None:
    """Athens, 2026-03-29: 03:10-03:50 does not exist that day; next week it opens again."""
    sunday = hours({"sun": [("03:10", "03:50")]})
    assert next_change(sunday, utc("2026-03-28T22:00")) == at("2026-04-05", "03:10")


def test_athens_fall_back_interval_spanning_the_repeat_is_longer() -> None:
    """Athens, 2026-10-25: 02:00-05:00 spans 04:00->03:00 and lasts 4 real hours."""
    sunday = hours({"sun": [("02:00", "05:00")]})
    assert next_change(sunday, utc("2026-10-24T22:00")) == utc("2026-10-24T23:00")
    assert is_open(sunday, utc("2026-10-25T01:30"))  # 03:30 EET, the second time
    assert next_change(sunday, utc("2026-10-25T00:00")) == utc("2026-10-25T03:00")


def test_athens_fall_back_ambiguous_times_are_the_first_occurrence() -> None:
    """Athens, 2026-10-25: an interval from 03:30 opens the first time clocks show 03:30,
    and one ending 03:30 closes then (fold=0)."""
    starting = hours({"sun": [("03:30", "06:00")]})
    assert next_change(starting, utc("2026-10-24T22:00")) == utc("2026-10-25T00:30")
    ending = hours({"sat": [("20:00", "03:30")]})
    assert is_open(ending, utc("2026-10-25T00:15"))
    assert next_change(ending, utc("2026-10-25T00:15")) == utc("2026-10-25T00:30")
    assert not is_open(ending, at("2026-10-25", "03:15", fold=1))


def test_new_york_spring_forward() -> None:
    """New York, 2026-03-08: 01:00-04:00 covers 02:00->03:00; 02:30 starts at 03:00."""
    covering = hours({"sun": [("01:00", "04:00")]}, tz="America/New_York")
    assert next_change(covering, utc("2026-03-08T06:30")) == utc("2026-03-08T08:00")
    in_gap = hours({"sun": [("02:30", "05:00")]}, tz="America/New_York")
    assert next_change(in_gap, utc("2026-03-08T05:00")) == utc("2026-03-08T07:00")
    assert is_open(in_gap, at("2026-03-08", "03:00", NEW_YORK))


def test_new_york_fall_back() -> None:
    """New York, 2026-11-01: 01:30-03:00 opens at 01:30 EDT and stays open through 01:xx EST."""
    sunday = hours({"sun": [("01:30", "03:00")]}, tz="America/New_York")
    assert next_change(sunday, utc("2026-11-01T04:00")) == utc("2026-11-01T05:30")
    assert is_open(sunday, at("2026-11-01", "01:15", NEW_YORK, fold=1))
    assert next_change(sunday, utc("2026-11-01T06:15")) == utc("2026-11-01T08:00")


# --- validation ------------------------------------------------------------------------------

def test_valid_hours_have_no_problems() -> None:
    """The contract's example is valid."""
    example = hours({"mon": [("09:00", "17:00")], "sat": [("22:00", "02:00")],
                     "sun": [("10:00", "24:00")]}, holidays=("2026-12-25",))
    assert validate(example) == []


def test_validation_names_each_bad_field() -> None:
    """Unknown zone and day, bad times, 24:00 as a start and bad dates are each named."""
    bad = hours({"mon": [("9:00", "17:00"), ("18:00", "24:01")], "tue": [("24:00", "01:00")],
                 "funday": []}, tz="Mars/Olympus",
                holidays=("2026-02-30", "20261225", "2026-12-25"))
    assert [p.field for p in problems(bad)] == [
        "timezone", "weekly.mon[0]", "weekly.mon[1]", "weekly.tue[0]", "weekly.funday",
        "holidays[0]", "holidays[1]"]
    assert validate(bad)[0] == "timezone: unknown IANA time zone 'Mars/Olympus'"
    assert "start '9:00' is not a time HH:MM" in validate(bad)[1]
    assert "end '24:01'" in validate(bad)[2]


def test_host_specific_zone_names_are_refused() -> None:
    """``localtime`` names the host's zone, not an IANA one."""
    assert [p.field for p in problems(hours({}, tz="localtime"))] == ["timezone"]


def test_overlapping_intervals_are_refused() -> None:
    """Overlaps on a day, and an overnight interval overlapping the next day, are named."""
    same_day = hours({"mon": [("09:00", "17:00"), ("16:00", "18:00")]})
    assert validate(same_day) == ["weekly.mon[0]: overlaps another interval",
                                  "weekly.mon[1]: overlaps another interval"]
    wrapped = hours({"sun": [("22:00", "02:00")], "mon": [("01:00", "03:00")]})
    assert sorted(p.field for p in problems(wrapped)) == ["weekly.mon[0]", "weekly.sun[0]"]
    long_one = hours({"mon": [("08:00", "20:00"), ("09:00", "10:00"), ("11:00", "12:00")]})
    assert len(problems(long_one)) == 3


def test_touching_intervals_are_valid() -> None:
    """An interval may start when another ends."""
    assert validate(hours({"mon": [("09:00", "12:00"), ("12:00", "17:00")]})) == []


def test_decoding_checks_types_and_unknown_fields() -> None:
    """The wire form is camelCase; a wrong type or an unknown field does not decode."""
    decoded = msgspec.json.decode(
        b'{"timezone": "Europe/Athens", "weekly": {"mon": [["09:00", "17:00"]]}}',
        type=BusinessHours)
    assert decoded == hours({"mon": [("09:00", "17:00")]})
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"timezone": "UTC", "weekly": {}, "open": true}',
                            type=BusinessHours)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"timezone": "UTC", "weekly": {"mon": [["09:00"]]}}',
                            type=BusinessHours)


# --- merge -----------------------------------------------------------------------------------

def test_merge_replaces_given_fields_and_merges_days() -> None:
    """A patch replaces given fields; weekly days it names replace, others stay."""
    current = hours({"mon": [("09:00", "17:00")], "tue": [("09:00", "17:00")]},
                    holidays=("2026-12-25",))
    patch = BusinessHoursPatch(weekly={"tue": [], "wed": [("10:00", "12:00")]}, enabled=False)
    assert merge(current, patch) == hours(
        {"mon": [("09:00", "17:00")], "tue": [], "wed": [("10:00", "12:00")]},
        holidays=("2026-12-25",), enabled=False)
    assert merge(current, BusinessHoursPatch()) == current


def test_rules_import_no_web_framework_or_store() -> None:
    """lcx.business_hours is pure: importing it loads neither Quart nor the store."""
    code = ("import sys, lcx.business_hours; "
            "print(sorted(m for m in ('quart', 'lcx.store', 'trio') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
