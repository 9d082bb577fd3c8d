"""The cron engine across DST changes: a time in the spring-forward gap fires once at the
first instant after it, a time in the fall-back overlap once at its first occurrence, and
jobs that run every few minutes or hours follow elapsed time."""

from __future__ import annotations

from datetime import datetime

from app.scheduling.cron import (
    CronSchedule,
    parse,
)
from tests.helpers.cron import NEW_YORK, utc


def local_isos(schedule: CronSchedule, after: datetime, count: int) -> list[str]:
    return [fire.isoformat() for fire in schedule.fire_times(after, count)]


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
