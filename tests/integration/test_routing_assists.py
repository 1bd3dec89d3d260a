"""The owner kept through tiered escalation (issue 8, D3): a functional escalation gives the
work to someone in the helping group (an assist, by its strategy) while the front-line owner
stays; the group hands it back one tier at a time, to whoever worked it there; loads follow."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spoc_contracts import (
    TicketAssistAssigned,
    TicketEscalated,
    TicketEscalationRequested,
    TicketHandBackRefused,
    TicketHandBackRequested,
    TicketHandedBack,
    TicketStatusChanged,
)
from spoc_contracts.envelope import Event
from spoc_routing.models import Agent, Triage
from spoc_routing.waiting_queue import WaitingQueueSweeper
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.integration.test_routing_staff import staff_updated

pytestmark = pytest.mark.integration

DESK = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      agents: [{id: sara, name: Sara Ahmadi}]
    - id: desktop-support
      name: Desktop Support
      tier: 2
      agents: [{id: lena, name: Lena Berg}, {id: omid, name: Omid Rahimi}]
    - id: network
      name: Network Operations
      tier: 3
      agent_capacity: 1
      agents: [{id: nika, name: Nika Tehrani}]
"""


@pytest.fixture
def desk_file(tmp_path: Path) -> Path:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    return path


async def answers(routing: ServiceUnderTest, ticket_id: uuid.UUID, request: Event) -> list[Any]:
    before = len(await routing.published())
    await routing.deliver(envelope(request, ticket_id=ticket_id, source="intake"))
    published = (await routing.published())[before:]
    classes = {
        c.TYPE: c
        for c in (TicketEscalated, TicketAssistAssigned, TicketHandedBack, TicketHandBackRefused)
    }
    return [classes[e.type].model_validate(e.data) for e in published]


def escalation(number: str, to_group: str) -> TicketEscalationRequested:
    return TicketEscalationRequested(
        number=number, to_group=to_group, reason="Needs a closer look.", requested_by="Sara"
    )


def hand_back(number: str) -> TicketHandBackRequested:
    return TicketHandBackRequested(
        number=number, reason="Fixed on our side.", requested_by="Lena Berg", requested_by_id="lena"
    )


async def state(routing: ServiceUnderTest, ticket_id: uuid.UUID) -> tuple[Any, dict[str, int]]:
    async with routing.runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                select(Triage.group_id, Triage.owner_id, Triage.assignee_id).where(
                    Triage.ticket_id == ticket_id
                )
            )
        ).one()
        loads = dict((await conn.execute(select(Agent.id, Agent.open_tickets))).all())
    return tuple(row), {a: n for a, n in loads.items() if n}


