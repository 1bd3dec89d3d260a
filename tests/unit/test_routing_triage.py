"""Routing: priority from impact × urgency (D24), a group and a front-line owner (D3)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from spoc_contracts import Envelope, TicketRouted
from spoc_platform.bus import PoisonMessage
from spoc_platform.desk_config import DeskConfigError, load_section
from spoc_routing.desk import RoutingDesk
from spoc_routing.models import Triage
from tests.harness import ServiceUnderTest, envelope, service, ticket_created

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        ("high", "high", "P1"),
        ("high", "medium", "P2"),
        ("high", "low", "P3"),
        ("medium", "high", "P2"),
        ("medium", "medium", "P3"),
        ("medium", "low", "P4"),
        ("low", "high", "P3"),
        ("low", "medium", "P4"),
        ("low", "low", "P5"),
        (None, None, "P3"),
    ],
)
async def test_priority_comes_from_the_matrix_not_the_requester(
    sqlite_url: str, impact: str | None, urgency: str | None, priority: str
) -> None:
    async with service("routing", sqlite_url) as routing:
        ticket = ticket_created(impact=impact, urgency=urgency)
        await routing.deliver(envelope(ticket))

        [routed] = await routing.published("ticket.routed")
        event = TicketRouted.model_validate(routed.data)
        assert event.priority == priority
        assert event.group.name == "Service Desk" and event.group.tier == 1
        assert event.ticket_created_at == ticket.created_at


async def test_the_routed_event_continues_the_journey_of_the_created_one(sqlite_url: str) -> None:
    async with service("routing", sqlite_url) as routing:
        created = envelope(ticket_created())
        await routing.deliver(created)

        [routed] = await routing.published()
        assert routed.ticket_id == created.ticket_id
        assert routed.correlation_id == created.correlation_id
        assert routed.causation_id == created.id
        assert routed.source == "routing" and routed.sequence == 1


async def test_owners_are_spread_over_the_front_line_by_load(sqlite_url: str) -> None:
    async with service("routing", sqlite_url) as routing:
        for n in range(4):
            await routing.deliver(envelope(ticket_created(number=f"SD-{n:06d}")))

        owners = [TicketRouted.model_validate(e.data).owner for e in await routing.published()]
        names = [o.name for o in owners if o is not None]
        assert sorted(names) == ["Piotr Nowak", "Piotr Nowak", "Sara Ahmadi", "Sara Ahmadi"]


async def test_a_ticket_created_twice_under_new_event_ids_is_triaged_once(sqlite_url: str) -> None:
    async with service("routing", sqlite_url) as routing:
        ticket_id = uuid.uuid4()
        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        # Acknowledged quietly, like any duplicate (it was dead-lettered before): no error.
        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        assert len(await routing.published()) == 1


def test_a_desk_file_overrides_the_matrix_and_groups(tmp_path: Path) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(
        "routing:\n"
        "  default_group: helpdesk\n"
        "  groups:\n"
        "    - {id: helpdesk, name: Helpdesk, agents: [{id: jan, name: Jan Nowak}]}\n"
        "  matrix:\n"
        "    high: {high: P1, medium: P1, low: P2}\n"
        "    medium: {high: P2, medium: P3, low: P3}\n"
        "    low: {high: P3, medium: P4, low: P4}\n"
    )
    desk = load_section(desk_file, "routing", RoutingDesk)
    assert desk.priority("high", "medium") == "P1"
    assert desk.group("helpdesk").agents[0].name == "Jan Nowak"


@pytest.mark.parametrize(
    ("yaml_text", "complaint"),
    [
        ("routing:\n  matrix:\n    high: {high: P1}\n", "matrix[high] lacks urgency"),
        ("routing:\n  default_group: nowhere\n", "default_group 'nowhere'"),
        ("routing: [1, 2]\n", "section 'routing' is invalid"),
        ("routing:\n  matrix: {high: [oops\n", "cannot read desk configuration"),
    ],
)
def test_a_broken_desk_file_is_refused_with_a_clear_reason(
    tmp_path: Path, yaml_text: str, complaint: str
) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(yaml_text)
    with pytest.raises(DeskConfigError, match=complaint.replace("[", r"\[")):
        load_section(desk_file, "routing", RoutingDesk)


def routed_total(priority: str, group: str) -> float:
    # Counters are process-wide: a test counts from what they hold now.
    labels = {"priority": priority, "group": group}
    return REGISTRY.get_sample_value("spoc_routing_tickets_routed_total", labels) or 0.0


async def triage_record(routing: ServiceUnderTest, ticket_id: uuid.UUID) -> dict[str, object]:
    """Routing's own record of the ticket, without the time it was made."""
    table = Triage.__table__
    async with routing.runtime.engine.connect() as conn:
        query = select(table).where(table.c.ticket_id == ticket_id)
        stored = dict((await conn.execute(query)).one()._mapping)
    assert stored.pop("routed_at") is not None
    return stored


