"""idempotency answers sealed under the client's key, found by a digest of it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:00:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import spoc_platform.db
from spoc_intake.answers import answer_digest, seal_answer

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    answers = op.create_table(
        "idempotency_answer",
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_digest", name=op.f("pk_idempotency_answer")),
    )
    with op.batch_alter_table("idempotency_answer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_answer_created_at"), ["created_at"], unique=False
        )
    # Answers still within their replay window keep working: each is sealed under its own key,
    # which only the old table knew, then that table (plaintext keys and answers) is dropped.
    old = sa.table(
        "idempotency_key",
        sa.column("key", sa.String()),
        sa.column("request_hash", sa.String()),
        sa.column("ticket_id", sa.Uuid()),
        sa.column("response", sa.Text()),
        sa.column("created_at", spoc_platform.db.UtcDateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(old)).all()
    if rows:
        op.bulk_insert(
            answers,
            [
                {
                    "key_digest": answer_digest(row.key),
                    "request_hash": row.request_hash,
                    "ticket_id": row.ticket_id,
                    "answer": seal_answer(
                        row.key,
                        row.response
                        if isinstance(row.response, dict)
                        else json.loads(row.response),
                    ),
                    "created_at": row.created_at,
                }
                for row in rows
            ],
        )
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_key_created_at"))
    op.drop_table("idempotency_key")


def downgrade() -> None:
    # The sealed answers cannot be opened without the clients' keys: a replay after a downgrade
    # creates a new ticket, as one after the replay window does.
    op.create_table(
        "idempotency_key",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_key")),
    )
    with op.batch_alter_table("idempotency_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_key_created_at"), ["created_at"], unique=False
        )
    with op.batch_alter_table("idempotency_answer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_answer_created_at"))
    op.drop_table("idempotency_answer")
