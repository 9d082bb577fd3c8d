"""Web sessions kept on the server, and one-time sign-in links kept in the database.

Sign-out and idle time end a session; a separate `collection-api sign-in-link` can issue a
link that `serve` redeems.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, comment="SHA-256, hex"),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column(
            "last_seen_at", TIMESTAMP, nullable=False, comment="updated at most once a minute"
        ),
        sa.Column("expires_at", TIMESTAMP, nullable=False, comment="ends here however active"),
        sa.Column("revoked_at", TIMESTAMP, nullable=True, comment="signed out"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"])
    op.create_table(
        "web_sign_in_links",
        sa.Column("code_hash", sa.String(length=64), nullable=False, comment="SHA-256"),
        sa.Column("email", sa.String(length=320), nullable=False, comment="whom it signs in"),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("used_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_web_sign_in_links")),
    )


def downgrade() -> None:
    op.drop_table("web_sign_in_links")
    op.drop_index(op.f("ix_web_sessions_user_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
