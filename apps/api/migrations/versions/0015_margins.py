"""Margins: shipping of listings, the expected eBay fee % of organizations and runs, and each
seller's median estimated margin.

- `organizations.expected_fee_percent` (0-100, default 13.25: eBay's final value fee for
  most categories on ebay.com), the organization's setting;
- `collection_runs.fee_percent`: the setting when the run was created, which its margins
  use (a later change of the setting does not change a run's results). Existing runs get
  13.25, the setting every organization had;
- `run_listings.shipping` and `shipping_currency`: what the buyer pays for shipping (0:
  free); NULL, unknown, for the listings collected before;
- `run_sellers.median_margin`, set when a run finishes; computed here for the runs that
  finished before (their shipping is unknown, so it counts as 0, as app.runs.margins says);
- `ix_run_listings_run_seller` gains the listing's key (asin, item_id), so a page of one
  seller's listings (GET /collection/runs/{id}/listings?seller=) is one range of it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICE = sa.Numeric(12, 2)
FEE_PERCENT = sa.Numeric(5, 2)
DEFAULT_FEE_PERCENT = "13.25"
DEFAULT_FEE_BP = 1325

SELLER_INDEX = "ix_run_listings_run_seller"
FINISHED = "SELECT id FROM collection_runs WHERE status IN ('completed', 'failed')"
# app.runs.margins in whole cents, with no shipping known: price - fees - Amazon price, for
# listings priced in their product's currency (and in their seller's).
MEDIAN_MARGINS = f"""
UPDATE run_sellers SET median_margin = medians.median_margin
FROM (
  SELECT run_id, username,
         ((CAST(sum(cents) AS BIGINT) + count(*) - 1 + count(*) * 100000000000000) / count(*)
          - 100000000000000) / 100.0 AS median_margin
  FROM (
    SELECT run_id, username, cents,
           row_number() OVER (PARTITION BY run_id, username ORDER BY cents) AS position,
           count(*) OVER (PARTITION BY run_id, username) AS total
    FROM (
      SELECT l.run_id, l.seller_username AS username,
             CAST(round(l.price * 100) AS BIGINT)
             - (CAST(round(l.price * 100) AS BIGINT) * {DEFAULT_FEE_BP} + 5000) / 10000
             - CAST(round(p.price * 100) AS BIGINT) AS cents
      FROM run_listings l
      JOIN run_products p ON p.run_id = l.run_id AND p.asin = l.asin
      JOIN run_sellers s ON s.run_id = l.run_id AND s.username = l.seller_username
      WHERE l.price >= 0 AND p.price IS NOT NULL AND l.currency = p.currency
        AND s.currency = l.currency AND l.run_id IN ({FINISHED})
    ) AS margins
  ) AS ordered
  WHERE position IN ((total + 1) / 2, (total + 2) / 2)
  GROUP BY run_id, username
) AS medians
WHERE run_sellers.run_id = medians.run_id AND run_sellers.username = medians.username
"""


def _fee_percent(table: str, name: str, comment: str) -> sa.Column[object]:
    check = f"{name} >= 0 AND {name} <= 100"
    return sa.Column(
        name,
        FEE_PERCENT,
        sa.CheckConstraint(check, name=op.f(f"ck_{table}_fee_percent_range")),
        server_default=DEFAULT_FEE_PERCENT,
        nullable=False,
        comment=comment,
    )


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            _fee_percent(
                "organizations",
                "expected_fee_percent",
                "eBay fees as a % of price + shipping, for estimated margins; runs copy it",
            )
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(
            _fee_percent(
                "collection_runs",
                "fee_percent",
                "the organization's expected fee % when the run was created: its margins' fees",
            )
        )
    with op.batch_alter_table("run_listings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "shipping",
                PRICE,
                nullable=True,
                comment="charged to the buyer; 0: free; NULL: unknown",
            )
        )
        batch_op.add_column(sa.Column("shipping_currency", sa.String(length=3), nullable=True))
    with op.batch_alter_table("run_sellers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "median_margin",
                PRICE,
                nullable=True,
                comment="of its listings' estimated margins (in `currency`)",
            )
        )
    op.execute(MEDIAN_MARGINS)
    _seller_index("run_id", "seller_username", "asin", "item_id")


def _seller_index(*columns: str) -> None:
    with op.batch_alter_table("run_listings", schema=None) as batch_op:
        batch_op.drop_index(SELLER_INDEX)
        batch_op.create_index(SELLER_INDEX, list(columns), unique=False)


def downgrade() -> None:
    _seller_index("run_id", "seller_username")
    with op.batch_alter_table("run_sellers", schema=None) as batch_op:
        batch_op.drop_column("median_margin")
    with op.batch_alter_table("run_listings", schema=None) as batch_op:
        batch_op.drop_column("shipping_currency")
        batch_op.drop_column("shipping")
    for table, column in (
        ("collection_runs", "fee_percent"),
        ("organizations", "expected_fee_percent"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            # First the check: SQLite's batch copy would keep it, naming a column gone.
            batch_op.drop_constraint(op.f(f"ck_{table}_fee_percent_range"), type_="check")
            batch_op.drop_column(column)
