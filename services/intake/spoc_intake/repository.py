"""The only place intake builds queries (SQLAlchemy Core: ticket creation is the hot path)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Executable,
    Row,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_intake.models import IdempotencyAnswer, Ticket, TimelineEntry
from spoc_platform.db import insert_for

# Declarative models type __table__ as FromClause; these are plain Tables.
ticket: Table = cast(Table, Ticket.__table__)
timeline: Table = cast(Table, TimelineEntry.__table__)
idempotency: Table = cast(Table, IdempotencyAnswer.__table__)

TICKET_NUMBER_SEQUENCE = "ticket_number_seq"
_SAVE_IDEMPOTENCY = insert(idempotency)


# Hot statements are built once and executed with parameters: building a SQLAlchemy
# construct with its values on every call cost more than running it (measured: 1.6 ms a POST).


@functools.cache
def _insert_ticket(dialect_name: str) -> Executable:
    if dialect_name == "postgresql":
        # A sequence never blocks concurrent creators (gaps after a rollback are fine).
        next_number: Any = func.nextval(TICKET_NUMBER_SEQUENCE)
    else:
        # SQLite has one writer at a time, so the next number cannot be taken twice.
        next_number = select(func.coalesce(func.max(ticket.c.number), 0) + 1).scalar_subquery()
    return insert(ticket).values(number=next_number).returning(ticket.c.number)


@functools.cache
def _add_timeline(dialect_name: str) -> Executable:
    return insert_for(dialect_name, timeline).on_conflict_do_nothing(
        index_elements=[timeline.c.event_id]
    )


async def insert_ticket(conn: AsyncConnection, **values: Any) -> int:
    """Inserts the ticket (every column but `number` given) and returns its number."""
    result = await conn.execute(_insert_ticket(conn.dialect.name), values)
    return int(result.scalar_one())


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
    await conn.execute(
        _add_timeline(conn.dialect.name),
        {
            "ticket_id": ticket_id,
            "at": at,
            "kind": kind,
            "summary": summary,
            "public": public,
            "event_id": event_id,
        },
    )


async def find_idempotency(conn: AsyncConnection, key_digest: str) -> Row[Any] | None:
    query = select(idempotency).where(idempotency.c.key_digest == key_digest)
    return (await conn.execute(query)).first()


async def forget_idempotency(conn: AsyncConnection, key_digest: str) -> None:
    await conn.execute(delete(idempotency).where(idempotency.c.key_digest == key_digest))


async def save_idempotency(
    conn: AsyncConnection,
    *,
    key_digest: str,
    request_hash: str,
    ticket_id: uuid.UUID,
    answer: str,
    created_at: datetime,
) -> None:
    await conn.execute(
        _SAVE_IDEMPOTENCY,
        {
            "key_digest": key_digest,
            "request_hash": request_hash,
            "ticket_id": ticket_id,
            "answer": answer,
            "created_at": created_at,
        },
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


# Projection updates: the WHERE keeps a stale event from overwriting a newer one; the columns
# to set come with the parameters (SQLAlchemy adds a SET for each column-named key).
_APPLY_ROUTING = (
    update(ticket)
    .where(ticket.c.id == bindparam("b_ticket_id"), ticket.c.routing_sequence < bindparam("b_seq"))
    .values(
        routing_sequence=bindparam("b_seq"),
        # Routing is what opens a new ticket; later statuses are people's to set.
        status=case((ticket.c.status == "new", "open"), else_=ticket.c.status),
    )
)
_APPLY_TARGETS = (
    update(ticket)
    .where(ticket.c.id == bindparam("b_ticket_id"), ticket.c.sla_sequence < bindparam("b_seq"))
    .values(sla_sequence=bindparam("b_seq"))
)


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
        _APPLY_ROUTING, {"b_ticket_id": ticket_id, "b_seq": sequence, "updated_at": now, **values}
    )


async def apply_targets(
    conn: AsyncConnection,
    ticket_id: uuid.UUID,
    *,
    sequence: int,
    now: datetime,
    **values: Any,
) -> None:
    """Applies sla's targets unless a newer sla event was applied already."""
    await conn.execute(
        _APPLY_TARGETS, {"b_ticket_id": ticket_id, "b_seq": sequence, "updated_at": now, **values}
    )
