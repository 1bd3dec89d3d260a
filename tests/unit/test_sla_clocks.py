"""SLA: clocks start from the policy for the ticket's priority (D26, D18)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from spoc_contracts import Envelope, SlaClockStarted, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_platform.bus import PoisonMessage
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


def clocks_started_total(priority: str) -> float:
    # Counters are process-wide: a test counts from what they hold now.
    labels = {"priority": priority}
    return REGISTRY.get_sample_value("spoc_sla_clocks_started_total", labels) or 0.0


async def test_the_started_clocks_are_published_with_their_targets_and_counted(
    sqlite_url: str,
) -> None:
    async with service("sla", sqlite_url) as sla:
        before = clocks_started_total("P1")
        routing = envelope(routed("P1"))
        await sla.deliver(routing)

        [started] = await sla.published("sla.clock_started")
        assert started.ticket_id == routing.ticket_id
        assert started.data == {
            "number": "SD-000007",
            "priority": "P1",
            "policy": "standard",
            "calendar": "round-the-clock",
            "clocks": [
                {
                    "metric": "first_response",
                    "due_at": "2026-11-23T10:15:00Z",
                    "target_seconds": 15 * 60,
                },
                {
                    "metric": "resolution",
                    "due_at": "2026-11-23T14:00:00Z",
                    "target_seconds": 240 * 60,
                },
            ],
        }
        assert clocks_started_total("P1") == before + 2


async def test_routing_again_is_logged_as_not_restarting_the_clocks(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with service("sla", sqlite_url) as sla:
        ticket_id = uuid.uuid4()
        await sla.deliver(envelope(routed("P3"), ticket_id=ticket_id, sequence=1))
        with caplog.at_level(logging.INFO, logger="spoc_sla.handlers"):
            await sla.deliver(envelope(routed("P1"), ticket_id=ticket_id, sequence=2))

        assert [r.getMessage() for r in caplog.records if r.name == "spoc_sla.handlers"] == [
            "SD-000007 already has clocks; re-routing does not restart them"
        ]


async def test_a_routing_without_a_ticket_id_is_dead_lettered_with_the_reason(
    sqlite_url: str,
) -> None:
    async with service("sla", sqlite_url) as sla:
        orphan = Envelope.wrap(routed("P1"), source="routing", ticket_id=None, sequence=1)
        with pytest.raises(PoisonMessage) as dead:
            await sla.deliver(orphan)
        assert str(dead.value) == "ticket.routed without a ticket_id"
        assert await sla.published() == []
