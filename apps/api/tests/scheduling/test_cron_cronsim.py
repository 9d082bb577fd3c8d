"""The cron engine next to cronsim: what cronsim accepts beyond our grammar, and property
tests that we agree where we both accept (minute by minute, over years, across DST);
anything either parses or raises CronError; and the end of the calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings, strategies as st

from app.scheduling.cron import (
    MACROS,
    CronError,
    CronFields,
    CronSchedule,
    parse,
)
from tests.helpers.cron import utc

PROPERTY = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- cronsim: what it accepts beyond our grammar, and that we agree where we both accept ----------


@pytest.mark.parametrize(
    "expression",
    ["0 0 0 * * *", "0 0 L * *", "0 0 LW * *", "0 0 * * 5L", "0 0 * * MON#2", "5/15 * * * *"],
)
def test_cronsim_accepts_more_than_standard_cron(expression: str) -> None:
    CronSim(expression, utc(2027, 1, 1))
    with pytest.raises(CronError):
        parse(expression)


def test_a_single_value_range_with_a_step_is_rejected() -> None:
    # Vixie cron reads 5-5/2 as minute 5 alone; cronsim up to 2.8 read it as 5, 7, 9, ...
    # (2.9 follows Vixie). The step means nothing either way, and which cronsim is installed
    # must not change when a schedule fires, so the expression is refused with a reason.
    with pytest.raises(CronError, match="holds a single value"):
        parse("5-5/2 * * * *")
    # A range of two values or more keeps its step, as everywhere: 5 and 7 of each hour.
    assert parse("5-8/2 * * * *").next_after(utc(2027, 1, 1, 0, 5)) == utc(2027, 1, 1, 0, 7)
    assert next(CronSim("5-8/2 * * * *", utc(2027, 1, 1, 0, 7))) == utc(2027, 1, 1, 1, 5)


MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


@st.composite
def field_text(draw: st.DrawFn, index: int) -> str:
    """One field in the grammar: a list of '*', values and ranges, each maybe with a step."""
    low, high = BOUNDS[index]

    def value(number: int) -> str:
        names = MONTH_NAMES if index == 3 else DAY_NAMES if index == 4 and number < 7 else None
        if names and draw(st.booleans()):
            name = names[number - (1 if index == 3 else 0)]
            return draw(st.sampled_from([name, name.lower(), name.title()]))
        return str(number)

    items = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["star", "value", "range"]))
        step = draw(st.one_of(st.none(), st.integers(1, high - low)))
        suffix = "" if step is None else f"/{step}"
        if kind == "star":
            items.append("*" + suffix)
        elif kind == "value":
            items.append(value(draw(st.integers(low, high))))
        else:
            start = draw(st.integers(low, high - 1))
            end = draw(st.integers(start + 1, high))
            items.append(f"{value(start)}-{value(end)}{suffix}")
    return ",".join(items)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A valid five-field expression (or a macro); never-firing ones are filtered out later."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(sorted(MACROS)))
    return " ".join(draw(field_text(index)) for index in range(5))


def day_matches(fields: CronFields, day: date) -> bool:
    """Vixie cron's day rule, written from the contract rather than taken from the module."""
    dom = day.day in fields.days_of_month
    dow = day.isoweekday() % 7 in fields.days_of_week
    return day.month in fields.months and ((dom or dow) if fields.day_or else (dom and dow))


def brute_force(fields: CronFields, start: datetime, days: int, limit: int) -> list[datetime]:
    """Fire times in UTC strictly after `start`: every minute of every day, checked."""
    found: list[datetime] = []
    day = start.date()
    for _ in range(days):
        if day_matches(fields, day):
            for minute in range(24 * 60):
                moment = datetime.combine(day, datetime.min.time(), UTC) + timedelta(minutes=minute)
                if (
                    moment > start
                    and moment.hour in fields.hours
                    and moment.minute in fields.minutes
                ):
                    found.append(moment)
                    if len(found) == limit:
                        return found
        day += timedelta(days=1)
    return found


