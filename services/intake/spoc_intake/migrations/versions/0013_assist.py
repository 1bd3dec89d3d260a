"""who helps with an escalated ticket (an assist), for staff

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 11:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignee_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("assignee_name", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("assignee_name")
        batch_op.drop_column("assignee_id")
