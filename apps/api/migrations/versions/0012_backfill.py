"""Backfill: past due times of a schedule, run on request, each at most once.

- `collection_schedule_fires.backfill`: a backfill of a due time is a fire row of its own,
  next to the schedule's own fire of that due time, so the fire log's uniqueness becomes
  (schedule, due time, backfill). An index on (schedule, fired_at, id) serves a schedule's
  history, newest first, whatever its length.
- `collection_runs.trigger` gains `backfill`; `collection_runs.scheduled_for` is a backfill
  run's due time (queued backfill runs start in that order). "One queued run per schedule"
  (buffer_one) now leaves backfill runs out: a backfill queues one run per due time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
OLD_TRIGGERS = ("manual", "schedule")
NEW_TRIGGERS = (*OLD_TRIGGERS, "backfill")
ONE_QUEUED = "uq_collection_runs_one_queued_per_schedule"
OLD_QUEUED = sa.text("status = 'queued'")
NEW_QUEUED = sa.text("status = 'queued' AND trigger <> 'backfill'")
OLD_UNIQUE = "uq_collection_schedule_fires_schedule_id_scheduled_for"
NEW_UNIQUE = "uq_collection_schedule_fires_schedule_id_scheduled_for_backfill"
HISTORY = "ix_collection_schedule_fires_schedule_fired"


def _runs(triggers: Sequence[str], queued: sa.TextClause, was: sa.TextClause) -> None:
    """The trigger check and the one-queued-run index of `collection_runs`."""
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(ONE_QUEUED, sqlite_where=was, postgresql_where=was)
        batch_op.drop_constraint(op.f("ck_collection_runs_run_trigger"), type_="check")
        batch_op.create_check_constraint(
            "run_trigger", "trigger IN (" + ", ".join(f"'{t}'" for t in triggers) + ")"
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index(
            ONE_QUEUED, ["schedule_id"], unique=True, sqlite_where=queued, postgresql_where=queued
        )


def upgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scheduled_for", TIMESTAMP, nullable=True, comment="a backfill run's due time"
            )
        )
    _runs(NEW_TRIGGERS, NEW_QUEUED, OLD_QUEUED)
    with op.batch_alter_table("collection_schedule_fires", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("backfill", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_constraint(op.f(OLD_UNIQUE), type_="unique")
        batch_op.create_unique_constraint(
            op.f(NEW_UNIQUE), ["schedule_id", "scheduled_for", "backfill"]
        )
        batch_op.create_index(HISTORY, ["schedule_id", "fired_at", "id"], unique=False)


def downgrade() -> None:
    # The older code knows no backfill: its fires go (they would collide with the schedule's
    # own fires of the same due times), its queued runs are cancelled (several of a schedule
    # would break "one queued run per schedule"), and its runs read as the schedule's.
    op.execute("DELETE FROM collection_schedule_fires WHERE backfill")
    op.execute(
        "UPDATE collection_runs SET status = 'cancelled', finished_at = updated_at "
        "WHERE status = 'queued' AND trigger = 'backfill'"
    )
    op.execute("UPDATE collection_runs SET trigger = 'schedule' WHERE trigger = 'backfill'")
    with op.batch_alter_table("collection_schedule_fires", schema=None) as batch_op:
        batch_op.drop_index(HISTORY)
        batch_op.drop_constraint(op.f(NEW_UNIQUE), type_="unique")
        batch_op.create_unique_constraint(op.f(OLD_UNIQUE), ["schedule_id", "scheduled_for"])
        batch_op.drop_column("backfill")
    _runs(OLD_TRIGGERS, OLD_QUEUED, NEW_QUEUED)
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_column("scheduled_for")
