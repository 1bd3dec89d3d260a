"""Read side: a ticket as its requester may see it, after checking they may see it at all."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake import repository
from spoc_intake.schemas import PersonRead, TargetsRead, TeamRead, TicketRead, TimelineEntryRead
from spoc_intake.tracking import access_key_matches, format_number, parse_number
from spoc_platform.web import ApiError


def not_found(number: str) -> ApiError:
    # One answer for "no such ticket" and "not yours": a key guesser learns nothing.
    return ApiError(404, "ticket_not_found", f"no ticket {number} that you can see")


async def ticket_for_requester(
    engine: AsyncEngine, prefix: str, number: str, access_key: str | None
) -> TicketRead:
    sequence = parse_number(prefix, number)
    if sequence is None:
        raise not_found(number)
    async with engine.connect() as conn:
        row = await repository.ticket_by_number(conn, sequence)
        if row is None or not access_key_matches(access_key, row.access_key_hash):
            raise not_found(number)
        entries = await repository.public_timeline(conn, row.id)
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
    )
