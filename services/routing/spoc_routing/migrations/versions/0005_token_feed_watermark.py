"""token_feed: intake's count and digest of live tokens, since when this projection differs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:00:00.000000
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
    # All empty until intake's next heartbeat says which tokens it honours: until then the
    # projection fails closed only on a silent feed, as before.
    with op.batch_alter_table("token_feed", schema=None) as batch_op:
        batch_op.add_column(sa.Column("live_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("live_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("behind_since", spoc_platform.db.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("token_feed", schema=None) as batch_op:
        batch_op.drop_column("behind_since")
        batch_op.drop_column("live_digest")
        batch_op.drop_column("live_tokens")
