"""The only place notify builds queries."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_notify.models import MESSAGING, Delivery, TicketContact
from spoc_platform.claims import claim_due, database_now, database_time_in
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
    update(contact)
    .where(contact.c.ticket_id == bindparam("b_ticket_id"))
    .values(access_key_sealed=None, access_key=None)
)


async def merge_contact(
    conn: AsyncConnection, ticket_id: uuid.UUID, number: str, **fields: Any
) -> Row[Any]:
    """Adds what one event knows to the ticket's record and returns the whole record.

    An upsert, so two events of one ticket handled at once both end with the merged row:
    the later transaction waits on the row lock and sees the earlier one's columns."""
    fields["updated_at"] = utc_now()
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


async def hold_for_sending(
    conn: AsyncConnection, row_id: int, *, claimed_attempts: int, lease_seconds: float
) -> bool:
    """Right before a send: True if the delivery is still ours and its lease has not run out
    (by the database's clock), and then it is ours for a fresh lease from now. False means
    another dispatcher may have it: sending would be a second mail."""
    dialect = conn.dialect.name
    result = await conn.execute(
        update(delivery)
        .where(
            _still_ours(row_id, claimed_attempts),
            delivery.c.next_attempt_at > database_now(dialect),
        )
        .values(next_attempt_at=database_time_in(dialect, lease_seconds))
    )
    return result.rowcount == 1


async def release(conn: AsyncConnection, row_id: int, *, claimed_attempts: int) -> bool:
    """Hands a claimed delivery back unsent (a stopping dispatcher), due at once for others."""
    result = await conn.execute(
        update(delivery)
        .where(_still_ours(row_id, claimed_attempts))
        .values(next_attempt_at=database_now(conn.dialect.name))
    )
    return result.rowcount == 1


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
    retry_in: float | None,
) -> bool:
    """Records a failed send: due again `retry_in` seconds from now by the database's clock,
    or failed for good when None."""
    values: dict[str, Any] = {"last_error": error[:2000]}
    if retry_in is None:
        # Never sent, so its message (and the requester's link in it) has no reason to stay.
        values.update(status="failed", message="")
    else:
        values["next_attempt_at"] = database_time_in(conn.dialect.name, retry_in)
    result = await conn.execute(
        update(delivery).where(_still_ours(row_id, claimed_attempts)).values(**values)
    )
    return result.rowcount == 1


async def deliveries_for(conn: AsyncConnection, ticket_id: uuid.UUID) -> Sequence[Row[Any]]:
    return (await conn.execute(select(delivery).where(delivery.c.ticket_id == ticket_id))).all()


# Retention: each call forgets one batch, so a long backlog never holds one huge transaction.
PRUNE_BATCH = 1000


async def prune_delivery_log(conn: AsyncConnection, *, before: datetime) -> int:
    """Forgets one batch of sent or failed deliveries created before `before`, and the event
    sequences of tickets left without any delivery. Notify publishes about a ticket only from
    its deliveries, and no consumer orders notify's events by sequence (intake records them by
    event id), so a sequence that starts again for such a ticket misleads no one."""
    rows = (
        await conn.execute(
            select(delivery.c.id, delivery.c.ticket_id)
            .where(delivery.c.status.in_(("sent", "failed")), delivery.c.created_at < before)
            .limit(PRUNE_BATCH)
        )
    ).all()
    if not rows:
        return 0
    await conn.execute(delete(delivery).where(delivery.c.id.in_([row.id for row in rows])))
    sequence = MESSAGING.event_sequence
    await conn.execute(
        delete(sequence).where(
            sequence.c.ticket_id.in_({row.ticket_id for row in rows}),
            ~exists().where(delivery.c.ticket_id == sequence.c.ticket_id),
        )
    )
    return len(rows)


async def prune_contacts(conn: AsyncConnection, *, before: datetime) -> int:
    """Forgets one batch of requester records no event has added to since `before`."""
    batch = select(contact.c.ticket_id).where(contact.c.updated_at < before).limit(PRUNE_BATCH)
    ids = (await conn.execute(batch)).scalars().all()
    if ids:
        await conn.execute(delete(contact).where(contact.c.ticket_id.in_(ids)))
    return len(ids)
