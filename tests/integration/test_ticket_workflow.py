"""The status workflow over the API: every move allowed or refused (409 with the allowed
targets), `pending` with its reason, and what a requester may do within the reopen window."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from spoc_contracts import (
    TicketAssigned,
    TicketAssignmentRefused,
    TicketEscalationRefused,
    TicketRouted,
)
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_intake import repository
from spoc_intake.workflow import STATUSES, allowed_targets
from spoc_platform.db import utc_now
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import MINA, MONITOR, OLGA, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
# How staff bring a new ticket to each status (after routing opened it, but for `new`).
ROUTE_TO: dict[str, list[str]] = {
    "new": [],
    "open": [],
    "in_progress": ["in_progress"],
    "pending": ["pending"],
    "resolved": ["resolved"],
    "closed": ["resolved", "closed"],
}
REASON = "Please send a screenshot of the error."


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


async def route(intake: ServiceUnderTest, ticket: dict[str, Any]) -> None:
    routed = TicketRouted(
        number=ticket["number"],
        priority="P3",
        impact="medium",
        urgency="medium",
        group=DESK,
        owner=None,
        reason="test",
    )
    await intake.deliver(
        envelope(routed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
    )


async def move(
    client: httpx.AsyncClient, ticket: dict[str, Any], to: str, **headers: str
) -> httpx.Response:
    body = {"to": to, "reason": REASON} if to == "pending" else {"to": to}
    return await client.post(
        f"/api/v1/tickets/{ticket['number']}/status", json=body, headers=headers or as_(SARA)
    )


async def ticket_in(
    client: httpx.AsyncClient, intake: ServiceUnderTest, status: str
) -> dict[str, Any]:
    created: dict[str, Any] = (await client.post("/api/v1/tickets", json=NEW_TICKET)).json()
    if status != "new":
        await route(intake, created)
    for step in ROUTE_TO[status]:
        assert (await move(client, created, step)).status_code == 200
    return created


async def status_of(client: httpx.AsyncClient, ticket: dict[str, Any]) -> str:
    seen = await client.get(f"/api/v1/tickets/{ticket['number']}", headers=as_(SARA))
    status: str = seen.json()["status"]
    return status


@pytest.mark.parametrize("current", STATUSES)
async def test_staff_make_every_allowed_move_and_get_a_409_listing_them_for_any_other(
    client: httpx.AsyncClient, intake: ServiceUnderTest, current: str
) -> None:
    allowed = allowed_targets(current, by_requester=False)
    for target in STATUSES:
        ticket = await ticket_in(client, intake, current)
        assert await status_of(client, ticket) == current
        answer = await move(client, ticket, target)
        if target in allowed:
            assert answer.status_code == 200, (current, target, answer.text)
            assert answer.json()["from_status"] == current
            assert await status_of(client, ticket) == target
            [*_, event] = await intake.published("ticket.status_changed")
            assert (event.data["from_status"], event.data["to_status"]) == (current, target)
            assert event.data["changed_by"] == "Sara Ahmadi"
        else:
            assert answer.status_code == 409, (current, target, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "transition_not_allowed"
            assert error["details"][0]["allowed"] == list(allowed)
            assert await status_of(client, ticket) == current


async def test_pending_needs_a_reason_which_travels_with_the_event(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "open")
    path = f"/api/v1/tickets/{ticket['number']}/status"

    bare = await client.post(path, json={"to": "pending"}, headers=as_(SARA))
    assert bare.status_code == 422 and await status_of(client, ticket) == "open"
    assert (await move(client, ticket, "pending")).status_code == 200
    [event] = await intake.published("ticket.status_changed")
    assert event.data["reason"] == REASON
    seen = await client.get(
        f"/api/v1/tickets/{ticket['number']}", headers={"X-Access-Key": ticket["access_key"]}
    )
    assert REASON in seen.json()["timeline"][-1]["summary"]


async def test_a_requesters_reply_to_a_pending_ticket_resumes_the_work(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "pending")
    await client.post(
        f"/api/v1/tickets/{ticket['number']}/comments",
        json={"body": "Screenshot attached."},
        headers={"X-Access-Key": ticket["access_key"]},
    )
    assert await status_of(client, ticket) == "in_progress"
    [*_, event] = await intake.published("ticket.status_changed")
    assert (event.data["from_status"], event.data["to_status"]) == ("pending", "in_progress")


@pytest.mark.parametrize("to", ["closed", "open"])
async def test_the_requester_confirms_or_reopens_a_resolution_by_key_or_session(
    client: httpx.AsyncClient, intake: ServiceUnderTest, to: str
) -> None:
    by_key = await ticket_in(client, intake, "resolved")
    by_session = await ticket_in(client, intake, "resolved")

    assert (await move(client, by_key, to, **{"X-Access-Key": by_key["access_key"]})).is_success
    assert (await move(client, by_session, to, **as_(REZA))).is_success
    assert await status_of(client, by_key) == await status_of(client, by_session) == to
    events = await intake.published("ticket.status_changed")
    assert [e.data["changed_by"] for e in events[-2:]] == ["Reza Karimi"] * 2


async def test_a_requester_cannot_move_a_ticket_that_is_not_resolved(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "in_progress")
    for to in ("resolved", "closed", "open"):
        answer = await move(client, ticket, to, **{"X-Access-Key": ticket["access_key"]})
        assert answer.status_code == 409
        assert answer.json()["error"]["details"][0]["allowed"] == []
    assert await status_of(client, ticket) == "in_progress"


async def test_after_the_reopen_window_the_requester_is_told_to_open_a_new_request(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "resolved")
    async with intake.runtime.engine.begin() as conn:
        await repository.update_ticket(
            conn, uuid.UUID(ticket["id"]), resolved_at=utc_now() - timedelta(days=8)
        )

    for to in ("open", "closed"):
        answer = await move(client, ticket, to, **as_(REZA))
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "reopen_window_over"
        message = answer.json()["error"]["message"]
        # True to what happens: nothing opens a ticket for them (a reply joins this one).
        assert "please open a new request" in message and "opens a new ticket" not in message
    # Staff still may.
    assert (await move(client, ticket, "open")).status_code == 200


async def test_strangers_get_a_404_and_an_integration_a_403(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "resolved")
    for headers in ({}, as_(OLGA), {"X-Access-Key": "guessed"}):
        answer = await client.post(
            f"/api/v1/tickets/{ticket['number']}/status", json={"to": "closed"}, headers=headers
        )
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "ticket_not_found"
    assert (await move(client, ticket, "closed", **as_(MONITOR))).status_code == 403
    assert await status_of(client, ticket) == "resolved"


async def test_routing_opens_a_new_ticket_but_leaves_one_an_agent_already_took(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    waiting = await ticket_in(client, intake, "new")
    taken = await ticket_in(client, intake, "new")
    assert (await move(client, taken, "in_progress")).status_code == 200

    await route(intake, waiting)
    await route(intake, taken)

    assert await status_of(client, waiting) == "open"
    assert await status_of(client, taken) == "in_progress"


async def test_the_requester_rates_a_resolution_once(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    open_one = await ticket_in(client, intake, "in_progress")
    ticket = await ticket_in(client, intake, "resolved")
    key = {"X-Access-Key": ticket["access_key"]}
    path = f"/api/v1/tickets/{ticket['number']}/feedback"
    rating = {"rating": 4, "comment": "Quick, thanks."}

    too_soon = await client.post(
        f"/api/v1/tickets/{open_one['number']}/feedback",
        json=rating,
        headers={"X-Access-Key": open_one["access_key"]},
    )
    by_staff = await client.post(path, json=rating, headers=as_(SARA))
    out_of_range = await client.post(path, json={"rating": 6}, headers=key)
    first = await client.post(path, json=rating, headers=key)
    again = await client.post(path, json={"rating": 1}, headers=as_(REZA))

    assert too_soon.status_code == 409 and too_soon.json()["error"]["code"] == "not_resolved"
    assert by_staff.status_code == 403 and out_of_range.status_code == 422
    assert first.status_code == 201 and first.json()["rating"] == 4
    assert again.status_code == 409 and again.json()["error"]["code"] == "feedback_given"
    [event] = await intake.published("feedback.submitted")
    assert (event.data["rating"], event.data["comment"]) == (4, "Quick, thanks.")


async def test_staff_reclassify_and_only_real_changes_are_published(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "open")
    path = f"/api/v1/tickets/{ticket['number']}"

    changed = await client.patch(
        path, json={"impact": "low", "urgency": "medium", "category": "vpn"}, headers=as_(SARA)
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["impact"], changed.json()["category"]) == ("low", "vpn")
    [event] = await intake.published("ticket.updated")
    # The urgency was medium already: not a change.
    assert event.data["changes"] == {"impact": "low", "category": "vpn"}
    assert event.data["updated_by"] == "Sara Ahmadi"

    refused = [
        await client.patch(path, json={"impact": "high"}, headers=as_(REZA)),
        await client.patch(path, json={}, headers=as_(SARA)),
        await client.patch(path, json={"priority": "P1"}, headers=as_(SARA)),
        await client.patch(path, json={"type": None}, headers=as_(SARA)),
    ]
    assert [r.status_code for r in refused] == [403, 422, 422, 422]
    assert len(await intake.published("ticket.updated")) == 1


async def test_an_escalation_is_requested_and_the_owner_stays(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "in_progress")
    done = await ticket_in(client, intake, "resolved")
    body = {"to_group": "network", "reason": "The concentrator needs a look."}

    asked = await client.post(
        f"/api/v1/tickets/{ticket['number']}/escalations", json=body, headers=as_(SARA)
    )
    by_requester = await client.post(
        f"/api/v1/tickets/{ticket['number']}/escalations", json=body, headers=as_(REZA)
    )
    too_late = await client.post(
        f"/api/v1/tickets/{done['number']}/escalations", json=body, headers=as_(SARA)
    )

    assert asked.status_code == 202, asked.text
    assert by_requester.status_code == 403 and too_late.status_code == 409
    [event] = await intake.published("ticket.escalation_requested")
    assert (event.data["to_group"], event.data["requested_by"]) == ("network", "Sara Ahmadi")
    seen = (await client.get(f"/api/v1/tickets/{ticket['number']}", headers=as_(SARA))).json()
    assert seen["status"] == "in_progress" and seen["group_id"] == "service-desk"
    public = await client.get(
        f"/api/v1/tickets/{ticket['number']}", headers={"X-Access-Key": ticket["access_key"]}
    )
    assert "concentrator" not in public.text

    # Routing's refusal (a group it does not have) is told to staff only.
    refused = TicketEscalationRefused(
        number=ticket["number"], to_group="network", reason="there is no group network"
    )
    await intake.deliver(
        envelope(refused, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=2)
    )
    staff_view = await client.get(f"/api/v1/tickets/{ticket['number']}", headers=as_(SARA))
    assert staff_view.json()["timeline"][-1] == staff_view.json()["timeline"][-1] | {
        "kind": "escalation_refused",
        "summary": "Not escalated to network: there is no group network",
    }
    public = await client.get(
        f"/api/v1/tickets/{ticket['number']}", headers={"X-Access-Key": ticket["access_key"]}
    )
    assert "escalation_refused" not in public.text


async def test_an_agent_takes_a_ticket_and_routing_answers_on_the_timeline(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "open")
    path = f"/api/v1/tickets/{ticket['number']}/assignments"

    taken = await client.post(path, json={"agent": "sara", "reason": "Mine."}, headers=as_(SARA))

    assert taken.status_code == 202, taken.text
    assert taken.json()["agent"] == "sara" and taken.json()["group"] is None
    [event] = await intake.published("ticket.assignment_requested")
    assert event.ticket_id == uuid.UUID(ticket["id"])
    assert event.data | {"requested_by": "Sara Ahmadi", "requested_by_id": "sara"} == {
        "number": ticket["number"],
        "agent": "sara",
        "group": None,
        "reason": "Mine.",
        "requested_by": "Sara Ahmadi",
        "requested_by_id": "sara",
        "within_groups": ["service-desk"],
    }
    seen = (await client.get(f"/api/v1/tickets/{ticket['number']}", headers=as_(SARA))).json()
    assert seen["timeline"][-1]["summary"] == "Sara Ahmadi asked to take this ticket: Mine."

    # Routing's answer: the owner changes, and the requester sees who handles the ticket now.
    assigned = TicketAssigned(
        number=ticket["number"],
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        group=DESK,
        reason="taken by Sara Ahmadi: Mine.",
    )
    await intake.deliver(
        envelope(assigned, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=2)
    )
    public = await client.get(
        f"/api/v1/tickets/{ticket['number']}", headers={"X-Access-Key": ticket["access_key"]}
    )
    assert public.json()["owner"] == {"name": "Sara Ahmadi"}
    assert "Mine." not in public.text
    assert public.json()["timeline"][-1]["summary"] == (
        "Sara Ahmadi (Service Desk) now handles this request."
    )

    again = await client.post(path, json={"agent": "sara"}, headers=as_(SARA))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_assigned"


async def test_an_assignment_is_staff_work_on_an_active_ticket_and_a_refusal_is_told(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await ticket_in(client, intake, "in_progress")
    done = await ticket_in(client, intake, "closed")
    path = f"/api/v1/tickets/{ticket['number']}/assignments"

    answers = [
        await client.post(path, json={"group": "network"}, headers=as_(REZA)),
        await client.post(path, json={"group": "network"}, headers=as_(MONITOR)),
        await client.post(path, json={"group": "network"}),
        await client.post(
            f"/api/v1/tickets/{done['number']}/assignments",
            json={"group": "network"},
            headers=as_(SARA),
        ),
        await client.post(path, json={}, headers=as_(SARA)),
        await client.post(path, json={"agent": "Sara Ahmadi"}, headers=as_(SARA)),
        await client.post(path, json={"group": "network", "owner": "x"}, headers=as_(SARA)),
        # Not one of Sara's groups: moving it there is an escalation, not a hand-over.
        await client.post(path, json={"group": "network"}, headers=as_(SARA)),
    ]
    assert [a.status_code for a in answers] == [403, 403, 404, 409, 422, 422, 422, 403]
    assert answers[3].json()["error"]["code"] == "ticket_not_active"
    assert "escalation" in answers[7].json()["error"]["message"]
    assert await intake.published("ticket.assignment_requested") == []

    # A manager may move it to any group; routing answers.
    handed = await client.post(path, json={"group": "network"}, headers=as_(MINA))
    assert handed.status_code == 202
    [asked] = await intake.published("ticket.assignment_requested")
    assert asked.data["within_groups"] is None
    refused = TicketAssignmentRefused(
        number=ticket["number"],
        group="network",
        reason="nobody in Network Operations is on duty with room for it now",
        requested_by="Sara Ahmadi",
    )
    await intake.deliver(
        envelope(refused, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=2)
    )
    staff_view = await client.get(f"/api/v1/tickets/{ticket['number']}", headers=as_(SARA))
    entries = [(e["kind"], e["summary"]) for e in staff_view.json()["timeline"][-2:]]
    assert entries == [
        ("assignment_requested", "Mina Rad asked for someone to take this ticket in network."),
        (
            "assignment_refused",
            "Not reassigned: nobody in Network Operations is on duty with room for it now",
        ),
    ]
    public = await client.get(
        f"/api/v1/tickets/{ticket['number']}", headers={"X-Access-Key": ticket["access_key"]}
    )
    assert "Network Operations" not in public.text and "reassigned" not in public.text
    assert "asked for someone" not in public.text


async def test_an_agents_category_replaces_routings_guess(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    unsorted = {key: value for key, value in NEW_TICKET.items() if key != "category"}
    ticket = (await client.post("/api/v1/tickets", json=unsorted)).json()
    guessed = TicketRouted(
        number=ticket["number"],
        priority="P3",
        impact="medium",
        urgency="medium",
        category="hardware",
        auto_classified=True,
        group=DESK,
        owner=None,
        reason="classified hardware by 'laptop'",
    )
    await intake.deliver(
        envelope(guessed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
    )
    path = f"/api/v1/tickets/{ticket['number']}"
    seen = (await client.get(path, headers=as_(SARA))).json()
    assert (seen["category"], seen["auto_classified"]) == ("hardware", True)

    changed = await client.patch(path, json={"category": "network"}, headers=as_(SARA))

    assert changed.status_code == 200, changed.text
    assert (changed.json()["category"], changed.json()["auto_classified"]) == ("network", False)
