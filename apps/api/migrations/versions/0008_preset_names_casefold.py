"""Preset names unique regardless of case; runs remember the preset they were made from.

`amazon_category_presets.name_key` is the case-folded name (Python's `str.casefold`, the
same on SQLite and PostgreSQL, unlike SQL's `lower`), unique per organization in place of
the name itself. Presets of one organization whose names differ only by case cannot keep
those names: the oldest keeps its name and each later one gets " (2)", " (3)", ... (logged
by the upgrade). `collection_runs.preset_id` lets a run's sellers be compared with the
previous completed run of the same preset; it has no foreign key, so the runs of a deleted
preset still compare with each other.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

NAME_LENGTH = 100
NAME_KEY_LENGTH = 300  # casefold can lengthen a name ("ß" -> "ss", "ﬃ" -> "ffi")

presets = sa.table(
    "amazon_category_presets",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _renamed(name: str, taken: set[str]) -> str:
    """`name (n)` with the smallest n whose case-folded form is not taken, within 100 chars."""
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = name[: NAME_LENGTH - len(suffix)] + suffix
        if candidate.casefold() not in taken:
            return candidate
        n += 1


def _fill_name_keys() -> None:
    """Set every preset's name_key, renaming the later of names that differ only by case."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(presets.c.id, presets.c.org_id, presets.c.name).order_by(
            presets.c.org_id, presets.c.created_at, presets.c.id
        )
    ).all()
    names_of_org: dict[object, set[str]] = {}
    for row in rows:
        names_of_org.setdefault(row.org_id, set()).add(row.name.casefold())
    kept: dict[object, set[str]] = {}
    changes = []
    for preset_id, org_id, name in rows:
        seen = kept.setdefault(org_id, set())
        new_name = name
        if name.casefold() in seen:
            new_name = _renamed(name, seen | names_of_org[org_id])
            logger.warning(
                "preset %s of organization %s renamed from %r to %r: its name differed "
                "only by case from an older preset's",
                preset_id,
                org_id,
                name,
                new_name,
            )
        seen.add(new_name.casefold())
        changes.append({"preset": preset_id, "new_name": new_name, "key": new_name.casefold()})
    if changes:
        connection.execute(
            presets.update()
            .where(presets.c.id == sa.bindparam("preset"))
            .values(name=sa.bindparam("new_name"), name_key=sa.bindparam("key")),
            changes,
        )


def upgrade() -> None:
    with op.batch_alter_table("amazon_category_presets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "name_key",
                sa.String(length=NAME_KEY_LENGTH),
                nullable=True,
                comment="the name case-folded: unique per organization",
            )
        )
    _fill_name_keys()
    with op.batch_alter_table("amazon_category_presets", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(NAME_KEY_LENGTH), nullable=False)
        batch_op.drop_constraint("uq_amazon_category_presets_org_id_name", type_="unique")
        batch_op.create_unique_constraint(
            "uq_amazon_category_presets_org_id_name_key", ["org_id", "name_key"]
        )
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "preset_id",
                sa.Uuid(),
                nullable=True,
                comment="the preset the run was made from (kept after the preset is deleted)",
            )
        )
        batch_op.create_index(
            "ix_collection_runs_org_preset_created",
            ["org_id", "preset_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_runs_org_preset_created")
        batch_op.drop_column("preset_id")
    with op.batch_alter_table("amazon_category_presets", schema=None) as batch_op:
        batch_op.drop_constraint("uq_amazon_category_presets_org_id_name_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_amazon_category_presets_org_id_name", ["org_id", "name"]
        )
        batch_op.drop_column("name_key")
