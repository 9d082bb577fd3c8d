"""Tenant scoping: every query of organization-owned rows starts here."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa

if TYPE_CHECKING:  # core/ stands below the tables, which use its clock
    from app.tables import OrgOwned

RowT = TypeVar("RowT", bound="OrgOwned")


def org_rows(model: type[RowT], org_id: uuid.UUID) -> sa.Select[RowT]:
    """`SELECT model WHERE org_id = :org_id`: the only way services read tenant rows."""
    return sa.select(model).where(model.org_id == org_id)
