"""an index for each group's waiting queue (oldest_waiting: every resolution and every sweep;
waiting_counts: every sweep): its active tickets, oldest first

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.create_index(
            "ix_triage_waiting",
            ["group_id", "routed_at"],
            unique=False,
            postgresql_where=sa.text("active IS true"),
            sqlite_where=sa.text("active IS 1"),
        )


def downgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.drop_index("ix_triage_waiting")
