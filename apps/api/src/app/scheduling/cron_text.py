"""The English describer: the plain-English sentence `CronSchedule.describe()` gives for what a
cron expression selects, and the month and weekday names and word lists it is written with."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.scheduling.cron import CronFields

__all__ = ["MONTH_NAMES", "describe_fields", "join_words"]

MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def join_words(words: Sequence[str], conjunction: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def describe_fields(fields: CronFields, timezone: str) -> str:
    """When a schedule selecting `fields` in `timezone` fires, as one English sentence."""
    return _Describer(fields).sentence(timezone)


def _ordinal(number: int) -> str:
    suffixes = {1: "st", 2: "nd", 3: "rd"}
    suffix = "th" if 10 <= number % 100 <= 20 else suffixes.get(number % 10, "th")
    return f"{number}{suffix}"


def _every(values: Sequence[int], period: int) -> int | None:
    """n when values are exactly 0, n, 2n, ... and n divides the period (as '*/n' writes them)."""
    if len(values) < 2:
        return None
    step = values[1] - values[0]
    if period % step or list(values) != list(range(0, period, step)):
        return None
    return step


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs of values, in the order given."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _list(values: Sequence[int], show: Callable[[int], str], conjunction: str = "and") -> str:
    """'1 through 5, 10 and 12' - runs of three or more values become ranges."""
    words: list[str] = []
    for first, last in _runs(values):
        if last - first >= 2:
            words.append(f"{show(first)} through {show(last)}")
        else:
            words.extend(show(value) for value in range(first, last + 1))
    return join_words(words, conjunction)


def _progression(values: Sequence[int]) -> tuple[int, int, int] | None:
    """(first, step, last) when values are four or more evenly spaced, gapped numbers."""
    if len(values) < 4 or values[1] - values[0] < 2:
        return None
    step = values[1] - values[0]
    if any(b - a != step for a, b in itertools.pairwise(values)):
        return None
    return values[0], step, values[-1]


class _Describer:
    """Builds describe()'s sentence from the selected field values."""

    def __init__(self, fields: CronFields) -> None:
        self.minutes = sorted(fields.minutes)
        self.hours = sorted(fields.hours)
        self.months = sorted(fields.months)
        days, weekdays = sorted(fields.days_of_month), sorted(fields.days_of_week)
        all_days, all_weekdays = len(days) == 31, len(weekdays) == 7
        if fields.day_or and (all_days or all_weekdays):
            all_days = all_weekdays = True  # either one matching every day is every day
        self.days = None if all_days else days
        self.weekdays = None if all_weekdays else weekdays
        self.day_or = fields.day_or

    def sentence(self, timezone: str) -> str:
        clock = len(self.minutes) * len(self.hours) <= 6
        text = self._time(clock) + self._days(clock) + self._months()
        every_day = self.days is None and self.weekdays is None
        if clock or len(self.hours) < 24 or not every_day or len(self.months) < 12:
            text += f" ({timezone})"
        return text

    def _time(self, clock: bool) -> str:
        minutes, hours = self.minutes, self.hours
        if clock:
            return "At " + join_words([f"{h:02}:{m:02}" for h in hours for m in minutes])
        progression = _progression(minutes)
        every_n = _every(minutes, 60)
        every = len(minutes) == 60 or every_n is not None
        if len(minutes) == 60:
            text = "Every minute"
        elif every_n is not None:
            text = f"Every {every_n} minutes"
        elif len(minutes) == 1:
            text = f"At minute {minutes[0]}"
        elif progression:
            first, step, last = progression
            text = f"At every {_ordinal(step)} minute from {first} through {last}"
        else:
            text = f"At minutes {_list(minutes, str)}"
        if len(hours) == 24:
            return text if every else f"{text} of every hour"
        runs = _runs(hours)
        if len(runs) == 1:
            first, last = runs[0]
            lead = "" if every else " of every hour"
            return f"{text}{lead} from {first:02}:00 through {last:02}:59"
        every_hours = _every(hours, 24)
        if every_hours is not None:
            return f"{text} {'during' if every else 'of'} every {_ordinal(every_hours)} hour"
        return f"{text} {'during' if every else 'past'} hours {_list(hours, str)}"

    def _weekdays(self, conjunction: str) -> tuple[str, bool]:
        """The weekdays as words, and whether they form a single run."""
        assert self.weekdays is not None
        monday_first = sorted(self.weekdays, key=lambda day: (day + 6) % 7)
        # Render in the rotation with fewer runs: FRI-SUN reads better Monday-first,
        # SUN-THU Sunday-first.
        best = min(
            (monday_first, self.weekdays),
            key=lambda order: len(_runs([(d - order[0]) % 7 for d in order])),
        )
        offsets = [(day - best[0]) % 7 for day in best]

        def show(offset: int) -> str:
            return _DAY_NAMES[(offset + best[0]) % 7]

        single_run = len(_runs(offsets)) == 1 and len(offsets) >= 3
        return _list(offsets, show, conjunction), single_run

    def _days_of_month(self) -> str:
        assert self.days is not None
        of = "of every month" if len(self.months) == 12 else "of the month"
        days = self.days
        if len(days) == 1:
            return f"on day {days[0]} {of}"
        if days == list(range(1, 32, 2)):
            return f"on odd-numbered days {of}"
        if days == list(range(2, 31, 2)):
            return f"on even-numbered days {of}"
        progression = _progression(days)
        if progression:
            first, step, last = progression
            return f"on every {_ordinal(step)} day {of} from day {first} through {last}"
        return f"on days {_list(days, str)} {of}"

    def _days(self, clock: bool) -> str:
        if self.days is None and self.weekdays is None:
            return " every day" if clock else ""
        if self.days is None:
            weekdays, single_run = self._weekdays("and")
            return f", {weekdays}" if single_run else f" on {weekdays}"
        if self.weekdays is None:
            if len(self.days) == 1 and len(self.months) == 1:
                return f" on {MONTH_NAMES[self.months[0] - 1]} {self.days[0]}"
            return " " + self._days_of_month()
        if self.day_or:
            every = "every " if len(self.weekdays) == 1 else ""
            return f" {self._days_of_month()} and on {every}{self._weekdays('and')[0]}"
        return f" {self._days_of_month()}, but only on {self._weekdays('or')[0]}"

    def _months(self) -> str:
        if len(self.months) == 12:
            return ""
        if (
            self.days is not None
            and self.weekdays is None
            and len(self.days) == 1 == len(self.months)
        ):
            return ""  # already said: "on January 1"
        return " in " + _list(self.months, lambda month: MONTH_NAMES[month - 1])
