"""The schedules page's 30-day calendar: the fires every enabled schedule will make, and
where one is due while another's run would still be going (an overlap, settled by the
later schedule's overlap policy). Pure: the page passes in the schedules, the time and the
lengths of recent runs.

How long a run takes is not known in advance, so it is estimated from the organization's
recent completed runs (the median, which one slow run does not skew), and the page says
which estimate it used. Fires follow the engine's own rules (`Timing`: cron, jitter
offset, starts_at/ends_at), so the calendar shows what will happen, not a guess of it.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.scheduling.settings import Timing
from app.tables import OverlapPolicy

DAYS = 30
FIRES_SHOWN = 100
"""Fires of one schedule placed on the calendar; the rest are counted ("and N more")."""
FIRES_COUNTED = 1000
"""Beyond this many fires of one schedule in the window, the count says "more than"."""
DEFAULT_RUN_LENGTH = timedelta(minutes=30)
RUNS_IN_ESTIMATE = 20
"""The median is of at most this many of the latest completed runs."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """How long a schedule's run is taken to last, and what that is based on (in words)."""

    length: timedelta
    basis: str


@dataclass(frozen=True, slots=True)
class CalendarSchedule:
    """What the calendar needs of one enabled schedule."""

    id: uuid.UUID
    name: str
    timing: Timing
    policy: OverlapPolicy
    remaining_runs: int | None = None
    color: int = 0


@dataclass(frozen=True, slots=True)
class Fire:
    """One upcoming fire: `at` is when it happens (the cron time `due` plus the jitter)."""

    schedule_id: uuid.UUID
    name: str
    at: datetime
    due: datetime
    policy: OverlapPolicy = OverlapPolicy.SKIP
    color: int = 0


@dataclass(frozen=True, slots=True)
class Overlap:
    """A fire (`second`) due while the run of `first` would still be going (from `started`
    until about `ends`); `outcome` is what the second's policy makes of it: `skipped`,
    `queued` or `replaced` (the first run cancelled)."""

    first: Fire
    second: Fire
    started: datetime
    ends: datetime
    outcome: str

    @property
    def same_schedule(self) -> bool:
        """Whether the run still going is the same schedule's previous one."""
        return self.first.schedule_id == self.second.schedule_id


@dataclass(slots=True)
class Upcoming:
    """A schedule's fires in the window: those shown, how many more, and why they end."""

    schedule: CalendarSchedule
    fires: list[Fire] = field(default_factory=list)
    more: int = 0
    more_is_lower_bound: bool = False
    stops_after_remaining: bool = False


@dataclass(frozen=True, slots=True)
class Day:
    """One column of the strip: a date in the calendar's zone and its fires, in order."""

    date: date
    fires: list[Fire]


def run_length_estimates(
    schedules: Iterable[tuple[uuid.UUID, uuid.UUID | None, str | None]],
    recent_runs: Sequence[tuple[uuid.UUID | None, timedelta]],
    *,
    default: timedelta = DEFAULT_RUN_LENGTH,
) -> dict[uuid.UUID, Estimate]:
    """The run length of each schedule (id, preset id, preset name): the median of its
    preset's latest completed runs, else of all the organization's, else `default`.
    `recent_runs` are (preset id, length), newest first."""
    overall = [length for _, length in recent_runs[:RUNS_IN_ESTIMATE]]
    estimates: dict[uuid.UUID, Estimate] = {}
    for schedule_id, preset_id, preset_name in schedules:
        own = [length for preset, length in recent_runs if preset == preset_id and preset]
        own = own[:RUNS_IN_ESTIMATE]
        if own:
            basis = f"the median of the last {_runs(len(own))} of preset {preset_name or '?'}"
            estimates[schedule_id] = Estimate(_median(own), basis)
        elif overall:
            basis = (
                f"no completed run of its preset yet: the median of the organization's last "
                f"{_runs(len(overall))}"
            )
            estimates[schedule_id] = Estimate(_median(overall), basis)
        else:
            estimates[schedule_id] = Estimate(default, "no completed run yet: a default")
    return estimates


