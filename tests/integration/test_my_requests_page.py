"""The requester's "my requests" page at /my: their own tickets once signed in by link, a form
that mails a link otherwise, and their ticket pages opening on the session alone."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Request

from spoc_contracts import RequesterSignInRequested, TicketRouted
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_intake.api.deps import Container, current_caller
from spoc_intake.app import create_app
from spoc_intake.callers import Caller
from spoc_intake.requester_links import REQUESTER_SESSION_COOKIE
from spoc_platform.sealing import DEVELOPMENT_SECRET, open_sealed
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import HEADER, PEOPLE, SARA, as_

pytestmark = pytest.mark.integration
REZA = NEW_TICKET["requester"]["email"]
SAME_SITE = {"Origin": "http://intake"}
SECRET = "Internal: the router's admin password is in the vault."


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, trusted_networks="") as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)

    async def staff_by_header_else_real(request: Request, container: Container) -> Caller:
        # Staff by the tests' header (no staff accounts here); requesters by their real
        # session cookie, as a browser signs in.
        if request.headers.get(HEADER):
            return PEOPLE[request.headers[HEADER]]
        return await current_caller(request, container)

    app.dependency_overrides[current_caller] = staff_by_header_else_real
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


async def open_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest, email: str = REZA, **changes: Any
) -> dict[str, Any]:
    body = copy.deepcopy(NEW_TICKET)
    body.update(changes)
    body["requester"]["email"] = email
    created = await client.post("/api/v1/tickets", json=body)
    assert created.status_code == 201, created.text
    ticket: dict[str, Any] = created.json()
    routed = TicketRouted(
        number=ticket["number"],
        priority="P2",
        impact="high",
        urgency="medium",
        group=GroupRef(id="service-desk", name="Service Desk", tier=1),
        owner=AgentRef(id="sara", name="Sara Ahmadi"),
        reason="test",
    )
    await intake.deliver(
        envelope(routed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
    )
    return ticket


async def sign_in(client: httpx.AsyncClient, intake: ServiceUnderTest, email: str = REZA) -> None:
    """Asks for a link by the page's form and presses the button of the page it opens."""
    asked = await client.post("/my", data={"email": email}, headers=SAME_SITE)
    assert asked.status_code == 200 and "sign-in link is on its way" in asked.text
    event = (await intake.published(RequesterSignInRequested.TYPE))[-1]
    sealed = RequesterSignInRequested.model_validate(event.data).link_token_sealed
    token = open_sealed(DEVELOPMENT_SECRET, sealed)
    used = await client.post("/requester/sign-in", data={"token": token}, headers=SAME_SITE)
    assert used.status_code == 303 and used.headers["Location"] == "/my"
    assert client.cookies.get(REQUESTER_SESSION_COOKIE)


async def test_a_signed_in_requester_sees_their_tickets_newest_first_and_nobody_elses(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    older = await open_ticket(client, intake, subject="Printer <b>jams</b> & smudges")
    newer = await open_ticket(client, intake, subject="VPN drops")
    others = await open_ticket(client, intake, email="olga@example.org", subject="Olga's laptop")
    await sign_in(client, intake)

    page = await client.get("/my")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert f"Signed in as {REZA}" in page.text
    links = [f'<a href="t/{t["number"]}">{t["number"]}</a>' for t in (newer, older)]
    assert all(link in page.text for link in links)
    assert page.text.index(links[0]) < page.text.index(links[1])
    assert others["number"] not in page.text and "Olga" not in page.text
    # Autoescaped: a subject is text, never markup.
    assert "Printer &lt;b&gt;jams&lt;/b&gt; &amp; smudges" in page.text
    for shown in ("Service Desk", "Sara Ahmadi", "P2", "open"):
        assert shown in page.text


async def test_their_ticket_page_opens_on_the_session_without_the_key_and_hides_notes(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    theirs = await open_ticket(client, intake)
    others = await open_ticket(client, intake, email="olga@example.org")
    note = await client.post(
        f"/api/v1/tickets/{theirs['number']}/comments",
        json={"body": SECRET, "visibility": "internal"},
        headers=as_(SARA),
    )
    assert note.status_code == 201
    assert (await client.get(f"/t/{theirs['number']}")).status_code == 404
    await sign_in(client, intake)

    page = await client.get(f"/t/{theirs['number']}")
    assert page.status_code == 200 and NEW_TICKET["subject"] in page.text
    assert SECRET not in page.text
    assert SECRET not in (await client.get("/my")).text
    assert (await client.get(f"/t/{others['number']}")).status_code == 404


async def test_without_a_session_the_page_offers_a_link_by_form(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await open_ticket(client, intake)
    page = await client.get("/my")
    assert page.status_code == 200
    assert '<form method="post" action="my">' in page.text
    assert '<input type="email" id="email" name="email"' in page.text
    assert "SD-" not in page.text

    bad = await client.post("/my", data={"email": "not an address"}, headers=SAME_SITE)
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
    unknown = await client.post("/my", data={"email": "nobody@example.org"}, headers=SAME_SITE)
    assert unknown.status_code == 200 and "sign-in link is on its way" in unknown.text
    forged = await client.post(
        "/my", data={"email": REZA}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    # Only the known address got a link, and neither answer said which was known.
    assert await intake.published(RequesterSignInRequested.TYPE) == []
    await sign_in(client, intake)
    assert len(await intake.published(RequesterSignInRequested.TYPE)) == 1
