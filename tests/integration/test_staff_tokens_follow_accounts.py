"""A staff bearer token acts as its account as the account is now, on SQLite and PostgreSQL:
its groups decide which tickets it sees, its role caps the token's, and deactivating or
demoting the account revokes its tokens (and tells routing and sla). Real tokens throughout,
through intake's own credential resolution: no dependency overrides."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from spoc_contracts import TicketRouted, TokenRevoked
from spoc_contracts.routing import GroupRef
from spoc_intake.app import create_app
from spoc_intake.staff import StaffCreate, StaffUpdate
from spoc_intake.tokens import create_token, hash_token
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service

pytestmark = pytest.mark.integration
DESK = GroupRef(id="service-desk", name="Service Desk", tier=1)
NETWORK = GroupRef(id="network", name="Network Operations", tier=2)
CHEAP_HASHING = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, **CHEAP_HASHING) as running:
        staff = running.container.staff
        for id, role, groups in (
            ("ada", "admin", []),
            ("piotr", "agent", ["network"]),
            ("max", "admin", []),
        ):
            await staff.create(
                StaffCreate(
                    id=id, name=id.title(), email=f"{id}@example.org", role=role, groups=groups
                )
            )
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


async def token_of(intake: ServiceUnderTest, account: str, role: Any) -> dict[str, str]:
    issued = await create_token(
        intake.runtime.unit_of_work, role=role, name=f"{account}'s script", subject_id=account
    )
    return {"Authorization": f"Bearer {issued.token}"}


def hash_of(headers: dict[str, str]) -> str:
    return hash_token(headers["Authorization"].removeprefix("Bearer "))


async def revocations(intake: ServiceUnderTest) -> list[str]:
    """The token digests whose revocation intake published for routing and sla."""
    events = await intake.published("credential.token_revoked")
    return [TokenRevoked.model_validate(e.data).token_hash for e in events]


async def open_ticket(client: httpx.AsyncClient, intake: ServiceUnderTest, group: GroupRef) -> str:
    created = await client.post("/api/v1/tickets", json=copy.deepcopy(NEW_TICKET))
    assert created.status_code == 201, created.text
    ticket = created.json()
    routed = TicketRouted(
        number=ticket["number"],
        priority="P3",
        impact="medium",
        urgency="medium",
        group=group,
        owner=None,
        reason="test",
    )
    await intake.deliver(
        envelope(routed, ticket_id=uuid.UUID(ticket["id"]), source="routing", sequence=1)
    )
    number: str = ticket["number"]
    return number


async def test_an_agents_token_sees_the_tickets_of_the_agents_groups_only(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    network = await open_ticket(client, intake, NETWORK)
    desk = await open_ticket(client, intake, DESK)
    piotr = await token_of(intake, "piotr", "agent")

    seen = await client.get(f"/api/v1/tickets/{network}", headers=piotr)
    assert seen.status_code == 200, seen.text
    assert (await client.get(f"/api/v1/tickets/{desk}", headers=piotr)).status_code == 404
    me = await client.get("/api/v1/me", headers=piotr)
    assert me.json() == {
        "id": "piotr",
        "role": "agent",
        "name": "Piotr",
        "email": "piotr@example.org",
        "groups": ["network"],
    }


async def test_a_token_acts_with_the_lower_of_its_role_and_its_accounts(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # An admin token minted for an agent is an agent's: it manages no staff.
    piotr_as_admin = await token_of(intake, "piotr", "admin")
    assert (await client.get("/api/v1/me", headers=piotr_as_admin)).json()["role"] == "agent"
    refused = await client.get("/api/v1/staff", headers=piotr_as_admin)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # And an agent token of an admin stays an agent's.
    ada_as_agent = await token_of(intake, "ada", "agent")
    assert (await client.get("/api/v1/staff", headers=ada_as_agent)).status_code == 403


async def test_a_token_of_an_inactive_account_is_refused(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await intake.container.staff.create(
        StaffCreate(id="gone", name="Gone", email="gone@example.org", role="agent", active=False)
    )
    gone = await token_of(intake, "gone", "agent")
    answer = await client.get("/api/v1/me", headers=gone)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"


async def test_deactivating_an_account_revokes_its_tokens_here_and_for_routing(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    piotr = await token_of(intake, "piotr", "agent")
    assert (await client.get("/api/v1/me", headers=piotr)).status_code == 200

    await intake.container.staff.update("piotr", StaffUpdate(active=False))
    answer = await client.get("/api/v1/me", headers=piotr)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"
    assert await revocations(intake) == [hash_of(piotr)]
    # Reactivated, the account does not bring the revoked token back.
    await intake.container.staff.update("piotr", StaffUpdate(active=True))
    assert (await client.get("/api/v1/me", headers=piotr)).status_code == 401


async def test_a_demoted_admins_token_is_no_admin_any_more(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    max_ = await token_of(intake, "max", "admin")
    other = await token_of(intake, "ada", "admin")
    assert (await client.get("/api/v1/staff", headers=max_)).status_code == 200

    demoted = await client.patch("/api/v1/staff/max", json={"role": "manager"}, headers=other)
    assert demoted.status_code == 200, demoted.text
    refused = await client.get("/api/v1/staff", headers=max_)
    assert refused.status_code == 401
    assert await revocations(intake) == [hash_of(max_)]
    # A change that lowers nothing leaves the tokens alone.
    renamed = await client.patch("/api/v1/staff/ada", json={"name": "Ada L."}, headers=other)
    assert renamed.status_code == 200
    assert (await client.get("/api/v1/me", headers=other)).json()["name"] == "Ada L."
