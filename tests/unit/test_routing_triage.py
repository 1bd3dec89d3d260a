"""Routing: priority from impact × urgency (D24), a group and a front-line owner (D3)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from spoc_contracts import TicketRouted
from spoc_platform.desk_config import DeskConfigError, load_section
from spoc_routing.desk import RoutingDesk
from tests.harness import envelope, service, ticket_created

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
