"""Intake's projections: what the other services report becomes the requester's view."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from spoc_contracts import (
    ClockTarget,
    Envelope,
    NotificationFailed,
    NotificationSent,
    SlaClockStarted,
    TicketAssigned,
    TicketEscalated,
    TicketRouted,
)
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_intake.callers import Caller
from spoc_intake.models import Ticket, TimelineEntry
from spoc_intake.schemas import TicketAgentRead, TicketCreate
from spoc_intake.views import ticket_for_caller, ticket_for_requester
from spoc_platform.bus import PoisonMessage
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service

pytestmark = pytest.mark.unit
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
NETWORK = GroupRef(id="network", name="Network Operations", tier=2)


@pytest.fixture
async def intake(sqlite_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", sqlite_url) as running:
        yield running


async def open_ticket(intake: ServiceUnderTest) -> tuple[uuid.UUID, str, str]:
    outcome = await intake.container.tickets.create(
        TicketCreate.model_validate(NEW_TICKET), idempotency_key=None
    )
    body = outcome.body
    return uuid.UUID(body["id"]), body["number"], body["access_key"]


def routed(owner: str | None) -> TicketRouted:
    return TicketRouted(
        number="SD-000001",
        priority="P2",
        impact="high",
        urgency="medium",
        group=DESK,
        owner=AgentRef(id=owner.lower(), name=owner) if owner else None,
        reason="test",
    )


async def view(intake: ServiceUnderTest, number: str, key: str) -> dict[str, Any]:
    read = await ticket_for_requester(intake.runtime.engine, "SD", number, key)
    seen: dict[str, Any] = read.model_dump()
    return seen


async def test_routing_opens_the_ticket_and_names_its_owner(intake: ServiceUnderTest) -> None:
    ticket_id, number, key = await open_ticket(intake)
    await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing"))

    seen = await view(intake, number, key)
    assert seen["status"] == "open" and seen["priority"] == "P2"
    assert seen["owner"] == {"name": "Sara Ahmadi"}
    assert seen["team"] == {"name": "Service Desk", "tier": 1}


async def test_a_stale_update_never_overwrites_a_newer_one(intake: ServiceUnderTest) -> None:
    ticket_id, number, key = await open_ticket(intake)
    newer = TicketAssigned(
        number=number, owner=AgentRef(id="piotr", name="Piotr Nowak"), group=DESK
    )
    await intake.deliver(envelope(newer, ticket_id=ticket_id, source="routing", sequence=2))
    await intake.deliver(
        envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing", sequence=1)
    )

    seen = await view(intake, number, key)
    assert seen["owner"] == {"name": "Piotr Nowak"}
    # The history still tells both facts, in the order they happened.
    kinds = [entry["kind"] for entry in seen["timeline"]]
    assert kinds.count("assigned") == 1 and kinds.count("routed") == 1


async def test_an_event_about_a_ticket_intake_never_had_is_dead_lettered(
    intake: ServiceUnderTest,
) -> None:
    with pytest.raises(PoisonMessage, match="does not have"):
        await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=uuid.uuid4()))


async def test_internal_failures_stay_out_of_the_requesters_history(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    failed = NotificationFailed(
        number=number,
        notification_id="n1",
        kind="acknowledgement",
        channel="email",
        recipient="reza@example.org",
        attempts=8,
        error="550 mailbox unavailable",
    )
    await intake.deliver(envelope(failed, ticket_id=ticket_id, source="notify"))

    seen = await view(intake, number, key)
    assert [e["kind"] for e in seen["timeline"]] == ["created"]


async def view_after(
    intake: ServiceUnderTest, number: str, key: str, before: dict[str, Any]
) -> dict[str, Any]:
    """The requester's view now, checked to differ from `before` only where the caller says:
    returns it with `updated_at` set back to before's, so a test compares the whole view."""
    seen = await view(intake, number, key)
    assert seen["updated_at"] >= before["updated_at"]
    return {**seen, "updated_at": before["updated_at"]}


def entry(at: datetime, kind: str, summary: str) -> dict[str, object]:
    return {"at": at, "kind": kind, "summary": summary}


