"""Schedule settings: an organization's schedules, created, changed, listed and deleted with
one validation, and the timing rules every fire follows (bounds and jitter).

The caller owns the transaction. The seed's `/collection/schedule` acts on the default
schedule through the same `apply_changes`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageParams, paginate
from app.core.tenancy import org_rows
from app.errors import InvalidError, NotFoundError
from app.scheduling.cron import CronError, CronSchedule, parse
from app.tables import DEFAULT_CRON_EXPRESSION, CategoryPreset, CollectionSchedule, OverlapPolicy

logger = logging.getLogger(__name__)

MICROSECOND = timedelta(microseconds=1)
# Besides the cron expression and time zone, what decides when a schedule fires.
TIMING_EXTRAS = ("jitter_seconds", "starts_at", "ends_at")


class ScheduleError(InvalidError):
    """A schedule change that cannot be accepted; `field` names the offending input."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class ScheduleNotFoundError(NotFoundError):
    """No schedule with this id in the organization."""

    def __init__(self, schedule_id: uuid.UUID) -> None:
        super().__init__(f"schedule {schedule_id} not found")
        self.schedule_id = schedule_id


def jitter_offset(schedule_id: uuid.UUID, jitter_seconds: int) -> timedelta:
    """The fixed delay of a schedule's fires after their cron times: in [0, jitter_seconds),
    to the millisecond, from a hash of the id, so every replica and restart agree."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(schedule_id.bytes).digest()
    return timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (jitter_seconds * 1000))


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule may fire: its cron, its bounds and its jitter offset."""

    cron: CronSchedule
    offset: timedelta
    starts_at: datetime | None
    ends_at: datetime | None

    @classmethod
    def of(cls, schedule: CollectionSchedule, cron: CronSchedule) -> Timing:
        return cls(
            cron,
            jitter_offset(schedule.id, schedule.jitter_seconds),
            schedule.starts_at,
            schedule.ends_at,
        )

    def next_due(self, after: datetime) -> datetime | None:
        """The first cron time within the bounds whose fire (cron time + offset) comes after
        `after`; None when there is none (past `ends_at`, or the end of the calendar)."""
        start = after - self.offset
        if self.starts_at is not None and self.starts_at - MICROSECOND > start:
            start = self.starts_at - MICROSECOND
        try:
            due = self.cron.next_after(start)
        except RuntimeError:  # nothing left within the calendar's horizon
            return None
        return None if self.ends_at is not None and due > self.ends_at else due

    def fire_time(self, due: datetime | None) -> datetime | None:
        """When the fire of cron time `due` happens: the jitter offset later."""
        return None if due is None else due + self.offset


def parse_cron(cron_expression: str, timezone: str) -> CronSchedule:
    """`parse`, its refusal as a ScheduleError naming the field (timezone or cron_expression)."""
    try:
        return parse(cron_expression, timezone)
    except CronError as exc:
        raise ScheduleError(
            "timezone" if exc.field == "timezone" else "cron_expression", str(exc)
        ) from None


async def preset_name_of(
    session: AsyncSession, org_id: uuid.UUID, preset_id: uuid.UUID | None
) -> str | None:
    """The name of the organization's preset `preset_id`, None for no preset; a preset of
    another organization (or none at all) is a ScheduleError."""
    if preset_id is None:
        return None
    name = await session.scalar(
        org_rows(CategoryPreset, org_id)
        .with_only_columns(CategoryPreset.name)
        .where(CategoryPreset.id == preset_id)
    )
    if name is None:
        raise ScheduleError("preset_id", f"preset {preset_id} not found in this organization")
    return name


def _same_times(schedule: CollectionSchedule, cron: CronSchedule, wanted: dict[str, Any]) -> bool:
    """Whether the schedule fires exactly when it did (`@monthly` = `0 0 1 * *`)."""
    if any(getattr(schedule, name) != wanted[name] for name in TIMING_EXTRAS):
        return False
    try:
        saved = parse(schedule.cron_expression, schedule.timezone)
    except CronError:
        return False
    return saved.fields == cron.fields and saved.timezone == cron.timezone


