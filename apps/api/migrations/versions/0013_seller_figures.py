"""Seller figures per run: a run's ranking is read from `run_sellers`, not its listings.

`run_sellers` gains each seller's figures in the run: `products` (distinct products it
lists), `listings`, `min_price`, `max_price`, `feedback_score`, `feedback_percentage` and
`currency`, which every eBay checkpoint adds to; and `rank` and `median_price`, set when
the run finishes. The index `ix_run_sellers_ranking` holds the ranking's order, so a page
of it costs the same at any run size.

Existing runs get their figures from their listings here, and finished ones (completed or
failed) their ranks and medians.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICE = sa.Numeric(12, 2)
RANKING = "ix_run_sellers_ranking"

FIGURES = """
UPDATE run_sellers SET
  products = (SELECT count(DISTINCT l.asin) FROM run_listings l
              WHERE l.run_id = run_sellers.run_id AND l.seller_username = run_sellers.username),
  listings = (SELECT count(*) FROM run_listings l
              WHERE l.run_id = run_sellers.run_id AND l.seller_username = run_sellers.username),
  min_price = (SELECT min(l.price) FROM run_listings l
               WHERE l.run_id = run_sellers.run_id AND l.seller_username = run_sellers.username),
  max_price = (SELECT max(l.price) FROM run_listings l
               WHERE l.run_id = run_sellers.run_id AND l.seller_username = run_sellers.username),
  feedback_score = (SELECT max(l.seller_feedback_score) FROM run_listings l
                    WHERE l.run_id = run_sellers.run_id
                      AND l.seller_username = run_sellers.username),
  feedback_percentage = (SELECT max(l.seller_feedback_percentage) FROM run_listings l
                         WHERE l.run_id = run_sellers.run_id
                           AND l.seller_username = run_sellers.username),
  currency = (SELECT min(l.currency) FROM run_listings l
              WHERE l.run_id = run_sellers.run_id AND l.seller_username = run_sellers.username)
"""
FINISHED = "SELECT id FROM collection_runs WHERE status IN ('completed', 'failed')"
RANKS = f"""
UPDATE run_sellers SET rank = ranked.rank
FROM (
  SELECT run_id, username,
         row_number() OVER (PARTITION BY run_id
                            ORDER BY products DESC, listings DESC, username) AS rank
  FROM run_sellers WHERE run_id IN ({FINISHED})
) AS ranked
WHERE run_sellers.run_id = ranked.run_id AND run_sellers.username = ranked.username
"""
# The middle price, or the mean of the middle two rounded half up to the cent, in whole
# cents (as app.runs.sellers computes it when a run finishes).
MEDIANS = f"""
UPDATE run_sellers SET median_price = medians.median_price
FROM (
  SELECT run_id, username,
         ((CAST(sum(cents) AS BIGINT) + count(*) - 1) / count(*)) / 100.0 AS median_price
  FROM (
    SELECT run_id, seller_username AS username, CAST(round(price * 100) AS BIGINT) AS cents,
           row_number() OVER (PARTITION BY run_id, seller_username ORDER BY price) AS position,
           count(*) OVER (PARTITION BY run_id, seller_username) AS total
    FROM run_listings WHERE price IS NOT NULL AND run_id IN ({FINISHED})
  ) AS ordered
  WHERE position IN ((total + 1) / 2, (total + 2) / 2)
  GROUP BY run_id, username
) AS medians
WHERE run_sellers.run_id = medians.run_id AND run_sellers.username = medians.username
"""


def upgrade() -> None:
    with op.batch_alter_table("run_sellers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "products",
                sa.Integer(),
                server_default="0",
                nullable=False,
                comment="distinct products it lists",
            )
        )
        batch_op.add_column(sa.Column("listings", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("min_price", PRICE, nullable=True))
        batch_op.add_column(sa.Column("max_price", PRICE, nullable=True))
        batch_op.add_column(
            sa.Column("median_price", PRICE, nullable=True, comment="set when the run finishes")
        )
        batch_op.add_column(
            sa.Column(
                "currency",
                sa.String(length=3),
                nullable=True,
                comment="of its listings' prices (one eBay marketplace)",
            )
        )
        batch_op.add_column(sa.Column("feedback_score", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("feedback_percentage", sa.Numeric(5, 2), nullable=True))
        batch_op.add_column(
            sa.Column(
                "rank",
                sa.Integer(),
                nullable=True,
                comment="1 = most products; set when the run finishes",
            )
        )
    op.execute(FIGURES)
    op.execute(RANKS)
    op.execute(MEDIANS)
    op.create_index(
        RANKING,
        "run_sellers",
        ["run_id", sa.text("products DESC"), sa.text("listings DESC"), "username"],
    )


def downgrade() -> None:
    op.drop_index(RANKING, table_name="run_sellers")
    with op.batch_alter_table("run_sellers", schema=None) as batch_op:
        for column in (
            "rank",
            "feedback_percentage",
            "feedback_score",
            "currency",
            "median_price",
            "max_price",
            "min_price",
            "listings",
            "products",
        ):
            batch_op.drop_column(column)
