"""how far each ticket's SLA targets have escalated (hierarchical escalation)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spoc_platform.db import UtcDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation_stage",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("escalated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "metric", name=op.f("pk_escalation_stage")),
    )
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority_floor", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.drop_column("priority_floor")
    op.drop_table("escalation_stage")
