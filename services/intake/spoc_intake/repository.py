"""The only place intake builds queries (SQLAlchemy Core: ticket creation is the hot path)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_intake.models import IdempotencyKey, Ticket, TimelineEntry
from spoc_platform.db import insert_for

# Declarative models type __table__ as FromClause; these are plain Tables.
ticket: Table = cast(Table, Ticket.__table__)
timeline: Table = cast(Table, TimelineEntry.__table__)
idempotency: Table = cast(Table, IdempotencyKey.__table__)

TICKET_NUMBER_SEQUENCE = "ticket_number_seq"


def _next_number(conn: AsyncConnection) -> Any:
    if conn.dialect.name == "postgresql":
        # A sequence never blocks concurrent creators (gaps after a rollback are fine).
        return func.nextval(TICKET_NUMBER_SEQUENCE)
    # SQLite has one writer at a time, so the next number cannot be taken twice.
    return select(func.coalesce(func.max(ticket.c.number), 0) + 1).scalar_subquery()


async def insert_ticket(conn: AsyncConnection, **values: Any) -> int:
    stmt = insert(ticket).values(number=_next_number(conn), **values).returning(ticket.c.number)
    return int((await conn.execute(stmt)).scalar_one())


async def add_timeline(
    conn: AsyncConnection,
    *,
    ticket_id: uuid.UUID,
    at: datetime,
    kind: str,
    summary: str,
    public: bool = True,
    event_id: uuid.UUID | None = None,
) -> None:
    stmt = insert_for(conn.dialect.name, timeline).values(
        ticket_id=ticket_id, at=at, kind=kind, summary=summary, public=public, event_id=event_id
    )
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=[timeline.c.event_id]))


async def find_idempotency(conn: AsyncConnection, key: str) -> Row[Any] | None:
    return (await conn.execute(select(idempotency).where(idempotency.c.key == key))).first()


async def forget_idempotency(conn: AsyncConnection, key: str) -> None:
    await conn.execute(delete(idempotency).where(idempotency.c.key == key))


async def save_idempotency(
    conn: AsyncConnection,
    *,
    key: str,
    request_hash: str,
    ticket_id: uuid.UUID,
    response: dict[str, Any],
    created_at: datetime,
) -> None:
    await conn.execute(
        insert(idempotency).values(
            key=key,
            request_hash=request_hash,
            ticket_id=ticket_id,
            response=response,
            created_at=created_at,
        )
    )


async def prune_idempotency(conn: AsyncConnection, before: datetime) -> None:
    await conn.execute(delete(idempotency).where(idempotency.c.created_at < before))


async def ticket_by_number(conn: AsyncConnection, number: int) -> Row[Any] | None:
    return (await conn.execute(select(ticket).where(ticket.c.number == number))).first()


async def public_timeline(
    conn: AsyncConnection, ticket_id: uuid.UUID
) -> Sequence[Row[datetime, str, str]]:
    return (
        await conn.execute(
            select(timeline.c.at, timeline.c.kind, timeline.c.summary)
            .where(timeline.c.ticket_id == ticket_id, timeline.c.public.is_(True))
            .order_by(timeline.c.at, timeline.c.id)
        )
    ).all()


async def apply_routing(
    conn: AsyncConnection,
    ticket_id: uuid.UUID,
    *,
    sequence: int,
    now: datetime,
    **values: Any,
) -> None:
    """Applies routing's view unless a newer routing event was applied already."""
    await conn.execute(
        update(ticket)
        .where(ticket.c.id == ticket_id, ticket.c.routing_sequence < sequence)
        .values(
            routing_sequence=sequence,
            updated_at=now,
            # Routing is what opens a new ticket; later statuses are people's to set.
            status=case((ticket.c.status == "new", "open"), else_=ticket.c.status),
            **values,
        )
    )


async def apply_targets(
    conn: AsyncConnection,
    ticket_id: uuid.UUID,
    *,
    sequence: int,
    now: datetime,
    **values: Any,
) -> None:
    await conn.execute(
        update(ticket)
        .where(ticket.c.id == ticket_id, ticket.c.sla_sequence < sequence)
        .values(sla_sequence=sequence, updated_at=now, **values)
    )
