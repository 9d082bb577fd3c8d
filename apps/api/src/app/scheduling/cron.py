"""The one cron engine: a strict Debian/Vixie-cron parser in front of cronsim, which computes
fire times. describe()'s English lives in cron_text, elapsed-time fire times across DST
transitions in cron_dst."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from app.scheduling.cron_dst import elapsed_forward, elapsed_latest
from app.scheduling.cron_text import MONTH_NAMES, describe_fields, join_words

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


def _never_fires(days: frozenset[int], months: frozenset[int]) -> str | None:
    """Why no month holds any of the days, or None when one does."""
    if any(day <= _MONTH_DAYS[month - 1] for month in months for day in days):
        return None
    by_length: dict[int, list[str]] = {}
    for month in sorted(months):
        by_length.setdefault(_MONTH_DAYS[month - 1], []).append(MONTH_NAMES[month - 1])
    clauses = [
        f"{join_words(names)} {'has' if len(names) == 1 else 'have'} at most {length} days"
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
                candidates = elapsed_forward(self._engine, self._zone, last)
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
                return elapsed_latest(self._engine, self._zone, start)
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
        return describe_fields(self.fields, self.timezone)


@functools.lru_cache(maxsize=16384)
def _parse_cached(expression: str, timezone: str) -> CronSchedule:
    return CronSchedule(expression, timezone)


def parse(expression: str, timezone: str = "UTC") -> CronSchedule:
    """Validate a cron expression and an IANA time zone; raises CronError saying what to fix."""
    return _parse_cached(expression, timezone)
