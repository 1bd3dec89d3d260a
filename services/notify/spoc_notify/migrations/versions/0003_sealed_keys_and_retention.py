"""sealed access keys, contact age, delivery log index; failed deliveries keep no message

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import spoc_platform.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_key_sealed", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("updated_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_ticket_contact_updated_at"), ["updated_at"], unique=False
        )
    # Existing records start their retention now, not at once.
    contact = sa.table(
        "ticket_contact", sa.column("updated_at", spoc_platform.db.UtcDateTime(timezone=True))
    )
    op.execute(sa.update(contact).values(updated_at=datetime.now(UTC)))
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_created_at", ["created_at"], unique=False)
    # A delivery that failed for good will never be sent: its message (and the requester's
    # link in it) has no reason to stay.
    delivery = sa.table(
        "delivery", sa.column("status", sa.String()), sa.column("message", sa.Text())
    )
    op.execute(sa.update(delivery).where(delivery.c.status == "failed").values(message=""))


def downgrade() -> None:
    # Older releases cannot open a boxed message and would send it as it is: such deliveries
    # fail instead (their requesters still have the link intake's answer gave them), and the
    # sealed keys of tickets still waiting for their acknowledgement go with their column.
    delivery = sa.table(
        "delivery",
        sa.column("status", sa.String()),
        sa.column("message", sa.Text()),
        sa.column("last_error", sa.Text()),
    )
    op.execute(
        sa.update(delivery)
        .where(delivery.c.status == "pending", delivery.c.message.like("spoc-boxed:%"))
        .values(status="failed", message="", last_error="boxed by a newer release (downgraded)")
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_created_at")
    with op.batch_alter_table("ticket_contact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_contact_updated_at"))
        batch_op.drop_column("updated_at")
        batch_op.drop_column("access_key_sealed")