def parse_or_none(expression: str, timezone: str = "UTC") -> CronSchedule | None:
    try:
        return parse(expression, timezone)
    except CronError as error:
        message = str(error)
    assert message.startswith("this expression can never fire")
    return None


@PROPERTY
@given(
    expression=expressions(),
    start=st.datetimes(
        datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
        datetime(2090, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
)
def test_our_fields_and_cronsim_agree_minute_by_minute(expression: str, start: datetime) -> None:
    schedule = parse_or_none(expression)
    if schedule is None:
        return
    days, limit = 62, 20
    expected = brute_force(schedule.fields, start, days, limit)
    end = datetime.combine(start.date() + timedelta(days=days), datetime.min.time(), UTC)
    actual = [fire for fire in schedule.fire_times(start, limit) if fire < end]
    assert actual == expected


@PROPERTY
@given(expression=expressions(), year=st.integers(2001, 2080))
def test_days_agree_with_cronsim_over_years(expression: str, year: int) -> None:
    """Sparse expressions (leap days, a month, OR and AND) need years to show their days."""
    schedule = parse_or_none(expression)
    if schedule is None:
        return
    fields = schedule.fields
    start = utc(year, 1, 1) - timedelta(microseconds=1)
    first = (min(fields.hours), min(fields.minutes))
    expected: list[date] = []
    day = date(year, 1, 1)
    while len(expected) < 8 and day.year < year + 9:
        if day_matches(fields, day):
            expected.append(day)
        day += timedelta(days=1)
    actual: list[date] = []
    moment = start
    while len(actual) < len(expected):
        # The day's first fire time, then skip to the next day.
        fire = schedule.next_after(moment)
        assert (fire.hour, fire.minute) == first
        actual.append(fire.date())
        moment = datetime.combine(fire.date(), datetime.max.time(), UTC)
    assert actual == expected
    if len(expected) < 8:  # nothing else until the end of the brute-forced years
        assert schedule.next_after(moment) >= utc(year + 9, 1, 1)


ZONES_AND_TRANSITIONS = [
    ("America/New_York", utc(2027, 3, 14, 7)),
    ("America/New_York", utc(2027, 11, 7, 6)),
    ("Australia/Lord_Howe", utc(2027, 10, 2, 15, 30)),
    ("Australia/Lord_Howe", utc(2027, 4, 3, 15)),
    ("Australia/Sydney", utc(2027, 10, 2, 16)),
    ("Australia/Sydney", utc(2027, 4, 3, 16)),
    ("America/Santiago", utc(2027, 9, 5, 4)),
    ("Europe/London", utc(2027, 3, 28, 1)),
]


def contract_fire_times(
    fields: CronFields, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """design.md §5 written out by brute force: fixed times, gaps, overlaps, elapsed time."""
    found: set[datetime] = set()
    if fields.fixed_time:
        day = start.astimezone(zone).date() - timedelta(days=1)
        while day <= end.astimezone(zone).date():
            if day_matches(fields, day):
                for hour in fields.hours:
                    for minute in fields.minutes:
                        wall = datetime(day.year, day.month, day.day, hour, minute)  # noqa: DTZ001
                        instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: first
                        if instant.astimezone(zone).replace(tzinfo=None) != wall:
                            # In a gap: the first instant whose wall time is past it.
                            instant = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
                            while instant.astimezone(zone).replace(tzinfo=None) < wall:
                                instant += timedelta(minutes=1)
                        if start < instant <= end:
                            found.add(instant)
            day += timedelta(days=1)
    else:
        moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while moment <= end:
            wall = moment.astimezone(zone)
            if (
                day_matches(fields, wall.date())
                and wall.hour in fields.hours
                and wall.minute in fields.minutes
            ):
                found.add(moment)
            moment += timedelta(minutes=1)
    return sorted(found)


@st.composite
def dst_expressions(draw: st.DrawFn) -> str:
    """Expressions that fire around the night's transition hours, fixed-time or wildcard."""
    minute = draw(
        st.sampled_from(["0", "30", "15,45", "*/15", "*/20", "5-59/30", "0-10/5", "59", "*/30"])
    )
    hour = draw(st.sampled_from(["0", "1", "2", "3", "1,2", "1-3", "*", "*/2", "0-4", "23,0,1"]))
    dom = draw(st.sampled_from(["*", "*", "1-31", "*/2"]))
    dow = draw(st.sampled_from(["*", "*", "0-6", "SUN", "1-5"]))
    return f"{minute} {hour} {dom} * {dow}"


@PROPERTY
@given(
    expression=dst_expressions(),
    case=st.sampled_from(ZONES_AND_TRANSITIONS),
    seconds=st.lists(st.integers(0, 60 * 3600), max_size=4),
)
def test_fire_times_follow_the_dst_contract(
    expression: str, case: tuple[str, datetime], seconds: list[int]
) -> None:
    name, transition = case
    schedule = parse(expression, name)
    start, end = transition - timedelta(hours=30), transition + timedelta(hours=30)
    expected = contract_fire_times(schedule.fields, ZoneInfo(name), start, end)
    actual = [fire for fire in schedule.fire_times(start, len(expected) + 1) if fire <= end]
    assert [fire.astimezone(UTC) for fire in actual] == expected
    # Backwards too: at each fire time, just before it, and at random moments in the window.
    moments = [start + timedelta(seconds=second, microseconds=7) for second in seconds]
    moments += [m + delta for m in expected[:3] for delta in (timedelta(0), -timedelta.resolution)]
    for moment in moments:
        before = [fire for fire in expected if fire <= moment]
        if before:
            assert schedule.latest_at_or_before(moment) == before[-1]


@settings(max_examples=300, deadline=None, database=None)
@given(
    text=st.one_of(
        st.text(alphabet=" \t*/,-0123456789LW#?HJANMONSUNFRIdecjul@", max_size=30),
        st.text(max_size=20),
    )
)
def test_anything_either_parses_or_raises_cron_error(text: str) -> None:
    try:
        schedule = parse(text)
    except CronError:
        return
    # What we accept, cronsim accepts too (this also runs inside parse) and can iterate.
    assert schedule.next_after(utc(2027, 1, 1)) > utc(2027, 1, 1)


@pytest.mark.parametrize(
    ("expression", "zone", "after", "count"),
    [
        ("0 0 29 2 *", "UTC", datetime(9999, 1, 1, tzinfo=UTC), 0),  # no leap day left
        ("* * * * *", "UTC", datetime(9999, 12, 31, 23, 58, tzinfo=UTC), 1),
    ],
)
def test_fire_times_end_with_the_calendar(
    expression: str, zone: str, after: datetime, count: int
) -> None:
    times = parse(expression, zone).fire_times(after, 5)
    assert len(times) == count
    assert all(moment.year == 9999 for moment in times)


def test_elapsed_time_jobs_end_quietly_near_the_end_of_the_calendar() -> None:
    # Such jobs are computed between UTC-offset transitions; past the last one that the
    # calendar can express they stop (within the final local day) instead of raising.
    cron = parse("*/30 * * * *", "Australia/Lord_Howe")
    start = datetime(9999, 12, 30, 0, 0, tzinfo=UTC)
    times = cron.fire_times(start, 100)
    assert times[0] == start + timedelta(minutes=30)
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(times))
    assert times[-1] == datetime(9999, 12, 31, 0, 0, tzinfo=UTC)  # 11:00 on the last day there
    assert cron.fire_times(datetime(9999, 12, 31, 11, 0, tzinfo=UTC), 5) == []


def test_a_start_outside_the_calendar_in_utc_is_a_clear_error() -> None:
    start = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    with pytest.raises(ValueError, match="outside the calendar in UTC"):
        parse("* * * * *", "UTC").fire_times(start, 1)
