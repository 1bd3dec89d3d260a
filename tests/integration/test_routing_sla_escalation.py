"""Hierarchical escalation (issue 8, D27): an SLA warning or breach takes the steps of the
desk's escalation policy — the group's manager notified, the ticket handed to another member,
its priority raised one step — once per ticket, target and stage, and never for a ticket that
is no longer active."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spoc_contracts import (
    Envelope,
    SlaBreached,
    SlaWarning,
    TicketAssigned,
    TicketEscalated,
    TicketEscalationRequested,
    TicketRouted,
    TicketStatusChanged,
    TicketUpdated,
)
from spoc_routing.models import Agent, Triage
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.integration.test_routing_staff import staff_updated

pytestmark = pytest.mark.integration

DESK = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      manager: mira
      agents:
        - {id: sara, name: Sara Ahmadi}
        - {id: piotr, name: Piotr Nowak}
    - {id: network, name: Network Operations, tier: 3}
  escalation:
    priorities:
      P1: {on_breach: [raise_priority, reassign, notify_manager]}
"""
DUE = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
_SEQUENCES = itertools.count(2)


@pytest.fixture
def desk_file(tmp_path: Path) -> Path:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    return path


async def routed_ticket(
    routing: ServiceUnderTest, **facts: Any
) -> tuple[uuid.UUID, str, TicketRouted]:
    ticket_id = uuid.uuid4()
    number = f"SD-{ticket_id.int % 10**6:06d}"
    await routing.deliver(envelope(ticket_created(number=number, **facts), ticket_id=ticket_id))
    [*_, routed] = await routing.published("ticket.routed")
    return ticket_id, number, TicketRouted.model_validate(routed.data)


def breached(ticket_id: uuid.UUID, number: str, metric: str = "resolution") -> Envelope:
    """A breach as sla publishes it: a new event id each time, even for the same target."""
    breach = SlaBreached(
        number=number,
        metric=metric,
        priority="P3",
        due_at=DUE,
        breached_at=DUE.replace(minute=5),
    )
    return envelope(breach, ticket_id=ticket_id, source="sla", sequence=next(_SEQUENCES))


def warned(ticket_id: uuid.UUID, number: str, metric: str = "resolution") -> Envelope:
    warning = SlaWarning(number=number, metric=metric, due_at=DUE, percent_elapsed=80)
    return envelope(warning, ticket_id=ticket_id, source="sla", sequence=next(_SEQUENCES))


async def answers(routing: ServiceUnderTest, delivered: Envelope) -> list[Envelope]:
    """What routing published on hearing `delivered`."""
    before = len(await routing.published())
    await routing.deliver(delivered)
    return (await routing.published())[before:]


async def triage_of(routing: ServiceUnderTest, ticket_id: uuid.UUID) -> Any:
    async with routing.runtime.engine.connect() as conn:
        query = select(Triage.priority, Triage.owner_id).where(Triage.ticket_id == ticket_id)
        return (await conn.execute(query)).one()


async def loads(routing: ServiceUnderTest) -> dict[str, int]:
    async with routing.runtime.engine.connect() as conn:
        rows = await conn.execute(select(Agent.id, Agent.open_tickets))
        return {row.id: row.open_tickets for row in rows}