async def apply_changes(
    session: AsyncSession,
    schedule: CollectionSchedule,
    changes: dict[str, Any],
    *,
    now: datetime,
    actor_id: uuid.UUID | None,
    is_new: bool,
) -> str | None:
    """Validate `changes` against the schedule as it is and apply them; the preset's name.

    Validates the cron expression, time zone, preset (it must belong to the organization,
    and enabling needs one), bounds and pause note, records who paused it and when, and
    recomputes `next_run_at`: from now when its times changed or it is enabled again (due
    times that passed while it was disabled never fire), else kept, so that a due time no
    tick has claimed yet still fires.
    """
    current = {
        name: getattr(schedule, name)
        for name in (
            "name",
            "preset_id",
            "cron_expression",
            "timezone",
            "enabled",
            "notify_email",
            "jitter_seconds",
            "overlap_policy",
            "paused_note",
            "starts_at",
            "ends_at",
            "remaining_runs",
        )
    }
    wanted = {**current, **{k: v for k, v in changes.items() if k != "is_default"}}
    cron = parse_cron(wanted["cron_expression"], wanted["timezone"])
    wanted["cron_expression"] = cron.expression
    preset_name = await preset_name_of(session, schedule.org_id, wanted["preset_id"])
    if wanted["enabled"] and wanted["preset_id"] is None:
        raise ScheduleError(
            "preset_id", "an enabled schedule needs a preset: set preset_id as well"
        )
    starts_at, ends_at = wanted["starts_at"], wanted["ends_at"]
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise ScheduleError("ends_at", "must be later than starts_at")
    if wanted["enabled"] and wanted["paused_note"] is not None and "paused_note" in changes:
        raise ScheduleError(
            "paused_note", "only a disabled schedule has a pause note: set enabled to false"
        )
    pausing = not wanted["enabled"] and (current["enabled"] or is_new)
    if wanted["enabled"]:
        wanted["paused_note"] = None
        schedule.paused_by = schedule.paused_at = None
    elif pausing or ("paused_note" in changes and schedule.paused_at is None):
        schedule.paused_by, schedule.paused_at = actor_id, now
    keep = (
        not is_new
        and wanted["enabled"]
        and current["enabled"]
        and schedule.next_run_at is not None
        and _same_times(schedule, cron, wanted)
    )
    for name, value in wanted.items():
        setattr(schedule, name, value)
    if not wanted["enabled"]:
        schedule.next_run_at = None
    elif not keep:
        timing = Timing.of(schedule, cron)
        schedule.next_run_at = timing.fire_time(timing.next_due(now))
        if schedule.next_run_at is None:
            raise ScheduleError(
                "ends_at" if ends_at is not None else "cron_expression",
                "the schedule has no due time left"
                + (" before ends_at" if ends_at is not None else ""),
            )
    schedule.updated_at = now
    return preset_name


async def make_default(session: AsyncSession, schedule: CollectionSchedule) -> None:
    """Make `schedule` its organization's one default schedule."""
    await session.execute(
        sa.update(CollectionSchedule)
        .where(
            CollectionSchedule.org_id == schedule.org_id,
            CollectionSchedule.is_default,
            CollectionSchedule.id != schedule.id,
        )
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )
    schedule.is_default = True
    await session.flush()


def _with_preset_name(statement: sa.Select[Any]) -> sa.Select[Any]:
    return (
        statement.add_columns(CategoryPreset.name)
        .outerjoin(CategoryPreset, CategoryPreset.id == CollectionSchedule.preset_id)
        .execution_options(populate_existing=True)
    )


