"""routing desk sections set at run time through the admin API, each a version

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 11:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from spoc_platform.db import UtcDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "desk_version",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("section", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_desk_version")),
    )


def downgrade() -> None:
    op.drop_table("desk_version")
