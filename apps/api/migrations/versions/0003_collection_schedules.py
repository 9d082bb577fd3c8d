"""Collection schedules: one cron schedule per organization, and the fire log.

On PostgreSQL, row-level security on collection_schedules admits only admins of the row's
organization (or the scheduler itself, as "system"). It binds the role the application
switches to for each transaction (see app.core.database), so a query that forgets its
organization filter still sees nothing of other organizations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
# The role is named in app.core.database.RLS_ROLE too. Roles belong to the whole cluster, so
# another database's migration may have created it already (or be creating it right now).
RLS_UP = [
    """
    DO $$
    BEGIN
        CREATE ROLE collection_app NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END
    $$
    """,
    "GRANT collection_app TO CURRENT_USER",
    "GRANT USAGE ON SCHEMA public TO collection_app",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO collection_app",
    """
    ALTER DEFAULT PRIVILEGES IN SCHEMA public
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO collection_app
    """,
    "ALTER TABLE collection_schedules ENABLE ROW LEVEL SECURITY",
    """
    CREATE POLICY collection_schedules_admins ON collection_schedules
        USING (
            current_setting('app.system', true) = 'on'
            OR EXISTS (
                SELECT 1 FROM memberships m
                WHERE m.org_id = collection_schedules.org_id
                  AND m.user_id = NULLIF(current_setting('app.user_id', true), '')::uuid
                  AND m.role = 'admin'
            )
        )
    """,
]
RLS_DOWN = [
    "DROP POLICY IF EXISTS collection_schedules_admins ON collection_schedules",
    "ALTER TABLE collection_schedules DISABLE ROW LEVEL SECURITY",
]


def upgrade() -> None:
    op.create_table(
        "collection_schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("preset_id", sa.Uuid(), nullable=True),
        sa.Column(
            "cron_expression", sa.String(length=200), server_default="0 0 1 * *", nullable=False
        ),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notify_email", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "last_run_at",
            TIMESTAMP,
            nullable=True,
            comment="due time of the latest fire, whatever its outcome",
        ),
        sa.Column(
            "last_outcome",
            sa.Enum(
                "started",
                "skipped",
                "missed",
                "no_preset",
                "failed",
                name="fire_outcome",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column(
            "next_run_at", TIMESTAMP, nullable=True, comment="next due time; NULL while disabled"
        ),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_collection_schedules_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["preset_id"],
            ["amazon_category_presets.id"],
            name=op.f("fk_collection_schedules_preset_id_amazon_category_presets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_schedules")),
        sa.UniqueConstraint("org_id", name=op.f("uq_collection_schedules_org_id")),
    )
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_collection_schedules_due",
            ["next_run_at"],
            unique=False,
            sqlite_where=sa.text("enabled"),
            postgresql_where=sa.text("enabled"),
        )

    op.create_table(
        "collection_schedule_fires",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("scheduled_for", TIMESTAMP, nullable=False, comment="the due time"),
        sa.Column("fired_at", TIMESTAMP, nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(
                "started",
                "skipped",
                "missed",
                "no_preset",
                "failed",
                name="fire_outcome",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
            comment="set in the same transaction that claims the fire; never NULL once committed",
        ),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("instance_id", sa.String(length=200), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False, comment="from POST /schedule/trigger"),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_collection_schedule_fires_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["collection_runs.id"],
            name=op.f("fk_collection_schedule_fires_run_id_collection_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["collection_schedules.id"],
            name=op.f("fk_collection_schedule_fires_schedule_id_collection_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_schedule_fires")),
        sa.UniqueConstraint(
            "schedule_id",
            "scheduled_for",
            name=op.f("uq_collection_schedule_fires_schedule_id_scheduled_for"),
        ),
    )
    with op.batch_alter_table("collection_schedule_fires", schema=None) as batch_op:
        batch_op.create_index(
            "ix_collection_schedule_fires_org_fired", ["org_id", "fired_at", "id"], unique=False
        )

    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_collection_runs_schedule_id_collection_schedules"),
            "collection_schedules",
            ["schedule_id"],
            ["id"],
            ondelete="SET NULL",
        )

    if op.get_bind().dialect.name == "postgresql":
        for statement in RLS_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in RLS_DOWN:
            op.execute(statement)
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_collection_runs_schedule_id_collection_schedules"), type_="foreignkey"
        )

    with op.batch_alter_table("collection_schedule_fires", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_schedule_fires_org_fired")

    op.drop_table("collection_schedule_fires")
    with op.batch_alter_table("collection_schedules", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_collection_schedules_due",
            sqlite_where=sa.text("enabled"),
            postgresql_where=sa.text("enabled"),
        )

    op.drop_table("collection_schedules")
