"""phone calls (who took one, first-contact resolution) and follow-up tickets

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taken_by", sa.String(length=64), nullable=True))
        # Every ticket before this one was not solved during a call: false, not unknown.
        batch_op.add_column(
            sa.Column(
                "first_contact_resolution", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(sa.Column("follows_up", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("follows_up")
        batch_op.drop_column("first_contact_resolution")
        batch_op.drop_column("taken_by")