def _runs(count: int) -> str:
    return "completed run" if count == 1 else f"{count} completed runs"


def _median(lengths: list[timedelta]) -> timedelta:
    return timedelta(seconds=round(statistics.median(x.total_seconds() for x in lengths)))


def upcoming_fires(
    schedule: CalendarSchedule,
    start: datetime,
    end: datetime,
    *,
    shown: int = FIRES_SHOWN,
    counted: int = FIRES_COUNTED,
) -> Upcoming:
    """The schedule's fires after `start` and before `end`: the first `shown`, and how many
    more (counting stops at `counted`). A schedule with `remaining_runs` disables itself
    after that many runs, so no fire past them is shown (a skipped fire would not count
    down: this is the earliest it can stop)."""
    result = Upcoming(schedule)
    limit = counted if schedule.remaining_runs is None else min(counted, schedule.remaining_runs)
    after = start
    total = 0
    while True:
        due = schedule.timing.next_due(after)
        at = schedule.timing.fire_time(due)
        if due is None or at is None or at >= end:
            return result
        if total >= limit:
            if schedule.remaining_runs is not None and total >= schedule.remaining_runs:
                result.stops_after_remaining = True
            else:
                result.more_is_lower_bound = True
            return result
        total += 1
        if len(result.fires) < shown:
            result.fires.append(
                Fire(schedule.id, schedule.name, at, due, schedule.policy, schedule.color)
            )
        else:
            result.more += 1
        after = at


def find_overlaps(fires: Iterable[Fire], lengths: Mapping[uuid.UUID, timedelta]) -> list[Overlap]:
    """Every fire due while another run would still be going, with what its policy does.

    One run goes at a time (per organization), so the fires are played in order: a fire
    while nothing runs starts a run of its schedule's estimated length (`lengths`); a fire
    while a run goes is an overlap, and its policy decides: `skip` leaves the run going;
    `buffer_one` queues its run to start when the going one ends (at most one queued per
    schedule; a second is skipped); `cancel_other` cancels the going run and starts its own.
    """
    ordered = sorted(fires, key=lambda fire: (fire.at, fire.name, str(fire.schedule_id)))
    found: list[Overlap] = []
    going: tuple[Fire, datetime, datetime] | None = None  # fire, started, ends
    queue: list[Fire] = []
    for fire in ordered:
        while going is not None and going[2] <= fire.at and queue:
            waiting = queue.pop(0)
            going = (waiting, going[2], going[2] + lengths[waiting.schedule_id])
        if going is None or going[2] <= fire.at:
            going = (fire, fire.at, fire.at + lengths[fire.schedule_id])
            continue
        first, started, ends = going
        if fire.policy is OverlapPolicy.CANCEL_OTHER:
            outcome = "replaced"
            going = (fire, fire.at, fire.at + lengths[fire.schedule_id])
        elif fire.policy is OverlapPolicy.BUFFER_ONE and all(
            waiting.schedule_id != fire.schedule_id for waiting in queue
        ):
            outcome = "queued"
            queue.append(fire)
        else:
            outcome = "skipped"
        found.append(Overlap(first, fire, started, ends, outcome))
    return found


def window(now: datetime, zone: ZoneInfo, days: int = DAYS) -> tuple[list[date], datetime]:
    """The calendar's days in `zone` (today first) and the end of the last one."""
    today = now.astimezone(zone).date()
    dates = [today + timedelta(days=offset) for offset in range(days)]
    end = datetime.combine(today + timedelta(days=days), time(0), tzinfo=zone)
    return dates, end


def by_day(fires: Iterable[Fire], dates: Sequence[date], zone: ZoneInfo) -> list[Day]:
    """The fires in one column per date (in `zone`), each column in time order."""
    columns: dict[date, list[Fire]] = {day: [] for day in dates}
    for fire in fires:
        column = columns.get(fire.at.astimezone(zone).date())
        if column is not None:
            column.append(fire)
    return [
        Day(day, sorted(column, key=lambda fire: (fire.at, fire.name)))
        for day, column in columns.items()
    ]
