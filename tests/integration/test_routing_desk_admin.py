"""Routing's desk section at run time: an admin checks a section (a dry run, every problem
named by its path), sets it (a new version, in force on every replica) and lists the versions;
the decisions made after record the version they used. Admins only: another role's token is a
403, no token a 401."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import select

from spoc.services import SERVICES, ServiceName
from spoc_contracts import TicketRouted
from spoc_routing.desk import RoutingDesk
from spoc_routing.models import Triage
from tests.harness import ServiceUnderTest, envelope, service, ticket_created

pytestmark = pytest.mark.integration

ADMIN = "a" * 40
DESK = "/api/v1/routing/desk"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}

# A desk of its own: one group, its one agent, and a rule sending VPN trouble to the network.
SECTION: dict[str, Any] = {
    "default_group": "front",
    "groups": [
        {"id": "front", "name": "Front Desk", "agents": [{"id": "nina", "name": "Nina Berg"}]},
        {"id": "net", "name": "Network", "tier": 2, "agents": [{"id": "omar", "name": "Omar"}]},
    ],
    "rules": [{"name": "vpn", "when": {"keywords": ["vpn"]}, "then": {"group": "net"}}],
}


@dataclass
class Holder:
    role: str
    subject_id: str | None = None
    token_id: uuid.UUID = field(default_factory=uuid.uuid4)


class Tokens:
    """Stands in for the projection of intake's tokens: each `spoc_` token holder by role."""

    def __init__(self, **holders: Holder) -> None:
        self.holders = holders

    async def caller(self, token: str) -> Holder | None:
        return self.holders.get(token)


@asynccontextmanager
async def routing_api(
    database_url: str, **settings: Any
) -> AsyncIterator[tuple[ServiceUnderTest, httpx.AsyncClient]]:
    settings.setdefault("admin_token", ADMIN)
    async with service("routing", database_url, **settings) as routing:
        routing.container.bearer_tokens = Tokens(
            spoc_agent_token=Holder("agent", "sara"), spoc_admin_token=Holder("admin", "ada")
        )
        app = SERVICES[ServiceName.routing].create_app(
            routing.container.settings, routing.container, manage_runtime=False
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
            yield routing, http


async def test_a_valid_section_is_checked_and_nothing_changes(sqlite_url: str) -> None:
    async with routing_api(sqlite_url) as (routing, http):
        before = (await http.get(DESK, headers=AS_ADMIN)).json()
        assert before["version"] == routing.container.desk.version

        answer = await http.post(f"{DESK}/validate", json=SECTION, headers=AS_ADMIN)

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["valid"] is True
        assert body["version"] == RoutingDesk.model_validate(SECTION).version != before["version"]
        assert body["summary"]["groups"] == 2 and body["summary"]["agents"] == 2
        assert body["summary"]["rules"] == 1 and body["summary"]["categories"] == 0
        assert (await http.get(DESK, headers=AS_ADMIN)).json() == before
        listed = (await http.get(f"{DESK}/versions", headers=AS_ADMIN)).json()
        assert listed["versions"] == [] and listed["current"] == before["version"]


async def test_an_invalid_section_is_a_422_naming_each_problems_path(sqlite_url: str) -> None:
    broken = {
        **SECTION,
        "groups": [
            SECTION["groups"][0],
            {"id": "net", "name": "Net", "agents": [{"id": "omar", "name": "O", "capacity": 0}]},
        ],
    }
    crossed = {**SECTION, "rules": [{"name": "vpn", "then": {"group": "nowhere"}}]}
    crossed["groups"] = [*SECTION["groups"], {**SECTION["groups"][1], "shift": "night"}]
    async with routing_api(sqlite_url) as (_, http):
        answer = await http.post(f"{DESK}/validate", json=broken, headers=AS_ADMIN)
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["code"] == "validation_error"
        assert [d["field"] for d in error["details"]] == ["groups.1.agents.0.capacity"]

        answer = await http.post(f"{DESK}/validate", json=crossed, headers=AS_ADMIN)
        assert answer.status_code == 422
        details = {d["field"]: d["message"] for d in answer.json()["error"]["details"]}
        assert details == {
            "rules[0] (vpn)": "group 'nowhere' is not among the groups",
            "groups.net": "shift 'night' is not among the shifts",
            "groups": "'net' is declared twice",
            "agents": "'omar' is declared twice",
        }
        # Not a mapping at all: the same error shape.
        answer = await http.post(f"{DESK}/validate", json=[1], headers=AS_ADMIN)
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "validation_error"
        # Nor is an invalid section set.
        assert (await http.put(DESK, json=crossed, headers=AS_ADMIN)).status_code == 422
        assert (await http.get(f"{DESK}/versions", headers=AS_ADMIN)).json()["versions"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", f"{DESK}/validate"), ("PUT", DESK), ("GET", f"{DESK}/versions")],
)
async def test_admins_only(sqlite_url: str, method: str, path: str) -> None:
    async with routing_api(sqlite_url) as (_, http):
        body = SECTION if method != "GET" else None

        anonymous = await http.request(method, path, json=body)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthenticated"
        agent = await http.request(
            method, path, json=body, headers={"Authorization": "Bearer spoc_agent_token"}
        )
        assert agent.status_code == 403
        assert agent.json()["error"]["code"] == "forbidden"
        admin = await http.request(
            method, path, json=body, headers={"Authorization": "Bearer spoc_admin_token"}
        )
        assert admin.status_code == 200


async def test_without_an_admin_token_the_changes_do_not_exist(sqlite_url: str) -> None:
    async with routing_api(sqlite_url, admin_token=None) as (_, http):
        assert (await http.post(f"{DESK}/validate", json=SECTION)).status_code == 404
        assert (await http.put(DESK, json=SECTION)).status_code == 405
        # The view stays open in development, as before.
        assert (await http.get(DESK)).status_code == 200


async def routed(routing: ServiceUnderTest, subject: str) -> tuple[TicketRouted, Any]:
    ticket_id = uuid.uuid4()
    number = f"SD-{ticket_id.int % 10**6:06d}"
    created = ticket_created(number=number, subject=subject)
    await routing.deliver(envelope(created, ticket_id=ticket_id))
    [*_, event] = await routing.published("ticket.routed")
    async with routing.runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                select(Triage.group_id, Triage.desk_version).where(Triage.ticket_id == ticket_id)
            )
        ).one()
    return TicketRouted.model_validate(event.data), row


