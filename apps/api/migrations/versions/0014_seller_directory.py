"""The seller directory: every seller an organization's completed runs saw, per preset and
overall, kept as runs complete (app.runs.directory).

New tables:

- `seller_directory`: one row per (organization, scope, seller), where a scope is a preset,
  a category list run without a preset, or all runs (the nil UUID): first and last seen,
  runs seen, the seller's figures in its latest run and its rank in the one before;
- `seller_directory_scopes`: per scope, the completed runs recorded and the latest two.

`collection_runs.directory_recorded_at` marks a run recorded (once). Both tables have the
row-level security policy of the organization's other data (PostgreSQL, as in 0009).

Existing completed runs whose results are kept are recorded here, set-based per scope;
runs whose results retention already deleted are not counted (their sellers are gone).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ALL = uuid.UUID(int=0)
# app.runs.directory's namespace of category-list scopes: the same ids as the service's.
CATEGORY_LISTS = uuid.UUID("6f1c2d1e-8a4b-5c3d-9e7f-0a1b2c3d4e5f")

# 0009's policy for an organization's data: members of the acting organization, or the system.
ORG = "(SELECT NULLIF(current_setting('app.org_id', true), '')::uuid)"
SYSTEM = "(SELECT current_setting('app.system', true) = 'on')"
MEMBERS = f"{SYSTEM} OR (org_id = {ORG} AND (SELECT app_acting_role()) IS NOT NULL)"
TABLES = ("seller_directory_scopes", "seller_directory")

ORDERS = {
    "last_seen": ["last_seen_at", sa.text("last_rank DESC")],
    "first_seen": ["first_seen_at", sa.text("last_rank DESC")],
    "runs_seen": ["runs_seen", sa.text("last_rank DESC")],
    "products": ["last_products", sa.text("last_rank DESC")],
}


def _create_tables() -> None:
    op.create_table(
        "seller_directory_scopes",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column(
            "scope_id",
            sa.Uuid(),
            nullable=False,
            comment="the preset's id, or a UUID derived from a category list",
        ),
        sa.Column("preset_id", sa.Uuid(), nullable=True, comment="NULL: runs of a category list"),
        sa.Column("category_ids", JSON, nullable=False, comment="of its latest recorded run"),
        sa.Column("runs", sa.Integer(), nullable=False, comment="completed runs recorded"),
        sa.Column("latest_run_id", sa.Uuid(), nullable=False),
        sa.Column("latest_run_at", TIMESTAMP, nullable=False, comment="when that run was created"),
        sa.Column("previous_run_id", sa.Uuid(), nullable=True),
        sa.Column("previous_run_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_seller_directory_scopes_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "scope_id", name=op.f("pk_seller_directory_scopes")),
    )
    op.create_table(
        "seller_directory",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("first_seen_at", TIMESTAMP, nullable=False, comment="creation of the first run"),
        sa.Column("last_seen_at", TIMESTAMP, nullable=False, comment="creation of the latest run"),
        sa.Column("runs_seen", sa.Integer(), nullable=False),
        sa.Column(
            "last_scope_id", sa.Uuid(), nullable=False, comment="the scope of its latest run"
        ),
        sa.Column("last_run_id", sa.Uuid(), nullable=False),
        sa.Column("last_rank", sa.Integer(), nullable=False),
        sa.Column("last_products", sa.Integer(), nullable=False),
        sa.Column("last_listings", sa.Integer(), nullable=False),
        sa.Column("prev_run_id", sa.Uuid(), nullable=True, comment="in the same scope"),
        sa.Column("prev_seen_at", TIMESTAMP, nullable=True),
        sa.Column("prev_rank", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_seller_directory_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "scope_id", "username", name=op.f("pk_seller_directory")),
    )
    for name, columns in ORDERS.items():
        op.create_index(
            f"ix_seller_directory_{name}",
            "seller_directory",
            ["org_id", "scope_id", *columns, sa.text("username DESC")],
        )
    op.create_index(
        "ix_seller_directory_rank",
        "seller_directory",
        ["org_id", "scope_id", "last_rank", sa.text("last_seen_at DESC"), "username"],
    )
    op.create_index("ix_seller_directory_seller", "seller_directory", ["org_id", "username"])


RUNS = sa.table(
    "collection_runs",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("preset_id", sa.Uuid()),
    sa.column("category_ids", sa.JSON()),
    sa.column("created_at", TIMESTAMP),
    sa.column("status", sa.String()),
    sa.column("results_purged_at", TIMESTAMP),
    sa.column("directory_recorded_at", TIMESTAMP),
)
SCOPES = sa.table(
    "seller_directory_scopes",
    sa.column("org_id", sa.Uuid()),
    sa.column("scope_id", sa.Uuid()),
    sa.column("preset_id", sa.Uuid()),
    sa.column("category_ids", sa.JSON()),
    sa.column("runs", sa.Integer()),
    sa.column("latest_run_id", sa.Uuid()),
    sa.column("latest_run_at", TIMESTAMP),
    sa.column("previous_run_id", sa.Uuid()),
    sa.column("previous_run_at", TIMESTAMP),
)
DIRECTORY_COLUMNS = (
    "org_id, scope_id, username, first_seen_at, last_seen_at, runs_seen, last_scope_id, "
    "last_run_id, last_rank, last_products, last_listings, prev_run_id, prev_seen_at, prev_rank"
)
# A scope's sellers: each one's latest run and the one before, among the scope's runs.
IN_SCOPE = sa.text(
    f"""
    WITH seen AS (
      SELECT s.username, r.id AS run_id, r.created_at, s.rank, s.products, s.listings,
             row_number() OVER (PARTITION BY s.username
                                ORDER BY r.created_at DESC, r.id DESC) AS recency,
             count(*) OVER (PARTITION BY s.username) AS runs_seen,
             min(r.created_at) OVER (PARTITION BY s.username) AS first_seen_at
      FROM run_sellers s JOIN collection_runs r ON r.id = s.run_id
      WHERE s.run_id IN :runs
    )
    INSERT INTO seller_directory ({DIRECTORY_COLUMNS})
    SELECT :org, :scope, l.username, l.first_seen_at, l.created_at, l.runs_seen, :scope,
           l.run_id, l.rank, l.products, l.listings, p.run_id, p.created_at, p.rank
    FROM seen l LEFT JOIN seen p ON p.username = l.username AND p.recency = 2
    WHERE l.recency = 1
    """
).bindparams(
    sa.bindparam("runs", expanding=True, type_=sa.Uuid()),
    sa.bindparam("org", type_=sa.Uuid()),
    sa.bindparam("scope", type_=sa.Uuid()),
)
# Over all runs: the scope row of each seller's latest run, with the sums over its scopes.
IN_ALL = sa.text(
    f"""
    INSERT INTO seller_directory ({DIRECTORY_COLUMNS})
    SELECT org_id, :all, username, first_of_all, last_seen_at, runs_of_all, last_scope_id,
           last_run_id, last_rank, last_products, last_listings, prev_run_id, prev_seen_at,
           prev_rank
    FROM (
      SELECT d.*,
             row_number() OVER (PARTITION BY org_id, username
                                ORDER BY last_seen_at DESC, last_run_id DESC) AS recency,
             min(first_seen_at) OVER (PARTITION BY org_id, username) AS first_of_all,
             sum(runs_seen) OVER (PARTITION BY org_id, username) AS runs_of_all
      FROM seller_directory d
    ) AS scoped
    WHERE recency = 1
    """
).bindparams(sa.bindparam("all", type_=sa.Uuid()))


def _scope_of(preset_id: uuid.UUID | None, category_ids: list[str]) -> uuid.UUID:
    if preset_id is not None:
        return preset_id
    return uuid.uuid5(CATEGORY_LISTS, json.dumps(list(category_ids)))


def _record_existing_runs() -> None:
    bind = op.get_bind()
    runs = bind.execute(
        sa.select(
            RUNS.c.id, RUNS.c.org_id, RUNS.c.preset_id, RUNS.c.category_ids, RUNS.c.created_at
        )
        .where(RUNS.c.status == "completed", RUNS.c.results_purged_at.is_(None))
        .order_by(RUNS.c.org_id, RUNS.c.created_at, RUNS.c.id)
    ).all()

    def scope_key(run: Any) -> tuple[uuid.UUID, uuid.UUID]:
        return run.org_id, _scope_of(run.preset_id, run.category_ids)

    scopes = []
    for (org_id, scope_id), group in groupby(sorted(runs, key=scope_key), key=scope_key):
        ordered = sorted(group, key=lambda run: (run.created_at, run.id))
        latest, previous = ordered[-1], (ordered[-2] if len(ordered) > 1 else None)
        scopes.append(
            {
                "org_id": org_id,
                "scope_id": scope_id,
                "preset_id": latest.preset_id,
                "category_ids": latest.category_ids,
                "runs": len(ordered),
                "latest_run_id": latest.id,
                "latest_run_at": latest.created_at,
                "previous_run_id": previous.id if previous else None,
                "previous_run_at": previous.created_at if previous else None,
            }
        )
        bind.execute(
            IN_SCOPE, {"runs": [run.id for run in ordered], "org": org_id, "scope": scope_id}
        )
    if scopes:
        op.bulk_insert(SCOPES, scopes)  # type: ignore[arg-type]  # a TableClause does
        bind.execute(IN_ALL, {"all": ALL})
        recorded = sa.bindparam("ids", expanding=True, type_=sa.Uuid())
        bind.execute(
            RUNS.update()
            .where(RUNS.c.id.in_(recorded))
            .values(directory_recorded_at=datetime.now(UTC)),
            {"ids": [run.id for run in runs]},
        )


def upgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "directory_recorded_at",
                TIMESTAMP,
                nullable=True,
                comment="when its sellers were added to the seller directory (once)",
            )
        )
    _create_tables()
    _record_existing_runs()
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY {table}_members ON {table} FOR ALL USING ({MEMBERS})")
            # statistics now, not at autovacuum's next pass: without them the planner takes
            # the freshly filled directory for empty and sorts a scope instead of reading
            # the index of its order (300 ms instead of 3 at 100,000 sellers)
            op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP POLICY IF EXISTS {table}_members ON {table}")
    op.drop_index("ix_seller_directory_seller", table_name="seller_directory")
    op.drop_index("ix_seller_directory_rank", table_name="seller_directory")
    for name in ORDERS:
        op.drop_index(f"ix_seller_directory_{name}", table_name="seller_directory")
    op.drop_table("seller_directory")
    op.drop_table("seller_directory_scopes")
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_column("directory_recorded_at")
