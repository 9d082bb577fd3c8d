"""The fair share of the providers' budgets between organizations.

- `provider_org_call_counts`: per provider, provider day and organization, the calls its
  runs took from the shared daily budget, when it took the latest and the pace it takes
  them at (app.providers.fair_share decides whose turn it is from them).
- `provider_call_caps`: the daily cap an organization's admins set on its calls to a
  provider (no row: no cap of its own).

Row-level security (PostgreSQL), as migration 0009 guards the other organization tables:
members see their organization's counts and cap, only admins change the cap; the system
(the fair share's summed-up view of every organization, the run executor) sees every row.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)

# The actor, as in migration 0009 (uncorrelated sub-selects: evaluated once per statement).
ORG = "(SELECT NULLIF(current_setting('app.org_id', true), '')::uuid)"
SYSTEM = "(SELECT current_setting('app.system', true) = 'on')"
MEMBERS = f"{SYSTEM} OR (org_id = {ORG} AND (SELECT app_acting_role()) IS NOT NULL)"
ADMINS = f"{SYSTEM} OR (org_id = {ORG} AND (SELECT app_acting_role()) = 'admin')"

# (table, policy name, command, condition)
POLICIES = [
    ("provider_org_call_counts", "provider_org_call_counts_members", "ALL", MEMBERS),
    ("provider_call_caps", "provider_call_caps_read", "SELECT", MEMBERS),
    ("provider_call_caps", "provider_call_caps_create", "INSERT", ADMINS),
    ("provider_call_caps", "provider_call_caps_change", "UPDATE", ADMINS),
    ("provider_call_caps", "provider_call_caps_delete", "DELETE", ADMINS),
]


def upgrade() -> None:
    op.create_table(
        "provider_org_call_counts",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False, comment="in the provider's time zone"),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("last_call_at", TIMESTAMP, nullable=False),
        sa.Column(
            "seconds_per_call",
            sa.Float(),
            nullable=True,
            comment="moving average of the time between its calls (NULL after the first)",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_provider_org_call_counts_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "provider", "day", "org_id", name=op.f("pk_provider_org_call_counts")
        ),
    )
    op.create_table(
        "provider_call_caps",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("daily_calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "daily_calls >= 1", name=op.f("ck_provider_call_caps_daily_calls_positive")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_provider_call_caps_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "provider", name=op.f("pk_provider_call_caps")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in dict.fromkeys(table for table, *_ in POLICIES):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    for table, name, command, condition in POLICIES:
        clause = "WITH CHECK" if command == "INSERT" else "USING"
        op.execute(f"CREATE POLICY {name} ON {table} FOR {command} {clause} ({condition})")


def downgrade() -> None:
    # Dropping a table drops its policies with it.
    op.drop_table("provider_call_caps")
    op.drop_table("provider_org_call_counts")
