"""ticket_contact.requester_known: may the acknowledgement's headers carry the opener's text

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Records written before are strangers' until told otherwise: their acknowledgement, if
    # still owed, keeps the opener's subject and name out of its headers. '0' is false to
    # PostgreSQL and SQLite alike, and a literal lets SQLite add the column in place (an
    # expression would make batch mode copy the table, which `upgrade --sql` cannot).
    with op.batch_alter_table("ticket_contact", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("requester_known", sa.Boolean(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket_contact", schema=None) as batch_op:
        batch_op.drop_column("requester_known")