async def default_schedule(
    session: AsyncSession, org_id: uuid.UUID
) -> tuple[CollectionSchedule | None, str | None]:
    """The organization's default schedule (None if it has none) and its preset's name."""
    row = (
        await session.execute(
            _with_preset_name(
                org_rows(CollectionSchedule, org_id).where(CollectionSchedule.is_default)
            )
        )
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


async def get_schedule(
    session: AsyncSession, org_id: uuid.UUID, schedule_id: uuid.UUID
) -> tuple[CollectionSchedule, str | None]:
    """One schedule of the organization and its preset's name; another organization's
    schedule is not found."""
    row = (
        await session.execute(
            _with_preset_name(
                org_rows(CollectionSchedule, org_id).where(CollectionSchedule.id == schedule_id)
            )
        )
    ).first()
    if row is None:
        raise ScheduleNotFoundError(schedule_id)
    return row[0], row[1]


async def list_schedules(
    session: AsyncSession, org_id: uuid.UUID, page: PageParams
) -> tuple[list[tuple[CollectionSchedule, str | None]], str | None]:
    """The organization's schedules, newest first, each with its preset's name."""
    schedules, next_cursor = await paginate(
        session,
        org_rows(CollectionSchedule, org_id),
        created_at=CollectionSchedule.created_at,
        row_id=CollectionSchedule.id,
        params=page,
    )
    preset_ids = {s.preset_id for s in schedules if s.preset_id is not None}
    names: dict[uuid.UUID, str] = {}
    if preset_ids:
        rows = await session.execute(
            sa.select(CategoryPreset.id, CategoryPreset.name).where(
                CategoryPreset.id.in_(preset_ids)
            )
        )
        names = dict(rows.all())
    return [(s, names.get(s.preset_id) if s.preset_id else None) for s in schedules], next_cursor


async def create_schedule(
    session: AsyncSession,
    org_id: uuid.UUID,
    fields: dict[str, Any],
    *,
    now: datetime,
    actor_id: uuid.UUID | None,
) -> tuple[CollectionSchedule, str | None]:
    """A new schedule; the organization's first one (or one asked to be) is its default."""
    schedule = CollectionSchedule(
        id=uuid.uuid4(),
        org_id=org_id,
        name=fields.get("name", "Default"),
        cron_expression=DEFAULT_CRON_EXPRESSION,
        timezone="UTC",
        enabled=False,
        notify_email=False,
        jitter_seconds=0,
        overlap_policy=OverlapPolicy.SKIP,
        is_default=False,
        created_at=now,
    )
    preset_name = await apply_changes(
        session, schedule, fields, now=now, actor_id=actor_id, is_new=True
    )
    has_default = await session.scalar(
        sa.select(
            sa.exists().where(CollectionSchedule.org_id == org_id, CollectionSchedule.is_default)
        )
    )
    # Without a default, the insert itself claims it: the one-default index settles a race
    # between two first schedules (the loser's IntegrityError; see ScheduleService.update).
    schedule.is_default = not has_default
    session.add(schedule)
    await session.flush()
    if fields.get("is_default") and has_default:
        await make_default(session, schedule)
    logger.info(
        "schedule %s (%r) of org %s created: %s",
        schedule.id,
        schedule.name,
        org_id,
        describe_state(schedule),
    )
    return schedule, preset_name


async def delete_schedule(session: AsyncSession, org_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
    """Delete a schedule (its fire log goes with it; its runs stay). When it was the default,
    the oldest remaining schedule becomes the default."""
    schedule, _ = await get_schedule(session, org_id, schedule_id)
    was_default = schedule.is_default
    await session.delete(schedule)
    await session.flush()
    if was_default:
        oldest = await session.scalar(
            org_rows(CollectionSchedule, org_id)
            .order_by(CollectionSchedule.created_at, CollectionSchedule.id)
            .limit(1)
        )
        if oldest is not None:
            await make_default(session, oldest)
    logger.info("schedule %s of org %s deleted", schedule_id, org_id)


def describe_state(schedule: CollectionSchedule) -> str:
    """`enabled 0 0 1 * * (UTC), next run ...` for the log."""
    state = "enabled" if schedule.enabled else "disabled"
    next_run = schedule.next_run_at.isoformat() if schedule.next_run_at else "-"
    return f"{state} {schedule.cron_expression} ({schedule.timezone}), next run {next_run}"
