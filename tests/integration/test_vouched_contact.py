"""`requester_known` (ticket.created v2) counts only vouched earlier contact from the address: a
ticket staff, an integration, a trusted network or the signed-in requester filed for it, or a
sign-in link it used. A stranger's first, harmless ticket does not prime the next one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Request

from spoc_contracts import RequesterSignInRequested
from spoc_intake.api.deps import current_caller
from spoc_intake.app import create_app
from spoc_intake.callers import ANONYMOUS, Caller
from spoc_platform.sealing import DEVELOPMENT_SECRET, open_sealed
from tests.harness import ServiceUnderTest, service
from tests.integration.ticket_callers import HEADER, MONITOR, PEOPLE, SARA, as_

pytestmark = pytest.mark.integration

TRUSTED = "192.0.2.0/24"
INSIDE, OUTSIDE = "192.0.2.7", "198.51.100.9"
SAME_SITE = {"Origin": "http://intake"}


def ticket_for(email: str) -> dict[str, Any]:
    return {
        "subject": "Your mailbox is full: confirm your password at evil.example",
        "description": "Follow the link.",
        "type": "request",
        "requester": {"name": "IT Security Team", "email": email},
    }


async def _caller_from_test_header(request: Request) -> Caller:
    return PEOPLE.get(request.headers.get(HEADER, ""), ANONYMOUS)


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, trusted_networks=TRUSTED) as running:
        yield running


@asynccontextmanager
async def client_from(intake: ServiceUnderTest, address: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    app.dependency_overrides[current_caller] = _caller_from_test_header
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


async def file(
    intake: ServiceUnderTest, email: str, *, client: str = OUTSIDE, caller: Caller = ANONYMOUS
) -> bool:
    """Files a ticket for `email` and returns its `requester_known`."""
    headers = {} if caller is ANONYMOUS else as_(caller)
    async with client_from(intake, client) as http:
        answer = await http.post("/api/v1/tickets", json=ticket_for(email), headers=headers)
    assert answer.status_code == 201, answer.text
    created = await intake.published("ticket.created")
    known: bool = created[-1].data["requester_known"]
    return known


async def test_a_first_anonymous_ticket_does_not_make_the_next_one_known(
    intake: ServiceUnderTest,
) -> None:
    assert await file(intake, "victim@example.org") is False
    assert await file(intake, "victim@example.org") is False
    assert await file(intake, "Victim@Example.org") is False


@pytest.mark.parametrize(
    ("client", "caller"),
    [(INSIDE, ANONYMOUS), (OUTSIDE, SARA), (OUTSIDE, MONITOR)],
    ids=["trusted network", "agent", "integration"],
)
async def test_a_vouched_ticket_for_the_address_makes_its_next_anonymous_ones_known(
    intake: ServiceUnderTest, client: str, caller: Caller
) -> None:
    assert await file(intake, "Victim@Example.org", client=client, caller=caller) is True

    assert await file(intake, "victim@example.org") is True
    assert await file(intake, "someone.else@example.org") is False


async def test_an_address_that_used_a_sign_in_link_is_known_from_then_on(
    intake: ServiceUnderTest,
) -> None:
    assert await file(intake, "victim@example.org") is False
    async with client_from(intake, OUTSIDE) as http:
        asked = await http.post("/api/v1/requester/links", json={"email": "Victim@example.org"})
        assert asked.status_code == 202
        # A link asked for but not used proves nothing: anyone may ask for one.
        assert await file(intake, "victim@example.org") is False

        [link] = await intake.published(RequesterSignInRequested.TYPE)
        sealed = RequesterSignInRequested.model_validate(link.data).link_token_sealed
        token = open_sealed(DEVELOPMENT_SECRET, sealed)
        used = await http.post("/requester/sign-in", data={"token": token}, headers=SAME_SITE)
        assert used.status_code == 303, used.text

    assert await file(intake, "VICTIM@example.org") is True