async def test_the_owner_stays_from_tier_1_to_tier_3_and_the_work_comes_back_a_tier_at_a_time(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id = uuid.uuid4()
        number = "SD-000101"
        await routing.deliver(envelope(ticket_created(number=number), ticket_id=ticket_id))
        assert await state(routing, ticket_id) == (("service-desk", "sara", None), {"sara": 1})

        # Tier 1 → tier 2: Lena (the lightest load there) helps; Sara stays the owner.
        escalated, assist = await answers(routing, ticket_id, escalation(number, "desktop-support"))
        assert isinstance(escalated, TicketEscalated) and escalated.owner.id == "sara"
        assert isinstance(assist, TicketAssistAssigned)
        assert (assist.group.id, assist.assignee.id, assist.owner.id) == (
            "desktop-support",
            "lena",
            "sara",
        )
        assert assist.reason == "Lena Berg has the lightest load in Desktop Support (0 open)"
        assert await state(routing, ticket_id) == (
            ("desktop-support", "sara", "lena"),
            {"sara": 1, "lena": 1},
        )

        # Tier 2 → tier 3: Nika helps; Lena's part pauses (out of her load) until it is back.
        _, assist = await answers(routing, ticket_id, escalation(number, "network"))
        assert assist.assignee.id == "nika"
        assert await state(routing, ticket_id) == (
            ("network", "sara", "nika"),
            {"sara": 1, "nika": 1},
        )

        # Tier 3 hands back to tier 2, to Lena again; then tier 2 to the owner's group.
        [back] = await answers(routing, ticket_id, hand_back(number))
        assert isinstance(back, TicketHandedBack)
        assert (back.from_group.id, back.to_group.id, back.to_group.tier) == (
            "network",
            "desktop-support",
            2,
        )
        assert back.owner.id == "sara" and back.assignee.id == "lena"
        assert await state(routing, ticket_id) == (
            ("desktop-support", "sara", "lena"),
            {"sara": 1, "lena": 1},
        )
        [back] = await answers(routing, ticket_id, hand_back(number))
        assert (back.to_group.id, back.to_group.tier, back.assignee) == ("service-desk", 1, None)
        assert await state(routing, ticket_id) == (("service-desk", "sara", None), {"sara": 1})

        # Nothing left to hand back.
        [refused] = await answers(routing, ticket_id, hand_back(number))
        assert isinstance(refused, TicketHandBackRefused)
        assert refused.reason == "it is not escalated: nobody helps with it to hand it back"


async def test_a_resolution_frees_the_helper_too_and_a_full_tier_helps_as_soon_as_it_can(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        first, second = uuid.uuid4(), uuid.uuid4()
        await routing.deliver(envelope(ticket_created(number="SD-000201"), ticket_id=first))
        await routing.deliver(envelope(ticket_created(number="SD-000202"), ticket_id=second))
        await answers(routing, first, escalation("SD-000201", "network"))
        # Nika (capacity 1) is busy: the second waits in the network queue for a helper.
        [escalated] = await answers(routing, second, escalation("SD-000202", "network"))
        assert isinstance(escalated, TicketEscalated)
        assert (await state(routing, second))[0] == ("network", "sara", None)
        [sweeper] = [w for w in routing.runtime.workers if isinstance(w, WaitingQueueSweeper)]
        assert await sweeper.sweep() == 0

        # The first is resolved: Nika's room goes to the waiting one at once.
        before = len(await routing.published())
        resolved = TicketStatusChanged(number="SD-000201", from_status="open", to_status="resolved")
        await routing.deliver(envelope(resolved, ticket_id=first, source="intake", sequence=5))
        [assist] = [
            TicketAssistAssigned.model_validate(e.data)
            for e in (await routing.published())[before:]
            if e.type == TicketAssistAssigned.TYPE
        ]
        assert assist.number == "SD-000202" and assist.assignee.id == "nika"
        assert assist.reason == (
            "Nika Tehrani has room now: the longest-waiting ticket of Network Operations"
        )
        # Sara owns both; the first is resolved: one open for her, one for Nika (helping).
        assert (await state(routing, second))[1] == {"sara": 1, "nika": 1}


async def test_nobody_helps_on_their_own_ticket(database_url: str, desk_file: Path) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        # Lena is placed in service-desk too and owns a ticket; desktop-support has only her
        # colleague Omid away: the escalation waits rather than asking Lena to help herself.
        await routing.deliver(
            staff_updated(
                "omid", name="Omid Rahimi", availability="away", groups=("desktop-support",)
            )
        )
        ticket_id = uuid.uuid4()
        await routing.deliver(envelope(ticket_created(number="SD-000301"), ticket_id=ticket_id))
        async with routing.runtime.engine.begin() as conn:
            await conn.execute(
                Triage.__table__.update()
                .where(Triage.ticket_id == ticket_id)
                .values(owner_id="lena")
            )
        [escalated] = await answers(routing, ticket_id, escalation("SD-000301", "desktop-support"))
        assert isinstance(escalated, TicketEscalated)
        assert (await state(routing, ticket_id))[0] == ("desktop-support", "lena", None)
        [sweeper] = [w for w in routing.runtime.workers if isinstance(w, WaitingQueueSweeper)]
        assert await sweeper.sweep() == 0
