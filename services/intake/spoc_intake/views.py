"""Read side: a ticket as its requester may see it, after checking they may see it at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_intake import repository
from spoc_intake.schemas import PersonRead, TargetsRead, TeamRead, TicketRead, TimelineEntryRead
from spoc_intake.tracking import access_key_matches, format_number, parse_number
from spoc_platform.dates import for_people
from spoc_platform.web import ApiError


def not_found(number: str) -> ApiError:
    # One answer for "no such ticket" and "not yours": a key guesser learns nothing.
    return ApiError(404, "ticket_not_found", f"no ticket {number} that you can see")


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
    engine: AsyncEngine, prefix: str, number: str, access_key: str | None
) -> RequesterPage:
    sequence = parse_number(prefix, number)
    if sequence is None:
        raise not_found(number)
    async with engine.connect() as conn:
        row = await repository.ticket_by_number(conn, sequence)
        if row is None or not access_key_matches(access_key, row.access_key_hash):
            raise not_found(number)
        entries = await repository.public_timeline(conn, row.id)
    return RequesterPage(_ticket_read(prefix, row, entries), row.requester_locale)


def dates_for(locale: str | None, zone: str) -> Callable[[datetime | None], str]:
    """How the page writes a moment: in `locale` (else English), on the clock of `zone`."""

    def when(value: datetime | None) -> str:
        return for_people(value, locale=locale, zone=zone) if value else "not set yet"

    return when


def _ticket_read(prefix: str, row: Any, entries: Any) -> TicketRead:
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