async def test_the_requester_sees_the_priority_team_and_owner_routing_chose(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    before = await view(intake, number, key)
    event = envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing")
    await intake.deliver(event)

    assert await view_after(intake, number, key, before) == {
        **before,
        "status": "open",
        "priority": "P2",
        "owner": {"name": "Sara Ahmadi"},
        "team": {"name": "Service Desk", "tier": 1},
        "timeline": [
            *before["timeline"],
            entry(
                event.occurred_at,
                "routed",
                "Priority P2; assigned to Service Desk, owner Sara Ahmadi.",
            ),
        ],
    }


async def test_a_ticket_routed_without_an_owner_shows_its_team_and_no_one_by_name(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    before = await view(intake, number, key)
    event = envelope(routed(None), ticket_id=ticket_id, source="routing")
    await intake.deliver(event)

    assert await view_after(intake, number, key, before) == {
        **before,
        "status": "open",
        "priority": "P2",
        "owner": None,
        "team": {"name": "Service Desk", "tier": 1},
        "timeline": [
            *before["timeline"],
            entry(event.occurred_at, "routed", "Priority P2; assigned to Service Desk."),
        ],
    }


async def test_an_assignment_names_the_new_owner_and_the_team_they_work_in(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    first = envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing")
    await intake.deliver(first)
    before = await view(intake, number, key)
    assigned = TicketAssigned(
        number=number, owner=AgentRef(id="piotr", name="Piotr Nowak"), group=NETWORK
    )
    event = envelope(assigned, ticket_id=ticket_id, source="routing", sequence=2)
    await intake.deliver(event)

    assert await view_after(intake, number, key, before) == {
        **before,
        "owner": {"name": "Piotr Nowak"},
        "team": {"name": "Network Operations", "tier": 2},
        "timeline": [
            *before["timeline"],
            entry(
                event.occurred_at,
                "assigned",
                "Piotr Nowak (Network Operations) now handles this request.",
            ),
        ],
    }


async def test_an_escalation_shows_the_new_team_and_keeps_the_requesters_contact(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing"))
    before = await view(intake, number, key)
    escalated = TicketEscalated(
        number=number,
        kind="functional",
        to_group=NETWORK,
        from_group=DESK,
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        reason="needs the network team",
    )
    event = envelope(escalated, ticket_id=ticket_id, source="routing", sequence=2)
    await intake.deliver(event)

    assert await view_after(intake, number, key, before) == {
        **before,
        "owner": {"name": "Sara Ahmadi"},
        "team": {"name": "Network Operations", "tier": 2},
        "timeline": [
            *before["timeline"],
            entry(
                event.occurred_at,
                "escalated",
                "Referred to Network Operations (tier 2); your contact stays the same.",
            ),
        ],
    }


async def test_a_hierarchical_escalation_tells_the_requester_it_went_to_management_and_staff_why(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing"))
    before = await view(intake, number, key)
    reason = (
        "resolution target breached at 14:05 UTC: Service Desk's manager Mira Nowak notified; "
        "priority raised P3 → P2"
    )
    escalated = TicketEscalated(
        number=number,
        kind="hierarchical",
        to_group=DESK,
        from_group=DESK,
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        reason=reason,
        manager=AgentRef(id="mira", name="Mira Nowak"),
        actions=["notify_manager", "raise_priority"],
    )
    event = envelope(escalated, ticket_id=ticket_id, source="routing", sequence=2)
    await intake.deliver(event)

    # The team and the contact stay; who was notified and why is internal.
    assert await view_after(intake, number, key, before) == {
        **before,
        "timeline": [
            *before["timeline"],
            entry(
                event.occurred_at,
                "escalated",
                "Escalated to the management of Service Desk; your contact stays the same.",
            ),
        ],
    }
    [*_, public, internal] = await timeline_rows(intake, ticket_id)
    assert (public["public"], public["event_id"]) == (True, event.id)
    assert (internal["kind"], internal["public"]) == ("escalation", False)
    assert internal["summary"] == f"Hierarchical escalation: {reason}."


async def test_a_hierarchical_escalation_that_could_do_nothing_is_for_staff_only(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    await intake.deliver(envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing"))
    before = await view(intake, number, key)
    escalated = TicketEscalated(
        number=number,
        kind="hierarchical",
        to_group=DESK,
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        reason="resolution target breached at 14:05 UTC: Service Desk has no manager to notify",
    )
    await intake.deliver(envelope(escalated, ticket_id=ticket_id, source="routing", sequence=2))

    assert await view_after(intake, number, key, before) == before
    [*_, internal] = await timeline_rows(intake, ticket_id)
    assert (internal["kind"], internal["public"]) == ("escalated", False)
    assert internal["summary"] == f"Hierarchical escalation: {escalated.reason}."


async def test_an_escalation_older_than_the_last_routing_news_does_not_move_the_ticket_back(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    await intake.deliver(
        envelope(routed("Sara Ahmadi"), ticket_id=ticket_id, source="routing", sequence=3)
    )
    escalated = TicketEscalated(
        number=number, kind="functional", to_group=NETWORK, reason="needs the network team"
    )
    await intake.deliver(envelope(escalated, ticket_id=ticket_id, source="routing", sequence=2))

    seen = await view(intake, number, key)
    assert seen["team"] == {"name": "Service Desk", "tier": 1}
    kinds = [e["kind"] for e in seen["timeline"]]
    assert kinds == ["created", "routed", "escalated"]  # the history still tells it


FIRST_RESPONSE_DUE = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
RESOLUTION_DUE = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)


def clocks_started(*targets: tuple[str, datetime], priority: str = "P2") -> SlaClockStarted:
    return SlaClockStarted(
        number="SD-000001",
        priority=priority,
        policy="standard",
        calendar="office",
        clocks=[
            ClockTarget(metric=metric, due_at=due_at, target_seconds=3600)
            for metric, due_at in targets
        ],
    )


async def test_the_requester_sees_when_to_expect_a_first_response_and_a_resolution(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    before = await view(intake, number, key)
    started = clocks_started(("first_response", FIRST_RESPONSE_DUE), ("resolution", RESOLUTION_DUE))
    event = envelope(started, ticket_id=ticket_id, source="sla")
    await intake.deliver(event)

    assert await view_after(intake, number, key, before) == {
        **before,
        "targets": {
            "first_response_due_at": FIRST_RESPONSE_DUE,
            "resolution_due_at": RESOLUTION_DUE,
        },
        "timeline": [
            *before["timeline"],
            entry(
                event.occurred_at,
                "targets_set",
                "Targets set (P2): first response by 2026-11-23 14:00 UTC; "
                "resolution by 2026-11-24 10:30 UTC.",
            ),
        ],
    }


async def test_a_policy_with_only_a_resolution_target_promises_only_that(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    before = await view(intake, number, key)
    event = envelope(
        clocks_started(("resolution", RESOLUTION_DUE), priority="P4"),
        ticket_id=ticket_id,
        source="sla",
    )
    await intake.deliver(event)

    assert await view_after(intake, number, key, before) == {
        **before,
        "targets": {"first_response_due_at": None, "resolution_due_at": RESOLUTION_DUE},
        "timeline": [
            *before["timeline"],
            entry(
                event.occurred_at,
                "targets_set",
                "Targets set (P4): resolution by 2026-11-24 10:30 UTC.",
            ),
        ],
    }


async def test_targets_older_than_the_ones_shown_do_not_replace_them(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    newer = clocks_started(("first_response", FIRST_RESPONSE_DUE), ("resolution", RESOLUTION_DUE))
    await intake.deliver(envelope(newer, ticket_id=ticket_id, source="sla", sequence=2))
    older = clocks_started(("resolution", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)))
    await intake.deliver(envelope(older, ticket_id=ticket_id, source="sla", sequence=1))

    seen = await view(intake, number, key)
    assert seen["targets"] == {
        "first_response_due_at": FIRST_RESPONSE_DUE,
        "resolution_due_at": RESOLUTION_DUE,
    }


def sent(kind: str, channel: str, sent_at: datetime) -> NotificationSent:
    return NotificationSent(
        number="SD-000001",
        notification_id=f"{kind}:1",
        kind=kind,
        channel=channel,
        recipient="reza@example.org",
        sent_at=sent_at,
    )


async def test_each_message_sent_is_told_in_the_requesters_words_at_the_time_it_went(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    before = await view(intake, number, key)
    acknowledged = datetime(2099, 1, 1, 9, 0, tzinfo=UTC)
    updated = datetime(2099, 1, 1, 9, 5, tzinfo=UTC)
    paged = datetime(2099, 1, 1, 9, 10, tzinfo=UTC)
    for event in (
        sent("acknowledgement", "email", acknowledged),
        sent("status_update", "sms", updated),
        sent("status_update", "pager", paged),  # a channel with no word of its own yet
    ):
        await intake.deliver(envelope(event, ticket_id=ticket_id, source="notify"))

    assert await view_after(intake, number, key, before) == {
        **before,
        "timeline": [
            *before["timeline"],
            entry(acknowledged, "notified", "Acknowledgement sent by e-mail to reza@example.org."),
            entry(updated, "notified", "Update sent by SMS to reza@example.org."),
            entry(paged, "notified", "Update sent by pager to reza@example.org."),
        ],
    }


async def timeline_rows(intake: ServiceUnderTest, ticket_id: uuid.UUID) -> list[dict[str, Any]]:
    """Intake's whole history of a ticket, internal entries too, as staff find it."""
    query = (
        select(
            TimelineEntry.at,
            TimelineEntry.kind,
            TimelineEntry.summary,
            TimelineEntry.public,
            TimelineEntry.event_id,
        )
        .where(TimelineEntry.ticket_id == ticket_id)
        .order_by(TimelineEntry.id)
    )
    async with intake.runtime.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def test_a_failed_notification_is_kept_for_staff_in_the_internal_history(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, _ = await open_ticket(intake)
    failed = NotificationFailed(
        number=number,
        notification_id="acknowledgement:1",
        kind="acknowledgement",
        channel="email",
        recipient="reza@example.org",
        attempts=8,
        error="550 mailbox unavailable",
    )
    event: Envelope = envelope(failed, ticket_id=ticket_id, source="notify")
    await intake.deliver(event)

    rows = await timeline_rows(intake, ticket_id)
    assert [row["kind"] for row in rows] == ["created", "notification_failed"]
    assert rows[1] == {
        "at": event.occurred_at,
        "kind": "notification_failed",
        "summary": "acknowledgement to reza@example.org by email failed after 8 attempts: "
        "550 mailbox unavailable",
        "public": False,
        "event_id": event.id,
    }


async def test_news_of_no_ticket_at_all_is_dead_lettered_with_the_reason(
    intake: ServiceUnderTest,
) -> None:
    orphan = Envelope.wrap(routed("Sara Ahmadi"), source="routing", ticket_id=None, sequence=1)
    with pytest.raises(PoisonMessage) as dead:
        await intake.deliver(orphan)
    assert str(dead.value) == "ticket.routed without a ticket_id"


async def test_routings_triage_is_explained_to_staff_and_its_category_fills_a_blank_one(
    intake: ServiceUnderTest,
) -> None:
    ticket_id, number, key = await open_ticket(intake)
    agent = Caller(role="agent", subject_id="sara", groups=frozenset({"service-desk"}))
    blank_before = await ticket_for_caller(
        intake.runtime.engine, "SD", number, agent, None, agents_see_all=False
    )
    assert blank_before.category == "network"  # NEW_TICKET's; cleared below for the test
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(update(Ticket).where(Ticket.id == ticket_id).values(category=None))
    decided = routed("Sara Ahmadi").model_copy(
        update={
            "category": "hardware",
            "subcategory": "printer",
            "auto_classified": True,
            "tags": ["vip"],
            "rules": ["vip"],
            "desk_version": "c6d91488f88a",
            "reason": "impact high × urgency medium → P2; rule vip (VIP requester)",
        }
    )
    await intake.deliver(envelope(decided, ticket_id=ticket_id, source="routing"))

    seen = await ticket_for_caller(
        intake.runtime.engine, "SD", number, agent, None, agents_see_all=False
    )
    assert isinstance(seen, TicketAgentRead)
    assert (seen.category, seen.subcategory, seen.auto_classified) == ("hardware", "printer", True)
    assert seen.tags == ["vip"]
    [*_, why] = await timeline_rows(intake, ticket_id)
    assert (why["kind"], why["public"], why["summary"]) == (
        "triage",
        False,
        "Triage: impact high × urgency medium → P2; rule vip (VIP requester) (desk c6d91488f88a).",
    )
    public = await view(intake, number, key)
    assert "Triage" not in str(public) and "vip" not in str(public)


async def test_routing_never_overwrites_a_category_a_person_gave(intake: ServiceUnderTest) -> None:
    ticket_id, _, _ = await open_ticket(intake)  # NEW_TICKET names "network"
    guessed = routed(None).model_copy(update={"category": "hardware", "auto_classified": True})
    await intake.deliver(envelope(guessed, ticket_id=ticket_id, source="routing"))
    async with intake.runtime.engine.connect() as conn:
        query = select(Ticket.category, Ticket.auto_classified).where(Ticket.id == ticket_id)
        row = (await conn.execute(query)).one()
    assert tuple(row) == ("network", False)


async def test_routings_guess_fills_a_blank_category_only_with_one_intake_declares(
    sqlite_url: str, tmp_path: Path
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text(
        "intake:\n  categories:\n    - id: hardware\n      name: Hardware\n"
        "      subcategories: [{id: printer, name: Printer}]\n"
    )
    async with service("intake", sqlite_url, desk_config=desk) as intake:
        outcomes = []
        for category, subcategory in (("software", None), ("hardware", "scanner")):
            unsorted = {k: v for k, v in NEW_TICKET.items() if k != "category"}
            created = await intake.container.tickets.create(
                TicketCreate.model_validate(unsorted), idempotency_key=None
            )
            ticket_id = uuid.UUID(created.body["id"])
            guessed = routed(None).model_copy(
                update={
                    "number": created.body["number"],
                    "category": category,
                    "subcategory": subcategory,
                    "item": "x-1",
                    "auto_classified": True,
                }
            )
            await intake.deliver(envelope(guessed, ticket_id=ticket_id, source="routing"))
            async with intake.runtime.engine.connect() as conn:
                query = select(Ticket.category, Ticket.subcategory, Ticket.item).where(
                    Ticket.id == ticket_id
                )
                outcomes.append(tuple((await conn.execute(query)).one()))
    # An undeclared category is not filled; an undeclared subcategory (and its item) dropped.
    assert outcomes == [(None, None, None), ("hardware", None, None)]
