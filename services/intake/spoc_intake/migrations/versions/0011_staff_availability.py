"""staff availability: available, away or off

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("staff_account", schema=None) as batch_op:
        # Nobody could say otherwise before this revision: every account starts available.
        batch_op.add_column(
            sa.Column(
                "availability", sa.String(length=16), server_default="available", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("staff_account", schema=None) as batch_op:
        batch_op.drop_column("availability")
