"""requesters matched by address key; vouched contact from an address (requester_known)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ticket = sa.table(
    "ticket",
    sa.column("requester_email", sa.String()),
    sa.column("requester_email_key", sa.String()),
    sa.column("requester_vouched", sa.Boolean()),
)
link = sa.table("requester_link", sa.column("email", sa.String()), sa.column("used_at"))


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requester_email_key", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("requester_vouched", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # The key is schemas.email_key: the address lower-cased. Stored addresses are ASCII (the
    # domain IDNA-encoded, a non-ASCII local part refused), where SQL's lower() is Python's.
    op.execute(ticket.update().values(requester_email_key=sa.func.lower(ticket.c.requester_email)))
    # Vouched before this revision, as far as the rows tell: only addresses that used a
    # sign-in link still on record (only the address's mail had it). Not a ticket's channel:
    # before 5d69439 an anonymous caller could file as `phone` or `email` too, so a stranger's
    # old ticket would make the address known. Fail closed: an address that was vouched for
    # otherwise gets acknowledgements that keep the opener's words out of their headers until
    # it is vouched for again (a staff ticket, a sign-in link).
    used_links = sa.select(sa.func.lower(link.c.email)).where(link.c.used_at.is_not(None))
    op.execute(
        ticket.update()
        .where(ticket.c.requester_email_key.in_(used_links))
        .values(requester_vouched=sa.true())
    )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.alter_column(
            "requester_email_key", existing_type=sa.String(length=320), nullable=False
        )
        batch_op.drop_index("ix_ticket_requester_email")
        batch_op.create_index(
            "ix_ticket_requester_email_key",
            ["requester_email_key", "requester_vouched"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_requester_email_key")
        batch_op.create_index("ix_ticket_requester_email", ["requester_email"], unique=False)
        batch_op.drop_column("requester_vouched")
        batch_op.drop_column("requester_email_key")
