"""One requester however their address is cased: Reza@Example.org and reza@example.org share
their tickets, their sign-in links and their list, while each ticket keeps the address as given.
Rows from before migration 0009 get their key (and what is known of vouched contact) too."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import Request

from spoc.services import SERVICES, ServiceName
from spoc_contracts import RequesterSignInRequested
from spoc_intake.api.deps import Container, current_caller
from spoc_intake.app import create_app
from spoc_intake.callers import Caller
from spoc_intake.models import Ticket
from spoc_platform.db import UtcDateTime, create_engine, utc_now
from spoc_platform.migrations import upgrade
from spoc_platform.sealing import DEVELOPMENT_SECRET, open_sealed
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service
from tests.integration.ticket_callers import HEADER, PEOPLE

pytestmark = pytest.mark.integration
SAME_SITE = {"Origin": "http://intake"}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, trusted_networks="") as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)

    async def staff_by_header_else_real(request: Request, container: Container) -> Caller:
        if request.headers.get(HEADER):
            return PEOPLE[request.headers[HEADER]]
        return await current_caller(request, container)

    app.dependency_overrides[current_caller] = staff_by_header_else_real
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


async def open_ticket(client: httpx.AsyncClient, email: str, subject: str) -> str:
    body: dict[str, Any] = copy.deepcopy(NEW_TICKET)
    body["subject"] = subject
    body["requester"]["email"] = email
    created = await client.post("/api/v1/tickets", json=body)
    assert created.status_code == 201, created.text
    number: str = created.json()["number"]
    return number


async def sign_in(client: httpx.AsyncClient, intake: ServiceUnderTest, email: str) -> None:
    asked = await client.post("/api/v1/requester/links", json={"email": email})
    assert asked.status_code == 202
    links = await intake.published(RequesterSignInRequested.TYPE)
    assert links, f"no link was mailed for {email}"
    sealed = RequesterSignInRequested.model_validate(links[-1].data).link_token_sealed
    token = open_sealed(DEVELOPMENT_SECRET, sealed)
    used = await client.post("/requester/sign-in", data={"token": token}, headers=SAME_SITE)
    assert used.status_code == 303, used.text


async def test_one_requester_however_their_address_is_cased(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    vpn = await open_ticket(client, "Reza@Example.org", "VPN drops")
    printer = await open_ticket(client, "reza@EXAMPLE.ORG", "Printer jams")
    others = await open_ticket(client, "olga@example.org", "Olga's laptop")

    # The link is mailed for a third spelling: the address has tickets.
    await sign_in(client, intake, "REZA@example.org")

    listed = await client.get("/api/v1/tickets")
    assert listed.status_code == 200, listed.text
    assert [t["number"] for t in listed.json()["items"]] == [printer, vpn]
    for number in (vpn, printer):
        assert (await client.get(f"/api/v1/tickets/{number}")).status_code == 200
        assert (await client.get(f"/t/{number}")).status_code == 200
    assert (await client.get(f"/api/v1/tickets/{others}")).status_code == 404
    page = await client.get("/my")
    assert vpn in page.text and printer in page.text and others not in page.text

    # Each ticket keeps the address as it was given (the domain as mail servers take it).
    async with intake.runtime.engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(Ticket.requester_email, Ticket.requester_email_key).order_by(
                    Ticket.number
                )
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        ("Reza@example.org", "reza@example.org"),
        ("reza@example.org", "reza@example.org"),
        ("olga@example.org", "olga@example.org"),
    ]


async def test_the_upgrade_gives_earlier_tickets_their_key_and_vouched_contact_only_by_link(
    database_url: str,
) -> None:
    migrations = SERVICES[ServiceName.intake].migrations
    upgrade(migrations, database_url, "0008")
    before = sa.table(
        "ticket",
        sa.column("id", sa.Uuid()),
        *(
            sa.column(name)
            for name in (
                "number",
                "subject",
                "description",
                "type",
                "channel",
                "requester_name",
                "requester_email",
                "preferred_channel",
                "access_key_hash",
                "status",
                "routing_sequence",
                "sla_sequence",
            )
        ),
        sa.column("fields", sa.JSON()),
        sa.column("created_at", UtcDateTime()),
        sa.column("updated_at", UtcDateTime()),
    )
    link = sa.table(
        "requester_link",
        sa.column("token_hash"),
        sa.column("email"),
        sa.column("created_at", UtcDateTime()),
        sa.column("expires_at", UtcDateTime()),
        sa.column("used_at", UtcDateTime()),
    )
    now = utc_now()
    rows = [
        # (address as given, channel): a stranger by web; by phone and by mail, which before
        # staff sign-in anyone could claim; a link-user by web.
        ("Reza@Example.org", "web"),
        ("ann@example.org", "phone"),
        ("Olga@example.org", "web"),
        ("ivan@example.org", "email"),
    ]
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for number, (email, channel) in enumerate(rows, start=1):
                await conn.execute(
                    sa.insert(before).values(
                        id=uuid.uuid4(),
                        number=number,
                        subject="Old",
                        description="From before 0009.",
                        type="incident",
                        channel=channel,
                        requester_name="Someone",
                        requester_email=email,
                        preferred_channel="email",
                        access_key_hash="0" * 64,
                        status="new",
                        routing_sequence=0,
                        sla_sequence=0,
                        fields={},
                        created_at=now,
                        updated_at=now,
                    )
                )
            await conn.execute(
                sa.insert(link).values(
                    token_hash="1" * 64,
                    email="olga@EXAMPLE.org",
                    created_at=now,
                    expires_at=now + timedelta(minutes=30),
                    used_at=now,
                )
            )

        upgrade(migrations, database_url)

        async with engine.connect() as conn:
            after = (
                await conn.execute(
                    sa.select(
                        Ticket.requester_email, Ticket.requester_email_key, Ticket.requester_vouched
                    ).order_by(Ticket.number)
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in after] == [
        ("Reza@Example.org", "reza@example.org", False),
        # Only a used sign-in link vouches for an earlier address (fail closed).
        ("ann@example.org", "ann@example.org", False),
        ("Olga@example.org", "olga@example.org", True),
        ("ivan@example.org", "ivan@example.org", False),
    ]
