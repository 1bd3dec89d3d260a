"""Intake's bearer tokens on routing's admin API, with no call to intake: issued, revoked and
announced again as events on the bus, refused by routing as soon as intake's feed goes quiet."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from spoc.services import SERVICES, ServiceName
from spoc_contracts import CredentialFeedHeartbeat, Envelope, Event, TokenIssued, TokenRevoked
from spoc_intake.bootstrap import IntakeContainer
from spoc_intake.models import MESSAGING as INTAKE_MESSAGING
from spoc_intake.staff import StaffCreate, StaffUpdate
from spoc_intake.tokens import TokenFeedHeartbeat, create_token, revoke_token
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.db import utc_now
from spoc_platform.migrations import upgrade
from spoc_platform.token_projection import TokenProjection, hash_token
from spoc_routing.bootstrap import RoutingContainer
from spoc_routing.models import TOKENS
from tests.harness import service
from tests.support import create_postgres_database, drop_postgres_database, eventually

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "an-admin-token-long-enough-not-to-be-guessed"
# Well within the minute the issue promises; on the in-process bus it takes milliseconds.
DEADLINE = 10.0


@pytest.fixture
async def intake_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Intake's own database beside routing's (`database_url`), of the same kind."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}"
        return
    url = await create_postgres_database("spoc_test")
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@dataclass
class Desk:
    intake: IntakeContainer
    routing: RoutingContainer
    http: httpx.AsyncClient

    async def admin_status(self, token: str) -> int:
        answer = await self.http.get(
            "/admin/dead-letters", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status_code

    async def until_status(self, token: str, expected: int, message: str) -> None:
        async def answered() -> bool:
            return await self.admin_status(token) == expected

        await eventually(answered, timeout=DEADLINE, message=message)

    @property
    def heartbeat(self) -> TokenFeedHeartbeat:
        return next(w for w in self.intake.runtime.workers if isinstance(w, TokenFeedHeartbeat))


@asynccontextmanager
async def running_desk(
    routing_url: str,
    intake_url: str,
    before_start: Callable[[IntakeContainer], Awaitable[None]] | None = None,
) -> AsyncIterator[Desk]:
    """Intake and routing, each on its own database, started for real on one in-process bus."""
    bus = MemoryBus()
    await bus.connect()
    entries = SERVICES[ServiceName.intake], SERVICES[ServiceName.routing]
    upgrade(entries[0].migrations, intake_url)
    upgrade(entries[1].migrations, routing_url)
    intake: IntakeContainer = entries[0].bootstrap(
        entries[0].settings(database_url=intake_url, bus="memory"), bus=bus
    )
    routing: RoutingContainer = entries[1].bootstrap(
        entries[1].settings(database_url=routing_url, bus="memory", admin_token=ADMIN_TOKEN),
        bus=bus,
    )
    if before_start is not None:
        await before_start(intake)
    await routing.runtime.start()
    await intake.runtime.start()
    app = entries[1].create_app(routing.settings, routing, manage_runtime=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://routing"
        ) as http:
            yield Desk(intake, routing, http)
    finally:
        await intake.runtime.stop()
        await routing.runtime.stop()
        await bus.close()


async def test_an_admin_token_works_on_routing_until_revoked_then_stops_within_the_deadline(
    database_url: str, intake_url: str
) -> None:
    async with running_desk(database_url, intake_url) as desk:
        issued = await create_token(desk.intake.runtime.unit_of_work, role="admin", name="ops")
        await desk.until_status(issued.token, 200, "routing honours the new admin token")

        assert await revoke_token(desk.intake.runtime.unit_of_work, issued.id)
        await desk.until_status(issued.token, 401, "routing refuses the revoked token")
        # The configured token still works: only the revoked one is refused.
        assert await desk.admin_status(ADMIN_TOKEN) == 200


async def test_an_admin_accounts_token_stops_on_routing_when_the_account_is_demoted(
    database_url: str, intake_url: str
) -> None:
    async with running_desk(database_url, intake_url) as desk:
        staff = desk.intake.staff
        for id in ("ada", "max"):
            await staff.create(
                StaffCreate(id=id, name=id.title(), email=f"{id}@example.org", role="admin")
            )
        unit_of_work = desk.intake.runtime.unit_of_work
        issued = await create_token(unit_of_work, role="admin", name="max's", subject_id="max")
        await desk.until_status(issued.token, 200, "routing honours the admin's token")

        # Routing knows no accounts: the demotion reaches it as the token's revocation.
        await staff.update("max", StaffUpdate(role="agent"))
        await desk.until_status(issued.token, 401, "routing drops the demoted admin's token")


async def test_a_live_token_of_another_role_or_an_unknown_one_is_refused(
    database_url: str, intake_url: str
) -> None:
    async with running_desk(database_url, intake_url) as desk:
        agent = await create_token(desk.intake.runtime.unit_of_work, role="agent", name="ala")
        # A manager is refused too: dead letters are operators' work (spoc_platform.admin).
        manager = await create_token(desk.intake.runtime.unit_of_work, role="manager", name="m")
        await desk.until_status(agent.token, 403, "an agent's token is known and refused")
        await desk.until_status(manager.token, 403, "a manager's token is known and refused")
        assert await desk.admin_status("spoc_" + "x" * 43) == 401
        refused = await desk.http.get(
            "/admin/dead-letters", headers={"Authorization": f"Bearer {agent.token}"}
        )
        assert refused.json()["error"] == {
            "code": "forbidden",
            "message": "the admin API is for admins; this token's role is agent",
            "details": [],
        }


async def test_a_live_admin_token_counts_only_under_the_bearer_scheme(
    database_url: str, intake_url: str
) -> None:
    async with running_desk(database_url, intake_url) as desk:
        issued = await create_token(desk.intake.runtime.unit_of_work, role="admin", name="ops")
        await desk.until_status(issued.token, 200, "routing honours the new admin token")
        # RFC 6750: the scheme in any case, and one or more spaces before the token.
        spaced = await desk.http.get(
            "/admin/dead-letters", headers={"Authorization": f"bEARER   {issued.token}"}
        )
        assert spaced.status_code == 200, spaced.text
        for scheme in ("Basic", "Token", ""):
            answer = await desk.http.get(
                "/admin/dead-letters", headers={"Authorization": f"{scheme} {issued.token}"}
            )
            assert answer.status_code == 401, (scheme, answer.text)


async def test_no_token_works_on_routing_once_intakes_feed_is_stale(
    database_url: str, intake_url: str
) -> None:
    async with running_desk(database_url, intake_url) as desk:
        # A minute is the promise; two seconds here, so the test need not wait a minute.
        desk.routing.bearer_tokens = TokenProjection(
            desk.routing.runtime.engine, TOKENS, max_staleness=timedelta(seconds=2)
        )
        issued = await create_token(desk.intake.runtime.unit_of_work, role="admin", name="ops")

        async def accepted_while_beating() -> bool:
            await desk.heartbeat.beat()
            return await desk.admin_status(issued.token) == 200

        await eventually(accepted_while_beating, timeout=DEADLINE, message="token honoured")

        await desk.heartbeat.stop()  # intake's feed goes quiet; nothing is revoked
        await desk.until_status(issued.token, 401, "refused once the feed is stale")

        await eventually(accepted_while_beating, timeout=DEADLINE, message="honoured again")


async def test_tokens_made_before_routing_heard_of_them_are_announced_at_intakes_start(
    database_url: str, intake_url: str
) -> None:
    made: dict[str, Any] = {}

    async def tokens_from_before(intake: IntakeContainer) -> None:
        await intake.runtime.prepare()  # a first start, whose events never reached routing
        uow = intake.runtime.unit_of_work
        made["live"] = await create_token(uow, role="admin", name="old")
        made["revoked"] = await create_token(uow, role="admin", name="gone")
        await revoke_token(uow, made["revoked"].id)
        async with intake.runtime.engine.begin() as conn:
            await conn.execute(delete(INTAKE_MESSAGING.outbox))

    async with running_desk(database_url, intake_url, before_start=tokens_from_before) as desk:
        await desk.until_status(made["live"].token, 200, "the live token announced at start")
        assert await desk.admin_status(made["revoked"].token) == 401


def from_intake(event: Event) -> Envelope:
    return Envelope.wrap(event, source="intake", ticket_id=None, sequence=0)


async def test_sla_honours_the_same_tokens_from_the_same_events(database_url: str) -> None:
    token, token_id = "spoc_" + "s" * 43, uuid.uuid4()
    auth = {"Authorization": f"Bearer {token}"}
    async with service("sla", database_url, admin_token=ADMIN_TOKEN) as sla:
        app = SERVICES[ServiceName.sla].create_app(
            sla.container.settings, sla.container, manage_runtime=False
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sla"
        ) as http:
            await sla.deliver(from_intake(CredentialFeedHeartbeat(at=utc_now())))
            await sla.deliver(
                from_intake(
                    TokenIssued(
                        token_id=token_id,
                        token_hash=hash_token(token),
                        role="admin",
                        issued_at=utc_now(),
                    )
                )
            )
            assert (await http.get("/admin/dead-letters", headers=auth)).status_code == 200
            await sla.deliver(
                from_intake(
                    TokenRevoked(
                        token_id=token_id, token_hash=hash_token(token), revoked_at=utc_now()
                    )
                )
            )
            assert (await http.get("/admin/dead-letters", headers=auth)).status_code == 401
