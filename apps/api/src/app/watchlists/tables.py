"""Tables of watchlists and digests, on the one `Base` of app.tables (migration 0016).

Kept apart from app.tables, which is at its size limit; importing this module registers
them on the same metadata (the migration environment and the app both import it).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.tables import Base, OrgOwned

USERNAME_LENGTH = 100
"""As `run_listings.seller_username` and `run_sellers.username` store eBay usernames."""

DEFAULT_TOP_N = 10
DEFAULT_RANK_THRESHOLD = 5
TOP_N_RANGE = (1, 100)
RANK_THRESHOLD_RANGE = (1, 1000)


class WatchedSeller(OrgOwned, Base):
    """A seller the organization watches: starred by one member, watched for everyone."""

    __tablename__ = "watched_sellers"
    __table_args__ = (
        sa.PrimaryKeyConstraint("org_id", "username"),
        # The watchlist, newest first (keyset pages of (starred_at, username)).
        sa.Index("ix_watched_sellers_org_starred", "org_id", "starred_at", "username"),
    )

    username: Mapped[str] = mapped_column(
        sa.String(USERNAME_LENGTH), comment="the eBay username, exactly as runs store it"
    )
    starred_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), comment="NULL once that user is gone"
    )
    starred_at: Mapped[datetime] = mapped_column(default=utcnow)


class DigestPreference(Base):
    """What one member wants in the digest of a run, in one organization; no row: the
    defaults (not subscribed). Deleted with the membership."""

    __tablename__ = "digest_preferences"
    __table_args__ = (
        sa.PrimaryKeyConstraint("org_id", "user_id"),
        sa.ForeignKeyConstraint(
            ["org_id", "user_id"],
            ["memberships.org_id", "memberships.user_id"],
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            f"top_n BETWEEN {TOP_N_RANGE[0]} AND {TOP_N_RANGE[1]}", name="top_n_range"
        ),
        sa.CheckConstraint(
            f"rank_threshold BETWEEN {RANK_THRESHOLD_RANGE[0]} AND {RANK_THRESHOLD_RANGE[1]}",
            name="rank_threshold_range",
        ),
    )

    org_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID]
    subscribed: Mapped[bool] = mapped_column(
        default=False, comment="mail the digest after each completed scheduled run"
    )
    top_n: Mapped[int] = mapped_column(
        default=DEFAULT_TOP_N, comment="new sellers ranked this high or higher are news"
    )
    rank_threshold: Mapped[int] = mapped_column(
        default=DEFAULT_RANK_THRESHOLD, comment="a watched seller moving this many places is news"
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
