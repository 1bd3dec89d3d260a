"""The only place notify builds queries."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Executable, Row, Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_notify.models import Delivery, TicketContact
from spoc_platform.claims import claim_due
from spoc_platform.db import insert_for, utc_now

# Declarative models type __table__ as FromClause; these are plain Tables.
contact: Table = cast(Table, TicketContact.__table__)
delivery: Table = cast(Table, Delivery.__table__)


# Statements that run for every ticket are built once (per dialect and shape) and executed
# with parameters: building them anew each time cost more than running them.


@functools.cache
def _merge_contact(dialect_name: str, fields: tuple[str, ...]) -> Executable:
    insert = insert_for(dialect_name, contact)
    return insert.on_conflict_do_update(
        index_elements=[contact.c.ticket_id], set_={k: insert.excluded[k] for k in fields}
    ).returning(*contact.c)


@functools.cache
def _owe_delivery(dialect_name: str) -> Executable:
    return (
        insert_for(dialect_name, delivery)
        .on_conflict_do_nothing(index_elements=[delivery.c.ticket_id, delivery.c.kind])
        .returning(delivery.c.id)
    )


_FORGET_ACCESS_KEY = (
    update(contact).where(contact.c.ticket_id == bindparam("b_ticket_id")).values(access_key=None)
)


async def merge_contact(
    conn: AsyncConnection, ticket_id: uuid.UUID, number: str, **fields: Any
) -> Row[Any]:
    """Adds what one event knows to the ticket's record and returns the whole record.

    An upsert, so two events of one ticket handled at once both end with the merged row:
    the later transaction waits on the row lock and sees the earlier one's columns."""
    statement = _merge_contact(conn.dialect.name, tuple(sorted(fields)))
    result = await conn.execute(statement, {"ticket_id": ticket_id, "number": number, **fields})
    return result.one()


async def forget_access_key(conn: AsyncConnection, ticket_id: uuid.UUID) -> None:
    await conn.execute(_FORGET_ACCESS_KEY, {"b_ticket_id": ticket_id})


async def owe_delivery(conn: AsyncConnection, *, status: str = "pending", **values: Any) -> bool:
    """Records a delivery to make; False if this ticket already has one of this kind."""
    now = utc_now()
    result = await conn.execute(
        _owe_delivery(conn.dialect.name),
        {
            "delivery_id": uuid.uuid4(),
            "status": status,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            **values,
        },
    )
    return result.first() is not None


async def claim_due_deliveries(
    conn: AsyncConnection, *, limit: int, lease_seconds: float
) -> Sequence[Row[Any]]:
    return await claim_due(
        conn,
        delivery,
        waiting=delivery.c.status == "pending",
        limit=limit,
        lease_seconds=lease_seconds,
        returning=tuple(delivery.c),
    )


def _still_ours(row_id: int, claimed_attempts: int) -> ColumnElement[bool]:
    # Fencing: if this dispatcher's lease ran out, another one has claimed the row since
    # (attempts moved on) and the outcome is theirs to record, not ours a second time.
    return and_(
        delivery.c.id == row_id,
        delivery.c.status == "pending",
        delivery.c.attempts == claimed_attempts,
    )


async def mark_sent(
    conn: AsyncConnection, row_id: int, *, claimed_attempts: int, sent_at: datetime
) -> bool:
    """Records the send; False if another dispatcher has taken the delivery over."""
    result = await conn.execute(
        update(delivery)
        .where(_still_ours(row_id, claimed_attempts))
        # The message carried the requester's portal key; once sent it need not be kept.
        .values(status="sent", sent_at=sent_at, last_error=None, message="")
    )
    return result.rowcount == 1


async def mark_failed_attempt(
    conn: AsyncConnection,
    row_id: int,
    *,
    claimed_attempts: int,
    error: str,
    retry_at: datetime | None,
) -> bool:
    values: dict[str, Any] = {"last_error": error[:2000]}
    values.update({"next_attempt_at": retry_at} if retry_at is not None else {"status": "failed"})
    result = await conn.execute(
        update(delivery).where(_still_ours(row_id, claimed_attempts)).values(**values)
    )
    return result.rowcount == 1


async def deliveries_for(conn: AsyncConnection, ticket_id: uuid.UUID) -> Sequence[Row[Any]]:
    return (await conn.execute(select(delivery).where(delivery.c.ticket_id == ticket_id))).all()