async def test_a_section_set_decides_the_next_tickets_and_they_record_its_version(
    database_url: str,
) -> None:
    async with routing_api(database_url) as (routing, http):
        file_version = routing.container.desk.version
        first, row = await routed(routing, "VPN drops every hour")
        assert first.desk_version == row.desk_version == file_version
        assert first.group.id == "service-desk"

        answer = await http.put(
            DESK, json=SECTION, headers={"Authorization": "Bearer spoc_admin_token"}
        )

        assert answer.status_code == 200, answer.text
        version = answer.json()["version"]
        assert version == RoutingDesk.model_validate(SECTION).version
        assert (await http.get(DESK, headers=AS_ADMIN)).json()["version"] == version
        after, row = await routed(routing, "VPN drops every hour")
        assert after.desk_version == row.desk_version == version
        assert (after.group.id, row.group_id) == ("net", "net")
        assert after.owner is not None and after.owner.id == "omar"

        listed = (await http.get(f"{DESK}/versions", headers=AS_ADMIN)).json()
        assert (listed["current"], listed["file_version"]) == (version, file_version)
        [entry] = listed["versions"]
        assert (entry["version"], entry["changed_by"], entry["current"]) == (version, "ada", True)

        # Another change by the configured token: newest first, the only one current.
        again = {**SECTION, "default_group": "net"}
        assert (await http.put(DESK, json=again, headers=AS_ADMIN)).status_code == 200
        listed = (await http.get(f"{DESK}/versions", headers=AS_ADMIN)).json()
        assert [(v["changed_by"], v["current"]) for v in listed["versions"]] == [
            ("admin token", True),
            ("ada", False),
        ]


async def test_every_replica_on_the_database_takes_a_change(postgres_url: str) -> None:
    async with (
        routing_api(postgres_url, desk_refresh_seconds=0.1) as (changed, http),
        service("routing", postgres_url, desk_refresh_seconds=0.1) as other,
    ):
        refresher = other.runtime.workers[-1]
        running = asyncio.create_task(refresher.run())
        try:
            assert (await http.put(DESK, json=SECTION, headers=AS_ADMIN)).status_code == 200
            version = changed.container.desk.version
            assert version == RoutingDesk.model_validate(SECTION).version

            async def caught_up() -> None:
                while other.container.desk.version != version:
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(caught_up(), 5)
            event, row = await routed(other, "VPN drops every hour")
            assert event.desk_version == row.desk_version == version
            assert row.group_id == "net"
        finally:
            await refresher.stop()
            await running


async def test_a_desk_read_back_matches_the_document_it_is_described_in(sqlite_url: str) -> None:
    """Times of day, days off and shifts come back as the OpenAPI document says (a plain
    `format: time` would require an offset the desk's wall-clock times never have)."""
    with_shifts = {
        **SECTION,
        "shifts": {
            "nights": {
                "timezone": "Europe/Warsaw",
                "days": ["mon", "fri"],
                "starts": "22:00",
                "ends": "06:00",
                "days_off": ["2026-12-24"],
            }
        },
    }
    with_shifts["groups"] = [{**SECTION["groups"][0], "shift": "nights"}, *SECTION["groups"][1:]]
    async with routing_api(sqlite_url) as (routing, http):
        answer = await http.put(DESK, json=with_shifts, headers=AS_ADMIN)
        assert answer.status_code == 200, answer.text
        await routing.container.desks.refresh(routing.runtime.engine, force=True)
        document = (await http.get("/openapi.json")).json()
        read = await http.get(DESK, headers=AS_ADMIN)
        assert read.json()["shifts"]["nights"]["starts"] == "22:00:00"
        schema = {
            **document["paths"]["/api/v1/routing/desk"]["get"]["responses"]["200"]["content"][
                "application/json"
            ]["schema"],
            "components": document["components"],
        }
        jsonschema.validate(
            read.json(), schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
