"""Collection runs: `pausing` and `cancelling` statuses, and which limit a waiting run waits for.

A pause or cancel of a run that is executing first reads `pausing` / `cancelling` until the
provider calls in flight are checkpointed. Both count as active, so the partial unique index
"one active run per organization" is rebuilt with the wider predicate.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
NEW_STATUSES = (
    "pending",
    "running",
    "pausing",
    "paused",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
)
OLD_ACTIVE = sa.text("status IN ('pending', 'running', 'paused')")
NEW_ACTIVE = sa.text("status IN ('pending', 'running', 'pausing', 'paused', 'cancelling')")
INDEX = "uq_collection_runs_one_active_per_org"
CHECK = "run_status"


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def _change(statuses: Sequence[str], old_active: sa.TextClause, active: sa.TextClause) -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(INDEX, sqlite_where=old_active, postgresql_where=old_active)
        batch_op.drop_constraint(op.f(f"ck_collection_runs_{CHECK}"), type_="check")
        batch_op.create_check_constraint(CHECK, _status_check(statuses))
        batch_op.create_index(
            INDEX, ["org_id"], unique=True, sqlite_where=active, postgresql_where=active
        )


def upgrade() -> None:
    _change(NEW_STATUSES, OLD_ACTIVE, NEW_ACTIVE)
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "waiting_for",
                sa.String(length=300),
                nullable=True,
                comment="while waiting for provider quota: which limit",
            )
        )


def downgrade() -> None:
    # A run on its way to paused or cancelled is taken there: the older code knows neither.
    op.execute("UPDATE collection_runs SET status = 'paused' WHERE status = 'pausing'")
    op.execute("UPDATE collection_runs SET status = 'cancelled' WHERE status = 'cancelling'")
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_column("waiting_for")
    _change(OLD_STATUSES, NEW_ACTIVE, OLD_ACTIVE)
