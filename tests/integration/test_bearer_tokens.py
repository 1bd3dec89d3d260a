"""Bearer tokens: made by `spoc token`, shown once, kept hashed, dead the moment they are
revoked or expire, and never mistaken for an anonymous caller."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from spoc.cli import app as spoc
from spoc.services import SERVICES, ServiceName
from spoc_intake.api.deps import CurrentCaller
from spoc_intake.app import create_app
from spoc_intake.models import ApiToken
from spoc_intake.staff import StaffCreate
from spoc_intake.tokens import create_token, revoke_token
from spoc_platform.db import utc_now
from spoc_platform.migrations import upgrade
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration
TOKEN = re.compile(r"spoc_[A-Za-z0-9_-]{43}")


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)

    # Who the request is, as every route that depends on CurrentCaller sees it.
    @app.get("/whoami")
    async def whoami(caller: CurrentCaller) -> dict[str, Any]:
        return {
            "role": caller.role,
            "subject_id": caller.subject_id,
            "name": caller.name,
            "credential_id": caller.credential_id,
        }

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_integration_token_authenticates_as_itself_and_only_its_hash_is_kept(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    issued = await create_token(intake.runtime.unit_of_work, role="integration", name="monitoring")
    assert TOKEN.fullmatch(issued.token)

    answer = await client.get("/whoami", headers=bearer(issued.token))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "role": "integration",
        "subject_id": str(issued.id),
        "name": "monitoring",
        "credential_id": str(issued.id),
    }
    async with intake.runtime.engine.connect() as conn:
        dump = " ".join(str(v) for row in (await conn.execute(select(ApiToken))).all() for v in row)
    assert issued.token not in dump
    assert issued.token.removeprefix("spoc_") not in dump


async def test_a_staff_token_acts_as_the_account_it_names(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await intake.container.staff.create(
        StaffCreate(id="agent-ala", name="Ala Nowak", email="ala@example.org", role="agent")
    )
    issued = await create_token(
        intake.runtime.unit_of_work, role="agent", name="ala's script", subject_id="agent-ala"
    )
    answer = await client.get("/whoami", headers=bearer(issued.token))
    assert answer.json()["role"] == "agent"
    assert answer.json()["subject_id"] == "agent-ala"
    # The account's name, not the token's: the token acts as the person.
    assert answer.json()["name"] == "Ala Nowak"
    with pytest.raises(ValueError, match="no staff account 'nobody'"):
        await create_token(intake.runtime.unit_of_work, role="agent", name="x", subject_id="nobody")
    with pytest.raises(ValueError, match="integration token acts as itself"):
        await create_token(
            intake.runtime.unit_of_work, role="integration", name="x", subject_id="agent-ala"
        )
    with pytest.raises(ValueError, match="role"):
        await create_token(intake.runtime.unit_of_work, role="requester", name="x")


async def test_a_revoked_token_stops_working_at_once(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    issued = await create_token(intake.runtime.unit_of_work, role="admin", name="ops")
    assert (await client.get("/whoami", headers=bearer(issued.token))).status_code == 200

    assert await revoke_token(intake.runtime.unit_of_work, issued.id)
    refused = await client.get("/whoami", headers=bearer(issued.token))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # Revoking twice is no error; an unknown id is reported as such.
    assert await revoke_token(intake.runtime.unit_of_work, issued.id)
    assert not await revoke_token(intake.runtime.unit_of_work, uuid.uuid4())


async def test_an_expired_token_stops_working_at_once(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    engine = intake.runtime.engine
    issued = await create_token(
        intake.runtime.unit_of_work,
        role="integration",
        name="ci",
        expires_at=utc_now() + timedelta(hours=1),
    )
    assert (await client.get("/whoami", headers=bearer(issued.token))).status_code == 200
    async with engine.begin() as conn:
        await conn.execute(
            update(ApiToken)
            .where(ApiToken.id == issued.id)
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
    assert (await client.get("/whoami", headers=bearer(issued.token))).status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer spoc_" + "A" * 43,  # well-formed, unknown
        "Bearer not-a-token",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "spoc_" + "A" * 43,  # no scheme
    ],
)
async def test_a_malformed_or_unknown_credential_is_refused_not_served_as_anonymous(
    client: httpx.AsyncClient, authorization: str
) -> None:
    refused = await client.get("/whoami", headers={"Authorization": authorization})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert "WWW-Authenticate" in refused.headers


async def test_without_a_credential_the_caller_is_anonymous(client: httpx.AsyncClient) -> None:
    answer = await client.get("/whoami")
    assert answer.status_code == 200
    assert answer.json()["role"] is None


async def test_last_use_is_written_at_most_once_a_minute(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    engine = intake.runtime.engine
    issued = await create_token(intake.runtime.unit_of_work, role="integration", name="poller")

    async def last_used() -> Any:
        async with engine.connect() as conn:
            query = select(ApiToken.last_used_at).where(ApiToken.id == issued.id)
            return (await conn.execute(query)).scalar_one()

    assert await last_used() is None
    await client.get("/whoami", headers=bearer(issued.token))
    first = await last_used()
    assert first is not None
    await client.get("/whoami", headers=bearer(issued.token))
    assert await last_used() == first  # within the minute: no second write
    async with engine.begin() as conn:
        await conn.execute(
            update(ApiToken)
            .where(ApiToken.id == issued.id)
            .values(last_used_at=first - timedelta(minutes=2))
        )
    await client.get("/whoami", headers=bearer(issued.token))
    assert await last_used() > first - timedelta(seconds=1)


def test_the_command_creates_lists_and_revokes_tokens_and_prints_the_secret_once(
    tmp_path: Path,
) -> None:
    upgrade(
        SERVICES[ServiceName.intake].migrations, f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3"
    )
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]

    made = runner.invoke(
        spoc,
        ["token", "create", "--role", "integration", "--name", "crm", "--expires", "30d", *data],
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert TOKEN.fullmatch(secret)

    listed = runner.invoke(spoc, ["token", "list", *data])
    assert listed.exit_code == 0, listed.output
    assert "crm" in listed.stdout and "integration" in listed.stdout
    assert secret not in listed.output
    token_id = listed.stdout.splitlines()[1].split()[0]

    revoked = runner.invoke(spoc, ["token", "revoke", token_id, *data])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(spoc, ["token", "list", *data]).stdout.splitlines()[1]
    assert not again.rstrip().endswith("-")  # the revoked column has a time now
    assert runner.invoke(spoc, ["token", "revoke", "not-an-id", *data]).exit_code == 2
    missing = runner.invoke(spoc, ["token", "revoke", str(uuid.uuid4()), *data])
    assert missing.exit_code == 1
    # Both changes left intake's outbox with them: its relay tells routing and sla.
    with sqlite3.connect(tmp_path / "intake.sqlite3") as db:
        told = [row[0] for row in db.execute("SELECT event_type FROM outbox ORDER BY id")]
    assert told == ["credential.token_issued", "credential.token_revoked"]


def test_the_command_refuses_a_bad_role_or_expiry_before_touching_the_database(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    bad_role = runner.invoke(spoc, ["token", "create", "--role", "requester", "--name", "x", *data])
    assert bad_role.exit_code == 2 and "--role" in bad_role.output
    bad_expiry = runner.invoke(
        spoc, ["token", "create", "--role", "admin", "--name", "x", "--expires", "soon", *data]
    )
    assert bad_expiry.exit_code == 2 and "--expires" in bad_expiry.output


def test_the_command_refuses_a_subject_that_is_no_staff_account(tmp_path: Path) -> None:
    upgrade(
        SERVICES[ServiceName.intake].migrations, f"sqlite+aiosqlite:///{tmp_path}/intake.sqlite3"
    )
    data = ["--data-dir", str(tmp_path)]
    made = CliRunner().invoke(
        spoc,
        ["token", "create", "--role", "agent", "--name", "x", "--subject", "nobody", *data],
    )
    assert made.exit_code == 2
    assert "no staff account 'nobody'" in made.output
    assert not TOKEN.search(made.output)
    with sqlite3.connect(tmp_path / "intake.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM api_token").fetchone() == (0,)
