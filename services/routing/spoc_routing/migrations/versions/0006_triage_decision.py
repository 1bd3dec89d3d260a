"""The triage decision's detail: the category tree's subcategory and item, whether routing
classified the ticket itself, its tags, the rules that matched, the desk version, and the
ticket's own facts for a re-triage.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subcategory", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("item", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("auto_classified", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("tags", JSON, nullable=True))
        batch_op.add_column(sa.Column("rules", JSON, nullable=True))
        batch_op.add_column(sa.Column("desk_version", sa.String(length=64), nullable=True))
        # Unknown for tickets triaged before: re-categorising one of them re-triages from the
        # category, impact and urgency routing decided.
        batch_op.add_column(sa.Column("facts", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("triage", schema=None) as batch_op:
        batch_op.drop_column("facts")
        batch_op.drop_column("desk_version")
        batch_op.drop_column("rules")
        batch_op.drop_column("tags")
        batch_op.drop_column("auto_classified")
        batch_op.drop_column("item")
        batch_op.drop_column("subcategory")
