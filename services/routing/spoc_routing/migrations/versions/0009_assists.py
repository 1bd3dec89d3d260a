"""an escalated ticket's helper (assist) and the groups it came from, for the hand-back

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Tickets escalated before are left as they were: at depth 0 a hand-back is refused, and
    # the owner asks the group again if need be.
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("escalation_path", JSON, nullable=True))
        batch_op.add_column(
            sa.Column("escalation_depth", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.drop_column("escalation_depth")
        batch_op.drop_column("escalation_path")
        batch_op.drop_column("assignee_id")
