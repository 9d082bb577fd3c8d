"""What the tables store in their enumerated columns, and the API and docs spell the same:
roles, run statuses, phases and triggers, fire outcomes and overlap policies; and the
predicates of the partial indexes that rest on run statuses."""

from __future__ import annotations

import enum

import sqlalchemy as sa


class Role(enum.StrEnum):
    """A member's role in an organization."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class RunStatus(enum.StrEnum):
    """Lifecycle status of a collection run.

    `pausing` and `cancelling` are on the way to `paused` and `cancelled`: no new provider
    calls start, the calls in flight finish and are checkpointed, then the run settles.
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    QUEUED = "queued"
    """Made by a schedule's fire while another run was active: starts when that one ends."""


ACTIVE_RUN_STATUSES = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.PAUSING,
    RunStatus.PAUSED,
    RunStatus.CANCELLING,
)
# The predicate of the partial unique index "one active run per organization"; inserts name
# it as their conflict target, so skip-if-active is one atomic statement. "One queued run per
# schedule" (buffer_one) leaves out backfill runs: a backfill queues one run per due time.
ACTIVE_RUN_PREDICATE = sa.text(
    "status IN ('pending', 'running', 'pausing', 'paused', 'cancelling')"
)
QUEUED_RUN_PREDICATE = sa.text("status = 'queued' AND trigger <> 'backfill'")


class FireOutcome(enum.StrEnum):
    """What became of one due time of a schedule."""

    STARTED = "started"
    SKIPPED = "skipped"
    MISSED = "missed"
    NO_PRESET = "no_preset"
    FAILED = "failed"
    QUEUED = "queued"
    """A run was active: this fire's run starts when it ends (overlap policy buffer_one)."""
    REPLACED = "replaced"
    """A run was active: it was cancelled for this fire's (overlap policy cancel_other)."""


class OverlapPolicy(enum.StrEnum):
    """What a schedule's fire does while its organization has an active run."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    CANCEL_OTHER = "cancel_other"


class RunPhase(enum.StrEnum):
    """Which part of the pipeline a run is in."""

    AMAZON = "amazon"
    EBAY = "ebay"
    DONE = "done"


class RunTrigger(enum.StrEnum):
    """What created a collection run."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"  # a past due time of a schedule, run on request
