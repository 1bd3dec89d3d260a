"""Load and capacity (issue 8): an agent's open tickets are kept from ticket events, nobody is
given more than their capacity, and a ticket nobody has room for waits in its group's queue
until a member resolves one."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import column, func, select, table

from spoc.services import SERVICES, ServiceName
from spoc_contracts import (
    TicketAssigned,
    TicketAssignmentRefused,
    TicketAssignmentRequested,
    TicketRouted,
    TicketStatusChanged,
)
from spoc_platform.db import create_engine
from spoc_platform.migrations import upgrade
from spoc_routing.models import Agent, Triage
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.integration.test_routing_staff import staff_updated

pytestmark = pytest.mark.integration

DESK = """
routing:
  groups:
    - id: service-desk
      name: Service Desk
      agent_capacity: 2
      agents:
        - {id: sara, name: Sara Ahmadi, capacity: 1}
        - {id: piotr, name: Piotr Nowak}
    - {id: network, name: Network Operations, tier: 3}
"""
CAPACITY = {"sara": 1, "piotr": 2}


@pytest.fixture
def desk_file(tmp_path: Path) -> Path:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    return path


async def create(routing: ServiceUnderTest) -> tuple[uuid.UUID, str | None]:
    ticket_id = uuid.uuid4()
    number = f"SD-{ticket_id.int % 10**6:06d}"
    await routing.deliver(envelope(ticket_created(number=number), ticket_id=ticket_id))
    [routed] = [e for e in await routing.published("ticket.routed") if e.ticket_id == ticket_id]
    owner = TicketRouted.model_validate(routed.data).owner
    return ticket_id, owner.id if owner else None


_SEQUENCES = itertools.count(9)


async def move(routing: ServiceUnderTest, ticket_id: uuid.UUID, to: str, was: str = "open") -> None:
    moved = TicketStatusChanged(number="SD-000001", from_status=was, to_status=to)
    sequence = next(_SEQUENCES)  # intake's, increasing per ticket
    await routing.deliver(envelope(moved, ticket_id=ticket_id, source="intake", sequence=sequence))


async def loads(routing: ServiceUnderTest) -> dict[str, int]:
    async with routing.runtime.engine.connect() as conn:
        rows = await conn.execute(select(Agent.id, Agent.open_tickets))
        return {row.id: row.open_tickets for row in rows}


async def owned(routing: ServiceUnderTest) -> dict[str, int]:
    """Active tickets per owner, as routing's triage records them (None: waiting)."""
    async with routing.runtime.engine.connect() as conn:
        query = (
            select(Triage.owner_id, func.count())
            .where(Triage.active.is_(True))
            .group_by(Triage.owner_id)
        )
        return {row[0]: row[1] for row in await conn.execute(query)}


async def test_a_full_front_line_leaves_a_ticket_waiting_until_someone_resolves_one(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        tickets = [await create(routing) for _ in range(4)]
        assert [owner for _, owner in tickets] == ["sara", "piotr", "piotr", None]
        assert await loads(routing) == {"sara": 1, "piotr": 2}

        await move(routing, tickets[0][0], "resolved")

        [given_out] = await routing.published("ticket.assigned")
        assert given_out.ticket_id == tickets[3][0]
        assigned = TicketAssigned.model_validate(given_out.data)
        assert (assigned.owner.id, assigned.previous_owner) == ("sara", None)
        assert assigned.reason == (
            "Sara Ahmadi has room now: the longest-waiting ticket of Service Desk"
        )
        assert await loads(routing) == {"sara": 1, "piotr": 2}

        # Reopened, the ticket comes back to its owner, room or not (D3).
        await move(routing, tickets[0][0], "open", was="resolved")
        assert await loads(routing) == {"sara": 2, "piotr": 2}
        # Moves between active statuses change nothing; closing a resolved one neither.
        await move(routing, tickets[1][0], "pending")
        await move(routing, tickets[2][0], "resolved")
        await move(routing, tickets[2][0], "closed", was="resolved")
        assert await loads(routing) == {"sara": 2, "piotr": 1}
        assert await owned(routing) == {"sara": 2, "piotr": 1}


async def test_a_full_colleague_is_not_handed_more_but_an_agent_may_take_one_more(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        first, _ = await create(routing)  # sara, now full
        second, _ = await create(routing)  # piotr

        async def ask(ticket_id: uuid.UUID, by: str, **request: Any) -> Any:
            before = len(await routing.published())
            asked = TicketAssignmentRequested(
                number="SD-000001", requested_by=by.title(), requested_by_id=by, **request
            )
            await routing.deliver(envelope(asked, ticket_id=ticket_id, source="intake"))
            [answer] = (await routing.published())[before:]
            return answer

        refused = await ask(second, "piotr", agent="sara")
        assert refused.type == TicketAssignmentRefused.TYPE
        assert refused.data["reason"] == "Sara Ahmadi has no room (1 open, at most 1)"

        taken = await ask(second, "sara", agent="sara")
        assert taken.type == TicketAssigned.TYPE
        # The load moved with the ticket.
        assert await loads(routing) == {"sara": 2, "piotr": 0}

        await move(routing, first, "resolved")
        refused_late = await ask(first, "piotr", agent="piotr")
        assert refused_late.data["reason"] == "the ticket is resolved or closed"


Operation = tuple[str, int]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["create", "resolve", "reopen"]), st.integers(0, 50)),
        max_size=25,
    )
)
def test_nobody_is_ever_given_more_than_their_capacity_and_the_load_is_what_they_own(
    tmp_path: Path, operations: list[Operation]
) -> None:
    asyncio.run(_run(tmp_path, operations))


