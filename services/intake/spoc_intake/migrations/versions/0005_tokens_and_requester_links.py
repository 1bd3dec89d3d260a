"""bearer tokens, requester sign-in links and requester sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spoc_platform.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_table(
        "requester_link",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_requester_link")),
    )
    with op.batch_alter_table("requester_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_requester_link_expires_at"), ["expires_at"], unique=False
        )
    op.create_table(
        "requester_session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("idle_seconds", sa.Integer(), nullable=False),
        sa.Column("expires_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requester_session")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_requester_session_secret_hash")),
    )
    with op.batch_alter_table("requester_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_requester_session_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("requester_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requester_session_expires_at"))
    op.drop_table("requester_session")
    with op.batch_alter_table("requester_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requester_link_expires_at"))
    op.drop_table("requester_link")
    op.drop_table("api_token")
