"""The cron engine's grammar: macros, names, lists, ranges and steps, day-of-month OR
day-of-week (Vixie semantics), and expressions that can never fire."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.scheduling.cron import (
    MACROS,
    CronError,
    parse,
)
from tests.helpers.cron import utc


def fire_days(expression: str, after: datetime, count: int) -> list[str]:
    """The weekday and date of the next fire times, e.g. 'Mon 2027-03-01'."""
    return [fire.strftime("%a %Y-%m-%d") for fire in parse(expression).fire_times(after, count)]


# --- the grammar ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_fire_like_their_five_fields(macro: str, fields: str) -> None:
    schedule = parse(macro)
    assert schedule.expression == macro
    assert schedule.fields == parse(fields).fields
    start = utc(2027, 2, 27, 13, 7)
    assert schedule.fire_times(start, 5) == parse(fields).fire_times(start, 5)


def test_exactly_the_vixie_macros_except_reboot() -> None:
    assert list(MACROS) == [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ]


def test_macros_fire_where_expected() -> None:
    start = utc(2027, 3, 10, 12, 30)
    assert parse("@hourly").next_after(start) == utc(2027, 3, 10, 13)
    assert parse("@daily").next_after(start) == utc(2027, 3, 11)
    assert parse("@weekly").next_after(start) == utc(2027, 3, 14)  # a Sunday
    assert parse("@monthly").next_after(start) == utc(2027, 4, 1)
    assert parse("@yearly").next_after(start) == utc(2028, 1, 1)


def test_macros_in_any_case_are_normalized_to_lower_case() -> None:
    assert parse("  @DAILY ").expression == "@daily"
    assert parse("@Monthly").expression == "@monthly"


def test_whitespace_is_normalized() -> None:
    schedule = parse(" \t0\t\t9  *   * 1-5 \n")
    assert schedule.expression == "0 9 * * 1-5"
    assert schedule == parse("0 9 * * 1-5")
    assert hash(schedule) == hash(parse("0 9 * * 1-5"))


def test_fields_are_kept_as_written() -> None:
    assert parse("0 0 * jan Mon-fri").expression == "0 0 * jan Mon-fri"


def test_names_in_any_case_mean_their_numbers() -> None:
    named = parse("0 0 * jan,Feb,MAR mon-FRI")
    numbered = parse("0 0 * 1,2,3 1-5")
    assert named.fields == numbered.fields
    assert named.fields.months == {1, 2, 3}
    assert named.fields.days_of_week == {1, 2, 3, 4, 5}
    assert parse("0 0 * Jan-Dec sun-sat").fields == parse("0 0 * * *").fields


@pytest.mark.parametrize(
    ("days_of_week", "expected"),
    [
        ("0", {0}),
        ("7", {0}),
        ("SUN", {0}),
        ("sun", {0}),
        ("0,7", {0}),
        ("5-7", {5, 6, 0}),
        ("FRI-7", {5, 6, 0}),
        ("SUN-SAT", {0, 1, 2, 3, 4, 5, 6}),
        ("0-6", {0, 1, 2, 3, 4, 5, 6}),
        ("1-7", {0, 1, 2, 3, 4, 5, 6}),
        ("*/2", {0, 2, 4, 6}),
        ("1-7/2", {1, 3, 5, 0}),
        ("MON-FRI/2", {1, 3, 5}),
    ],
)
def test_sunday_is_zero_and_seven(days_of_week: str, expected: set[int]) -> None:
    assert parse(f"0 0 * * {days_of_week}").fields.days_of_week == expected


def test_seven_fires_on_sundays() -> None:
    assert fire_days("0 0 * * 7", utc(2027, 3, 1), 2) == ["Sun 2027-03-07", "Sun 2027-03-14"]
    assert fire_days("0 0 * * 5-7", utc(2027, 3, 1), 3) == [
        "Fri 2027-03-05",
        "Sat 2027-03-06",
        "Sun 2027-03-07",
    ]


@pytest.mark.parametrize(
    ("minute", "expected"),
    [
        ("*", set(range(60))),
        ("*/15", {0, 15, 30, 45}),
        ("*/25", {0, 25, 50}),
        ("1-30/2", set(range(1, 31, 2))),
        ("5-59/15", {5, 20, 35, 50}),
        ("0,30", {0, 30}),
        ("0-4,10-12,59", {0, 1, 2, 3, 4, 10, 11, 12, 59}),
        ("*/30,7", {0, 7, 30}),
        ("10-10", {10}),
        ("05", {5}),
        ("1,1,1", {1}),
    ],
)
def test_lists_ranges_and_steps(minute: str, expected: set[int]) -> None:
    assert parse(f"{minute} * * * *").fields.minutes == expected


def test_steps_in_other_fields() -> None:
    fields = parse("0 */6 */10 JAN-DEC/3 *").fields
    assert fields.hours == {0, 6, 12, 18}
    assert fields.days_of_month == {1, 11, 21, 31}
    assert fields.months == {1, 4, 7, 10}


def test_every_fifteen_minutes() -> None:
    assert [t.isoformat() for t in parse("*/15 * * * *").fire_times(utc(2027, 1, 1, 0, 7), 3)] == [
        "2027-01-01T00:15:00+00:00",
        "2027-01-01T00:30:00+00:00",
        "2027-01-01T00:45:00+00:00",
    ]


# --- day-of-month and day-of-week: OR unless either starts with '*' -------------------------------


def test_day_of_month_or_day_of_week_when_neither_starts_with_a_star() -> None:
    schedule = parse("0 0 1 * 1")
    assert schedule.fields.day_or
    # March 2027: the 1st is a Monday; then every Monday, then April 1st (a Thursday).
    assert fire_days("0 0 1 * 1", utc(2027, 3, 1), 6) == [
        "Mon 2027-03-08",
        "Mon 2027-03-15",
        "Mon 2027-03-22",
        "Mon 2027-03-29",
        "Thu 2027-04-01",
        "Mon 2027-04-05",
    ]


def test_day_of_month_and_day_of_week_when_one_starts_with_a_star() -> None:
    schedule = parse("0 0 */2 * 1")
    assert not schedule.fields.day_or
    # Odd days that are Mondays.
    assert fire_days("0 0 */2 * 1", utc(2027, 3, 1), 4) == [
        "Mon 2027-03-15",
        "Mon 2027-03-29",
        "Mon 2027-04-05",
        "Mon 2027-04-19",
    ]


def test_a_star_anywhere_at_the_start_of_the_field_means_and() -> None:
    # '*/1' selects every day just like '1-31', but only '*/1' switches to AND.
    assert fire_days("0 0 */1 * 1", utc(2027, 3, 1), 2) == ["Mon 2027-03-08", "Mon 2027-03-15"]
    assert fire_days("0 0 1-31 * 1", utc(2027, 3, 1), 2) == ["Tue 2027-03-02", "Wed 2027-03-03"]
    # The 1st, when it is a Sunday, Tuesday, Thursday or Saturday.
    assert fire_days("0 0 1 * */2", utc(2027, 3, 1), 2) == ["Thu 2027-04-01", "Sat 2027-05-01"]


def test_monday_to_friday() -> None:
    assert fire_days("0 9 * * 1-5", utc(2027, 3, 5, 10), 3) == [
        "Mon 2027-03-08",
        "Tue 2027-03-09",
        "Wed 2027-03-10",
    ]
    assert fire_days("0 9 * * MON-FRI", utc(2027, 3, 5, 10), 3) == fire_days(
        "0 9 * * 1-5", utc(2027, 3, 5, 10), 3
    )


# --- expressions that can never fire --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 30 2 *", "this expression can never fire: February has at most 29 days"),
        ("0 0 31 2 *", "this expression can never fire: February has at most 29 days"),
        (
            "0 0 31 4,6,9,11 *",
            "this expression can never fire: "
            "April, June, September and November have at most 30 days",
        ),
        (
            "0 0 31 2,4 *",
            "this expression can never fire: "
            "February has at most 29 days and April has at most 30 days",
        ),
        ("0 0 30-31 FEB */2", "this expression can never fire: February has at most 29 days"),
    ],
)
def test_never_firing_expressions_are_rejected(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse(expression)
    assert str(caught.value) == message
    assert caught.value.field is None


def test_near_misses_are_valid() -> None:
    # OR: Mondays in February (and the 30th of a February, which never comes).
    assert fire_days("0 0 30 2 1", utc(2027, 1, 1), 3) == [
        "Mon 2027-02-01",
        "Mon 2027-02-08",
        "Mon 2027-02-15",
    ]
    # Leap days.
    assert parse("0 0 29 2 *").fire_times(utc(2027, 1, 1), 2) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
    ]
    assert parse("0 0 29 2 *").next_after(utc(2097, 1, 1)) == utc(2104, 2, 29)  # 2100 is no leap
    # Some of the months are long enough.
    assert parse("0 0 31 4,5 *").next_after(utc(2027, 1, 1)) == utc(2027, 5, 31)
    assert parse("0 0 30 2,4 *").next_after(utc(2027, 1, 1)) == utc(2027, 4, 30)
    # A leap day on one weekday: 40 years apart at worst, inside cronsim's 50-year search.
    assert parse("0 0 29 2 */7").fire_times(utc(2080, 1, 1), 2) == [
        utc(2088, 2, 29),
        utc(2128, 2, 29),
    ]
