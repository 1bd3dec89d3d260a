"""SLA state per metric on the ticket, and the notifications sent about it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 02:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spoc_platform.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The due times themselves (first_response_due_at, resolution_due_at) came with 0001.
METRICS = ("first_response", "resolution")


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        for metric in METRICS:
            batch_op.add_column(sa.Column(f"{metric}_state", sa.String(length=16), nullable=True))
            batch_op.add_column(
                sa.Column(f"{metric}_sequence", sa.Integer(), nullable=False, server_default="0")
            )
            for moment in ("breached_at", "met_at"):
                batch_op.add_column(
                    sa.Column(
                        f"{metric}_{moment}",
                        spoc_platform.db.UtcDateTime(timezone=True),
                        nullable=True,
                    )
                )
            for stop in ("breached_sequence", "met_sequence"):
                batch_op.add_column(
                    sa.Column(f"{metric}_{stop}", sa.Integer(), nullable=False, server_default="0")
                )
        # The most urgent state of the ticket's clocks and the nearest due time of a clock not
        # met: kept beside the per-metric columns so "breached / at risk, soonest first" reads
        # one index range.
        batch_op.add_column(sa.Column("sla_state", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("sla_due_at", spoc_platform.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_ticket_sla_state_sla_due_at", ["sla_state", "sla_due_at"])
    _backfill_clocks()
    op.create_table(
        "notification",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("notification_id", sa.String(length=100), nullable=False),
        sa.Column("at", spoc_platform.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("recipient_kind", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_notification_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("event_id", name=op.f("uq_notification_event_id")),
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index("ix_notification_ticket_id_at", ["ticket_id", "at"], unique=False)


def _backfill_clocks() -> None:
    """Earlier tickets' clocks, as sla's clock_started (the only sla event before this
    revision) left them: each clock with a due time is running, and its sequence is the
    ticket's sla sequence, so a redelivered clock_started finds it applied. The ticket's own
    state and nearest due time follow sla_state.ticket_summary: a resolved or closed ticket's
    clocks stay running per metric (sla's word; a reopen counts them again) but count as
    paused and give no due time, so an old settled ticket never tops the agents' list."""
    ticket = sa.table(
        "ticket",
        sa.column("status", sa.String()),
        sa.column("sla_sequence", sa.Integer()),
        sa.column("sla_state", sa.String()),
        sa.column("sla_due_at", spoc_platform.db.UtcDateTime(timezone=True)),
        *(
            column
            for metric in METRICS
            for column in (
                sa.column(f"{metric}_due_at", spoc_platform.db.UtcDateTime(timezone=True)),
                sa.column(f"{metric}_state", sa.String()),
                sa.column(f"{metric}_sequence", sa.Integer()),
            )
        ),
    )
    first, resolution = (ticket.c[f"{metric}_due_at"] for metric in METRICS)
    op.execute(
        ticket.update().values(
            {f"{metric}_sequence": ticket.c.sla_sequence for metric in METRICS}
            | {
                f"{metric}_state": sa.case(
                    (ticket.c[f"{metric}_due_at"].is_not(None), "running"), else_=None
                )
                for metric in METRICS
            }
        )
    )
    settled = ticket.c.status.in_(["resolved", "closed"])
    clocked = sa.or_(first.is_not(None), resolution.is_not(None))
    # The earlier due time, either when the other is missing (portable: no LEAST on SQLite).
    nearest = sa.case(
        (first.is_(None), resolution),
        (resolution.is_(None), first),
        (first < resolution, first),
        else_=resolution,
    )
    op.execute(
        ticket.update()
        .where(clocked)
        .values(
            sla_state=sa.case((settled, "paused"), else_="running"),
            sla_due_at=sa.case((settled, None), else_=nearest),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_ticket_id_at")
    op.drop_table("notification")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_sla_state_sla_due_at")
        batch_op.drop_column("sla_due_at")
        batch_op.drop_column("sla_state")
        for metric in reversed(METRICS):
            batch_op.drop_column(f"{metric}_met_sequence")
            batch_op.drop_column(f"{metric}_breached_sequence")
            batch_op.drop_column(f"{metric}_met_at")
            batch_op.drop_column(f"{metric}_breached_at")
            batch_op.drop_column(f"{metric}_sequence")
            batch_op.drop_column(f"{metric}_state")
