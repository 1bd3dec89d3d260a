"""Routing hears intake's staff.updated: names, who may get tickets, and new agents' groups."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from spoc_contracts import Envelope, StaffUpdated, TicketRouted
from spoc_routing.models import Agent
from tests.harness import ServiceUnderTest, envelope, service, ticket_created

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def staff_updated(id: str = "sara", **changes: Any) -> Envelope:
    values: dict[str, Any] = {
        "id": id,
        "name": "Sara Ahmadi",
        "email": f"{id}@example.org",
        "role": "agent",
        "groups": ("service-desk",),
        "active": True,
        "updated_at": NOW,
    }
    values.update(changes)
    return Envelope.wrap(StaffUpdated(**values), source="intake", ticket_id=None, sequence=0)


async def owners_of_new_tickets(routing: ServiceUnderTest, count: int) -> list[str | None]:
    before = len(await routing.published("ticket.routed"))
    for _ in range(count):
        await routing.deliver(envelope(ticket_created(number=f"SD-{uuid.uuid4().int % 10**6:06d}")))
    routed = (await routing.published("ticket.routed"))[before:]
    owners = [TicketRouted.model_validate(e.data).owner for e in routed]
    return [o.name if o else None for o in owners]


async def agent_row(routing: ServiceUnderTest, id: str) -> Any:
    async with routing.runtime.engine.connect() as conn:
        return (await conn.execute(select(Agent).where(Agent.id == id))).one()


async def test_a_deactivated_account_gets_no_tickets_and_a_new_name_shows_at_once(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        await routing.deliver(staff_updated(active=False))
        await routing.deliver(staff_updated("piotr", name="Piotr N. Nowak"))

        assert await owners_of_new_tickets(routing, 3) == ["Piotr N. Nowak"] * 3
        sara = await agent_row(routing, "sara")
        assert sara.staff_active is False and sara.staff_groups == ["service-desk"]


async def test_an_older_update_arriving_late_does_not_undo_a_newer_one(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        await routing.deliver(staff_updated(active=False, updated_at=NOW))
        await routing.deliver(staff_updated(active=True, updated_at=NOW - timedelta(minutes=5)))
        assert (await agent_row(routing, "sara")).staff_active is False

        await routing.deliver(staff_updated(active=True, updated_at=NOW + timedelta(minutes=5)))
        assert (await agent_row(routing, "sara")).staff_active is True


async def test_a_person_new_to_routing_joins_their_first_group_of_this_desk(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        await routing.deliver(staff_updated("sara", active=False))
        await routing.deliver(staff_updated("piotr", name="Piotr Nowak", active=False))
        await routing.deliver(
            staff_updated("lena", name="Lena Berg", groups=("unknown-team", "service-desk"))
        )
        await routing.deliver(staff_updated("omar", name="Omar K", groups=("elsewhere",)))

        assert await owners_of_new_tickets(routing, 2) == ["Lena Berg", "Lena Berg"]
        lena, omar = await agent_row(routing, "lena"), await agent_row(routing, "omar")
        assert lena.group_id == "service-desk" and lena.active
        # No group of this desk: recorded, but routing has nowhere to hand him tickets.
        assert omar.active is False and omar.staff_groups == ["elsewhere"]

    # The desk file's sync at routing's next start leaves intake's people where they are.
    async with service("routing", database_url) as restarted:
        assert await owners_of_new_tickets(restarted, 1) == ["Lena Berg"]
