"""Fire times of cron jobs that follow elapsed time (a wildcard minute or hour) in a zone with
DST. cronsim steps such a job through local time in whole hours and whole minutes, which skips
fire times when the UTC offset changes by a part of an hour (Lord Howe Island's 30-minute DST).
Elapsed time means "every instant whose wall-clock time matches", so these fire times are
computed between transitions, each stretch at its own fixed UTC offset."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from cronsim import CronSim

__all__ = ["elapsed_forward", "elapsed_latest"]

_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


@functools.cache
def _fixed_zone(offset: timedelta) -> timezone:
    return timezone(offset)


def _offset(moment: datetime, zone: tzinfo) -> timedelta | None:
    return moment.astimezone(zone).utcoffset()


def _offset_change(zone: tzinfo, start: datetime, stop: datetime) -> datetime | None:
    """The first whole second from `start` towards `stop` (either way, `stop` included) whose
    UTC offset differs from `start`'s, or None; both must be whole seconds."""
    offset = _offset(start, zone)
    forward = stop >= start
    near = start
    while True:  # a day at a time, so that a pair of transitions cannot hide each other
        far = near + _DAY if forward else near - _DAY
        if (far > stop) if forward else (far < stop):
            far = stop
        if _offset(far, zone) != offset:
            break
        if far == stop:
            return None
        near = far
    while abs(far - near) > _SECOND:  # offset(near) is start's, offset(far) is not
        middle = near + timedelta(seconds=int((far - near).total_seconds() / 2))
        if _offset(middle, zone) == offset:
            near = middle
        else:
            far = middle
    return far


def elapsed_forward(engine: str, zone: tzinfo, after: datetime) -> Iterator[datetime]:
    """Fire times of the cronsim expression `engine` strictly after `after`, as aware UTC."""
    cursor = after
    while True:
        probe = cursor.replace(microsecond=0) + _SECOND  # cronsim's first candidate
        offset = _offset(probe, zone)
        assert offset is not None
        fire = next(CronSim(engine, cursor.astimezone(_fixed_zone(offset))), None)
        if fire is None:
            return
        instant = fire.astimezone(UTC)
        change = _offset_change(zone, probe, instant)
        if change is None:
            yield instant
            cursor = instant
        else:
            cursor = change - _SECOND  # go on from the transition, at the new offset


def elapsed_latest(engine: str, zone: tzinfo, start: datetime) -> datetime | None:
    """The latest fire time of `engine` strictly before `start`, as aware UTC, or None."""
    while True:
        probe = start - _SECOND  # cronsim's first candidate going back
        offset = _offset(probe, zone)
        assert offset is not None
        backward = CronSim(engine, start.astimezone(_fixed_zone(offset)), reverse=True)
        fire = next(backward, None)
        if fire is None:
            return None
        instant = fire.astimezone(UTC)
        change = _offset_change(zone, probe, instant)
        if change is None:
            return instant
        start = change + _SECOND  # go on from the transition, at the old offset