async def test_the_routed_event_and_routings_record_carry_the_whole_triage(
    sqlite_url: str,
) -> None:
    async with service("routing", sqlite_url) as routing:
        before = routed_total("P2", "service-desk")
        ticket = ticket_created(impact="high", urgency="medium", category="network")
        ticket_id = uuid.uuid4()
        await routing.deliver(envelope(ticket, ticket_id=ticket_id))

        [routed] = await routing.published("ticket.routed")
        assert routed.data == {
            "number": "SD-000042",
            "priority": "P2",
            "impact": "high",
            "urgency": "medium",
            "category": "network",
            "group": {"id": "service-desk", "name": "Service Desk", "tier": 1},
            "owner": {"id": "sara", "name": "Sara Ahmadi"},
            "reason": (
                "impact high × urgency medium → P2; Service Desk by the default group; "
                "Sara Ahmadi has the lightest load in Service Desk (0 open)"
            ),
            "ticket_created_at": "2026-11-23T10:00:00Z",
            "subcategory": None,
            "item": None,
            "auto_classified": False,
            "tags": [],
            "rules": [],
            "desk_version": RoutingDesk().version,
        }
        assert await triage_record(routing, ticket_id) == {
            "ticket_id": ticket_id,
            "number": "SD-000042",
            "impact": "high",
            "urgency": "medium",
            "priority": "P2",
            "category": "network",
            "group_id": "service-desk",
            "owner_id": "sara",
            "subcategory": None,
            "item": None,
            "auto_classified": False,
            "tags": [],
            "rules": [],
            "desk_version": RoutingDesk().version,
            # What the ticket said, for a re-triage (triage.remembered).
            "facts": {
                "type": "incident",
                "channel": "portal",
                "category": "network",
                "subcategory": None,
                "item": None,
                "impact": "high",
                "urgency": "medium",
                "requester_email": "ala@example.org",
                "requester_vouched": True,
                "words": [],
            },
            "active": True,
            "status_sequence": 0,
            "skills": None,
            # Not escalated: nobody helps, no way back, no SLA raise to keep.
            "assignee_id": None,
            "escalation_path": None,
            "escalation_depth": 0,
            "priority_floor": None,
        }
        assert routed_total("P2", "service-desk") == before + 1


NIGHT_DESK = """
routing:
  default_group: night-shift
  groups:
    - {id: service-desk, name: Service Desk, agents: [{id: sara, name: Sara Ahmadi}]}
    - {id: night-shift, name: Night shift, tier: 2}
"""


async def test_a_group_with_no_one_on_duty_gets_the_ticket_without_an_owner_and_a_warning(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desk_file = tmp_path / "desk.yaml"
    desk_file.write_text(NIGHT_DESK)
    async with service("routing", sqlite_url, desk_config=desk_file) as routing:
        before = routed_total("P3", "night-shift")
        ticket_id = uuid.uuid4()
        with caplog.at_level(logging.WARNING, logger="spoc_routing.handlers"):
            await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))

        [routed] = await routing.published("ticket.routed")
        event = TicketRouted.model_validate(routed.data)
        assert event.group.model_dump() == {"id": "night-shift", "name": "Night shift", "tier": 2}
        assert event.owner is None
        record = await triage_record(routing, ticket_id)
        assert record["group_id"] == "night-shift" and record["owner_id"] is None
        assert routed_total("P3", "night-shift") == before + 1
        assert [
            (r.levelname, r.getMessage())
            for r in caplog.records
            if r.name == "spoc_routing.handlers"
        ] == [
            (
                "WARNING",
                "nobody in group night-shift is on duty with room; SD-000042 waits in its queue, "
                "unowned",
            )
        ]


async def test_a_creation_without_a_ticket_id_is_dead_lettered_with_the_reason(
    sqlite_url: str,
) -> None:
    async with service("routing", sqlite_url) as routing:
        orphan = Envelope.wrap(ticket_created(), source="intake", ticket_id=None, sequence=1)
        with pytest.raises(PoisonMessage) as dead:
            await routing.deliver(orphan)
        assert str(dead.value) == "ticket.created without a ticket_id"
        assert await routing.published() == []


async def test_a_re_sent_creation_is_acknowledged_and_the_log_says_why(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with service("routing", sqlite_url) as routing:
        ticket_id = uuid.uuid4()
        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        with caplog.at_level(logging.INFO, logger="spoc_platform.consumer"):
            await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))

        assert (
            "already handled; acknowledged without effect (ticket SD-000042 was already triaged)"
            in [r.getMessage() for r in caplog.records if r.name == "spoc_platform.consumer"]
        )
