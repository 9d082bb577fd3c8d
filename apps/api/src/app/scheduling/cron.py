"""The one cron engine: a strict Debian/Vixie-cron parser in front of cronsim, which computes
fire times."""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

__all__ = [
    "MACROS",
    "CronError",
    "CronFields",
    "CronSchedule",
    "parse",
    "parse_timezone",
]

MAX_EXPRESSION_LENGTH = 1000

_FIELDS_HINT = "minute hour day-of-month month day-of-week"

#: The macros Vixie cron knows (except ``@reboot``), as the five fields they stand for.
MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MACRO_LIST = ", ".join(MACROS)

_MONTH_ABBRS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_ABBRS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_NAMES = (
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
# The most days each month can have (February: leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# Host files, not zone names; and "Factory", tzdata's placeholder for "no zone set yet".
_ZONES_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})
_ZONE_EXAMPLES = "use an IANA name such as 'Europe/Berlin' or 'America/New_York'"

_ASCII_DIGITS = frozenset("0123456789")
_FIELD_CHARS = frozenset("0123456789*,-/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_YEAR_FIELD = re.compile(r"(19|20|21)\d\d([-,/]\d{1,4})*")


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says what to fix."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one of the five fields is written and what it may hold."""

    name: str
    low: int
    high: int
    allowed: str  # as said in messages: "0-59", "1-12 or JAN-DEC"
    names: tuple[str, ...] = ()
    names_start: int = 0  # the value of names[0]
    period: str = ""  # the step restarts every <period>
    unit: str = ""  # so '*/90' cannot mean every 90 <unit>


_SPECS = (
    _Spec("minute", 0, 59, "0-59", period="hour", unit="minutes"),
    _Spec("hour", 0, 23, "0-23", period="day", unit="hours"),
    _Spec("day-of-month", 1, 31, "1-31", period="month", unit="days"),
    _Spec("month", 1, 12, "1-12 or JAN-DEC", _MONTH_ABBRS, 1, period="year", unit="months"),
    _Spec("day-of-week", 0, 7, "0-7 or SUN-SAT", _DAY_ABBRS, 0, period="week", unit="days"),
)

# Quartz, Jenkins and other non-standard letters, found as stand-alone tokens so that names such
# as JUL, WED and THU never match.
_NON_STANDARD = (
    (re.compile(r"(?<![A-Z])LW(?![A-Z])"), "LW"),
    (re.compile(r"(?<![A-Z])L(?![A-Z])"), "L"),
    (re.compile(r"(?<![A-Z])W(?![A-Z])"), "W"),
    (re.compile(r"(?<![A-Z])H(?![A-Z])"), "H"),
)


def _non_standard_message(letter: str, spec: _Spec) -> str:
    """The message for a Quartz or Jenkins extension found in a field."""
    if letter == "H":
        return (
            f"'H' is not supported in {spec.name} (it is Jenkins syntax for a hashed value); "
            f"pick a fixed value in {spec.low}-{spec.high}"
        )
    if letter == "LW":
        return (
            f"'LW' is not supported in {spec.name} (standard cron has no last weekday of the "
            "month); use fixed days"
        )
    if letter == "L" and spec.name == "day-of-month":
        return (
            "'L' is not supported in day-of-month (standard cron has no last-day-of-month); "
            "use a fixed day such as 28, or day 1 of the following month"
        )
    if letter == "L" and spec.name == "day-of-week":
        return (
            "'L' is not supported in day-of-week (standard cron has no last-weekday-of-month "
            "such as '5L'); use plain weekdays such as 'FRI'"
        )
    if letter == "W" and spec.name == "day-of-month":
        return (
            "'W' is not supported in day-of-month (standard cron has no nearest-weekday); "
            "use a fixed day such as 15"
        )
    return f"'{letter}' is not supported in {spec.name}; {spec.name} must be {spec.allowed}"


def _describe_char(char: str) -> str:
    """A character as a message shows it: itself, and its code point when not plain ASCII."""
    if char.isascii() and char.isprintable():
        return f"'{char}'"
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"'{char}' ({code} {name})" if name and char.isprintable() else f"{code} {name}".strip()


def _check_characters(text: str, spec: _Spec) -> None:
    """Reject characters no cron field can hold, saying which and why."""
    for char in text:
        if char in _FIELD_CHARS:
            continue
        if char == "?":
            raise CronError(
                f"'?' is not supported in {spec.name} (it is Quartz syntax); use '*'",
                field=spec.name,
            )
        if char == "#":
            raise CronError(
                f"'#' is not supported in {spec.name} (standard cron has no nth weekday of the "
                "month such as 'MON#2'); list weekdays with ',' or '-', e.g. 'MON,WED'",
                field=spec.name,
            )
        if char.isdigit() or unicodedata.digit(char, None) is not None:
            raise CronError(
                f"{spec.name} must use ASCII digits 0-9, got {_describe_char(char)}",
                field=spec.name,
            )
        raise CronError(
            f"unexpected character {_describe_char(char)} in {spec.name}", field=spec.name
        )


def _value(token: str, spec: _Spec) -> int:
    """One number or name of a field."""
    if token and set(token) <= _ASCII_DIGITS:
        number = int(token)
        if spec.low <= number <= spec.high:
            return number
    elif token.isalpha() and spec.names:
        upper = token.upper()
        if upper in spec.names:
            return spec.names.index(upper) + spec.names_start
        if upper[:3] in spec.names:
            raise CronError(
                f"{spec.name} names have three letters: write '{token[:3]}' instead of '{token}'",
                field=spec.name,
            )
    elif token.isalpha() and token.upper()[:3] in _MONTH_ABBRS + _DAY_ABBRS:
        raise CronError(
            f"{spec.name} must be {spec.allowed}, got '{token}' "
            "(names are allowed only in the month and day-of-week fields)",
            field=spec.name,
        )
    raise CronError(f"{spec.name} must be {spec.allowed}, got '{token}'", field=spec.name)


def _step(text: str, item: str, spec: _Spec) -> int:
    """The number after '/'."""
    if text == "":
        raise CronError(f"{spec.name} step is missing after '/' in '{item}'", field=spec.name)
    if "/" in text:
        raise CronError(f"{spec.name} item '{item}' has more than one '/'", field=spec.name)
    if not set(text) <= _ASCII_DIGITS:
        raise CronError(f"step must be a number, got '{text}'", field=spec.name)
    step = int(text)
    if step == 0:
        raise CronError(f"step must be 1 or more, got '{text}'", field=spec.name)
    span = spec.high - spec.low
    if step > span:
        raise CronError(
            f"{spec.name} step must be 1-{span}, got '{text}': the step starts over every "
            f"{spec.period}, so it cannot mean every {step} {spec.unit}",
            field=spec.name,
        )
    return step


def _run(low: str, high: str) -> str:
    return low if low == high else f"{low}-{high}"


def _backwards(base: str, start: int, end: int, first: str, last: str, spec: _Spec) -> CronError:
    """The message for a range such as 30-10, with both ways to fix it."""
    message = f"{spec.name} range {base} is backwards; "
    if spec.name == "day-of-week" and end == 0:
        return CronError(message + f"write {first}-7 (7 is Sunday too)", field=spec.name)
    if spec.name == "day-of-week" and start == 7:
        return CronError(message + f"write 0-{last} (0 is Sunday too)", field=spec.name)
    named = first.isalpha()
    top = spec.high - 1 if spec.name == "day-of-week" else spec.high  # SAT, not 7
    bottom = spec.low

    def show(value: int) -> str:
        return spec.names[value - spec.names_start] if named else str(value)

    wrap = f"{_run(first, show(top))},{_run(show(bottom), last)}"
    return CronError(message + f"write {last}-{first}, or {wrap} to wrap around", field=spec.name)


def _parse_item(item: str, spec: _Spec) -> set[int]:
    """One comma-separated item: '*', a value or a range, each optionally with '/step'."""
    base, slash, step_text = item.partition("/")
    step = _step(step_text, item, spec) if slash else 1
    if base == "*":
        return set(range(spec.low, spec.high + 1, step))
    if "*" in base:
        raise CronError(f"'*' must stand alone in {spec.name}, got '{item}'", field=spec.name)
    if base == "":
        raise CronError(
            f"a step needs a range or '*', e.g. '*/{step_text}', got '{item}'", field=spec.name
        )
    if "-" not in base:
        value = _value(base, spec)
        if slash:
            high = spec.names[-1] if base.isalpha() else str(spec.high)
            raise CronError(
                f"a step needs a range or '*', e.g. '{base}-{high}/{step_text}', got '{item}'",
                field=spec.name,
            )
        return {value}
    first, _, last = base.partition("-")
    if "-" in last:
        raise CronError(f"{spec.name} range '{base}' has more than one '-'", field=spec.name)
    if first == "":
        raise CronError(f"{spec.name} must be {spec.allowed}, got '{base}'", field=spec.name)
    if last == "":
        raise CronError(f"{spec.name} range '{base}' is missing its end", field=spec.name)
    start, end = _value(first, spec), _value(last, spec)
    if end < start:
        raise _backwards(base, start, end, first, last, spec)
    if start == end and slash:
        # cronsim reads 'N-N/S' as 'N/S' (N up to the maximum), Vixie cron as just N.
        raise CronError(
            f"{spec.name} range '{base}' holds a single value, so a step means nothing; "
            f"write '{first}'",
            field=spec.name,
        )
    return set(range(start, end + 1, step))


def _parse_field(text: str, spec: _Spec) -> frozenset[int]:
    """The set of values one field selects."""
    upper = text.upper()
    for pattern, letter in _NON_STANDARD:
        if pattern.search(upper):
            raise CronError(_non_standard_message(letter, spec), field=spec.name)
    _check_characters(text, spec)
    items = text.split(",")
    if "" in items:
        raise CronError(
            f"{spec.name} list '{text}' has an empty item; remove the extra ','", field=spec.name
        )
    values: set[int] = set()
    for item in items:
        values |= _parse_item(item, spec)
    return frozenset(values)


def _join(words: Sequence[str], conjunction: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _never_fires(days: frozenset[int], months: frozenset[int]) -> str | None:
    """Why no month holds any of the days, or None when one does."""
    if any(day <= _MONTH_DAYS[month - 1] for month in months for day in days):
        return None
    by_length: dict[int, list[str]] = {}
    for month in sorted(months):
        by_length.setdefault(_MONTH_DAYS[month - 1], []).append(_MONTH_NAMES[month - 1])
    clauses = [
        f"{_join(names)} {'has' if len(names) == 1 else 'have'} at most {length} days"
        for length, names in sorted(by_length.items())
    ]
    return "this expression can never fire: " + " and ".join(clauses)


@dataclass(frozen=True, slots=True)
class CronFields:
    """What a valid expression selects, in the schedule's local wall-clock time."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0-6, Sunday is 0 (a written 7 is folded into 0)
    day_or: bool  # day-of-month OR day-of-week: neither field starts with '*'
    fixed_time: bool  # neither minute nor hour starts with '*': DST gaps and overlaps apply


def _split_fields(expression: str) -> list[str]:
    """The whitespace-separated fields, after checking the whole line."""
    if not expression:
        raise CronError(
            f"the cron expression is empty: write five fields ({_FIELDS_HINT}), "
            "e.g. '0 9 * * 1-5', or a macro such as '@daily'"
        )
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CronError(
            f"the cron expression is too long: {len(expression)} characters, "
            f"at most {MAX_EXPRESSION_LENGTH}"
        )
    for char in expression:
        if char in "\n\r":
            raise CronError("the cron expression must be a single line")
        if char not in " \t" and (
            char.isspace() or unicodedata.category(char) in {"Cc", "Cf", "Zs", "Zl", "Zp"}
        ):
            raise CronError(
                f"unexpected {_describe_char(char)} in the cron expression; "
                "separate fields with ordinary spaces"
            )
    return expression.split()


def _field_count_error(parts: list[str]) -> CronError:
    """The message for an expression that does not have five fields."""
    count = len(parts)
    message = f"expected 5 fields ({_FIELDS_HINT}), got {count}"
    if count == 1 and f"@{parts[0].lower()}" in MACROS:
        return CronError(f"{message}: did you mean '@{parts[0].lower()}'?")
    if count > 5 and any(part[0] in "/.~" or (len(part) > 3 and part.isalpha()) for part in parts):
        return CronError(f"{message}: write only the schedule, without a command")
    if count == 6:
        if _YEAR_FIELD.fullmatch(parts[5]):
            return CronError(f"{message}: a year field is not supported")
        return CronError(f"{message}: seconds are not supported")
    if count == 7:
        return CronError(f"{message}: seconds and year fields are not supported")
    return CronError(message)


def _parse_expression(expression: str) -> tuple[str, list[str], CronFields]:
    """The normalized expression, its five fields as cronsim reads them, and what they select."""
    parts = _split_fields(expression.strip())
    if parts[0].startswith("@"):
        macro = parts[0].lower()
        if macro not in MACROS:
            verb = "is not supported" if macro == "@reboot" else "is not a known macro"
            raise CronError(f"'{parts[0]}' {verb}; use one of {_MACRO_LIST}")
        if len(parts) > 1:
            raise CronError(f"'{parts[0]}' must stand alone, without other fields")
        fields = MACROS[macro].split()
        normalized = macro
    elif len(parts) != 5:
        raise _field_count_error(parts)
    else:
        fields = parts
        normalized = " ".join(parts)
    minutes, hours, days, months, weekdays = (
        _parse_field(text, spec) for text, spec in zip(fields, _SPECS, strict=True)
    )
    dom_star, dow_star = fields[2].startswith("*"), fields[4].startswith("*")
    if dom_star or dow_star:
        reason = _never_fires(days, months)
        if reason:
            raise CronError(reason)
    selected = CronFields(
        minutes=minutes,
        hours=hours,
        days_of_month=days,
        months=months,
        days_of_week=frozenset(day % 7 for day in weekdays),
        day_or=not (dom_star or dow_star),
        fixed_time=not (fields[0].startswith("*") or fields[1].startswith("*")),
    )
    return normalized, [text.upper() for text in fields], selected


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones() - _ZONES_NOT_IANA)


def time_zone_names() -> list[str]:
    """The IANA time zones a schedule may use, sorted, UTC first."""
    return ["UTC", *sorted(_zone_names() - {"UTC"})]


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    if not name.strip():
        raise CronError(f"the time zone is empty: {_ZONE_EXAMPLES}", field="timezone")
    names = _zone_names()
    if name not in names:
        folded = name.strip().casefold()
        matches = sorted(zone for zone in names if zone.casefold() == folded)
        if matches:
            raise CronError(
                f"unknown time zone '{name}': did you mean '{matches[0]}'?", field="timezone"
            )
        raise CronError(f"unknown time zone '{name}': {_ZONE_EXAMPLES}", field="timezone")
    return ZoneInfo(name)


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA time zone of that exact name; anything else raises CronError."""
    return _zone(name)


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


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {moment.isoformat()}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} {moment.isoformat()} lies outside the calendar in UTC") from None


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated cron expression in an IANA time zone; construct it with `parse`."""

    expression: str
    timezone: str = "UTC"
    fields: CronFields = field(init=False, repr=False, compare=False)
    _engine: str = field(init=False, repr=False, compare=False)
    _zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        normalized, engine_fields, selected = _parse_expression(self.expression)
        zone = parse_timezone(self.timezone)
        engine = " ".join(engine_fields)
        try:  # cronsim reads a superset of our grammar, so this cannot fail; prove it anyway
            CronSim(engine, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as error:  # pragma: no cover - would be a bug in this module
            raise AssertionError(f"cronsim rejects {engine!r}: {error}") from error
        object.__setattr__(self, "expression", normalized)
        object.__setattr__(self, "fields", selected)
        object.__setattr__(self, "_engine", engine)
        # cronsim skips its DST handling only for datetime.UTC, which is also faster.
        object.__setattr__(self, "_zone", UTC if self.timezone == "UTC" else zone)

    @property
    def _follows_elapsed_time(self) -> bool:
        return not self.fields.fixed_time and self._zone is not UTC

    def _forward(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after `after`, strictly increasing, as aware UTC."""
        last = _utc(after, "after")
        try:
            if self._follows_elapsed_time:
                candidates = self._elapsed_forward(last)
            else:
                start = last.astimezone(self._zone)
                candidates = (fire.astimezone(UTC) for fire in CronSim(self._engine, start))
            for instant in candidates:
                # Iterating in local wall time, cronsim may yield a time that is not after
                # `after` when `after` lies in the second pass of a fall-back overlap; that
                # job already ran.
                if instant > last:
                    yield instant
                    last = instant
        except OverflowError:
            return  # the calendar ends with the year 9999: no later fire times

    # cronsim steps a wildcard job through local time in whole hours and whole minutes, which
    # skips fire times when the UTC offset changes by a part of an hour (Lord Howe Island's
    # 30-minute DST). Elapsed time means "every instant whose wall-clock time matches", so such
    # jobs are computed between transitions, each stretch at its own fixed UTC offset.

    def _elapsed_forward(self, after: datetime) -> Iterator[datetime]:
        cursor = after
        while True:
            probe = cursor.replace(microsecond=0) + _SECOND  # cronsim's first candidate
            offset = _offset(probe, self._zone)
            assert offset is not None
            fire = next(CronSim(self._engine, cursor.astimezone(_fixed_zone(offset))), None)
            if fire is None:
                return
            instant = fire.astimezone(UTC)
            change = _offset_change(self._zone, probe, instant)
            if change is None:
                yield instant
                cursor = instant
            else:
                cursor = change - _SECOND  # go on from the transition, at the new offset

    def _elapsed_latest(self, start: datetime) -> datetime | None:
        while True:
            probe = start - _SECOND  # cronsim's first candidate going back
            offset = _offset(probe, self._zone)
            assert offset is not None
            backward = CronSim(self._engine, start.astimezone(_fixed_zone(offset)), reverse=True)
            fire = next(backward, None)
            if fire is None:
                return None
            instant = fire.astimezone(UTC)
            change = _offset_change(self._zone, probe, instant)
            if change is None:
                return instant
            start = change + _SECOND  # go on from the transition, at the old offset

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment`, as aware UTC."""
        for fire in self._forward(moment):
            return fire
        raise RuntimeError(f"{self.expression!r} has no fire time in cronsim's search horizon")

    def fire_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times strictly after `after`, in the schedule's time zone."""
        if count < 0:
            raise ValueError(f"count must be 0 or more, got {count}")
        times: list[datetime] = []
        if count:
            for fire in self._forward(after):
                times.append(fire.astimezone(self._zone))
                if len(times) == count:
                    break
        return times

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest fire time at or before `moment` as aware UTC, or None within the horizon."""
        limit = _utc(moment, "moment")
        # cronsim's reverse iteration is strictly before its start second.
        start = limit.replace(microsecond=0) + timedelta(seconds=1)
        try:
            if self._follows_elapsed_time:
                return self._elapsed_latest(start)
            local = start.astimezone(self._zone)
            first_offset, offset = local.replace(fold=0).utcoffset(), local.utcoffset()
            if local.fold and first_offset is not None and offset is not None:
                # In the second pass of a fall-back overlap the first pass has already fired,
                # at wall times up to the overlap's end, and cronsim walks back in wall time.
                local += first_offset - offset
            for fire in CronSim(self._engine, local, reverse=True):
                instant = fire.astimezone(UTC)
                if instant <= limit:
                    return instant
        except OverflowError:  # searched back past year 1
            pass
        return None

    def describe(self) -> str:
        """A plain-English description of when the schedule fires, for a UI hint."""
        return _Describer(self.fields).sentence(self.timezone)


@functools.lru_cache(maxsize=16384)
def _parse_cached(expression: str, timezone: str) -> CronSchedule:
    return CronSchedule(expression, timezone)


def parse(expression: str, timezone: str = "UTC") -> CronSchedule:
    """Validate a cron expression and an IANA time zone; raises CronError saying what to fix."""
    return _parse_cached(expression, timezone)


# --- describe() ---------------------------------------------------------------------------------


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
    return _join(words, conjunction)


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
            return "At " + _join([f"{h:02}:{m:02}" for h in hours for m in minutes])
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
                return f" on {_MONTH_NAMES[self.months[0] - 1]} {self.days[0]}"
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
        return " in " + _list(self.months, lambda month: _MONTH_NAMES[month - 1])
