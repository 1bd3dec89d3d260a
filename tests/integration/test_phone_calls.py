"""A phone call an agent logs for the requester (D4): a normal ticket taken by the agent, or,
solved while the caller was on the line, a first-contact resolution opened resolved in one
transaction. Only staff log calls: an integration gets a 403, the public a 422."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from spoc_contracts import TicketRouted
from spoc_contracts.routing import GroupRef
from spoc_intake import repository
from spoc_platform.sealing import DEVELOPMENT_SECRET, open_sealed
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import MINA, MONITOR, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
CALL: dict[str, Any] = {**NEW_TICKET, "channel": "phone"}
ANSWER = "Restarted the VPN client and re-imported the profile; the caller is connected again."
SOLVED_CALL: dict[str, Any] = {**CALL, "resolved_during_call": {"summary": ANSWER}}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


async def agents_view(client: httpx.AsyncClient, number: str) -> dict[str, Any]:
    seen = await client.get(f"/api/v1/tickets/{number}", headers=as_(SARA))
    assert seen.status_code == 200, seen.text
    view: dict[str, Any] = seen.json()
    return view


async def event_types(intake: ServiceUnderTest) -> list[str]:
    return [e.type for e in await intake.published()]


async def test_an_unsolved_call_is_a_new_ticket_by_phone_taken_by_the_agent(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    answer = await client.post("/api/v1/tickets", json=CALL, headers=as_(SARA))

    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["status"] == "new" and created["access_key"]
    view = await agents_view(client, created["number"])
    assert (view["channel"], view["status"]) == ("phone", "new")
    assert (view["taken_by"], view["first_contact_resolution"]) == ("sara", False)
    assert view["comments"] == [] and view["first_responded_at"] is None
    assert "taken by Sara Ahmadi" in view["timeline"][0]["summary"]
    [event] = await intake.published()
    assert event.type == "ticket.created"
    assert (event.data["channel"], event.data["taken_by"]) == ("phone", "sara")
    assert event.data["first_contact_resolution"] is False
    assert event.data["follows_up"] is None


async def test_a_call_solved_on_the_line_opens_resolved_with_the_answer_as_first_reply(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    answer = await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=as_(SARA))

    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["status"] == "resolved"
    view = await agents_view(client, created["number"])
    assert view["status"] == "resolved" and view["channel"] == "phone"
    assert (view["taken_by"], view["first_contact_resolution"]) == ("sara", True)
    assert view["resolved_at"] is not None
    assert view["first_responded_at"] == view["resolved_at"] == view["created_at"]
    [comment] = view["comments"]
    assert (comment["body"], comment["visibility"]) == (ANSWER, "public")
    assert comment["author"] == {"name": "Sara Ahmadi", "kind": "agent"}
    assert [e["kind"] for e in view["timeline"]] == ["created", "commented", "status_changed"]
    assert (
        "new → resolved by Sara Ahmadi: resolved during the call"
        in (view["timeline"][-1]["summary"])
    )
    # The requester sees the answer and the resolution, with the key the desk mails them.
    theirs = await client.get(
        f"/api/v1/tickets/{created['number']}", headers={"X-Access-Key": created["access_key"]}
    )
    assert theirs.status_code == 200
    assert theirs.json()["status"] == "resolved"
    assert [c["body"] for c in theirs.json()["comments"]] == [ANSWER]
    assert "first_contact_resolution" not in theirs.json()

    # Each event once, in the order the normal paths publish them, in one transaction.
    created_event, commented, moved = await intake.published()
    assert [created_event.type, commented.type, moved.type] == [
        "ticket.created",
        "ticket.commented",
        "ticket.status_changed",
    ]
    assert {created_event.ticket_id, commented.ticket_id, moved.ticket_id} == {
        uuid.UUID(created["id"])
    }
    assert created_event.data["first_contact_resolution"] is True
    assert created_event.data["taken_by"] == "sara"
    assert (commented.data["body"], commented.data["visibility"]) == (ANSWER, "public")
    assert commented.data["comment_id"] == comment["id"]
    assert (moved.data["from_status"], moved.data["to_status"]) == ("new", "resolved")
    assert moved.data["changed_by"] == "Sara Ahmadi"


async def test_the_caller_still_gets_the_acknowledgement_with_the_tracking_number(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    created = (await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=as_(SARA))).json()

    [event] = await intake.published("ticket.created")
    # notify acknowledges ticket.created: the number, the address and the sealed key it links.
    assert event.data["number"] == created["number"]
    assert event.data["requester"]["email"] == NEW_TICKET["requester"]["email"]
    opened = open_sealed(DEVELOPMENT_SECRET, event.data["access_key_sealed"])
    assert opened == created["access_key"]


async def test_the_requester_confirms_and_rates_a_resolution_given_on_the_phone(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    created = (await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=as_(MINA))).json()
    path = f"/api/v1/tickets/{created['number']}"

    confirmed = await client.post(f"{path}/status", json={"to": "closed"}, headers=as_(REZA))
    rated = await client.post(f"{path}/feedback", json={"rating": 5}, headers=as_(REZA))

    assert (confirmed.status_code, rated.status_code) == (200, 201)
    view = await agents_view(client, created["number"])
    assert (view["status"], view["taken_by"], view["first_contact_resolution"]) == (
        "closed",
        "mina",
        True,
    )


async def test_a_reopened_call_is_no_longer_a_first_contact_resolution(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # D4: resolved at first contact without reopening; the requester's reopen undoes it.
    created = (await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=as_(SARA))).json()
    path = f"/api/v1/tickets/{created['number']}"

    reopened = await client.post(f"{path}/status", json={"to": "open"}, headers=as_(REZA))

    assert reopened.status_code == 200, reopened.text
    view = await agents_view(client, created["number"])
    assert (view["status"], view["first_contact_resolution"]) == ("open", False)
    [lost] = [e for e in view["timeline"] if e["kind"] == "first_contact_resolution_lost"]
    assert "reopened by" in lost["summary"]
    # The fact travels in the status change itself (resolved → open), for routing's reports.
    [*_, changed] = await intake.published("ticket.status_changed")
    assert (changed.data["from_status"], changed.data["to_status"]) == ("resolved", "open")
    # Solved again, it stays a ticket that needed a second contact.
    again = await client.post(f"{path}/status", json={"to": "resolved"}, headers=as_(SARA))
    assert again.status_code == 200, again.text
    assert (await agents_view(client, created["number"]))["first_contact_resolution"] is False


async def test_an_escalated_ticket_is_no_longer_a_first_contact_resolution(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    created = (await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=as_(SARA))).json()
    path = f"/api/v1/tickets/{created['number']}"
    # Staff take it back to work (a reopen clears the flag too): set it again to see the
    # escalation clear it by itself.
    await client.post(f"{path}/status", json={"to": "open"}, headers=as_(SARA))
    async with intake.runtime.engine.begin() as conn:
        await repository.update_ticket(
            conn, uuid.UUID(created["id"]), first_contact_resolution=True
        )

    asked = await client.post(
        f"{path}/escalations",
        json={"to_group": "network", "reason": "The VPN concentrator needs a look."},
        headers=as_(SARA),
    )

    assert asked.status_code == 202, asked.text
    view = await agents_view(client, created["number"])
    assert view["first_contact_resolution"] is False
    lost = [e for e in view["timeline"] if e["kind"] == "first_contact_resolution_lost"]
    assert "asked network to help" in lost[-1]["summary"]
    assert len(await intake.published("ticket.escalation_requested")) == 1


async def test_routing_later_neither_reopens_a_solved_call_nor_forgets_who_took_it(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # Routing still places every new ticket (issue 8 will have it honour `taken_by`).
    created = (await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=as_(SARA))).json()
    routed = TicketRouted(
        number=created["number"],
        priority="P3",
        impact="medium",
        urgency="medium",
        group=GroupRef(id="service-desk", name="Service Desk", tier=1),
        owner=None,
        reason="test",
    )
    await intake.deliver(
        envelope(routed, ticket_id=uuid.UUID(created["id"]), source="routing", sequence=1)
    )

    view = await agents_view(client, created["number"])
    assert (view["status"], view["taken_by"], view["first_contact_resolution"]) == (
        "resolved",
        "sara",
        True,
    )


async def test_a_retried_call_is_logged_once(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    headers = {**as_(SARA), "Idempotency-Key": "call-42"}
    first = await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=headers)
    again = await client.post("/api/v1/tickets", json=SOLVED_CALL, headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await event_types(intake) == [
        "ticket.created",
        "ticket.commented",
        "ticket.status_changed",
    ]


async def test_a_resolution_during_a_call_needs_the_phone_channel(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    for channel in ("api", "chat"):
        body = {**SOLVED_CALL, "channel": channel}
        answer = await client.post("/api/v1/tickets", json=body, headers=as_(SARA))
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "validation_error"
    empty = {**CALL, "resolved_during_call": {"summary": "  "}}
    assert (await client.post("/api/v1/tickets", json=empty, headers=as_(SARA))).status_code == 422
    assert await event_types(intake) == []


async def test_an_integration_cannot_log_a_call(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    for body in (CALL, SOLVED_CALL):
        answer = await client.post("/api/v1/tickets", json=body, headers=as_(MONITOR))
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "forbidden"
    # It still files tickets by its own channel, without what only staff may add.
    assert (await client.post("/api/v1/tickets", json=NEW_TICKET, headers=as_(MONITOR))).is_success
    solved_by_api = {**NEW_TICKET, "resolved_during_call": {"summary": ANSWER}}
    refused = await client.post("/api/v1/tickets", json=solved_by_api, headers=as_(MONITOR))
    assert refused.status_code == 422
    assert await event_types(intake) == ["ticket.created"]


async def test_the_public_can_claim_neither_a_phone_call_nor_its_resolution(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    for headers in ({}, as_(REZA)):
        by_phone = await client.post("/api/v1/tickets", json=CALL, headers=headers)
        assert by_phone.status_code == 422, by_phone.text
        [detail] = by_phone.json()["error"]["details"]
        assert (detail["field"], detail["type"]) == ("channel", "channel_not_allowed")

        # What only staff may add is an unknown field from anyone else, on any channel.
        for channel in ("phone", "portal"):
            solved = {**SOLVED_CALL, "channel": channel}
            unknown = await client.post("/api/v1/tickets", json=solved, headers=headers)
            assert unknown.status_code == 422, unknown.text
            [detail] = unknown.json()["error"]["details"]
            assert detail["field"] == "resolved_during_call"
    assert await event_types(intake) == []