async def _run(tmp_path: Path, operations: list[Operation]) -> None:
    run = tmp_path / uuid.uuid4().hex
    run.mkdir()
    desk = run / "desk.yaml"
    desk.write_text(DESK)
    url = f"sqlite+aiosqlite:///{run / 'routing.sqlite3'}"
    active: list[uuid.UUID] = []
    done: list[uuid.UUID] = []
    reopened = False
    async with service("routing", url, desk_config=desk) as routing:
        for kind, pick in operations:
            if kind == "create":
                ticket_id, owner = await create(routing)
                active.append(ticket_id)
                if owner is not None and not reopened:
                    assert (await loads(routing))[owner] <= CAPACITY[owner]
            elif kind == "resolve" and active:
                ticket_id = active.pop(pick % len(active))
                await move(routing, ticket_id, "resolved")
                done.append(ticket_id)
            elif kind == "reopen" and done:
                ticket_id = done.pop(pick % len(done))
                await move(routing, ticket_id, "open", was="resolved")
                active.append(ticket_id)
                reopened = True
            load = await loads(routing)
            holding = await owned(routing)
            # The load is exactly the active tickets each agent owns.
            assert {a: n for a, n in load.items() if n} == {
                a: n for a, n in holding.items() if a is not None
            }
            # A ticket waits only while everyone in the group is full.
            if holding.get(None):
                assert all(load[a] >= CAPACITY[a] for a in CAPACITY)


async def test_concurrent_decisions_never_book_an_agent_beyond_capacity(
    postgres_url: str, desk_file: Path
) -> None:
    async with service("routing", postgres_url, desk_config=desk_file) as routing:
        results = await asyncio.gather(*(create(routing) for _ in range(12)))
        owners = [owner for _, owner in results]
        assert sorted(o for o in owners if o) == ["piotr", "piotr", "sara"]
        assert owners.count(None) == 9
        assert await loads(routing) == {"sara": 1, "piotr": 2}


async def test_a_person_placed_in_a_full_group_takes_its_waiting_tickets(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        waiting = [ticket_id for ticket_id, _ in [await create(routing) for _ in range(6)]]
        before = len(await routing.published("ticket.assigned"))
        await routing.deliver(staff_updated("lena", name="Lena Berg", groups=("service-desk",)))

        given = (await routing.published("ticket.assigned"))[before:]
        # sara 1 + piotr 2 own the first three; lena takes the next two (the group's capacity).
        assert [e.ticket_id for e in given] == waiting[3:5]
        assert {TicketAssigned.model_validate(e.data).owner.id for e in given} == {"lena"}
        assert (await loads(routing))["lena"] == 2


async def test_a_ticket_triaged_before_loads_were_kept_never_joins_a_queue(
    database_url: str, desk_file: Path
) -> None:
    upgrade(SERVICES[ServiceName.routing].migrations, database_url, "0006")
    old = uuid.uuid4()
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        # Routed to nobody a year ago (the group had no active agent), closed since.
        # Only the columns revision 0006 has (the model's defaults name later ones).
        as_of_0006 = table(
            "triage",
            *(column(name) for name in ("ticket_id", "number", "impact", "urgency")),
            *(column(name) for name in ("priority", "group_id", "owner_id", "routed_at")),
        )
        await conn.execute(
            as_of_0006.insert().values(
                ticket_id=old if conn.dialect.name == "postgresql" else old.hex,
                number="SD-000009",
                impact="low",
                urgency="low",
                priority="P4",
                group_id="service-desk",
                owner_id=None,
                routed_at=datetime(2025, 1, 1, tzinfo=UTC),
            )
        )
    await engine.dispose()
    async with service("routing", database_url, desk_config=desk_file) as routing:
        tickets = [await create(routing) for _ in range(4)]
        await move(routing, tickets[0][0], "resolved")
        [given] = await routing.published("ticket.assigned")
        assert given.ticket_id == tickets[3][0]
        # Its next status change says what it is, and moves nobody's load.
        await move(routing, old, "closed", was="resolved")
        assert await loads(routing) == {"sara": 1, "piotr": 2}


async def test_opposite_hand_overs_at_once_wait_for_each_other_and_never_deadlock(
    postgres_url: str, desk_file: Path
) -> None:
    async with service("routing", postgres_url, desk_config=desk_file) as routing:
        async with routing.runtime.engine.begin() as conn:
            await conn.execute(Agent.__table__.update().values(capacity=100))
        tickets = [await create(routing) for _ in range(12)]
        sara = [t for t, owner in tickets if owner == "sara"][:3]
        piotr = [t for t, owner in tickets if owner == "piotr"][:3]

        async def hand(ticket_id: uuid.UUID, to: str) -> None:
            asked = TicketAssignmentRequested(
                number="SD-000001", requested_by="Mina", requested_by_id="mina", agent=to
            )
            await routing.deliver(envelope(asked, ticket_id=ticket_id, source="intake"))

        await asyncio.gather(*(hand(t, "piotr") for t in sara), *(hand(t, "sara") for t in piotr))
        assert len(await routing.published("ticket.assigned")) == 6
        assert await loads(routing) == {a: n for a, n in (await owned(routing)).items() if a}
