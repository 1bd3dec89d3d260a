"""SLA: clocks start from the policy for the ticket's priority (D26, D18)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from spoc_contracts import SlaClockStarted, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from tests.harness import envelope, service

pytestmark = pytest.mark.unit
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def routed(priority: str, created_at: datetime | None = MONDAY_10) -> TicketRouted:
    return TicketRouted(
        number="SD-000007",
        priority=priority,
        impact="medium",
        urgency="medium",
        group=GroupRef(id="service-desk", name="Service Desk"),
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        reason="test",
        ticket_created_at=created_at,
    )


async def clocks_for(sqlite_url: str, event: TicketRouted) -> SlaClockStarted:
    async with service("sla", sqlite_url) as sla:
        await sla.deliver(envelope(event))
        [started] = await sla.published("sla.clock_started")
        return SlaClockStarted.model_validate(started.data)


async def test_a_p1_runs_round_the_clock_from_when_the_ticket_was_opened(sqlite_url: str) -> None:
    started = await clocks_for(sqlite_url, routed("P1"))
    due = {c.metric: c.due_at for c in started.clocks}
    assert started.priority == "P1" and started.calendar == "round-the-clock"
    assert due == {
        "first_response": MONDAY_10 + timedelta(minutes=15),
        "resolution": MONDAY_10 + timedelta(hours=4),
    }


async def test_a_p3_runs_in_office_hours(sqlite_url: str) -> None:
    friday_16 = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    started = await clocks_for(sqlite_url, routed("P3", created_at=friday_16))
    due = {c.metric: c.due_at for c in started.clocks}
    # 2 working hours: 1 on Friday, 1 on Monday morning. 24 working hours: three days more.
    assert due["first_response"] == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert due["resolution"] == datetime(2026, 12, 2, 16, 0, tzinfo=UTC)


async def test_an_unknown_priority_falls_back_rather_than_leaving_no_targets(
    sqlite_url: str,
) -> None:
    started = await clocks_for(sqlite_url, routed("P9"))
    assert started.priority == "P3" and len(started.clocks) == 2


async def test_without_an_opening_time_the_clock_starts_at_routing(sqlite_url: str) -> None:
    async with service("sla", sqlite_url) as sla:
        event = envelope(routed("P1", created_at=None))
        await sla.deliver(event)
        [started] = await sla.published()
        first = SlaClockStarted.model_validate(started.data).clocks[0]
        assert first.due_at == event.occurred_at + timedelta(minutes=15)


async def test_routing_the_same_ticket_again_does_not_restart_its_clocks(sqlite_url: str) -> None:
    async with service("sla", sqlite_url) as sla:
        ticket_id = uuid.uuid4()
        await sla.deliver(envelope(routed("P3"), ticket_id=ticket_id, sequence=1))
        await sla.deliver(envelope(routed("P1"), ticket_id=ticket_id, sequence=2))
        assert len(await sla.published("sla.clock_started")) == 1
