"""Overlap policies: what a schedule's fire does while its organization has an active run.

- `collection_schedules.overlap_policy`: `skip` (every existing schedule; the rule so far),
  `buffer_one` or `cancel_other`.
- `collection_runs.status` gains `queued`: a run a fire made that starts once the
  organization's active run ends. It is not active (the one-active-run index ignores it),
  and at most one run per schedule is queued (a partial unique index).
- Fire outcomes gain `queued` and `replaced` (the active run was cancelled for this one).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = (
    "pending",
    "running",
    "pausing",
    "paused",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
)
NEW_STATUSES = (*OLD_STATUSES, "queued")
OLD_OUTCOMES = ("started", "skipped", "missed", "no_preset", "failed")
NEW_OUTCOMES = (*OLD_OUTCOMES, "queued", "replaced")
POLICIES = ("skip", "buffer_one", "cancel_other")
QUEUED = sa.text("status = 'queued'")
ONE_QUEUED = "uq_collection_runs_one_queued_per_schedule"


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _checks(statuses: Sequence[str], outcomes: Sequence[str]) -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_collection_runs_run_status"), type_="check")
        batch_op.create_check_constraint("run_status", _in("status", statuses))
    for table, column in (
        ("collection_schedules", "last_outcome"),
        ("collection_schedule_fires", "outcome"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_fire_outcome"), type_="check")
            batch_op.create_check_constraint("fire_outcome", _in(column, outcomes))


def upgrade() -> None:
    _checks(NEW_STATUSES, NEW_OUTCOMES)
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "overlap_policy",
                sa.Enum(
                    *POLICIES,
                    name="overlap_policy",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                server_default="skip",
                nullable=False,
            )
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index(
            ONE_QUEUED, ["schedule_id"], unique=True, sqlite_where=QUEUED, postgresql_where=QUEUED
        )


def downgrade() -> None:
    # The older code knows no queued runs, nor these outcomes: queued runs are cancelled,
    # and the fires read as skipped (which is what the older code would have done).
    op.execute("UPDATE collection_runs SET status = 'cancelled' WHERE status = 'queued'")
    for table, column in (
        ("collection_schedules", "last_outcome"),
        ("collection_schedule_fires", "outcome"),
    ):
        op.execute(
            f"UPDATE {table} SET {column} = 'skipped' WHERE {column} IN ('queued', 'replaced')"
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(ONE_QUEUED, sqlite_where=QUEUED, postgresql_where=QUEUED)
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_collection_schedules_overlap_policy"), type_="check")
        batch_op.drop_column("overlap_policy")
    _checks(OLD_STATUSES, OLD_OUTCOMES)
