"""Re-triage (D24): an agent's re-classification reaches routing as ticket.updated, and routing
publishes the new priority on ticket.routed, keeping the group and the owner."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from spoc_contracts import TicketRouted, TicketUpdated
from spoc_platform.bus import RetryLater
from spoc_routing.models import Triage
from tests.harness import ServiceUnderTest, envelope, service, ticket_created

pytestmark = pytest.mark.integration

DESK = """
routing:
  categories:
    - id: hardware
      subcategories:
        - {id: printer, impact: low, urgency: low, keywords: [toner], group: desktop-support}
    - {id: network, impact: high, urgency: high, group: network}
  rules:
    - name: outage
      when: {keywords: [outage]}
      then: {priority_floor: P2, tags: [outage]}
"""


async def retriaged(
    routing: ServiceUnderTest, ticket_id: uuid.UUID, **changes: object
) -> list[TicketRouted]:
    before = len(await routing.published("ticket.routed"))
    updated = TicketUpdated(number="SD-000042", changes=changes, updated_by="Sara Ahmadi")
    await routing.deliver(envelope(updated, ticket_id=ticket_id, source="intake", sequence=5))
    return [
        TicketRouted.model_validate(e.data)
        for e in (await routing.published("ticket.routed"))[before:]
    ]


@pytest.fixture
def desk_file(tmp_path: Path) -> Path:
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    return path


async def test_a_new_category_re_triages_and_the_group_and_owner_stay(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id = uuid.uuid4()
        created = ticket_created(subject="No toner", description="Outage on floor 3")
        await routing.deliver(envelope(created, ticket_id=ticket_id))
        [first] = [TicketRouted.model_validate(e.data) for e in await routing.published()]
        assert (first.category, first.subcategory, first.auto_classified) == (
            "hardware",
            "printer",
            True,
        )
        assert (first.priority, first.group.id, first.tags) == ("P2", "desktop-support", ["outage"])

        [again] = await retriaged(routing, ticket_id, category="network", subcategory=None)

        assert (again.category, again.subcategory, again.auto_classified) == (
            "network",
            None,
            False,
        )
        # network's impact and urgency: P1 (the outage floor, from the creation's words, holds).
        assert (again.priority, again.impact, again.urgency) == ("P1", "high", "high")
        assert again.rules == ["outage"] and again.tags == ["outage"]
        assert (again.group, again.owner) == (first.group, first.owner)
        assert again.reason == (
            "re-triaged after a change of category, subcategory by Sara Ahmadi; "
            "impact high × urgency high → P1; rule outage ('outage'); "
            "Desktop Support and the owner stay"
        )
        async with routing.runtime.engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(Triage.priority, Triage.category, Triage.group_id).where(
                        Triage.ticket_id == ticket_id
                    )
                )
            ).one()
        assert tuple(stored) == ("P1", "network", "desktop-support")

        # The agent's own impact now stands over the category's default.
        [lowered] = await retriaged(routing, ticket_id, impact="low")
        assert (lowered.impact, lowered.priority) == ("low", "P2")  # P3, raised by the floor


async def test_a_change_triage_does_not_read_is_not_a_re_triage(
    database_url: str, desk_file: Path
) -> None:
    async with service("routing", database_url, desk_config=desk_file) as routing:
        ticket_id = uuid.uuid4()
        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        assert await retriaged(routing, ticket_id, tags=["x"]) == []


async def test_a_re_classification_that_overtakes_the_creation_waits_for_it(
    database_url: str,
) -> None:
    async with service("routing", database_url) as routing:
        ticket_id = uuid.uuid4()
        updated = envelope(
            TicketUpdated(number="SD-000042", changes={"impact": "high"}),
            ticket_id=ticket_id,
            source="intake",
        )
        with pytest.raises(RetryLater):
            await routing.deliver(updated)
        await routing.deliver(envelope(ticket_created(), ticket_id=ticket_id))
        await routing.deliver(updated, delivery_count=1)
        [_, again] = [TicketRouted.model_validate(e.data) for e in await routing.published()]
        assert (again.impact, again.priority) == ("high", "P2")


CLASSIFYING_DESK = """
routing:
  categories:
    - id: hardware
      subcategories:
        - {id: printer, impact: low, urgency: low, keywords: [toner]}
        - {id: laptop, impact: high, urgency: high, keywords: [battery]}
"""


async def test_an_agents_subcategory_stands_on_an_auto_classified_ticket(
    database_url: str, tmp_path: Path
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text(CLASSIFYING_DESK)
    async with service("routing", database_url, desk_config=desk) as routing:
        ticket_id = uuid.uuid4()
        created = ticket_created(subject="No toner", description="Floor 3")
        await routing.deliver(envelope(created, ticket_id=ticket_id))
        [first] = [TicketRouted.model_validate(e.data) for e in await routing.published()]
        assert (first.subcategory, first.priority, first.auto_classified) == ("printer", "P5", True)

        # Intake shows hardware › printer; the agent moves it to laptop: not guessed again.
        [again] = await retriaged(routing, ticket_id, subcategory="laptop")
        assert (again.category, again.subcategory, again.priority) == ("hardware", "laptop", "P1")
        assert again.auto_classified  # the category is still routing's choice
        [lowered] = await retriaged(routing, ticket_id, impact="low")
        assert (lowered.subcategory, lowered.priority) == ("laptop", "P3")
