"""Several schedules per organization: a name, one default, pause notes, bounds, a run
budget and jitter.

`collection_schedules` loses its one-per-organization constraint. Each organization's
existing schedule becomes its default schedule (`is_default`, at most one per organization
by a partial unique index), named "Default", with no jitter and no bounds, so it fires
exactly as before. New columns:

- `name` (1-100 characters);
- `paused_note`, `paused_by`, `paused_at`: why, by whom and when a schedule was disabled;
- `starts_at`, `ends_at`: no fire before or after;
- `remaining_runs`: runs left (NULL: unlimited); at 0 the schedule disables itself;
- `jitter_seconds` (0-3600): each fire is delayed by a fixed offset derived from the
  schedule's id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
ONE_DEFAULT = "uq_collection_schedules_one_default_per_org"
LISTING = "ix_collection_schedules_org_id_created_at"


def upgrade() -> None:
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_collection_schedules_org_id"), type_="unique")
        batch_op.add_column(
            sa.Column("name", sa.String(length=100), server_default="Default", nullable=False)
        )
        batch_op.add_column(
            sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("paused_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("paused_by", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("paused_at", TIMESTAMP, nullable=True))
        batch_op.add_column(
            sa.Column("starts_at", TIMESTAMP, nullable=True, comment="no fire before")
        )
        batch_op.add_column(sa.Column("ends_at", TIMESTAMP, nullable=True, comment="no fire after"))
        batch_op.add_column(
            sa.Column(
                "remaining_runs",
                sa.Integer(),
                nullable=True,
                comment="runs left to start; NULL: unlimited",
            )
        )
        batch_op.add_column(
            sa.Column("jitter_seconds", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_foreign_key(
            op.f("fk_collection_schedules_paused_by_users"),
            "users",
            ["paused_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_check_constraint("remaining_runs_not_negative", "remaining_runs >= 0")
        batch_op.create_check_constraint(
            "jitter_seconds_range", "jitter_seconds >= 0 AND jitter_seconds <= 3600"
        )
    # every organization had at most one schedule: it becomes the default one
    op.execute(sa.text("UPDATE collection_schedules SET is_default = :yes").bindparams(yes=True))
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.create_index(
            ONE_DEFAULT,
            ["org_id"],
            unique=True,
            sqlite_where=sa.text("is_default"),
            postgresql_where=sa.text("is_default"),
        )
        batch_op.create_index(LISTING, ["org_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    # The older code knows one schedule per organization: the others are deleted.
    op.execute(sa.text("DELETE FROM collection_schedules WHERE NOT is_default"))
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.drop_index(LISTING)
        batch_op.drop_index(
            ONE_DEFAULT, sqlite_where=sa.text("is_default"), postgresql_where=sa.text("is_default")
        )
        batch_op.drop_constraint(op.f("ck_collection_schedules_jitter_seconds_range"), "check")
        batch_op.drop_constraint(
            op.f("ck_collection_schedules_remaining_runs_not_negative"), "check"
        )
        batch_op.drop_constraint(op.f("fk_collection_schedules_paused_by_users"), "foreignkey")
        for column in (
            "jitter_seconds",
            "remaining_runs",
            "ends_at",
            "starts_at",
            "paused_at",
            "paused_by",
            "paused_note",
            "is_default",
            "name",
        ):
            batch_op.drop_column(column)
        batch_op.create_unique_constraint(op.f("uq_collection_schedules_org_id"), ["org_id"])