async def test_a_breach_notifies_the_manager_and_raises_the_priority_once_however_often_it_comes(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        await routing.deliver(staff_updated("mira", name="Mira Nowak", role="manager", groups=()))
        ticket_id, number, first = await routed_ticket(routing)
        assert (first.priority, first.owner and first.owner.id) == ("P3", "sara")

        escalated, rerouted = await answers(routing, breached(ticket_id, number))

        assert escalated.type == TicketEscalated.TYPE
        assert TicketEscalated.model_validate(escalated.data).model_dump() == {
            "number": number,
            "kind": "hierarchical",
            "to_group": {"id": "service-desk", "name": "Service Desk", "tier": 1},
            "from_group": {"id": "service-desk", "name": "Service Desk", "tier": 1},
            "owner": {"id": "sara", "name": "Sara Ahmadi"},
            "reason": "resolution target breached at 14:05 UTC: Service Desk's manager "
            "Mira Nowak notified; priority raised P3 → P2",
            "manager": {"id": "mira", "name": "Mira Nowak"},
            "actions": ["notify_manager", "raise_priority"],
        }
        assert rerouted.type == TicketRouted.TYPE
        again = TicketRouted.model_validate(rerouted.data)
        assert (again.priority, again.impact, again.urgency) == ("P2", "medium", "medium")
        assert again.owner == first.owner and again.group == first.group
        assert again.reason == (
            "priority raised P3 → P2: resolution target breached at 14:05 UTC; "
            "Service Desk and the owner stay"
        )
        assert await triage_of(routing, ticket_id) == ("P2", "sara")

        # sla says it again, under a new event id: the target was escalated at this stage.
        assert await answers(routing, breached(ticket_id, number)) == []
        assert await triage_of(routing, ticket_id) == ("P2", "sara")
        # Another target of the ticket is its own escalation.
        [_, raised] = await answers(routing, breached(ticket_id, number, "first_response"))
        assert TicketRouted.model_validate(raised.data).priority == "P1"


async def test_a_warning_notifies_the_manager_only_and_a_late_one_after_the_breach_nothing(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id, number, _ = await routed_ticket(routing)

        [escalated] = await answers(routing, warned(ticket_id, number))

        warning = TicketEscalated.model_validate(escalated.data)
        # Mira never signed in: routing names her by her id.
        assert warning.manager is not None and warning.manager.name == "mira"
        assert warning.actions == ["notify_manager"]
        assert warning.reason == (
            "resolution target 80% elapsed (due 14:00 UTC): Service Desk's manager mira notified"
        )
        assert await triage_of(routing, ticket_id) == ("P3", "sara")

        # The breach that follows takes its own steps; a warning redelivered after it, none.
        [_, rerouted] = await answers(routing, breached(ticket_id, number))
        assert TicketRouted.model_validate(rerouted.data).priority == "P2"
        assert await answers(routing, warned(ticket_id, number)) == []


async def test_a_p1_breach_hands_the_ticket_to_a_colleague_and_the_priority_stays_p1(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id, number, first = await routed_ticket(routing, impact="high", urgency="high")
        assert (first.priority, first.owner and first.owner.id) == ("P1", "sara")
        assert await loads(routing) == {"sara": 1, "piotr": 0}

        escalated, assigned = await answers(routing, breached(ticket_id, number))

        escalation = TicketEscalated.model_validate(escalated.data)
        assert escalation.actions == ["notify_manager", "reassign"]
        assert escalation.owner is not None and escalation.owner.id == "piotr"
        assert escalation.reason == (
            "resolution target breached at 14:05 UTC: Service Desk's manager mira notified; "
            "reassigned from Sara Ahmadi to Piotr Nowak (Piotr Nowak has the lightest load in "
            "Service Desk (0 open)); priority stays P1, the most urgent"
        )
        handed = TicketAssigned.model_validate(assigned.data)
        assert handed.reason == (
            "resolution target breached at 14:05 UTC: reassigned from Sara Ahmadi to Piotr Nowak "
            "(Piotr Nowak has the lightest load in Service Desk (0 open))"
        )
        assert (handed.owner.id, handed.previous_owner and handed.previous_owner.id) == (
            "piotr",
            "sara",
        )
        assert await triage_of(routing, ticket_id) == ("P1", "piotr")
        assert await loads(routing) == {"sara": 0, "piotr": 1}


async def test_a_reassignment_with_nobody_else_to_take_it_says_so_and_the_owner_keeps_it(
    database_url: str, tmp_path: Path
) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(
        "routing:\n"
        "  groups:\n"
        "    - {id: service-desk, name: Service Desk, agents: [{id: sara, name: Sara Ahmadi}]}\n"
        "  escalation: {on_breach: [reassign]}\n"
    )
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id, number, _ = await routed_ticket(routing)

        [escalated] = await answers(routing, breached(ticket_id, number))

        escalation = TicketEscalated.model_validate(escalated.data)
        assert (escalation.actions, escalation.manager) == ([], None)
        assert escalation.reason == (
            "resolution target breached at 14:05 UTC: "
            "not reassigned: nobody else in Service Desk is on duty with room"
        )
        assert await triage_of(routing, ticket_id) == ("P3", "sara")
        assert await loads(routing) == {"sara": 1}


async def test_a_breach_of_a_ticket_resolved_meanwhile_is_ignored(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id, number, _ = await routed_ticket(routing)
        resolved = TicketStatusChanged(number=number, from_status="open", to_status="resolved")
        await routing.deliver(envelope(resolved, ticket_id=ticket_id, source="intake", sequence=5))

        assert await answers(routing, warned(ticket_id, number)) == []
        assert await answers(routing, breached(ticket_id, number)) == []
        assert await triage_of(routing, ticket_id) == ("P3", "sara")


async def test_a_re_classification_after_a_breach_does_not_lower_the_priority_it_raised(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id, number, first = await routed_ticket(routing)
        assert first.priority == "P3"
        await answers(routing, breached(ticket_id, number))
        assert (await triage_of(routing, ticket_id)).priority == "P2"

        # The agent says it is less urgent than thought: the matrix gives P4, the breach's
        # raise stands; more urgent than the raise, it goes higher still.
        lower = TicketUpdated(number=number, changes={"urgency": "low"}, updated_by="Sara")
        [routed] = [
            TicketRouted.model_validate(e.data)
            for e in await answers(
                routing, envelope(lower, ticket_id=ticket_id, source="intake", sequence=50)
            )
        ]
        assert routed.priority == "P2"
        assert "kept at P2, as an SLA escalation raised it" in routed.reason
        higher = TicketUpdated(
            number=number, changes={"impact": "high", "urgency": "high"}, updated_by="Sara"
        )
        [routed] = [
            TicketRouted.model_validate(e.data)
            for e in await answers(
                routing, envelope(higher, ticket_id=ticket_id, source="intake", sequence=51)
            )
        ]
        assert routed.priority == "P1"


async def test_a_breach_while_another_group_helps_keeps_the_front_line_owner(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id, number, first = await routed_ticket(routing, impact="high", urgency="high")
        assert first.priority == "P1" and first.owner is not None
        asked = TicketEscalationRequested(
            number=number, to_group="network", reason="Core switch", requested_by="Sara"
        )
        await routing.deliver(envelope(asked, ticket_id=ticket_id, source="intake", sequence=40))
        [escalated, *_] = [
            TicketEscalated.model_validate(e.data)
            for e in await answers(routing, breached(ticket_id, number))
            if e.type == TicketEscalated.TYPE
        ]
        assert escalated.kind == "hierarchical" and "reassign" not in escalated.actions
        assert "not reassigned: Network Operations helps with it, and its owner stays" in (
            escalated.reason
        )
        assert (await triage_of(routing, ticket_id)).owner_id == first.owner.id
