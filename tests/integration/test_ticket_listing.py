"""GET /api/v1/tickets: who sees which tickets, the filters, the sort and the cursor pages."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from spoc_contracts import TicketEscalated, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import MINA, MONITOR, OLGA, PIOTR, REZA, SARA, as_, client_for

pytestmark = pytest.mark.integration
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
NETWORK = GroupRef(id="network", name="Network Operations", tier=2)


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(intake) as http:
        yield http


async def open_ticket(
    client: httpx.AsyncClient,
    intake: ServiceUnderTest,
    *,
    group: GroupRef | None = DESK,
    priority: str = "P3",
    owner: str | None = None,
    email: str = "reza@example.org",
    **changes: Any,
) -> str:
    body = copy.deepcopy(NEW_TICKET)
    body.update(changes)
    body["requester"]["email"] = email
    created = await client.post("/api/v1/tickets", json=body)
    assert created.status_code == 201, created.text
    ticket = created.json()
    if group is not None:
        routed = TicketRouted(
            number=ticket["number"],
            priority=priority,
            impact="medium",
            urgency="medium",
            group=group,
            owner=AgentRef(id=owner, name=owner.title()) if owner else None,
            reason="test",
        )
        await intake.deliver(
            envelope(routed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
        )
    number: str = ticket["number"]
    return number


async def numbers(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> list[str]:
    answer = await client.get("/api/v1/tickets", params=params, headers=headers or as_(MINA))
    assert answer.status_code == 200, answer.text
    return [item["number"] for item in answer.json()["items"]]


async def test_agents_see_their_groups_and_unrouted_tickets_managers_all_requesters_their_own(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    desk = await open_ticket(client, intake, group=DESK)
    network = await open_ticket(client, intake, group=NETWORK, email="olga@example.org")
    unrouted = await open_ticket(client, intake, group=None)

    assert set(await numbers(client, as_(SARA))) == {desk, unrouted}
    assert set(await numbers(client, as_(PIOTR))) == {network, unrouted}
    assert set(await numbers(client, as_(MINA))) == {desk, network, unrouted}
    assert set(await numbers(client, as_(MONITOR))) == {desk, network, unrouted}
    assert set(await numbers(client, as_(REZA))) == {desk, unrouted}
    assert set(await numbers(client, as_(OLGA))) == {network}
    # Sara's list and Sara's reads agree: the network's ticket is a 404 for her.
    other = await client.get(f"/api/v1/tickets/{network}", headers=as_(SARA))
    assert other.status_code == 404
    anonymous = await client.get("/api/v1/tickets")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"


async def test_an_owner_keeps_their_ticket_after_it_is_escalated_to_another_group(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    number = await open_ticket(client, intake, group=DESK, owner="sara")
    ticket_id = (await client.get(f"/api/v1/tickets/{number}", headers=as_(MINA))).json()["id"]
    escalated = TicketEscalated(
        number=number,
        kind="functional",
        to_group=NETWORK,
        from_group=DESK,
        owner=AgentRef(id="sara", name="Sara"),
        reason="needs the network team",
    )
    await intake.deliver(
        envelope(escalated, ticket_id=uuid.UUID(ticket_id), source="routing", sequence=2)
    )

    # Sara is not in the network group, but she stays the requester's one contact (D3).
    read = await client.get(f"/api/v1/tickets/{number}", headers=as_(SARA))
    assert read.status_code == 200, read.text
    assert read.json()["group_id"] == "network" and read.json()["owner_id"] == "sara"
    assert await numbers(client, as_(SARA)) == [number]
    # The helping group sees it too.
    assert await numbers(client, as_(PIOTR)) == [number]


async def test_a_setting_lets_every_agent_see_every_ticket(database_url: str) -> None:
    async with (
        service("intake", database_url, agents_see_all=True) as intake,
        client_for(intake) as client,
    ):
        network = await open_ticket(client, intake, group=NETWORK)
        assert await numbers(client, as_(SARA)) == [network]
        seen = await client.get(f"/api/v1/tickets/{network}", headers=as_(SARA))
        assert seen.status_code == 200 and "email" in seen.json()["requester"]


async def test_the_filters_narrow_the_list_and_text_is_matched_literally(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    percent = await open_ticket(client, intake, subject="Disk 100% full", priority="P1")
    digits = await open_ticket(client, intake, subject="Disk 1000 files", owner="sara")
    under = await open_ticket(
        client, intake, subject="snake_case name", type="request", channel="chat"
    )
    network = await open_ticket(client, intake, group=NETWORK, category="hardware")

    assert await numbers(client, q="0%") == [percent]
    assert await numbers(client, q="E_C") == [under]
    assert set(await numbers(client, q="DISK")) == {percent, digits}
    assert await numbers(client, priority="P1") == [percent]
    assert await numbers(client, owner="sara") == [digits]
    assert await numbers(client, group="network") == [network]
    assert await numbers(client, type="request") == [under]
    assert await numbers(client, channel="chat") == [under]
    assert await numbers(client, category="hardware") == [network]
    # Staff filters on top of what a caller may see: Sara asks for the network's, gets none.
    assert await numbers(client, as_(SARA), group="network") == []

    await client.post(
        f"/api/v1/tickets/{digits}/status", json={"to": "resolved"}, headers=as_(SARA)
    )
    assert await numbers(client, status="resolved") == [digits]
    both = await numbers(client, status=["resolved", "open"])
    assert set(both) == {percent, digits, under, network}


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "updated_at", "-priority"])
async def test_cursor_pages_walk_the_whole_list_once_in_order(
    client: httpx.AsyncClient, intake: ServiceUnderTest, sort: str
) -> None:
    opened = [await open_ticket(client, intake, priority=f"P{1 + i % 3}") for i in range(7)]
    everything = await numbers(client, sort=sort, limit=100)
    assert sorted(everything) == sorted(opened)

    walked: list[dict[str, Any]] = []
    params: dict[str, Any] = {"sort": sort, "limit": 3}
    pages = 0
    while True:
        page = (await client.get("/api/v1/tickets", params=params, headers=as_(MINA))).json()
        walked += page["items"]
        pages += 1
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert [item["number"] for item in walked] == everything and pages == 3
    field, descending = sort.lstrip("-"), sort.startswith("-")
    keys = [(item[field], item["number"]) for item in walked]
    assert keys == sorted(keys, reverse=descending)


async def test_bad_page_sizes_and_cursors_are_a_422(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    for _ in range(2):
        await open_ticket(client, intake)
    first = (await client.get("/api/v1/tickets", params={"limit": 1}, headers=as_(MINA))).json()
    cursor = first["next_cursor"]
    assert cursor

    answers = {
        "too big": await client.get("/api/v1/tickets", params={"limit": 101}, headers=as_(MINA)),
        "garbage": await client.get(
            "/api/v1/tickets", params={"cursor": "not!a*cursor"}, headers=as_(MINA)
        ),
        "other sort": await client.get(
            "/api/v1/tickets", params={"cursor": cursor, "sort": "priority"}, headers=as_(MINA)
        ),
        "bad sort": await client.get(
            "/api/v1/tickets", params={"sort": "subject"}, headers=as_(MINA)
        ),
    }
    for name, answer in answers.items():
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["error"]["code"] == "validation_error"
    assert answers["garbage"].json()["error"]["details"][0]["field"] == "query.cursor"


async def test_private_answers_are_never_cached(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    number = await open_ticket(client, intake)
    created = await client.post("/api/v1/tickets", json=NEW_TICKET)
    listed = await client.get("/api/v1/tickets", headers=as_(REZA))
    read = await client.get(f"/api/v1/tickets/{number}", headers=as_(SARA))
    for answer in (created, listed, read):
        assert answer.headers["cache-control"] == "no-store"
