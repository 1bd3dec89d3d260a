"""intake's bearer tokens, projected from its credential.* events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spoc_platform.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_projection",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("expires_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_token_projection")),
        sa.UniqueConstraint("token_id", name=op.f("uq_token_projection_token_id")),
    )
    op.create_table(
        "token_feed",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("heard_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_feed")),
    )


def downgrade() -> None:
    op.drop_table("token_feed")
    op.drop_table("token_projection")
