"""The only place intake builds queries (SQLAlchemy Core: ticket creation is the hot path)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Executable,
    Row,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_intake.models import (
    Comment,
    Feedback,
    IdempotencyAnswer,
    Notification,
    Ticket,
    TimelineEntry,
)
from spoc_intake.schemas import email_key
from spoc_platform.db import UtcDateTime, insert_for

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
    """Inserts the ticket (every column but `number` and `requester_email_key` given) and
    returns its number."""
    values["requester_email_key"] = email_key(values["requester_email"])
    result = await conn.execute(_insert_ticket(conn.dialect.name), values)
    return int(result.scalar_one())


# Built once: it runs for every anonymous ticket from an untrusted network.
_REQUESTER_VOUCHED_FOR = select(
    exists().where(
        ticket.c.requester_email_key == bindparam("b_email_key"),
        ticket.c.requester_vouched == true(),
    )
)


async def requester_vouched_for(conn: AsyncConnection, requester_email: str) -> bool:
    """Whether the desk had vouched contact from this address before (see
    `Ticket.requester_vouched`): one seek on ix_ticket_requester_email_key. A stranger's
    earlier tickets do not count, or a first harmless one would vouch for the next."""
    parameters = {"b_email_key": email_key(requester_email)}
    return bool((await conn.execute(_REQUESTER_VOUCHED_FOR, parameters)).scalar_one())


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


async def classify_if_unclassified(
    conn: AsyncConnection, ticket_id: uuid.UUID, **classification: Any
) -> None:
    """Routing's category for a ticket that came without one, unless someone has given it one
    since (an agent's re-categorisation is never overwritten)."""
    await conn.execute(
        update(ticket)
        .where(ticket.c.id == ticket_id, ticket.c.category.is_(None))
        .values(auto_classified=True, **classification)
    )


# What first-contact resolution asks of a ticket's history (models.Ticket, reports.py). Each
# statement only adds a fact, whatever the order events come in and however often: no
# sequence guard, so a late ticket.escalated still counts, and a redelivered one changes nothing.
_NOTE_OWNER = (
    update(ticket)
    .where(ticket.c.id == bindparam("b_ticket_id"))
    .values(
        # Both right-hand sides read the row as it was: the first owner seen stays the first,
        # and any other owner seen, before or after it, is a hand-over.
        first_owner_id=func.coalesce(ticket.c.first_owner_id, bindparam("b_owner_id")),
        handed_over=or_(
            ticket.c.handed_over,
            and_(
                ticket.c.first_owner_id.is_not(None),
                ticket.c.first_owner_id != bindparam("b_owner_id"),
            ),
        ),
    )
)


async def note_owner(conn: AsyncConnection, ticket_id: uuid.UUID, owner_id: str) -> None:
    """Records that `owner_id` has had the ticket: its first owner, or a hand-over."""
    await conn.execute(_NOTE_OWNER, {"b_ticket_id": ticket_id, "b_owner_id": owner_id})


async def note_escalated(conn: AsyncConnection, ticket_id: uuid.UUID) -> None:
    await conn.execute(update(ticket).where(ticket.c.id == ticket_id).values(escalated=True))


# --- SLA state and notifications, for agents (handlers.py, sla_state.py; migration 0007) -----

notification: Table = cast(Table, Notification.__table__)


async def ticket_for_sla(conn: AsyncConnection, ticket_id: uuid.UUID) -> Row[Any] | None:
    """The ticket, locked until the transaction ends (on PostgreSQL): two sla events of one
    ticket handled at once must not both start from the same state."""
    query = select(ticket).where(ticket.c.id == ticket_id).with_for_update()
    return (await conn.execute(query)).first()


async def requester_contacts(
    conn: AsyncConnection, ticket_id: uuid.UUID
) -> Row[str, str | None] | None:
    query = select(ticket.c.requester_email, ticket.c.requester_phone).where(
        ticket.c.id == ticket_id
    )
    return (await conn.execute(query)).first()


async def add_notification(conn: AsyncConnection, **values: Any) -> None:
    # One row per event: a redelivered report adds nothing.
    statement = insert_for(conn.dialect.name, notification).on_conflict_do_nothing(
        index_elements=[notification.c.event_id]
    )
    await conn.execute(statement, values)


async def notifications_of(conn: AsyncConnection, ticket_id: uuid.UUID) -> Sequence[Row[Any]]:
    query = select(notification).where(notification.c.ticket_id == ticket_id)
    return (await conn.execute(query.order_by(notification.c.at, notification.c.id))).all()


# --- The conversation and the workflow (work.py, views.py) -----------------------------------

comment: Table = cast(Table, Comment.__table__)
feedback: Table = cast(Table, Feedback.__table__)


async def ticket_for_change(conn: AsyncConnection, number: int) -> Row[Any] | None:
    """The ticket, locked until the transaction ends (on PostgreSQL; SQLite has one writer):
    two status changes at once must not both start from the same status."""
    query = select(ticket).where(ticket.c.number == number).with_for_update()
    return (await conn.execute(query)).first()


async def update_ticket(conn: AsyncConnection, ticket_id: uuid.UUID, **values: Any) -> None:
    await conn.execute(update(ticket).where(ticket.c.id == ticket_id).values(**values))


async def record_first_response(conn: AsyncConnection, ticket_id: uuid.UUID, at: datetime) -> None:
    # Only the first: a later reply never moves it.
    await conn.execute(
        update(ticket)
        .where(ticket.c.id == ticket_id, ticket.c.first_responded_at.is_(None))
        .values(first_responded_at=at)
    )


async def add_comment(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(comment), values)


async def comments_of(
    conn: AsyncConnection, ticket_id: uuid.UUID, *, public_only: bool
) -> Sequence[Row[Any]]:
    query = select(comment).where(comment.c.ticket_id == ticket_id)
    if public_only:
        query = query.where(comment.c.visibility == "public")
    return (await conn.execute(query.order_by(comment.c.at, comment.c.id))).all()


async def whole_timeline(
    conn: AsyncConnection, ticket_id: uuid.UUID
) -> Sequence[Row[datetime, str, str, bool]]:
    return (
        await conn.execute(
            select(timeline.c.at, timeline.c.kind, timeline.c.summary, timeline.c.public)
            .where(timeline.c.ticket_id == ticket_id)
            .order_by(timeline.c.at, timeline.c.id)
        )
    ).all()


@dataclass(frozen=True)
class TicketFilter:
    """What a list asks for. `visible_groups` None: every group; otherwise those groups' tickets,
    the unrouted ones and `visible_owner`'s own (wherever an escalation took them).
    `requester_email`: that requester's tickets only (however its case is written)."""

    visible_groups: frozenset[str] | None = None
    visible_owner: str | None = None
    requester_email: str | None = None
    status: tuple[str, ...] = ()
    group: str | None = None
    owner: str | None = None
    priority: str | None = None
    type: str | None = None
    category: str | None = None
    channel: str | None = None
    text: str | None = None
    # The ticket's most urgent SLA state, any of these (ix_ticket_sla_state_sla_due_at).
    sla: tuple[str, ...] = ()


# Sortable columns. A ticket without a priority yet sorts as "~" (after P1…P5 byte-wise; a
# collation may place it elsewhere, but the same place in ORDER BY and in the cursor's WHERE).
SORT_KEYS: dict[str, Any] = {
    "created_at": ticket.c.created_at,
    "updated_at": ticket.c.updated_at,
    "priority": func.coalesce(ticket.c.priority, "~"),
    # Soonest due first; a ticket with no clock counting down sorts after every due time.
    "sla_due_at": func.coalesce(
        ticket.c.sla_due_at, literal(datetime(9999, 12, 31, tzinfo=UTC), UtcDateTime())
    ),
}


def _like_escaped(text: str) -> str:
    # The caller's text is matched as text: % and _ are not wildcards here.
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_tickets(
    conn: AsyncConnection,
    where: TicketFilter,
    *,
    sort: str,
    descending: bool,
    after: tuple[Any, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """One page of tickets, keyset-paginated on (sort key, number): a page never repeats or
    skips a ticket because others were added in between."""
    key = SORT_KEYS[sort]
    query = select(ticket, key.label("sort_key"))
    if where.requester_email is not None:
        query = query.where(ticket.c.requester_email_key == email_key(where.requester_email))
    if where.visible_groups is not None:
        visible: list[ColumnElement[bool]] = [
            ticket.c.group_id.in_(sorted(where.visible_groups)),
            ticket.c.group_id.is_(None),
        ]
        if where.visible_owner is not None:
            visible.append(ticket.c.owner_id == where.visible_owner)
        query = query.where(or_(*visible))
    if where.status:
        query = query.where(ticket.c.status.in_(where.status))
    if where.sla:
        query = query.where(ticket.c.sla_state.in_(where.sla))
    for column, value in (
        (ticket.c.group_id, where.group),
        (ticket.c.owner_id, where.owner),
        (ticket.c.priority, where.priority),
        (ticket.c.type, where.type),
        (ticket.c.category, where.category),
        (ticket.c.channel, where.channel),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.text:
        query = query.where(ticket.c.subject.ilike(f"%{_like_escaped(where.text)}%", escape="\\"))
    if after is not None:
        last_key, last_number = after
        if descending:
            query = query.where(
                or_(key < last_key, and_(key == last_key, ticket.c.number < last_number))
            )
        else:
            query = query.where(
                or_(key > last_key, and_(key == last_key, ticket.c.number > last_number))
            )
    order = (key.desc(), ticket.c.number.desc()) if descending else (key.asc(), ticket.c.number)
    return (await conn.execute(query.order_by(*order).limit(limit))).all()


async def add_feedback(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(feedback), values)


async def feedback_of(conn: AsyncConnection, ticket_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(feedback).where(feedback.c.ticket_id == ticket_id))).first()


# --- Reports (reports.py; D4, D25) ------------------------------------------------------------

# What a report may count by, under the names it shows.
REPORT_DIMENSIONS: dict[str, Any] = {
    "category": ticket.c.category,
    "subcategory": ticket.c.subcategory,
    "item": ticket.c.item,
    "group": ticket.c.group_id,
    "priority": ticket.c.priority,
    "type": ticket.c.type,
    "channel": ticket.c.channel,
}
SETTLED = ("resolved", "closed")
_settled = ticket.c.status.in_(SETTLED)
# First-contact resolution (D4): resolved at the first line, at once, by whoever first had it.
# A phone call solved on the line keeps its flag until it is reopened or escalated (work.py);
# any other ticket must have stayed with one owner in a tier-1 group, never escalated nor
# reopened. A resolver or first owner not on record (before 0011, or nobody owned it) is not
# held against the ticket.
FIRST_CONTACT_RESOLVED: ColumnElement[bool] = and_(
    _settled,
    ticket.c.reopened.is_(False),
    ticket.c.escalated.is_(False),
    or_(
        ticket.c.first_contact_resolution.is_(True),
        and_(
            ticket.c.group_tier == 1,
            ticket.c.handed_over.is_(False),
            or_(
                ticket.c.first_owner_id.is_(None),
                ticket.c.resolved_by.is_(None),
                ticket.c.resolved_by == ticket.c.first_owner_id,
            ),
        ),
    ),
)


def _count_of(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def count_tickets(
    conn: AsyncConnection, *, since: datetime, until: datetime, by: Sequence[str]
) -> Sequence[Row[Any]]:
    """The tickets created in [since, until), counted per distinct value of the `by`
    dimensions (None a value like any other): how many, how many resolved or closed, and how
    many of those at first contact. Most first, then by the values, None last on either
    database."""
    keys = [REPORT_DIMENSIONS[name].label(name) for name in by]
    columns = [REPORT_DIMENSIONS[name] for name in by]
    query = (
        select(
            *keys,
            func.count().label("count"),
            _count_of(_settled).label("resolved"),
            _count_of(FIRST_CONTACT_RESOLVED).label("first_contact_resolved"),
        )
        .where(ticket.c.created_at >= since, ticket.c.created_at < until)
        .group_by(*columns)
        .order_by(
            func.count().desc(),
            *[part for column in columns for part in (column.is_(None), column)],
        )
    )
    # As many columns as dimensions asked for: typed as rows of anything.
    return cast(Sequence[Row[Any]], (await conn.execute(query)).all())
