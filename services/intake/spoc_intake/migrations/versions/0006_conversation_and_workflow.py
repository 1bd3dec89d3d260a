"""comments, status workflow, owners and feedback

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spoc_platform.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("owner_id", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "first_responded_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("resolved_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "comment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.String(length=320), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("visibility", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_comment_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comment")),
    )
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.create_index("ix_comment_ticket_id_at", ["ticket_id", "at"], unique=False)
    op.create_table(
        "feedback",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_feedback_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_feedback")),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    with op.batch_alter_table("comment", schema=None) as batch_op:
        batch_op.drop_index("ix_comment_ticket_id_at")
    op.drop_table("comment")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("first_responded_at")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("group_id")
