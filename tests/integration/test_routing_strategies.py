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
from sqlalchemy import select, text, update

from spoc_contracts import (
    TicketAssigned,
    TicketAssignmentRequested,
    TicketRouted,
    TicketStatusChanged,
    TicketUpdated,
)
from spoc_routing import repository
from spoc_routing.models import Agent
from spoc_routing.waiting_queue import WaitingQueueSweeper
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.integration.test_routing_assignment import ask, triage_of
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


def skills_desk(today: datetime) -> str:
    return f"""
routing:
  shifts:
    early:
      timezone: UTC
      days_off: ["{(today - timedelta(days=1)):%Y-%m-%d}", "{today:%Y-%m-%d}"]
  categories:
    - {{id: network, skills: [network]}}
    - {{id: printing, skills: [printers]}}
  groups:
    - id: service-desk
      name: Service Desk
      shift: early
      strategy: skill_match
      agents:
        - {{id: sara, name: Sara Ahmadi, skills: [printers]}}
        - {{id: lena, name: Lena Berg, skills: [network]}}
"""


async def test_two_replicas_sweeping_one_skill_match_queue_do_not_deadlock(
    postgres_url: str, tmp_path: Path
) -> None:
    today = datetime.now(UTC)
    async with service(
        "routing", postgres_url, desk_config=desk_file(tmp_path, skills_desk(today))
    ) as routing:
        failures = []
        for round_ in range(3):
            categories = ["printing", "network", "network", "printing"] * 3
            tickets = [await create(routing, category=c) for c in categories]
            assert {owner_of(r) for _, r in tickets} == {None}
            [first] = [w for w in routing.runtime.workers if isinstance(w, WaitingQueueSweeper)]
            on_shift = today + timedelta(days=1 + round_)
            replicas = [
                WaitingQueueSweeper(
                    routing.runtime.unit_of_work, first._desk, 30, clock=lambda d=on_shift: d
                )
                for _ in range(2)
            ]
            results = await asyncio.gather(*(r.sweep() for r in replicas), return_exceptions=True)
            failures += [r for r in results if isinstance(r, BaseException)]
            # Let the agents' loads drop again for the next round.
            async with routing.runtime.engine.begin() as conn:
                await conn.execute(update(repository.triage).values(active=False))
                await conn.execute(update(repository.agent).values(open_tickets=0))
        assert failures == []


HAND_OVER = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      agents:
        - {id: sara, name: Sara Ahmadi, capacity: 1}
    - id: network
      name: Network Operations
      agents:
        - {id: lena, name: Lena Berg}
"""


async def test_room_made_by_a_hand_over_goes_to_the_queue_not_to_the_next_new_ticket(
    database_url: str, tmp_path: Path
) -> None:

    async with service(
        "routing", database_url, desk_config=desk_file(tmp_path, HAND_OVER)
    ) as routing:
        first_id, first = await create(routing)
        assert owner_of(first) == "sara"
        waiting_id, waiting = await create(routing)
        assert owner_of(waiting) is None
        asked = TicketAssignmentRequested(
            number=first.number,
            agent="lena",
            group="network",
            requested_by="Mina Manager",
            requested_by_id="mina",
        )
        await routing.deliver(envelope(asked, ticket_id=first_id, source="intake"))
        # Sara has room again: the ticket that waited is hers, before any newcomer.
        _, newcomer = await create(routing)
        given = [
            e.ticket_id
            for e in await routing.published("ticket.assigned")
            if TicketAssigned.model_validate(e.data).owner.id == "sara"
        ]
        assert given == [waiting_id] and owner_of(newcomer) is None


TWO = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      agents:
        - {id: sara, name: Sara Ahmadi}
        - {id: piotr, name: Piotr Nowak}
"""


async def test_a_reopened_ticket_whose_owner_left_goes_to_someone_who_works_here(
    database_url: str, tmp_path: Path
) -> None:
    """D3 keeps a reopened ticket with its owner, unless the owner no longer takes tickets."""

    async with service("routing", database_url, desk_config=desk_file(tmp_path, TWO)) as routing:
        ticket_id, routed = await create(routing)
        assert owner_of(routed) == "sara"

        async def moved(sequence: int, from_: str, to: str) -> None:
            changed = TicketStatusChanged(
                number=routed.number, from_status=from_, to_status=to, changed_by="x"
            )
            await routing.deliver(
                envelope(changed, ticket_id=ticket_id, source="intake", sequence=sequence)
            )

        await moved(1, "open", "resolved")
        await routing.deliver(staff_updated("sara", active=False))
        await moved(2, "resolved", "open")
        assert (await triage_of(routing, ticket_id)).owner_id == "piotr"
        [*_, handed] = await routing.published("ticket.assigned")
        assigned = TicketAssigned.model_validate(handed.data)
        assert assigned.previous_owner is not None and assigned.previous_owner.id == "sara"
        assert assigned.reason is not None and assigned.reason.startswith(
            "reopened, and Sara Ahmadi no longer takes tickets: Piotr Nowak"
        )


async def test_a_group_s_waiting_queue_is_read_through_an_index(
    postgres_url: str, tmp_path: Path
) -> None:

    async with service("routing", postgres_url, desk_config=desk_file(tmp_path, TWO)) as routing:
        async with routing.runtime.engine.connect() as conn:
            await conn.execute(text("SET enable_seqscan = off"))
            query = (
                select(repository.triage.c.ticket_id)
                .where(
                    repository.triage.c.group_id == "service-desk",
                    repository.triage.c.owner_id.is_(None),
                    repository.triage.c.active.is_(True),
                )
                .order_by(repository.triage.c.routed_at)
                .limit(1)
            )
            compiled = query.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
            plan = (await conn.execute(text(f"EXPLAIN {compiled}"))).scalars().all()
        assert not any("Seq Scan" in line for line in plan), plan


async def test_a_waiting_ticket_re_categorised_goes_to_who_has_its_new_skills(
    database_url: str, tmp_path: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file(tmp_path, SKILLS)) as routing:
        for agent_id in ("sara", "lena", "piotr"):
            await routing.deliver(staff_updated(agent_id, availability="off"))
        ticket_id, routed = await create(routing, category="hardware", subcategory="printer")
        assert owner_of(routed) is None
        changed = TicketUpdated(
            number=routed.number,
            changes={"category": "network", "subcategory": None},
            updated_by="Mina Manager",
        )
        await routing.deliver(envelope(changed, ticket_id=ticket_id, source="intake", sequence=2))
        # Everyone back at once (no event of theirs takes the ticket first): the sweep decides.
        async with routing.runtime.engine.begin() as conn:
            await conn.execute(update(repository.agent).values(availability="available"))
        [sweeper] = [w for w in routing.runtime.workers if isinstance(w, WaitingQueueSweeper)]
        assert await sweeper.sweep() == 1
        assert (await triage_of(routing, ticket_id)).owner_id in {"lena", "piotr"}
