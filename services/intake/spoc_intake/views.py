"""Read side: who may see a ticket, and a ticket or a list as that caller may see it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spoc_intake import repository
from spoc_intake.callers import Caller
from spoc_intake.repository import TicketFilter as TicketFilter
from spoc_intake.schemas import (
    AgentTimelineEntryRead,
    AssigneeRead,
    AuthorRead,
    CommentRead,
    NotificationRead,
    PersonRead,
    RequesterRead,
    SlaMetricRead,
    SlaRead,
    TargetsRead,
    TeamRead,
    TicketAgentRead,
    TicketList,
    TicketRead,
    TicketSummaryRead,
    TimelineEntryRead,
    email_key,
)
from spoc_intake.tracking import access_key_matches, format_number, parse_number
from spoc_platform.dates import for_people
from spoc_platform.web import ApiError

# Who a caller is to one ticket: its staff, its requester, or an integration that follows it.
Audience = Literal["staff", "requester", "integration"]


def not_found(number: str) -> ApiError:
    # One answer for "no such ticket" and "not yours": a key guesser learns nothing.
    return ApiError(404, "ticket_not_found", f"no ticket {number} that you can see")


def audience_of(
    caller: Caller, row: Any, access_key: str | None, *, agents_see_all: bool, number: str
) -> Audience:
    """How `caller` sees the ticket in `row`, or the 404 of a missing ticket if not at all.

    Agents see their groups' tickets, the ones they own (an escalation hands the ticket to
    another group, but its owner stays the requester's one contact, D3) and the ones routing
    has not placed yet (someone must be able to pick those up while routing is away); managers
    and admins see all."""
    if caller.is_staff:
        if (
            caller.sees_every_group
            or agents_see_all
            or row.group_id is None
            or row.group_id in caller.groups
            or (caller.subject_id is not None and row.owner_id == caller.subject_id)
        ):
            return "staff"
        raise not_found(number)
    if caller.role == "integration":
        return "integration"
    if access_key_matches(access_key, row.access_key_hash):
        return "requester"
    if caller.role == "requester" and caller.email and _same_address(caller.email, row):
        return "requester"
    raise not_found(number)


def list_scope(caller: Caller, *, agents_see_all: bool) -> TicketFilter:
    """The tickets `caller` may list, before any filter they choose (the same rule as
    `audience_of`, as SQL)."""
    if caller.is_staff:
        if caller.sees_every_group or agents_see_all:
            return TicketFilter()
        return TicketFilter(visible_groups=caller.groups, visible_owner=caller.subject_id)
    if caller.role == "integration":
        return TicketFilter()
    if caller.role == "requester" and caller.email:
        return TicketFilter(requester_email=caller.email)
    raise ApiError(401, "unauthenticated", "sign in to list tickets")


@dataclass(frozen=True)
class RequesterPage:
    """What the requester's page shows, and the language they asked to be answered in."""

    ticket: TicketRead
    locale: str | None


async def ticket_for_requester(
    engine: AsyncEngine, prefix: str, number: str, access_key: str | None
) -> TicketRead:
    return (await page_for_requester(engine, prefix, number, access_key)).ticket


async def page_for_requester(
    engine: AsyncEngine,
    prefix: str,
    number: str,
    access_key: str | None,
    caller: Caller | None = None,
) -> RequesterPage:
    """The requester's view, to the holder of the ticket's key or its signed-in requester."""
    sequence = parse_number(prefix, number)
    if sequence is None:
        raise not_found(number)
    async with engine.connect() as conn:
        row = await repository.ticket_by_number(conn, sequence)
        if row is None or not (
            access_key_matches(access_key, row.access_key_hash) or _their_own(caller, row)
        ):
            raise not_found(number)
        ticket = await _public_view(conn, prefix, row)
    return RequesterPage(ticket, row.requester_locale)


def _their_own(caller: Caller | None, row: Any) -> bool:
    return (
        caller is not None
        and caller.role == "requester"
        and caller.email is not None
        and _same_address(caller.email, row)
    )


def _same_address(email: str, row: Any) -> bool:
    # However either was typed: Reza@Example.org's session sees reza@example.org's tickets.
    return email_key(email) == email_key(row.requester_email)


