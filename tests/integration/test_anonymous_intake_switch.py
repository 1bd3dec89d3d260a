"""With anonymous intake switched off, the desk takes tickets only from callers it knows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from spoc_intake.app import create_app
from spoc_intake.tokens import create_token
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, anonymous_intake=False) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


async def test_an_anonymous_caller_is_refused_and_told_why(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tickets", json=NEW_TICKET)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthenticated"
    assert "switched off" in answer.json()["error"]["message"]


async def test_an_integration_still_files_tickets(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    issued = await create_token(intake.runtime.unit_of_work, role="integration", name="monitor")
    answer = await client.post(
        "/api/v1/tickets",
        json={**NEW_TICKET, "channel": "api"},
        headers={"Authorization": f"Bearer {issued.token}"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["number"].startswith("SD-")
