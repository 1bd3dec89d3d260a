"""Routing answers staff's requests: an assignment (a person takes the ticket or is handed it,
a group's strategy picks someone) and a functional escalation (another group helps, the owner
stays); or the request is refused with the reason, and the ticket stays where it was."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from spoc_contracts import (
    TicketAssigned,
    TicketAssignmentRefused,
    TicketAssignmentRequested,
    TicketEscalated,
    TicketEscalationRefused,
    TicketEscalationRequested,
    TicketRouted,
)
from spoc_platform.bus import RetryLater
from spoc_routing.models import Triage
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.integration.test_routing_staff import staff_updated

pytestmark = pytest.mark.integration


async def routed_ticket(routing: ServiceUnderTest) -> tuple[uuid.UUID, TicketRouted]:
    ticket_id = uuid.uuid4()
    number = f"SD-{ticket_id.int % 10**6:06d}"
    await routing.deliver(envelope(ticket_created(number=number), ticket_id=ticket_id))
    [*_, routed] = await routing.published("ticket.routed")
    return ticket_id, TicketRouted.model_validate(routed.data)


async def ask(
    routing: ServiceUnderTest, ticket_id: uuid.UUID, number: str, **request: Any
) -> TicketAssigned | TicketAssignmentRefused:
    before = len(await routing.published())
    request.setdefault("requested_by", "Sara Ahmadi")
    request.setdefault("requested_by_id", "sara")
    asked = TicketAssignmentRequested(number=number, **request)
    await routing.deliver(envelope(asked, ticket_id=ticket_id, source="intake"))
    [answer] = (await routing.published())[before:]
    assert answer.ticket_id == ticket_id
    if answer.type == TicketAssigned.TYPE:
        return TicketAssigned.model_validate(answer.data)
    assert answer.type == TicketAssignmentRefused.TYPE
    return TicketAssignmentRefused.model_validate(answer.data)


async def triage_of(routing: ServiceUnderTest, ticket_id: uuid.UUID) -> Any:
    async with routing.runtime.engine.connect() as conn:
        query = select(Triage.group_id, Triage.owner_id).where(Triage.ticket_id == ticket_id)
        return (await conn.execute(query)).one()


def outcomes(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "spoc_routing_assignment_requests_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_an_agent_takes_a_ticket_from_a_colleague(database_url: str) -> None:
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)
        assert routed.owner is not None and routed.owner.id == "sara"
        taken_before = outcomes("assigned")

        answer = await ask(
            routing,
            ticket_id,
            routed.number,
            agent="piotr",
            requested_by="Piotr Nowak",
            requested_by_id="piotr",
            reason="I know this model.",
        )

        assert isinstance(answer, TicketAssigned)
        assert (answer.owner.id, answer.owner.name) == ("piotr", "Piotr Nowak")
        assert answer.group.id == "service-desk" and answer.group.tier == 1
        assert answer.previous_owner is not None and answer.previous_owner.id == "sara"
        assert answer.previous_owner.name == "Sara Ahmadi"
        assert answer.reason == "taken by Piotr Nowak: I know this model."
        assert tuple(await triage_of(routing, ticket_id)) == ("service-desk", "piotr")
        assert outcomes("assigned") == taken_before + 1


async def test_a_colleague_is_handed_the_ticket_and_counted_for_the_next_pick(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)  # sara: the first by position
        answer = await ask(routing, ticket_id, routed.number, agent="piotr")
        assert isinstance(answer, TicketAssigned)
        assert answer.reason == "Sara Ahmadi asked for Piotr Nowak"

        # sara 1, piotr 1: the next new ticket goes to sara again (position breaks the tie).
        _, following = await routed_ticket(routing)
        assert following.owner is not None and following.owner.id == "sara"


async def test_a_group_request_is_given_to_its_least_loaded_active_agent(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        await routing.deliver(staff_updated("lena", name="Lena Berg", groups=("desktop-support",)))
        await routing.deliver(
            staff_updated("omid", name="Omid Rahimi", groups=("desktop-support",), active=False)
        )
        ticket_id, routed = await routed_ticket(routing)

        answer = await ask(routing, ticket_id, routed.number, group="desktop-support")

        assert isinstance(answer, TicketAssigned)
        assert (answer.owner.id, answer.group.id, answer.group.tier) == (
            "lena",
            "desktop-support",
            2,
        )
        assert answer.reason == (
            "Sara Ahmadi asked for the group; Lena Berg has the lightest load in Desktop Support"
            " (0 open)"
        )
        assert tuple(await triage_of(routing, ticket_id)) == ("desktop-support", "lena")


async def test_an_agent_is_handed_a_ticket_in_another_group_they_belong_to(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        await routing.deliver(
            staff_updated("lena", name="Lena Berg", groups=("desktop-support", "network"))
        )
        ticket_id, routed = await routed_ticket(routing)

        answer = await ask(routing, ticket_id, routed.number, agent="lena", group="network")

        assert isinstance(answer, TicketAssigned)
        assert (answer.owner.id, answer.group.id, answer.group.tier) == ("lena", "network", 3)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ({"agent": "nobody"}, "nobody is not an agent of this desk"),
        ({"agent": "omid"}, "Omid Rahimi's account is deactivated"),
        ({"agent": "lena", "group": "service-desk"}, "Lena Berg is not a member of Service Desk"),
        ({"agent": "ghost"}, "Ghost Writer is in no group of this desk"),
        ({"group": "nowhere"}, "there is no group nowhere"),
        ({"group": "network"}, "nobody in Network Operations is on duty with room for it now"),
        ({}, "the request names neither an agent nor a group"),
        # An agent hands over within their own groups only (anything else is an escalation).
        (
            {"group": "desktop-support", "within_groups": ["service-desk"]},
            "Desktop Support is not a group of Sara Ahmadi's: ask it for help with an "
            "escalation (the owner stays), or ask a manager",
        ),
        (
            {"agent": "lena", "within_groups": ["network", "service-desk"]},
            "Desktop Support is not a group of Sara Ahmadi's: ask it for help with an "
            "escalation (the owner stays), or ask a manager",
        ),
    ],
)
async def test_a_request_routing_cannot_honour_is_refused_and_nothing_moves(
    database_url: str, request_: dict[str, Any], reason: str
) -> None:
    async with service("routing", database_url) as routing:
        await routing.deliver(staff_updated("lena", name="Lena Berg", groups=("desktop-support",)))
        await routing.deliver(
            staff_updated("omid", name="Omid Rahimi", groups=("service-desk",), active=False)
        )
        await routing.deliver(staff_updated("ghost", name="Ghost Writer", groups=("elsewhere",)))
        ticket_id, routed = await routed_ticket(routing)
        before = tuple(await triage_of(routing, ticket_id))
        refused_before = outcomes("refused")

        answer = await ask(routing, ticket_id, routed.number, **request_)

        assert isinstance(answer, TicketAssignmentRefused)
        assert answer.reason == reason
        assert (answer.agent, answer.group) == (request_.get("agent"), request_.get("group"))
        assert (answer.requested_by, answer.requested_by_id) == ("Sara Ahmadi", "sara")
        assert tuple(await triage_of(routing, ticket_id)) == before
        assert outcomes("refused") == refused_before + 1


async def test_a_request_that_overtakes_the_creation_waits_for_it(database_url: str) -> None:
    async with service("routing", database_url) as routing:
        ticket_id = uuid.uuid4()
        asked = envelope(
            TicketAssignmentRequested(number="SD-000042", agent="piotr", requested_by="Sara"),
            ticket_id=ticket_id,
            source="intake",
        )
        with pytest.raises(RetryLater):
            await routing.deliver(asked)
        assert await routing.published() == []

        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        await routing.deliver(asked, delivery_count=1)
        await routing.deliver(asked, delivery_count=2)  # a redelivery changes nothing more

        [routed] = await routing.published("ticket.routed")
        [assigned] = await routing.published("ticket.assigned")
        assert assigned.causation_id == asked.id and routed.sequence < assigned.sequence
        assert TicketAssigned.model_validate(assigned.data).owner.id == "piotr"


async def test_a_request_that_changes_nothing_is_refused_and_counts_nobody(
    database_url: str,
) -> None:
    # Two clicks on "take" both pass intake's check (its projection lags routing's answer).
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)
        assert routed.owner is not None and routed.owner.id == "sara"
        taken = await ask(routing, ticket_id, routed.number, agent="sara")
        assert isinstance(taken, TicketAssignmentRefused)
        assert taken.reason == "Sara Ahmadi has it already, in Service Desk"
        assert await routing.published("ticket.assigned") == []

        # sara 1, piotr 0, and still so: the next new ticket goes to piotr.
        _, following = await routed_ticket(routing)
        assert following.owner is not None and following.owner.id == "piotr"


async def test_a_hand_over_within_the_group_goes_to_someone_else(database_url: str) -> None:
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)  # sara
        await ask(routing, ticket_id, routed.number, agent="piotr")  # sara 1, piotr 1
        handed = await ask(routing, ticket_id, routed.number, group="service-desk")
        assert isinstance(handed, TicketAssigned)
        assert handed.owner.id == "sara"  # not piotr, though sara wins the tie by position
        await routing.deliver(
            staff_updated("piotr", name="Piotr Nowak", groups=("service-desk",), active=False)
        )
        alone = await ask(routing, ticket_id, routed.number, group="service-desk")
        assert isinstance(alone, TicketAssignmentRefused)
        assert alone.reason == "nobody else in Service Desk is on duty with room for it now"


async def test_an_agent_hands_a_ticket_to_a_colleague_within_their_groups(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)
        answer = await ask(
            routing, ticket_id, routed.number, agent="piotr", within_groups=["service-desk"]
        )
        assert isinstance(answer, TicketAssigned) and answer.owner.id == "piotr"


async def escalate(
    routing: ServiceUnderTest, ticket_id: uuid.UUID, number: str, to_group: str
) -> TicketEscalated | TicketEscalationRefused:
    before = len(await routing.published())
    asked = TicketEscalationRequested(
        number=number, to_group=to_group, reason="The switch needs a look.", requested_by="Sara"
    )
    await routing.deliver(envelope(asked, ticket_id=ticket_id, source="intake"))
    # (ticket.assist_assigned may follow, when someone in the group can help at once)
    [answer, *_] = (await routing.published())[before:]
    assert answer.ticket_id == ticket_id and answer.causation_id is not None
    if answer.type == TicketEscalated.TYPE:
        return TicketEscalated.model_validate(answer.data)
    assert answer.type == TicketEscalationRefused.TYPE
    return TicketEscalationRefused.model_validate(answer.data)


async def test_an_escalation_moves_the_ticket_to_the_group_and_keeps_its_owner(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)
        assert routed.owner is not None

        answer = await escalate(routing, ticket_id, routed.number, "network")

        assert isinstance(answer, TicketEscalated)
        assert answer.kind == "functional" and answer.reason == "The switch needs a look."
        assert (answer.to_group.id, answer.to_group.name, answer.to_group.tier) == (
            "network",
            "Network Operations",
            3,
        )
        assert answer.from_group is not None and answer.from_group.id == "service-desk"
        assert answer.owner == routed.owner
        assert tuple(await triage_of(routing, ticket_id)) == ("network", routed.owner.id)


@pytest.mark.parametrize(
    ("to_group", "reason"),
    [("nowhere", "there is no group nowhere"), ("service-desk", "Service Desk has it already")],
)
async def test_an_escalation_routing_cannot_honour_is_refused(
    database_url: str, to_group: str, reason: str
) -> None:
    async with service("routing", database_url) as routing:
        ticket_id, routed = await routed_ticket(routing)
        before = tuple(await triage_of(routing, ticket_id))

        answer = await escalate(routing, ticket_id, routed.number, to_group)

        assert isinstance(answer, TicketEscalationRefused)
        assert (answer.to_group, answer.reason, answer.requested_by) == (to_group, reason, "Sara")
        assert tuple(await triage_of(routing, ticket_id)) == before


async def test_an_escalation_that_overtakes_the_creation_waits_for_it(database_url: str) -> None:
    async with service("routing", database_url) as routing:
        ticket_id = uuid.uuid4()
        asked = envelope(
            TicketEscalationRequested(number="SD-000042", to_group="network", reason="Help"),
            ticket_id=ticket_id,
            source="intake",
        )
        with pytest.raises(RetryLater):
            await routing.deliver(asked)
        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        await routing.deliver(asked, delivery_count=1)
        [escalated] = await routing.published("ticket.escalated")
        assert TicketEscalated.model_validate(escalated.data).to_group.id == "network"