async def ticket_for_caller(
    engine: AsyncEngine,
    prefix: str,
    number: str,
    caller: Caller,
    access_key: str | None,
    *,
    agents_see_all: bool,
) -> TicketRead | TicketAgentRead:
    """Staff get the agent's view; requesters and integrations the public one."""
    sequence = parse_number(prefix, number)
    if sequence is None:
        raise not_found(number)
    async with engine.connect() as conn:
        row = await repository.ticket_by_number(conn, sequence)
        if row is None:
            raise not_found(number)
        seen_as = audience_of(caller, row, access_key, agents_see_all=agents_see_all, number=number)
        if seen_as != "staff":
            return await _public_view(conn, prefix, row)
        entries = await repository.whole_timeline(conn, row.id)
        comments = await repository.comments_of(conn, row.id, public_only=False)
        notifications = await repository.notifications_of(conn, row.id)
    public = _ticket_read(prefix, row, [], comments)
    return TicketAgentRead.model_validate(
        {
            **dict(public),
            "requester": RequesterRead(
                name=row.requester_name, email=row.requester_email, phone=row.requester_phone
            ),
            "impact": row.impact,
            "urgency": row.urgency,
            "group_id": row.group_id,
            "owner_id": row.owner_id,
            "assignee": AssigneeRead(id=row.assignee_id, name=row.assignee_name or row.assignee_id)
            if row.assignee_id
            else None,
            "first_responded_at": row.first_responded_at,
            "resolved_at": row.resolved_at,
            # A phone call: who took it, and whether it was solved on the line (D4).
            "taken_by": row.taken_by,
            "first_contact_resolution": row.first_contact_resolution,
            "auto_classified": row.auto_classified,
            "tags": row.tags or [],
            # Everything: internal notes, failed notifications, and who was told what.
            "timeline": [
                AgentTimelineEntryRead(at=e.at, kind=e.kind, summary=e.summary, public=e.public)
                for e in entries
            ],
            # Staff only: a breach is the desk's business; the requester sees the targets.
            "sla": _sla_read(row),
            "notifications": [
                NotificationRead(
                    at=n.at,
                    kind=n.kind,
                    channel=n.channel,
                    recipient=n.recipient,
                    recipient_kind=n.recipient_kind,
                    outcome=n.outcome,
                    attempts=n.attempts,
                    error=n.error,
                )
                for n in notifications
            ],
        }
    )


async def list_for_caller(
    engine: AsyncEngine,
    prefix: str,
    caller: Caller,
    chosen: TicketFilter,
    *,
    agents_see_all: bool,
    sort: str,
    descending: bool,
    cursor: str | None,
    limit: int,
) -> TicketList:
    """A page of the tickets `caller` may see that match `chosen`; requesters get theirs only."""
    scope = list_scope(caller, agents_see_all=agents_see_all)
    _refuse_sla_to_non_staff(caller, chosen, sort)
    where = replace(
        chosen,
        visible_groups=scope.visible_groups,
        visible_owner=scope.visible_owner,
        requester_email=scope.requester_email,
    )
    after = _read_cursor(cursor, sort, descending) if cursor else None
    async with engine.connect() as conn:
        # One more than asked: whether a next page exists, without counting.
        rows = await repository.list_tickets(
            conn, where, sort=sort, descending=descending, after=after, limit=limit + 1
        )
    page = rows[:limit]
    next_cursor = (
        _write_cursor(sort, descending, page[-1].sort_key, page[-1].number)
        if len(rows) > limit
        else None
    )
    return TicketList(items=[_summary(prefix, row) for row in page], next_cursor=next_cursor)


def _refuse_sla_to_non_staff(caller: Caller, chosen: TicketFilter, sort: str) -> None:
    """SLA state is for staff. A requester's `?sla=` is refused, not ignored: ignoring it would
    answer "all of yours" to "which of mine are breached", and a 422 tells the client why."""
    if caller.is_staff:
        return
    asked = [name for name, used in (("sla", chosen.sla), ("sort", sort == "sla_due_at")) if used]
    if asked:
        raise ApiError(
            422,
            "validation_error",
            f"invalid request: query.{asked[0]}",
            [
                {
                    "field": f"query.{name}",
                    "message": "only staff filter or sort by SLA state",
                    "type": "staff_only",
                }
                for name in asked
            ],
        )


