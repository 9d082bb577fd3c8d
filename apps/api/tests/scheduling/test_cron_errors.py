"""What the cron engine says when it refuses an expression or a time zone: which field,
and what to fix."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from app.scheduling.cron import (
    CronError,
    parse,
    parse_timezone,
)
from tests.helpers.cron import NEW_YORK, utc

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
