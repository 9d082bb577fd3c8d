"""Request and response bodies of the schedule endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    Field,
    StringConstraints,
    WithJsonSchema,
    computed_field,
    model_validator,
)

from app.models import PLAIN_TEXT, PartialUpdate, RequestModel, ResponseModel, UtcMoment
from app.tables import DEFAULT_CRON_EXPRESSION, FireOutcome, OverlapPolicy

TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
CronText = Annotated[str, StringConstraints(max_length=200), PLAIN_TEXT]
TimeZoneName = Annotated[
    str,
    StringConstraints(max_length=64),
    PLAIN_TEXT,
    WithJsonSchema({"type": "string", "maxLength": 64, "pattern": TIME_ZONE_PATTERN}),
]
"""An IANA name such as `Europe/Berlin`; the server refuses one it does not know with 400,
naming the field (and the name meant, when only the case differs)."""


class ScheduleUpdate(PartialUpdate):
    """Fields to change; those left out keep their value (a new schedule starts from the
    defaults: `0 0 1 * *`, UTC, disabled)."""

    NULLABLE = frozenset({"preset_id"})

    preset_id: uuid.UUID | None = Field(
        default=None, description="Preset to collect; null detaches it (only while disabled)."
    )
    cron_expression: CronText | None = Field(
        default=None,
        description="Five fields (minute hour day-of-month month day-of-week) or a macro "
        "such as @monthly; Debian cron semantics.",
        examples=["0 0 1 * *"],
    )
    timezone: TimeZoneName | None = Field(
        default=None, description="IANA time zone.", examples=["Europe/Berlin"]
    )
    enabled: bool | None = None
    notify_email: bool | None = Field(
        default=None, description="Mail the admins about skipped/missed/failed fires and runs."
    )


class ScheduleResponse(ResponseModel):
    id: uuid.UUID | None = Field(description="null until the schedule is first saved")
    preset_id: uuid.UUID | None
    preset_name: str | None
    cron_expression: str
    timezone: str
    description: str = Field(examples=["At 00:00 on day 1 of every month (UTC)"])
    enabled: bool
    notify_email: bool
    last_run_at: datetime | None = Field(description="due time of the latest fire")
    last_outcome: FireOutcome | None
    next_run_at: datetime | None


def run_url(run_id: uuid.UUID | None) -> str | None:
    """The API path of a run (null for none), as responses link runs."""
    return None if run_id is None else f"/collection/runs/{run_id}"


class FireResponse(ResponseModel):
    id: uuid.UUID
    schedule_id: uuid.UUID
    scheduled_for: datetime = Field(description="the due (cron) time, without jitter")
    fired_at: datetime
    outcome: FireOutcome
    run_id: uuid.UUID | None = Field(
        description="the run started or queued, or the active run skipped for"
    )
    detail: str | None
    manual: bool = Field(description="from POST /collection/schedule/trigger")
    backfill: bool = Field(description="from POST /collection/schedules/{id}/backfill")

    @computed_field(  # type: ignore[prop-decorator]  # pydantic's documented usage
        description="`run_id` as a path of this API (GET it with the same token); null "
        "without a run",
        examples=["/collection/runs/0b6f7c3e-2f0c-4d4e-9a57-3f0d2b1c9e11"],
    )
    @property
    def run_url(self) -> str | None:
        return run_url(self.run_id)


MAX_BACKFILL = 100
"""Due times one backfill may run: a hundred collections is already days of provider calls."""


class BackfillRequest(RequestModel):
    """A window of past due times to run again."""

    start: UtcMoment = Field(
        description="First moment of the window (inclusive), with its UTC offset.",
        examples=["2027-01-01T00:00:00Z"],
    )
    end: UtcMoment = Field(
        description="Last moment of the window (inclusive), with its UTC offset; not in the "
        "future.",
        examples=["2027-03-01T00:00:00Z"],
    )

    @model_validator(mode="after")
    def _end_after_start(self) -> BackfillRequest:
        if self.end <= self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})"
            )
        return self


class BackfillDueTime(ResponseModel):
    """One due time of a backfill, and the fire and run that stand for it."""

    scheduled_for: datetime = Field(description="the due (cron) time")
    fire_id: uuid.UUID | None = Field(description="its entry in the schedule's history")
    run_id: uuid.UUID | None
    run_url: str | None = Field(description="`run_id` as a path of this API")


class BackfillResponse(ResponseModel):
    """What a backfill did, due time by due time."""

    schedule_id: uuid.UUID
    start: datetime
    end: datetime
    requested: int = Field(
        description=f"Due times in the window (at most {MAX_BACKFILL}), within the schedule's "
        "starts_at/ends_at and before the due time it has still to fire itself."
    )
    queued: list[BackfillDueTime] = Field(
        description="Backfilled now: one queued run each, started one after another in "
        "due-time order."
    )
    already_backfilled: list[BackfillDueTime] = Field(
        description="Backfilled by an earlier (or simultaneous) request: nothing new."
    )
    already_ran: list[BackfillDueTime] = Field(
        description="The schedule's own fire of that due time started (or queued) a run."
    )
    replaced_run_id: uuid.UUID | None = Field(
        description="The active run cancelled for the backfill (overlap policy cancel_other)."
    )


class PreviewResponse(ResponseModel):
    cron_expression: str
    timezone: str
    description: str
    fire_times: list[datetime] = Field(
        examples=[["2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]]
    )


MAX_JITTER_SECONDS = 3600
DEFAULT_JITTER_SECONDS = 300
"""New schedules made with POST /collection/schedules wait up to 5 minutes past their cron
time, so that organizations on the same cron time do not all call the providers at once."""

ScheduleName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), PLAIN_TEXT
]
PauseNote = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), PLAIN_TEXT
]
Jitter = Annotated[int, Field(ge=0, le=MAX_JITTER_SECONDS)]
RemainingRuns = Annotated[int, Field(ge=1, le=1_000_000)]

CRON_HELP = (
    "Five fields (minute hour day-of-month month day-of-week) or a macro such as @monthly; "
    "Debian cron semantics."
)
JITTER_HELP = (
    "Each fire waits a fixed offset in [0, jitter_seconds) after its cron time, derived from "
    "the schedule's id (the same on every replica and after restarts), so that schedules due "
    "at the same time do not all call the providers in the same second."
)
PAUSE_HELP = "Why the schedule is disabled (only while `enabled` is false)."
OVERLAP_HELP = (
    "What a fire does while the organization has an active run (one runs at a time): skip "
    "it (logged `skipped`); buffer_one: queue one run that starts when the active one ends "
    "(logged `queued`; a second fire meanwhile is skipped); cancel_other: cancel the active "
    "run, keeping its results, and start this one once it reads cancelled (`replaced`)."
)
REMAINING_HELP = (
    "Scheduled runs left to start (null: unlimited): each fire that starts a run counts "
    "one, and at 0 the schedule disables itself with a note. Run now does not count."
)


class ScheduleCreate(RequestModel):
    """A new schedule of one preset; fields left out take the defaults shown."""

    name: ScheduleName = Field(examples=["Monthly electronics"])
    preset_id: uuid.UUID
    cron_expression: CronText = Field(
        default=DEFAULT_CRON_EXPRESSION, description=CRON_HELP, examples=["0 6 * * 1"]
    )
    timezone: TimeZoneName = Field(default="UTC", examples=["Europe/Berlin"])
    enabled: bool = True
    notify_email: bool = False
    is_default: bool = Field(
        default=False,
        description="Make it the organization's default schedule (the one /collection/schedule "
        "acts on); an organization's first schedule is its default anyway.",
    )
    jitter_seconds: Jitter = Field(default=DEFAULT_JITTER_SECONDS, description=JITTER_HELP)
    overlap_policy: OverlapPolicy = Field(default=OverlapPolicy.SKIP, description=OVERLAP_HELP)
    paused_note: PauseNote | None = Field(default=None, description=PAUSE_HELP)
    starts_at: UtcMoment | None = Field(default=None, description="No fire before this.")
    ends_at: UtcMoment | None = Field(default=None, description="No fire after this.")
    remaining_runs: RemainingRuns | None = Field(default=None, description=REMAINING_HELP)


class ScheduleChange(PartialUpdate):
    """Fields to change; those left out keep their value. Disabling records who and when
    (and `paused_note`, why); enabling clears the note and fires from the next due time."""

    NULLABLE = frozenset({"paused_note", "starts_at", "ends_at", "remaining_runs"})

    name: ScheduleName | None = None
    preset_id: uuid.UUID | None = None
    cron_expression: CronText | None = Field(default=None, description=CRON_HELP)
    timezone: TimeZoneName | None = Field(default=None, examples=["Europe/Berlin"])
    enabled: bool | None = None
    notify_email: bool | None = None
    is_default: Literal[True] | None = Field(
        default=None,
        description="true makes it the default schedule (another one is made default to "
        "change that).",
    )
    jitter_seconds: Jitter | None = Field(default=None, description=JITTER_HELP)
    overlap_policy: OverlapPolicy | None = Field(default=None, description=OVERLAP_HELP)
    paused_note: PauseNote | None = Field(default=None, description=PAUSE_HELP)
    starts_at: UtcMoment | None = Field(default=None, description="No fire before this.")
    ends_at: UtcMoment | None = Field(default=None, description="No fire after this.")
    remaining_runs: RemainingRuns | None = Field(default=None, description=REMAINING_HELP)


class ScheduleDetail(ResponseModel):
    """A schedule with everything about it."""

    id: uuid.UUID
    name: str
    preset_id: uuid.UUID | None
    preset_name: str | None
    cron_expression: str
    timezone: str
    description: str = Field(examples=["At 00:00 on day 1 of every month (UTC)"])
    enabled: bool
    is_default: bool
    notify_email: bool
    jitter_seconds: int
    overlap_policy: OverlapPolicy
    paused_note: str | None
    paused_by: uuid.UUID | None
    paused_at: datetime | None
    starts_at: datetime | None
    ends_at: datetime | None
    remaining_runs: int | None
    last_run_at: datetime | None = Field(description="due (cron) time of the latest fire")
    last_outcome: FireOutcome | None
    next_run_at: datetime | None = Field(description="next fire time, jitter included")
    created_at: datetime
    updated_at: datetime
