"""Assignment strategies, skills, availability and shifts (issue 8): inside the chosen group
the owner is picked by the group's strategy, never someone away, off, off shift or full; a
ticket nobody can take waits in the queue until someone can."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from spoc_contracts import TicketAssigned, TicketRouted
from spoc_routing.models import Agent
from spoc_routing.waiting_queue import WaitingQueueSweeper
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.integration.test_routing_assignment import ask
from tests.integration.test_routing_staff import staff_updated

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def desk_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"desk-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(text)
    return path


async def create(routing: ServiceUnderTest, **ticket: Any) -> tuple[uuid.UUID, TicketRouted]:
    ticket_id = uuid.uuid4()
    number = f"SD-{ticket_id.int % 10**6:06d}"
    await routing.deliver(envelope(ticket_created(number=number, **ticket), ticket_id=ticket_id))
    [routed] = [e for e in await routing.published("ticket.routed") if e.ticket_id == ticket_id]
    return ticket_id, TicketRouted.model_validate(routed.data)


def owner_of(routed: TicketRouted) -> str | None:
    return routed.owner.id if routed.owner else None


ROUND_ROBIN = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      strategy: round_robin
      agents:
        - {id: sara, name: Sara Ahmadi}
        - {id: piotr, name: Piotr Nowak}
        - {id: lena, name: Lena Berg}
"""


async def test_round_robin_gives_tickets_in_turn_and_a_manual_assignment_takes_a_turn(
    database_url: str, tmp_path: Path
) -> None:
    async with service(
        "routing", database_url, desk_config=desk_file(tmp_path, ROUND_ROBIN)
    ) as routing:
        owners = [owner_of((await create(routing))[1]) for _ in range(4)]
        assert owners == ["sara", "piotr", "lena", "sara"]
        _, routed = await create(routing)
        assert routed.reason.endswith("; Piotr Nowak is next in turn in Service Desk")

        # Lena is handed a ticket by a colleague: that was her turn.
        ticket_id, routed = await create(routing)
        assert owner_of(routed) == "lena"
        answer = await ask(routing, ticket_id, routed.number, agent="piotr")
        assert isinstance(answer, TicketAssigned)
        owners = [owner_of((await create(routing))[1]) for _ in range(3)]
        assert owners == ["sara", "lena", "piotr"]


async def test_concurrent_round_robin_decisions_still_go_round(
    postgres_url: str, tmp_path: Path
) -> None:
    async with service(
        "routing", postgres_url, desk_config=desk_file(tmp_path, ROUND_ROBIN)
    ) as routing:
        results = await asyncio.gather(*(create(routing) for _ in range(12)))
        assert Counter(owner_of(routed) for _, routed in results) == {
            "sara": 4,
            "piotr": 4,
            "lena": 4,
        }


SKILLS = """
routing:
  categories:
    - id: network
      skills: [network]
    - id: hardware
      subcategories:
        - {id: printer, skills: [printers]}
  rules:
    - name: remote-access
      when: {keywords: [vpn]}
      then: {skills: [vpn]}
  groups:
    - id: service-desk
      name: Service Desk
      strategy: skill_match
      agents:
        - {id: sara, name: Sara Ahmadi, skills: [printers]}
        - {id: lena, name: Lena Berg, skills: [network]}
        - {id: piotr, name: Piotr Nowak, skills: [network, vpn]}
"""


async def test_skill_match_gives_a_ticket_to_who_knows_its_category_and_what_its_rules_add(
    database_url: str, tmp_path: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file(tmp_path, SKILLS)) as routing:
        _, vpn = await create(
            routing, category="network", subject="VPN drops", description="every hour"
        )
        assert owner_of(vpn) == "piotr"
        assert vpn.reason.endswith("; Piotr Nowak has the skills it needs (network, vpn)")

        _, network = await create(routing, category="network", subject="Slow", description="x")
        assert owner_of(network) == "lena"  # both know networks; Lena has fewer tickets

        _, printer = await create(routing, category="hardware", subcategory="printer")
        assert owner_of(printer) == "sara"

        # Piotr is away: the next VPN ticket goes to the one with most of the skills.
        await routing.deliver(staff_updated("piotr", name="Piotr Nowak", availability="away"))
        _, vpn_again = await create(
            routing, category="network", subject="VPN again", description="drops"
        )
        assert owner_of(vpn_again) == "lena"
        assert "Lena Berg has 1 of the 2 skills it needs" in vpn_again.reason


AVAILABILITY = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      agents:
        - {id: sara, name: Sara Ahmadi}
        - {id: piotr, name: Piotr Nowak}
