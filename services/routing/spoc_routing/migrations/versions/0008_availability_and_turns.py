"""agents' availability and last assignment (round-robin); the skills a ticket needs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from spoc_platform.db import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "availability", sa.String(length=16), server_default="available", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("last_assigned_at", UtcDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skills", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.drop_column("skills")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("last_assigned_at")
        batch_op.drop_column("availability")