def _sla_read(row: Any) -> SlaRead:
    metrics = {
        metric: SlaMetricRead(
            state=getattr(row, f"{metric}_state"),
            due_at=getattr(row, f"{metric}_due_at"),
            breached_at=getattr(row, f"{metric}_breached_at"),
            met_at=getattr(row, f"{metric}_met_at"),
        )
        for metric in ("first_response", "resolution")
    }
    return SlaRead(state=row.sla_state, **metrics)


def _summary(prefix: str, row: Any) -> TicketSummaryRead:
    return TicketSummaryRead(
        id=row.id,
        number=format_number(prefix, row.number),
        status=row.status,
        type=row.type,
        channel=row.channel,
        subject=row.subject,
        category=row.category,
        priority=row.priority,
        owner=PersonRead(name=row.owner_name) if row.owner_name else None,
        team=TeamRead(name=row.group_name, tier=row.group_tier) if row.group_name else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# A cursor is opaque to callers: base64url of [sort, descending, last key, last number]. It
# names its own sort, so one from another ordering is refused rather than silently misread.
_MAX_NUMBER = 2**63 - 1


def _write_cursor(sort: str, descending: bool, key: Any, number: int) -> str:
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps([sort, descending, value, number], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_cursor(cursor: str, sort: str, descending: bool) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, cursor_descending, value, number = json.loads(raw)
        if (cursor_sort, cursor_descending) != (sort, descending):
            raise ValueError("the cursor belongs to another sort order")
        if not isinstance(value, str) or type(number) is not int or not 0 < number <= _MAX_NUMBER:
            raise ValueError("malformed cursor")
        key: Any = value
        if sort != "priority":
            key = datetime.fromisoformat(value)
            if key.tzinfo is None:
                raise ValueError("malformed cursor")
    except (ValueError, TypeError, binascii.Error) as error:
        raise ApiError(
            422,
            "validation_error",
            "invalid request: query.cursor",
            [
                {
                    "field": "query.cursor",
                    "message": "not a cursor this list gave out with this sort; start again "
                    "without one",
                    "type": "invalid_cursor",
                }
            ],
        ) from error
    return key, number


async def _public_view(conn: AsyncConnection, prefix: str, row: Any) -> TicketRead:
    # Public entries and public comments only: an internal note never reaches a requester.
    entries = await repository.public_timeline(conn, row.id)
    comments = await repository.comments_of(conn, row.id, public_only=True)
    return _ticket_read(prefix, row, entries, comments)


def dates_for(locale: str | None, zone: str) -> Callable[[datetime | None], str]:
    """How the page writes a moment: in `locale` (else English), on the clock of `zone`."""

    def when(value: datetime | None) -> str:
        return for_people(value, locale=locale, zone=zone) if value else "not set yet"

    return when


def comment_read(row: Any) -> CommentRead:
    return CommentRead(
        id=row.id,
        at=row.at,
        author=AuthorRead(name=row.author_name, kind=row.author_kind),
        visibility=row.visibility,
        body=row.body,
    )


def _ticket_read(prefix: str, row: Any, entries: Any, comments: Sequence[Any]) -> TicketRead:
    return TicketRead(
        id=row.id,
        number=format_number(prefix, row.number),
        status=row.status,
        type=row.type,
        channel=row.channel,
        subject=row.subject,
        description=row.description,
        category=row.category,
        subcategory=row.subcategory,
        item=row.item,
        priority=row.priority,
        requester=PersonRead(name=row.requester_name),
        owner=PersonRead(name=row.owner_name) if row.owner_name else None,
        team=TeamRead(name=row.group_name, tier=row.group_tier) if row.group_name else None,
        targets=TargetsRead(
            first_response_due_at=row.first_response_due_at,
            resolution_due_at=row.resolution_due_at,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        timeline=[TimelineEntryRead(at=e.at, kind=e.kind, summary=e.summary) for e in entries],
        comments=[comment_read(c) for c in comments],
        follows_up=format_number(prefix, row.follows_up) if row.follows_up is not None else None,
    )