"""


async def test_nobody_away_or_off_is_given_a_ticket_and_coming_back_takes_the_queue(
    database_url: str, tmp_path: Path
) -> None:
    async with service(
        "routing", database_url, desk_config=desk_file(tmp_path, AVAILABILITY)
    ) as routing:
        await routing.deliver(staff_updated("sara", availability="off"))
        await routing.deliver(
            staff_updated("piotr", name="Piotr Nowak", availability="away", updated_at=NOW)
        )
        waiting = [await create(routing) for _ in range(2)]
        assert [owner_of(routed) for _, routed in waiting] == [None, None]
        assert waiting[0][1].reason.endswith(
            "nobody in Service Desk is on duty with room: it waits in the queue"
        )

        # Handing a ticket to someone away is refused; they may take one themselves.
        refused = await ask(routing, waiting[0][0], waiting[0][1].number, agent="piotr")
        assert refused.reason == "Piotr Nowak is away"
        taken = await ask(
            routing,
            waiting[0][0],
            waiting[0][1].number,
            agent="piotr",
            requested_by="Piotr Nowak",
            requested_by_id="piotr",
        )
        assert isinstance(taken, TicketAssigned) and taken.owner.id == "piotr"

        # Piotr is back: the ticket still waiting is his at once.
        before = len(await routing.published("ticket.assigned"))
        back = staff_updated(
            "piotr", name="Piotr Nowak", availability="available", updated_at=NOW + timedelta(1)
        )
        await routing.deliver(back)
        [given_out] = (await routing.published("ticket.assigned"))[before:]
        assert given_out.ticket_id == waiting[1][0]
        assert TicketAssigned.model_validate(given_out.data).owner.id == "piotr"


def shift_desk(today: datetime) -> str:
    yesterday = today - timedelta(days=1)
    return f"""
routing:
  shifts:
    early:
      timezone: UTC
      starts: "06:00"
      ends: "14:00"
      days_off: ["{yesterday:%Y-%m-%d}", "{today:%Y-%m-%d}"]
  groups:
    - id: service-desk
      name: Service Desk
      shift: early
      strategy: round_robin
      agents:
        - {{id: sara, name: Sara Ahmadi}}
        - {{id: piotr, name: Piotr Nowak}}
"""


async def test_a_ticket_that_comes_off_shift_waits_and_goes_out_when_the_shift_starts(
    database_url: str, tmp_path: Path
) -> None:
    today = datetime.now(UTC)
    desk = desk_file(tmp_path, shift_desk(today))
    async with service("routing", database_url, desk_config=desk) as routing:
        tickets = [await create(routing) for _ in range(3)]
        assert [owner_of(routed) for _, routed in tickets] == [None, None, None]
        [sweeper] = [w for w in routing.runtime.workers if isinstance(w, WaitingQueueSweeper)]
        # Still today (a day off): the sweep gives nothing.
        assert await sweeper.sweep() == 0

        tomorrow = today + timedelta(days=1)
        sweeper.clock = lambda: tomorrow.replace(hour=5, minute=59)
        assert await sweeper.sweep() == 0
        sweeper.clock = lambda: tomorrow.replace(hour=6, minute=0)
        assert await sweeper.sweep() == 3
        given_out = [
            (e.ticket_id, TicketAssigned.model_validate(e.data))
            for e in await routing.published("ticket.assigned")
        ]
        # Oldest first, in turn.
        assert [(t, a.owner.id) for t, a in given_out] == [
            (tickets[0][0], "sara"),
            (tickets[1][0], "piotr"),
            (tickets[2][0], "sara"),
        ]
        assert given_out[0][1].reason == (
            "Sara Ahmadi is next in turn in Service Desk; it waited in the queue of Service Desk"
        )
        assert await sweeper.sweep() == 0


Person = tuple[int, str]  # capacity, availability
_runs = itertools.count()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    people=st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from(["available", "away", "off"])),
        min_size=1,
        max_size=5,
    ),
    strategy=st.sampled_from(["least_loaded", "round_robin", "skill_match"]),
    tickets=st.integers(1, 14),
)
def test_concurrent_decisions_never_go_over_capacity_nor_to_anyone_unavailable(
    postgres_url: str, tmp_path: Path, people: list[Person], strategy: str, tickets: int
) -> None:
    asyncio.run(_concurrent_run(postgres_url, tmp_path, people, strategy, tickets))


async def _concurrent_run(
    url: str, tmp_path: Path, people: list[Person], strategy: str, tickets: int
) -> None:
    run = next(_runs)
    ids = [f"r{run}-a{i}" for i in range(len(people))]
    group = f"g{run}"
    agents = "\n".join(
        f"        - {{id: {agent_id}, name: Agent {agent_id}, capacity: {capacity},"
        f" skills: [{'network' if i % 2 else 'printers'}]}}"
        for i, (agent_id, (capacity, _)) in enumerate(zip(ids, people, strict=True))
    )
    desk = desk_file(
        tmp_path,
        f"""
routing:
  default_group: {group}
  categories: [{{id: network, skills: [network]}}]
  groups:
    - id: {group}
      name: Group {run}
      strategy: {strategy}
      agents:
{agents}
""",
    )
    async with service("routing", url, desk_config=desk) as routing:
        for agent_id, (_, availability) in zip(ids, people, strict=True):
            await routing.deliver(
                staff_updated(agent_id, name=agent_id, groups=(group,), availability=availability)
            )
        results = await asyncio.gather(
            *(create(routing, category="network") for _ in range(tickets))
        )
        owners = Counter(owner_of(routed) for _, routed in results)
        capacity = {i: p[0] for i, p in zip(ids, people, strict=True)}
        available = {i for i, p in zip(ids, people, strict=True) if p[1] == "available"}
        assert set(owners) - {None} <= available
        assert all(owners[i] <= capacity[i] for i in available)
        # Only when every available person is full does a ticket wait.
        room = sum(capacity[i] for i in available)
        assert owners[None] == max(0, tickets - room)
        async with routing.runtime.engine.connect() as conn:
            rows = (
                await conn.execute(select(Agent.id, Agent.open_tickets).where(Agent.id.in_(ids)))
            ).all()
        assert {row.id: row.open_tickets for row in rows if row.open_tickets} == {
            i: n for i, n in owners.items() if i is not None
        }
