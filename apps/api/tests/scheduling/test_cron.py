"""The cron engine: grammar, error messages, Vixie semantics, DST, and agreement with cronsim."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.scheduling.cron import (
    MACROS,
    CronError,
    CronFields,
    CronSchedule,
    parse,
    parse_timezone,
)

NEW_YORK = ZoneInfo("America/New_York")
PROPERTY = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local_isos(schedule: CronSchedule, after: datetime, count: int) -> list[str]:
    return [fire.isoformat() for fire in schedule.fire_times(after, count)]


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


# --- error messages -------------------------------------------------------------------------------

FIELDS_HINT = "expected 5 fields (minute hour day-of-month month day-of-week)"
MACRO_HINT = "use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"


@pytest.mark.parametrize(
    ("expression", "field", "message"),
    [
        # the line as a whole
        (
            "",
            None,
            "the cron expression is empty: write five fields (minute hour day-of-month month "
            "day-of-week), e.g. '0 9 * * 1-5', or a macro such as '@daily'",
        ),
        (
            " \t ",
            None,
            "the cron expression is empty: write five fields (minute hour day-of-month month "
            "day-of-week), e.g. '0 9 * * 1-5', or a macro such as '@daily'",
        ),
        ("0 0 * *\n* *", None, "the cron expression must be a single line"),
        (
            "0\u00a00 * * *",
            None,
            "unexpected U+00A0 NO-BREAK SPACE in the cron expression; "
            "separate fields with ordinary spaces",
        ),
        (
            "0 0 * * 1\u200b",
            None,
            "unexpected U+200B ZERO WIDTH SPACE in the cron expression; "
            "separate fields with ordinary spaces",
        ),
        (
            "0 " * 600,
            None,
            "the cron expression is too long: 1199 characters, at most 1000",
        ),
        # field counts
        ("0 0 0 * * *", None, f"{FIELDS_HINT}, got 6: seconds are not supported"),
        ("*/5 * * * * *", None, f"{FIELDS_HINT}, got 6: seconds are not supported"),
        ("0 0 * * * 2027", None, f"{FIELDS_HINT}, got 6: a year field is not supported"),
        (
            "0 0 0 * * * 2027",
            None,
            f"{FIELDS_HINT}, got 7: seconds and year fields are not supported",
        ),
        ("0 0 * *", None, f"{FIELDS_HINT}, got 4"),
        ("0 0 * * * * * *", None, f"{FIELDS_HINT}, got 8"),
        ("daily", None, f"{FIELDS_HINT}, got 1: did you mean '@daily'?"),
        (
            "0 0 * * * /usr/bin/backup",
            None,
            f"{FIELDS_HINT}, got 6: write only the schedule, without a command",
        ),
        # macros
        ("@reboot", None, f"'@reboot' is not supported; {MACRO_HINT}"),
        ("@REBOOT", None, f"'@REBOOT' is not supported; {MACRO_HINT}"),
        ("@fortnightly", None, f"'@fortnightly' is not a known macro; {MACRO_HINT}"),
        ("@every 5m", None, f"'@every' is not a known macro; {MACRO_HINT}"),
        ("@daily 0", None, "'@daily' must stand alone, without other fields"),
        # values out of range
        ("60 * * * *", "minute", "minute must be 0-59, got '60'"),
        ("* 24 * * *", "hour", "hour must be 0-23, got '24'"),
        ("0 0 0 * *", "day-of-month", "day-of-month must be 1-31, got '0'"),
        ("0 0 32 * *", "day-of-month", "day-of-month must be 1-31, got '32'"),
        ("0 0 * 0 *", "month", "month must be 1-12 or JAN-DEC, got '0'"),
        ("0 0 * 13 *", "month", "month must be 1-12 or JAN-DEC, got '13'"),
        ("0 0 * * 8", "day-of-week", "day-of-week must be 0-7 or SUN-SAT, got '8'"),
        ("0 0 * * 1-8", "day-of-week", "day-of-week must be 0-7 or SUN-SAT, got '8'"),
        ("-5 * * * *", "minute", "minute must be 0-59, got '-5'"),
        ("a b c d e", "minute", "minute must be 0-59, got 'a'"),
        ("0 0 * * FUN", "day-of-week", "day-of-week must be 0-7 or SUN-SAT, got 'FUN'"),
        ("0 0 * * 1a", "day-of-week", "day-of-week must be 0-7 or SUN-SAT, got '1a'"),
        # names
        (
            "0 0 * * MONDAY",
            "day-of-week",
            "day-of-week names have three letters: write 'MON' instead of 'MONDAY'",
        ),
        (
            "0 0 * April *",
            "month",
            "month names have three letters: write 'Apr' instead of 'April'",
        ),
        (
            "0 0 MON * *",
            "day-of-month",
            "day-of-month must be 1-31, got 'MON' "
            "(names are allowed only in the month and day-of-week fields)",
        ),
        # ranges
        (
            "30-10 * * * *",
            "minute",
            "minute range 30-10 is backwards; write 10-30, or 30-59,0-10 to wrap around",
        ),
        (
            "0 22-2 * * *",
            "hour",
            "hour range 22-2 is backwards; write 2-22, or 22-23,0-2 to wrap around",
        ),
        (
            "0 0 * NOV-FEB *",
            "month",
            "month range NOV-FEB is backwards; write FEB-NOV, or NOV-DEC,JAN-FEB to wrap around",
        ),
        (
            "0 0 * * FRI-MON",
            "day-of-week",
            "day-of-week range FRI-MON is backwards; write MON-FRI, or FRI-SAT,SUN-MON to wrap "
            "around",
        ),
        (
            "0 0 * * SAT-SUN",
            "day-of-week",
            "day-of-week range SAT-SUN is backwards; write SAT-7 (7 is Sunday too)",
        ),
        (
            "0 0 * * 6-0",
            "day-of-week",
            "day-of-week range 6-0 is backwards; write 6-7 (7 is Sunday too)",
        ),
        (
            "0 0 * * 7-2",
            "day-of-week",
            "day-of-week range 7-2 is backwards; write 0-2 (0 is Sunday too)",
        ),
        ("1-2-3 * * * *", "minute", "minute range '1-2-3' has more than one '-'"),
        ("1- * * * *", "minute", "minute range '1-' is missing its end"),
        ("*-5 * * * *", "minute", "'*' must stand alone in minute, got '*-5'"),
        ("** * * * *", "minute", "'*' must stand alone in minute, got '**'"),
        # steps
        ("*/0 * * * *", "minute", "step must be 1 or more, got '0'"),
        ("0-30/00 * * * *", "minute", "step must be 1 or more, got '00'"),
        ("5/15 * * * *", "minute", "a step needs a range or '*', e.g. '5-59/15', got '5/15'"),
        ("0 0 1 JAN/3 *", "month", "a step needs a range or '*', e.g. 'JAN-DEC/3', got 'JAN/3'"),
        ("/5 * * * *", "minute", "a step needs a range or '*', e.g. '*/5', got '/5'"),
        ("*/ * * * *", "minute", "minute step is missing after '/' in '*/'"),
        ("*/2/3 * * * *", "minute", "minute item '*/2/3' has more than one '/'"),
        ("0 0 * * */MON", "day-of-week", "step must be a number, got 'MON'"),
        (
            "*/90 * * * *",
            "minute",
            "minute step must be 1-59, got '90': the step starts over every hour, "
            "so it cannot mean every 90 minutes",
        ),
        (
            "0 */24 * * *",
            "hour",
            "hour step must be 1-23, got '24': the step starts over every day, "
            "so it cannot mean every 24 hours",
        ),
        (
            "5-5/2 * * * *",
            "minute",
            "minute range '5-5' holds a single value, so a step means nothing; write '5'",
        ),
        # lists
        ("1,2, * * * *", "minute", "minute list '1,2,' has an empty item; remove the extra ','"),
        (",1 * * * *", "minute", "minute list ',1' has an empty item; remove the extra ','"),
        (
            "0 0 * * 1,,2",
            "day-of-week",
            "day-of-week list '1,,2' has an empty item; remove the extra ','",
        ),
        # characters
        (
            "\u0665 * * * *",
            "minute",
            "minute must use ASCII digits 0-9, got '\u0665' (U+0665 ARABIC-INDIC DIGIT FIVE)",
        ),
        (
            "0 \uff11 * * *",
            "hour",
            "hour must use ASCII digits 0-9, got '\uff11' (U+FF11 FULLWIDTH DIGIT ONE)",
        ),
        (
            "0 0 \u00e9 * *",
            "day-of-month",
            "unexpected character '\u00e9' (U+00E9 LATIN SMALL LETTER E WITH ACUTE) in "
            "day-of-month",
        ),
        ("0 0 1;2 * *", "day-of-month", "unexpected character ';' in day-of-month"),
        # non-standard extensions
        (
            "0 0 L * *",
            "day-of-month",
            "'L' is not supported in day-of-month (standard cron has no last-day-of-month); "
            "use a fixed day such as 28, or day 1 of the following month",
        ),
        (
            "0 0 l * *",
            "day-of-month",
            "'L' is not supported in day-of-month (standard cron has no last-day-of-month); "
            "use a fixed day such as 28, or day 1 of the following month",
        ),
        (
            "0 0 * * 5L",
            "day-of-week",
            "'L' is not supported in day-of-week (standard cron has no last-weekday-of-month "
            "such as '5L'); use plain weekdays such as 'FRI'",
        ),
        (
            "0 0 LW * *",
            "day-of-month",
            "'LW' is not supported in day-of-month (standard cron has no last weekday of the "
            "month); use fixed days",
        ),
        (
            "0 0 15W * *",
            "day-of-month",
            "'W' is not supported in day-of-month (standard cron has no nearest-weekday); "
            "use a fixed day such as 15",
        ),
        (
            "0 0 * * MON#2",
            "day-of-week",
            "'#' is not supported in day-of-week (standard cron has no nth weekday of the month "
            "such as 'MON#2'); list weekdays with ',' or '-', e.g. 'MON,WED'",
        ),
        (
            "0 0 ? * MON",
            "day-of-month",
            "'?' is not supported in day-of-month (it is Quartz syntax); use '*'",
        ),
        (
            "H * * * *",
            "minute",
            "'H' is not supported in minute (it is Jenkins syntax for a hashed value); "
            "pick a fixed value in 0-59",
        ),
        (
            "H/15 * * * *",
            "minute",
            "'H' is not supported in minute (it is Jenkins syntax for a hashed value); "
            "pick a fixed value in 0-59",
        ),
    ],
)
def test_rejections_say_what_to_fix(expression: str, field: str | None, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse(expression)
    assert str(caught.value) == message
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_names_containing_extension_letters_are_still_names() -> None:
    # L in JUL, W in WED, H in THU must not be mistaken for Quartz or Jenkins syntax.
    assert parse("0 0 * JUL WED,THU").fields.months == {7}
    assert parse("0 0 * JUL WED,THU").fields.days_of_week == {3, 4}


# --- time zones -----------------------------------------------------------------------------------


def test_time_zone_defaults_to_utc() -> None:
    schedule = parse("0 9 * * *")
    assert schedule.timezone == "UTC"
    assert parse_timezone("UTC") == ZoneInfo("UTC")


def test_time_zone_is_kept_as_given() -> None:
    schedule = parse("0 9 * * *", "Europe/Berlin")
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.next_after(utc(2027, 1, 1)) == utc(2027, 1, 1, 8)
    assert parse_timezone("America/New_York") is NEW_YORK


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Mars/Olympus",
            "unknown time zone 'Mars/Olympus': use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'",
        ),
        ("europe/berlin", "unknown time zone 'europe/berlin': did you mean 'Europe/Berlin'?"),
        (
            "",
            "the time zone is empty: use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'",
        ),
        (
            "localtime",
            "unknown time zone 'localtime': use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'",
        ),
        (
            "Factory",
            "unknown time zone 'Factory': use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'",
        ),
        (
            "/etc/passwd",
            "unknown time zone '/etc/passwd': use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'",
        ),
        (
            "../../etc/passwd",
            "unknown time zone '../../etc/passwd': use an IANA name such as 'Europe/Berlin' or "
            "'America/New_York'",
        ),
    ],
)
def test_unknown_time_zones_are_rejected(name: str, message: str) -> None:
    for call in (lambda: parse_timezone(name), lambda: parse("0 0 * * *", name)):
        with pytest.raises(CronError) as caught:
            call()
        assert str(caught.value) == message
        assert caught.value.field == "timezone"


def test_expression_errors_come_before_time_zone_errors() -> None:
    with pytest.raises(CronError) as caught:
        parse("61 * * * *", "Mars/Olympus")
    assert caught.value.field == "minute"


# --- DST ------------------------------------------------------------------------------------------


def test_spring_forward_gap_fires_once_at_the_first_instant_after_it() -> None:
    schedule = parse("30 2 * * *", "America/New_York")
    assert local_isos(schedule, utc(2027, 3, 13, 12), 3) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
        "2027-03-16T02:30:00-04:00",
    ]


def test_several_times_in_the_gap_collapse_into_one_firing() -> None:
    schedule = parse("0,30 2,3 * * *", "America/New_York")
    assert local_isos(schedule, utc(2027, 3, 14, 5), 3) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-14T03:30:00-04:00",
        "2027-03-15T02:00:00-04:00",
    ]


def test_fall_back_overlap_fires_once_at_the_first_occurrence() -> None:
    schedule = parse("30 1 * * *", "America/New_York")
    assert local_isos(schedule, utc(2027, 11, 6, 12), 3) == [
        "2027-11-07T01:30:00-04:00",
        "2027-11-08T01:30:00-05:00",
        "2027-11-09T01:30:00-05:00",
    ]


def test_next_after_from_inside_the_overlap() -> None:
    schedule = parse("45 1 * * *", "America/New_York")
    first_pass = datetime(2027, 11, 7, 1, 30, tzinfo=NEW_YORK)
    second_pass = datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=NEW_YORK)
    assert schedule.next_after(first_pass) == utc(2027, 11, 7, 5, 45)  # 01:45 EDT
    # 01:45 EDT has passed and 01:45 EST is the same wall time again: tomorrow.
    assert schedule.next_after(second_pass) == utc(2027, 11, 8, 6, 45)
    assert schedule.latest_at_or_before(second_pass) == utc(2027, 11, 7, 5, 45)


def test_wildcard_jobs_follow_elapsed_time() -> None:
    every_half_hour = parse("*/30 * * * *", "America/New_York")
    assert local_isos(every_half_hour, utc(2027, 3, 14, 6), 3) == [
        "2027-03-14T01:30:00-05:00",
        "2027-03-14T03:00:00-04:00",
        "2027-03-14T03:30:00-04:00",
    ]
    assert local_isos(every_half_hour, utc(2027, 11, 7, 5), 4) == [
        "2027-11-07T01:30:00-04:00",
        "2027-11-07T01:00:00-05:00",
        "2027-11-07T01:30:00-05:00",
        "2027-11-07T02:00:00-05:00",
    ]
    hourly = parse("@hourly", "America/New_York")
    assert local_isos(hourly, utc(2027, 11, 7, 4, 30), 3) == [
        "2027-11-07T01:00:00-04:00",
        "2027-11-07T01:00:00-05:00",
        "2027-11-07T02:00:00-05:00",
    ]
    # A star in the minute field is enough: this runs in both passes of 01:xx.
    assert len(parse("*/15 1 * * *", "America/New_York").fire_times(utc(2027, 11, 7), 8)) == 8
    assert parse("*/15 1 * * *", "America/New_York").fire_times(utc(2027, 11, 7), 8)[-1] == (
        datetime(2027, 11, 7, 1, 45, fold=1, tzinfo=NEW_YORK)
    )


def test_half_hour_dst_shift_on_lord_howe_island() -> None:
    # Clocks go from 02:00 to 02:30 on the first Sunday of October, and back on April's.
    assert local_isos(parse("15 2 * * *", "Australia/Lord_Howe"), utc(2027, 10, 2), 2) == [
        "2027-10-03T02:30:00+11:00",
        "2027-10-04T02:15:00+11:00",
    ]
    assert local_isos(parse("45 1 * * *", "Australia/Lord_Howe"), utc(2027, 4, 3), 2) == [
        "2027-04-04T01:45:00+11:00",
        "2027-04-05T01:45:00+10:30",
    ]
    assert local_isos(parse("*/15 1 * * *", "Australia/Lord_Howe"), utc(2027, 4, 3, 14, 20), 4) == [
        "2027-04-04T01:30:00+11:00",
        "2027-04-04T01:45:00+11:00",
        "2027-04-04T01:30:00+10:30",
        "2027-04-04T01:45:00+10:30",
    ]


def test_southern_hemisphere() -> None:
    sydney = "Australia/Sydney"
    assert local_isos(parse("30 2 * * *", sydney), utc(2027, 10, 2), 2) == [
        "2027-10-03T03:00:00+11:00",
        "2027-10-04T02:30:00+11:00",
    ]
    assert local_isos(parse("30 2 * * *", sydney), utc(2027, 4, 3), 2) == [
        "2027-04-04T02:30:00+11:00",
        "2027-04-05T02:30:00+10:00",
    ]


def test_gap_at_midnight() -> None:
    # Chile moves clocks from 24:00 to 01:00: midnight does not exist that day.
    santiago = "America/Santiago"
    assert local_isos(parse("@daily", santiago), utc(2027, 9, 4, 12), 2) == [
        "2027-09-05T01:00:00-03:00",
        "2027-09-06T00:00:00-03:00",
    ]


# --- the API --------------------------------------------------------------------------------------


def test_next_after_is_strictly_after_and_in_utc() -> None:
    schedule = parse("0 9 * * *", "America/New_York")
    fire = schedule.next_after(utc(2027, 6, 1))
    assert fire == utc(2027, 6, 1, 13)
    assert fire.tzinfo is UTC
    assert schedule.next_after(fire) == utc(2027, 6, 2, 13)
    assert schedule.next_after(fire - timedelta(microseconds=1)) == fire
    tokyo = fire.astimezone(ZoneInfo("Asia/Tokyo"))
    assert schedule.next_after(tokyo) == utc(2027, 6, 2, 13)


def test_fire_times() -> None:
    schedule = parse("0 9 * * 1-5", "America/New_York")
    times = schedule.fire_times(utc(2027, 3, 12, 15), 3)
    assert [t.isoformat() for t in times] == [
        "2027-03-15T09:00:00-04:00",
        "2027-03-16T09:00:00-04:00",
        "2027-03-17T09:00:00-04:00",
    ]
    assert all(t.tzinfo is NEW_YORK for t in times)
    assert schedule.fire_times(utc(2027, 3, 12), 0) == []
    assert len(schedule.fire_times(utc(2027, 3, 12), 50)) == 50
    assert (
        parse("@daily").fire_times(utc(2027, 1, 1), 1)[0].isoformat() == "2027-01-02T00:00:00+00:00"
    )
    with pytest.raises(ValueError, match="count must be 0 or more"):
        schedule.fire_times(utc(2027, 3, 12), -1)


def test_latest_at_or_before() -> None:
    schedule = parse("0 0 * * *")
    assert schedule.latest_at_or_before(utc(2027, 1, 1)) == utc(2027, 1, 1)
    assert schedule.latest_at_or_before(utc(2027, 1, 1, 0, 0, 0, 1)) == utc(2027, 1, 1)
    assert schedule.latest_at_or_before(utc(2027, 1, 1) - timedelta(microseconds=1)) == utc(
        2026, 12, 31
    )
    assert parse("0 0 1 1 *").latest_at_or_before(utc(2027, 6, 1)) == utc(2027, 1, 1)
    berlin = parse("0 9 * * *", "Europe/Berlin").latest_at_or_before(utc(2027, 7, 1, 12))
    assert berlin == utc(2027, 7, 1, 7)
    assert berlin is not None
    assert berlin.tzinfo is UTC
    # The gap's stand-in firing counts.
    gap = parse("30 2 * * *", "America/New_York")
    assert gap.latest_at_or_before(utc(2027, 3, 14, 7)) == utc(2027, 3, 14, 7)
    assert gap.latest_at_or_before(utc(2027, 3, 14, 6, 59)) == utc(2027, 3, 13, 7, 30)
    # Nothing before year 4's leap day.
    assert parse("0 0 29 2 *").latest_at_or_before(utc(3, 6, 1)) is None


@pytest.mark.parametrize("naive", [datetime(2027, 1, 1), datetime(2027, 1, 1, 12, 30)])  # noqa: DTZ001
def test_naive_datetimes_are_a_programming_error(naive: datetime) -> None:
    schedule = parse("0 0 * * *")
    for call in (
        lambda: schedule.next_after(naive),
        lambda: schedule.fire_times(naive, 1),
        lambda: schedule.latest_at_or_before(naive),
    ):
        with pytest.raises(ValueError, match="must be an aware datetime") as caught:
            call()
        assert not isinstance(caught.value, CronError)


def test_parse_is_cached_and_schedules_are_values() -> None:
    assert parse("0 9 * * 1-5", "Europe/Berlin") is parse("0 9 * * 1-5", "Europe/Berlin")
    direct = CronSchedule("0  9 * *  1-5", "Europe/Berlin")
    assert direct == parse("0 9 * * 1-5", "Europe/Berlin")
    assert direct.expression == "0 9 * * 1-5"
    assert repr(direct) == "CronSchedule(expression='0 9 * * 1-5', timezone='Europe/Berlin')"
    with pytest.raises(CronError):
        CronSchedule("0 0 30 2 *")
    assert parse("0 9 * * *") != parse("0 9 * * *", "Europe/Berlin")


def test_fields_describe_the_selection() -> None:
    assert parse("*/20 9-10 1,15 */6 MON-WED").fields == CronFields(
        minutes=frozenset({0, 20, 40}),
        hours=frozenset({9, 10}),
        days_of_month=frozenset({1, 15}),
        months=frozenset({1, 7}),
        days_of_week=frozenset({1, 2, 3}),
        day_or=True,
        fixed_time=False,
    )
    assert parse("0 9 1 * 1").fields.day_or
    assert parse("0 9 1 * 1").fields.fixed_time


# --- describe() -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "timezone", "description"),
    [
        ("@monthly", "UTC", "At 00:00 on day 1 of every month (UTC)"),
        ("@yearly", "UTC", "At 00:00 on January 1 (UTC)"),
        ("@weekly", "UTC", "At 00:00 on Sunday (UTC)"),
        ("@daily", "Europe/Berlin", "At 00:00 every day (Europe/Berlin)"),
        ("@hourly", "UTC", "At minute 0 of every hour"),
        ("0 9 * * 1-5", "America/New_York", "At 09:00, Monday through Friday (America/New_York)"),
        (
            "0 9 * * MON-FRI",
            "America/New_York",
            "At 09:00, Monday through Friday (America/New_York)",
        ),
        ("*/15 * * * *", "UTC", "Every 15 minutes"),
        ("*/20 * * * *", "UTC", "Every 20 minutes"),
        ("* * * * *", "UTC", "Every minute"),
        ("5,35 * * * *", "UTC", "At minutes 5 and 35 of every hour"),
        ("*/7 * * * *", "UTC", "At every 7th minute from 0 through 56 of every hour"),
        ("30 9,17 * * *", "UTC", "At 09:30 and 17:30 every day (UTC)"),
        ("0 */2 * * *", "UTC", "At minute 0 of every 2nd hour (UTC)"),
        ("*/10 9-17 * * *", "UTC", "Every 10 minutes from 09:00 through 17:59 (UTC)"),
        (
            "0 9-17 * * 1-5",
            "UTC",
            "At minute 0 of every hour from 09:00 through 17:59, Monday through Friday (UTC)",
        ),
        ("5 4 * * SUN", "UTC", "At 04:05 on Sunday (UTC)"),
        ("0 0 * * 1,3,5", "UTC", "At 00:00 on Monday, Wednesday and Friday (UTC)"),
        ("0 0 * * 5-7", "UTC", "At 00:00, Friday through Sunday (UTC)"),
        ("0 0 * * 0-4", "UTC", "At 00:00, Sunday through Thursday (UTC)"),
        ("0 0 1,15 * *", "UTC", "At 00:00 on days 1 and 15 of every month (UTC)"),
        ("0 0 */2 * *", "UTC", "At 00:00 on odd-numbered days of every month (UTC)"),
        ("0 0 29 2 *", "UTC", "At 00:00 on February 29 (UTC)"),
        ("0 12 1 1-3 *", "UTC", "At 12:00 on day 1 of the month in January through March (UTC)"),
        ("0 0 * 1,7 *", "UTC", "At 00:00 every day in January and July (UTC)"),
        ("0 0 1 * 1", "UTC", "At 00:00 on day 1 of every month and on every Monday (UTC)"),
        (
            "0 0 */2 * 1",
            "UTC",
            "At 00:00 on odd-numbered days of every month, but only on Monday (UTC)",
        ),
        ("0 0 1-31 * 1", "UTC", "At 00:00 every day (UTC)"),
        (
            "23 0-20/2 * * *",
            "UTC",
            "At minute 23 past hours 0, 2, 4, 6, 8, 10, 12, 14, 16, 18 and 20 (UTC)",
        ),
    ],
)
def test_describe(expression: str, timezone: str, description: str) -> None:
    assert parse(expression, timezone).describe() == description


# --- cronsim: what it accepts beyond our grammar, and that we agree where we both accept ----------


@pytest.mark.parametrize(
    "expression",
    ["0 0 0 * * *", "0 0 L * *", "0 0 LW * *", "0 0 * * 5L", "0 0 * * MON#2", "5/15 * * * *"],
)
def test_cronsim_accepts_more_than_standard_cron(expression: str) -> None:
    CronSim(expression, utc(2027, 1, 1))
    with pytest.raises(CronError):
        parse(expression)


def test_cronsim_reads_a_single_value_range_with_a_step_unlike_vixie() -> None:
    # Vixie cron: 5-5/2 is minute 5 alone. cronsim: 5, 7, 9, ... - so we reject it.
    assert next(CronSim("5-5/2 * * * *", utc(2027, 1, 1, 0, 5))) == utc(2027, 1, 1, 0, 7)
    with pytest.raises(CronError, match="holds a single value"):
        parse("5-5/2 * * * *")


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
