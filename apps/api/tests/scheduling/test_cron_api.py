"""The cron engine's API: next_after, fire_times, latest_at_or_before, aware datetimes only,
parsed schedules as cached values, and describe() in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.scheduling.cron import (
    CronError,
    CronFields,
    CronSchedule,
    parse,
)
from tests.helpers.cron import NEW_YORK, utc

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
