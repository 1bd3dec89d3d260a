"""consumer-counted delivery failures

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spoc_platform.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_failure",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("first_failed_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_delivery_failure")),
    )
    with op.batch_alter_table("delivery_failure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_failure_last_failed_at"), ["last_failed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_failure_last_failed_at"))
    op.drop_table("delivery_failure")
