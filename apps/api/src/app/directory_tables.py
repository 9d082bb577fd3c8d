"""Tables of the seller directory (app.runs.directory): apart from app.tables, which keeps
every other table, so that no module grows past what one reads at once. They share its
metadata; app.runs.directory imports them, and so does migrations/env.py (autogenerate
compares the whole metadata)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.tables import Base, OrgOwned

DIRECTORY_ALL = uuid.UUID(int=0)
"""The scope of the seller directory that counts every completed run of the organization."""


class DirectoryScope(OrgOwned, Base):
    """A preset, or a category list run without one, as the seller directory sees it: how
    many of its completed runs were recorded and the latest two of them, which a seller's
    trend compares (see app.runs.directory)."""

    __tablename__ = "seller_directory_scopes"

    org_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    scope_id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, comment="the preset's id, or a UUID derived from a category list"
    )
    preset_id: Mapped[uuid.UUID | None] = mapped_column(comment="NULL: runs of a category list")
    category_ids: Mapped[list[str]] = mapped_column(comment="of its latest recorded run")
    runs: Mapped[int] = mapped_column(comment="completed runs recorded")
    latest_run_id: Mapped[uuid.UUID]
    latest_run_at: Mapped[datetime] = mapped_column(comment="when that run was created")
    previous_run_id: Mapped[uuid.UUID | None]
    previous_run_at: Mapped[datetime | None]


class DirectorySeller(OrgOwned, Base):
    """A seller the organization's completed runs saw: one row per scope that saw it (each
    preset, each category list) and one for all runs (`scope_id` = DIRECTORY_ALL).

    Kept when runs finish (app.runs.directory), never recomputed from the runs' results,
    so retention deleting a run's results leaves its row as it is. `last_*` are the
    seller's figures in the latest run that saw it (in the scope), `prev_*` in the one
    before that; the all-runs row copies them from the scope of its latest run.
    """

    __tablename__ = "seller_directory"

    org_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    scope_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(comment="creation of the first run")
    last_seen_at: Mapped[datetime] = mapped_column(comment="creation of the latest run")
    runs_seen: Mapped[int]
    last_scope_id: Mapped[uuid.UUID] = mapped_column(comment="the scope of its latest run")
    last_run_id: Mapped[uuid.UUID]
    last_rank: Mapped[int]
    last_products: Mapped[int]
    last_listings: Mapped[int]
    prev_run_id: Mapped[uuid.UUID | None] = mapped_column(comment="in the same scope")
    prev_seen_at: Mapped[datetime | None]
    prev_rank: Mapped[int | None]


# One index per order of the directory, each served forwards (ascending) and backwards.
_DIRECTORY_ORDERS = {
    "last_seen": (DirectorySeller.last_seen_at, DirectorySeller.last_rank.desc()),
    "first_seen": (DirectorySeller.first_seen_at, DirectorySeller.last_rank.desc()),
    "runs_seen": (DirectorySeller.runs_seen, DirectorySeller.last_rank.desc()),
    "products": (DirectorySeller.last_products, DirectorySeller.last_rank.desc()),
}
for _name, _columns in _DIRECTORY_ORDERS.items():
    sa.Index(
        f"ix_seller_directory_{_name}",
        DirectorySeller.org_id,
        DirectorySeller.scope_id,
        *_columns,
        DirectorySeller.username.desc(),
    )
sa.Index(
    "ix_seller_directory_rank",
    DirectorySeller.org_id,
    DirectorySeller.scope_id,
    DirectorySeller.last_rank,
    DirectorySeller.last_seen_at.desc(),
    DirectorySeller.username,
)
sa.Index("ix_seller_directory_seller", DirectorySeller.org_id, DirectorySeller.username)
