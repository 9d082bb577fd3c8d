"""Tables of the providers' fair share (app.providers.fair_share): the calls each organization
took from a provider's daily budget, and the daily cap an organization set itself. Apart
from app.tables (which keeps the service-wide `provider_call_counts`) so that no module
grows past what one reads at once; they share its metadata, and migrations/env.py imports
them too."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.tables import Base, OrgOwned


class ProviderOrgCallCount(OrgOwned, Base):
    """Calls an organization's runs took from a provider's daily budget on one provider
    day, and the pace they took them at (which says when the others get their turn)."""

    __tablename__ = "provider_org_call_counts"

    provider: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True, comment="in the provider's time zone")
    org_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    calls: Mapped[int]
    last_call_at: Mapped[datetime]
    seconds_per_call: Mapped[float | None] = mapped_column(
        sa.Float(), comment="moving average of the time between its calls (NULL after the first)"
    )


class ProviderCallCap(OrgOwned, Base):
    """At most `daily_calls` calls a day from a provider's budget for the organization's
    runs, as its admins set it (no row: no cap of its own)."""

    __tablename__ = "provider_call_caps"
    __table_args__ = (sa.CheckConstraint("daily_calls >= 1", name="daily_calls_positive"),)

    org_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    daily_calls: Mapped[int]
    updated_at: Mapped[datetime]
