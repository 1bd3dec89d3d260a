"""The conversation on a ticket: requesters reply in public, staff in public or internally, and
an internal note never reaches a requester on any path (API, page, events notify reads)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from spoc_contracts import NotificationFailed, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import MONITOR, OLGA, PIOTR, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
SECRET = "The VPN concentrator's admin password is in the vault, entry 42."


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


async def open_routed(
    client: httpx.AsyncClient, intake: ServiceUnderTest, group: GroupRef = DESK
) -> dict[str, Any]:
    created: dict[str, Any] = (await client.post("/api/v1/tickets", json=NEW_TICKET)).json()
    routed = TicketRouted(
        number=created["number"],
        priority="P2",
        impact="high",
        urgency="medium",
        group=group,
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        reason="test",
    )
    await intake.deliver(
        envelope(routed, ticket_id=uuid.UUID(created["id"]), source="routing", sequence=1)
    )
    return created


def comments_of(ticket: dict[str, Any]) -> list[str]:
    return [c["body"] for c in ticket["comments"]]


async def test_a_requester_replies_with_their_key_and_the_reply_is_public_and_published(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}"
    key = {"X-Access-Key": ticket["access_key"]}

    answer = await client.post(f"{path}/comments", json={"body": "Still dropping."}, headers=key)

    assert answer.status_code == 201, answer.text
    assert answer.json()["author"] == {"name": "Reza Karimi", "kind": "requester"}
    assert answer.json()["visibility"] == "public"
    [event] = await intake.published("ticket.commented")
    assert event.data["author_kind"] == "requester" and event.data["visibility"] == "public"
    assert event.data["body"] == "Still dropping." and event.data["number"] == ticket["number"]
    assert event.data["comment_id"] == answer.json()["id"]
    seen = (await client.get(path, headers=key)).json()
    assert comments_of(seen) == ["Still dropping."]
    assert seen["timeline"][-1]["kind"] == "commented"


async def test_a_requester_cannot_choose_visibility_and_unknown_fields_are_refused(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}/comments"
    key = {"X-Access-Key": ticket["access_key"]}

    by_key = await client.post(path, json={"body": "hi", "visibility": "internal"}, headers=key)
    signed_in = await client.post(
        path, json={"body": "hi", "visibility": "public"}, headers=as_(REZA)
    )
    staff_typo = await client.post(path, json={"body": "hi", "colour": "red"}, headers=as_(SARA))

    for refused, field in (
        (by_key, "visibility"),
        (signed_in, "visibility"),
        (staff_typo, "colour"),
    ):
        assert refused.status_code == 422, refused.text
        assert [d["field"] for d in refused.json()["error"]["details"]] == [field]
    assert await intake.published("ticket.commented") == []


async def test_an_internal_note_never_reaches_the_requester_on_any_path(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}"
    key = {"X-Access-Key": ticket["access_key"]}

    note = await client.post(
        f"{path}/comments", json={"body": SECRET, "visibility": "internal"}, headers=as_(SARA)
    )
    reply = await client.post(
        f"{path}/comments", json={"body": "Please restart the client."}, headers=as_(SARA)
    )
    assert note.status_code == reply.status_code == 201

    for requester in (
        await client.get(path, headers=key),
        await client.get(path, headers=as_(REZA)),
        await client.get(path, headers=as_(MONITOR)),
    ):
        assert requester.status_code == 200
        assert SECRET not in requester.text and "Internal note" not in requester.text
        assert comments_of(requester.json()) == ["Please restart the client."]
    for page in (
        await client.get(f"/t/{ticket['number']}", headers=key),
        await client.get(f"/t/{ticket['number']}", headers=as_(REZA)),
    ):
        assert page.status_code == 200 and "Please restart the client." in page.text
        assert SECRET not in page.text
    # The agent sees both, and the event tells notify the note is internal.
    agent = (await client.get(path, headers=as_(SARA))).json()
    assert comments_of(agent) == [SECRET, "Please restart the client."]
    assert [c["visibility"] for c in agent["comments"]] == ["internal", "public"]
    assert ("internal_note", False) in [(e["kind"], e["public"]) for e in agent["timeline"]]
    events = await intake.published("ticket.commented")
    assert [(e.data["visibility"], e.data["author_kind"]) for e in events] == [
        ("internal", "agent"),
        ("public", "agent"),
    ]


async def test_the_first_public_staff_reply_is_the_first_response_and_only_the_first(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}"

    async def first_response() -> Any:
        return (await client.get(path, headers=as_(SARA))).json()["first_responded_at"]

    await client.post(
        f"{path}/comments", json={"body": "looking", "visibility": "internal"}, headers=as_(SARA)
    )
    await client.post(
        f"{path}/comments", json={"body": "me too"}, headers={"X-Access-Key": ticket["access_key"]}
    )
    assert await first_response() is None
    reply = await client.post(f"{path}/comments", json={"body": "On it."}, headers=as_(SARA))
    first = await first_response()
    assert datetime.fromisoformat(first) == datetime.fromisoformat(reply.json()["at"])
    await client.post(f"{path}/comments", json={"body": "Again."}, headers=as_(SARA))
    assert await first_response() == first


async def test_strangers_get_the_404_of_a_missing_ticket_and_integrations_cannot_reply(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_routed(client, intake)
    other = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}/comments"
    body = {"body": "let me in"}

    answers = [
        await client.post(path, json=body),
        await client.post(path, json=body, headers={"X-Access-Key": other["access_key"]}),
        await client.post(path, json=body, headers=as_(OLGA)),
        # An agent of another group does not see the desk's tickets.
        await client.post(path, json=body, headers=as_(PIOTR)),
        await client.post("/api/v1/tickets/SD-999999/comments", json=body, headers=as_(SARA)),
    ]
    assert [a.status_code for a in answers] == [404] * 5
    assert {a.json()["error"]["code"] for a in answers} == {"ticket_not_found"}
    by_integration = await client.post(path, json=body, headers=as_(MONITOR))
    assert by_integration.status_code == 403
    assert await intake.published("ticket.commented") == []


async def test_staff_do_not_reply_on_a_closed_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # A requester's late reply opens a linked follow-up (test_follow_up_tickets.py); staff
    # are told the ticket is closed.
    ticket = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}"
    for to in ("resolved", "closed"):
        moved = await client.post(f"{path}/status", json={"to": to}, headers=as_(SARA))
        assert moved.status_code == 200, moved.text

    answer = await client.post(
        f"{path}/comments", json={"body": "one more thing"}, headers=as_(SARA)
    )
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "ticket_closed"
    # True to what happens: the reply was refused, not turned into a new ticket.
    message = answer.json()["error"]["message"]
    assert "please open a new request" in message and "opens a new ticket" not in message
    assert len(await intake.published("ticket.created")) == 1


async def test_staff_get_the_agents_view_and_requesters_the_public_one(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    ticket = await open_routed(client, intake)
    path = f"/api/v1/tickets/{ticket['number']}"
    failed = NotificationFailed(
        number=ticket["number"],
        notification_id="n1",
        kind="acknowledgement",
        channel="sms",
        recipient="+48 600 700 800",
        attempts=5,
        error="gateway down",
    )
    await intake.deliver(envelope(failed, ticket_id=uuid.UUID(ticket["id"]), source="notify"))

    agent = await client.get(path, headers=as_(SARA))
    requester = await client.get(path, headers={"X-Access-Key": ticket["access_key"]})

    assert agent.status_code == requester.status_code == 200
    seen = agent.json()
    assert seen["requester"] == {"name": "Reza Karimi", "email": "reza@example.org", "phone": None}
    assert (seen["impact"], seen["group_id"], seen["owner_id"]) == ("high", "service-desk", "sara")
    assert ("notification_failed", False) in [(e["kind"], e["public"]) for e in seen["timeline"]]
    public = requester.json()
    assert public["requester"] == {"name": "Reza Karimi"}
    assert "gateway down" not in requester.text and "reza@example.org" not in requester.text
    assert {"impact", "group_id", "owner_id"}.isdisjoint(public)
    # Anyone else: the 404 of a missing ticket.
    for headers in ({}, as_(OLGA), {"X-Access-Key": "guessed"}):
        answer = await client.get(path, headers=headers)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "ticket_not_found"
