"""Collection runs pipeline: progress, leases, one active run per org, checkpointed results.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ACTIVE = sa.text("status IN ('pending', 'running', 'paused')")


def upgrade() -> None:
    op.create_table(
        "run_categories",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.String(length=20), nullable=False),
        sa.Column("products_found", sa.Integer(), nullable=False),
        sa.Column("done_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["collection_runs.id"],
            name=op.f("fk_run_categories_run_id_collection_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "position", name=op.f("pk_run_categories")),
    )
    op.create_table(
        "run_listings",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("asin", sa.String(length=20), nullable=False),
        sa.Column("item_id", sa.String(length=100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("seller_username", sa.String(length=100), nullable=False),
        sa.Column("seller_feedback_score", sa.Integer(), nullable=True),
        sa.Column("seller_feedback_percentage", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["collection_runs.id"],
            name=op.f("fk_run_listings_run_id_collection_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "asin", "item_id", name=op.f("pk_run_listings")),
    )
    with op.batch_alter_table("run_listings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_run_listings_run_seller", ["run_id", "seller_username"], unique=False
        )

    op.create_table(
        "run_products",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("asin", sa.String(length=20), nullable=False),
        sa.Column("category_id", sa.String(length=20), nullable=False),
        sa.Column("category_position", sa.Integer(), nullable=False),
        sa.Column("sales_rank", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("brand", sa.String(length=200), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("upcs", JSON, nullable=False),
        sa.Column("eans", JSON, nullable=False),
        sa.Column("listings_found", sa.Integer(), nullable=False),
        sa.Column("searched_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["collection_runs.id"],
            name=op.f("fk_run_products_run_id_collection_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "asin", name=op.f("pk_run_products")),
    )
    with op.batch_alter_table("run_products", schema=None) as batch_op:
        batch_op.create_index(
            "ix_run_products_run_order", ["run_id", "category_position", "sales_rank"], unique=False
        )

    op.create_table(
        "run_sellers",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["collection_runs.id"],
            name=op.f("fk_run_sellers_run_id_collection_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "username", name=op.f("pk_run_sellers")),
    )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "phase",
                sa.Enum(
                    "amazon",
                    "ebay",
                    "done",
                    name="run_phase",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("schedule_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("products_per_category", sa.Integer(), nullable=False, server_default="50")
        )
        batch_op.add_column(
            sa.Column("listings_per_product", sa.Integer(), nullable=False, server_default="20")
        )
        batch_op.add_column(
            sa.Column("categories_total", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("categories_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("products_found", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("products_searched", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("listings_found", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("sellers_found", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", TIMESTAMP, nullable=True))
        batch_op.add_column(sa.Column("results_purged_at", TIMESTAMP, nullable=True))
        batch_op.create_index(
            "ix_collection_runs_status_lease", ["status", "lease_expires_at"], unique=False
        )
        batch_op.create_index(
            "uq_collection_runs_one_active_per_org",
            ["org_id"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_collection_runs_one_active_per_org", sqlite_where=ACTIVE, postgresql_where=ACTIVE
        )
        batch_op.drop_index("ix_collection_runs_status_lease")
        batch_op.drop_column("results_purged_at")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("sellers_found")
        batch_op.drop_column("listings_found")
        batch_op.drop_column("products_searched")
        batch_op.drop_column("products_found")
        batch_op.drop_column("categories_done")
        batch_op.drop_column("categories_total")
        batch_op.drop_column("listings_per_product")
        batch_op.drop_column("products_per_category")
        batch_op.drop_column("schedule_id")
        # The enum's CHECK constraint must go first, or SQLite's batch copy still names it.
        batch_op.drop_constraint(op.f("ck_collection_runs_run_phase"), type_="check")
        batch_op.drop_column("phase")

    op.drop_table("run_sellers")
    with op.batch_alter_table("run_products", schema=None) as batch_op:
        batch_op.drop_index("ix_run_products_run_order")

    op.drop_table("run_products")
    with op.batch_alter_table("run_listings", schema=None) as batch_op:
        batch_op.drop_index("ix_run_listings_run_seller")

    op.drop_table("run_listings")
    op.drop_table("run_categories")
