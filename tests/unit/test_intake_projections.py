"""Intake's projections: what the other services report becomes the requester's view."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from spoc_contracts import NotificationFailed, TicketAssigned, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_intake.schemas import TicketCreate
from spoc_intake.views import ticket_for_requester
from spoc_platform.bus import PoisonMessage
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service

pytestmark = pytest.mark.unit
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)


@pytest.fixture
async def intake(sqlite_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", sqlite_url) as running:
        yield running


async def open_ticket(intake: ServiceUnderTest) -> tuple[uuid.UUID, str, str]:
    outcome = await intake.container.tickets.create(
        TicketCreate.model_validate(NEW_TICKET), idempotency_key=None
    )
    body = outcome.body
    return uuid.UUID(body["id"]), body["number"], body["access_key"]


def routed(owner: str) -> TicketRouted:
    return TicketRouted(
        number="SD-000001",
        priority="P2",
        impact="high",
        urgency="medium",
        group=DESK,
        owner=AgentRef(id=owner.lower(), name=owner),
        reason="test",
    )


async def view(intake: ServiceUnderTest, number: str, key: str) -> dict[str, object]:
    read = await ticket_for_requester(intake.runtime.engine, "SD", number, key)
    return read.model_dump()


async def test_routing_opens_the_ticket_and_names_its_owner(intake: ServiceUnderTest) -> None:
    ticket_id, number, key = await open_ticket(intake)
    await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing"))

    seen = await view(intake, number, key)
    assert seen["status"] == "open" and seen["priority"] == "P2"
    assert seen["owner"] == {"name": "Sara Ahmadi"}
    assert seen["team"] == {"name": "Service Desk", "tier": 1}


async def test_a_stale_update_never_overwrites_a_newer_one(intake: ServiceUnderTest) -> None:
    ticket_id, number, key = await open_ticket(intake)
    newer = TicketAssigned(
        number=number, owner=AgentRef(id="piotr", name="Piotr Nowak"), group=DESK
    )
    await intake.deliver(envelope(newer, ticket_id=ticket_id, source="routing", sequence=2))
    await intake.deliver(
        envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing", sequence=1)
    )

    seen = await view(intake, number, key)
    assert seen["owner"] == {"name": "Piotr Nowak"}
    # The history still tells both facts, in the order they happened.
    kinds = [entry["kind"] for entry in seen["timeline"]]  # type: ignore[attr-defined]
    assert kinds.count("assigned") == 1 and kinds.count("routed") == 1


async def test_an_event_about_a_ticket_intake_never_had_is_dead_lettered(
    intake: ServiceUnderTest,
) -> None:
    with pytest.raises(PoisonMessage, match="does not have"):
        await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=uuid.uuid4()))


async def test_internal_failures_stay_out_of_the_requesters_history(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    failed = NotificationFailed(
        number=number,
        notification_id="n1",
        kind="acknowledgement",
        channel="email",
        recipient="reza@example.org",
        attempts=8,
        error="550 mailbox unavailable",
    )
    await intake.deliver(envelope(failed, ticket_id=ticket_id, source="notify"))

    seen = await view(intake, number, key)
    assert [e["kind"] for e in seen["timeline"]] == ["created"]  # type: ignore[attr-defined]
