"""Watchlists and digest preferences.

- `watched_sellers`: the sellers an organization watches, (org_id, username) unique, with
  who starred each and when; an index serves the list newest first.
- `digest_preferences`: per membership (deleted with it), whether the member gets the
  digest mail after scheduled runs (opt-in: no row, or `subscribed` false, means no mail),
  how high a new seller must rank (`top_n`, 1-100) and how many places a watched seller
  must move (`rank_threshold`, 1-1000) to be news.

Row-level security (PostgreSQL), as migration 0009 guards the other organization tables:
any member acting in the organization sees and changes its watchlist (the API lets only
roles with `collection.run` change it); a member sees and changes only their own digest
preferences; the system (the digest mails) sees every row.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)

# The actor, as in migration 0009 (uncorrelated sub-selects: evaluated once per statement).
USER = "(SELECT NULLIF(current_setting('app.user_id', true), '')::uuid)"
ORG = "(SELECT NULLIF(current_setting('app.org_id', true), '')::uuid)"
SYSTEM = "(SELECT current_setting('app.system', true) = 'on')"
ACTING_MEMBER = "(SELECT app_acting_role()) IS NOT NULL"

POLICIES = [
    (
        "watched_sellers",
        "watched_sellers_members",
        f"{SYSTEM} OR (org_id = {ORG} AND {ACTING_MEMBER})",
    ),
    (
        "digest_preferences",
        "digest_preferences_own",
        f"{SYSTEM} OR (org_id = {ORG} AND user_id = {USER} AND {ACTING_MEMBER})",
    ),
]


def upgrade() -> None:
    op.create_table(
        "watched_sellers",
        sa.Column(
            "username",
            sa.String(length=100),
            nullable=False,
            comment="the eBay username, exactly as runs store it",
        ),
        sa.Column("starred_by", sa.Uuid(), nullable=True, comment="NULL once that user is gone"),
        sa.Column("starred_at", TIMESTAMP, nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_watched_sellers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["starred_by"],
            ["users.id"],
            name=op.f("fk_watched_sellers_starred_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("org_id", "username", name=op.f("pk_watched_sellers")),
    )
    op.create_index(
        "ix_watched_sellers_org_starred",
        "watched_sellers",
        ["org_id", "starred_at", "username"],
        unique=False,
    )
    op.create_table(
        "digest_preferences",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "subscribed",
            sa.Boolean(),
            nullable=False,
            comment="mail the digest after each completed scheduled run",
        ),
        sa.Column(
            "top_n",
            sa.Integer(),
            nullable=False,
            comment="new sellers ranked this high or higher are news",
        ),
        sa.Column(
            "rank_threshold",
            sa.Integer(),
            nullable=False,
            comment="a watched seller moving this many places is news",
        ),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "top_n BETWEEN 1 AND 100", name=op.f("ck_digest_preferences_top_n_range")
        ),
        sa.CheckConstraint(
            "rank_threshold BETWEEN 1 AND 1000",
            name=op.f("ck_digest_preferences_rank_threshold_range"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id", "user_id"],
            ["memberships.org_id", "memberships.user_id"],
            name=op.f("fk_digest_preferences_org_id_memberships"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "user_id", name=op.f("pk_digest_preferences")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, condition in POLICIES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {name} ON {table} FOR ALL USING ({condition})")


def downgrade() -> None:
    # Dropping a table drops its policies with it.
    op.drop_table("digest_preferences")
    op.drop_index("ix_watched_sellers_org_starred", table_name="watched_sellers")
    op.drop_table("watched_sellers")
