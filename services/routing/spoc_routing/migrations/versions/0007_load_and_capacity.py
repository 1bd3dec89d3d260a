"""agents' load (open tickets) and capacity; a triage's active flag

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Routing had not heard of resolutions until now: a ticket triaged before is neither active
    # nor not (NULL) until its next status change, and no agent is loaded with it (the load
    # starts afresh from here; a long-closed ticket never joins a queue).
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("status_sequence", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("open_tickets", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("capacity", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.drop_column("capacity")
        batch_op.drop_column("open_tickets")
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.drop_column("status_sequence")
        batch_op.drop_column("active")
