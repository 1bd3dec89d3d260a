"""The staff admin API, `spoc staff` and the desk file's staff list, on SQLite and PostgreSQL:
who may manage accounts, what is refused, and the staff.updated each change publishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from spoc.cli import app as spoc
from spoc_contracts import StaffUpdated
from spoc_intake.app import create_app
from spoc_intake.bootstrap import bootstrap
from spoc_intake.callers import Caller
from spoc_intake.desk import IntakeDesk
from spoc_intake.settings import IntakeSettings
from spoc_intake.staff import AvailabilitySet, PasswordSet, StaffCreate, StaffUpdate
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.desk_config import DeskConfigError, load_section
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration

CHEAP_HASHING = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}
PASSWORD = "correct horse battery staple"
SAME_SITE = {"Origin": "http://intake"}
NEW_AGENT = {
    "id": "lena",
    "name": "Lena Berg",
    "email": "Lena.Berg@example.org",
    "role": "agent",
    "groups": ["service-desk", "network"],
}


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, **CHEAP_HASHING) as running:
        for id, role in (("ada", "admin"), ("sara", "agent")):
            await running.container.staff.create(
                StaffCreate(
                    id=id, name=id.title(), email=f"{id}@example.org", role=role, password=PASSWORD
                )
            )
        yield running


def client_of(intake: ServiceUnderTest) -> httpx.AsyncClient:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake", headers=SAME_SITE
    )


async def signed_in(intake: ServiceUnderTest, email: str) -> httpx.AsyncClient:
    http = client_of(intake)
    answer = await http.post("/api/v1/session", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return http


@pytest.fixture
async def admin(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    http = await signed_in(intake, "ada@example.org")
    try:
        yield http
    finally:
        await http.aclose()


@pytest.fixture
async def agent(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    http = await signed_in(intake, "sara@example.org")
    try:
        yield http
    finally:
        await http.aclose()


async def staff_events(intake: ServiceUnderTest) -> list[StaffUpdated]:
    return [StaffUpdated.model_validate(e.data) for e in await intake.published("staff.updated")]


async def test_an_admin_creates_an_account_and_routing_is_told(
    admin: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    before = len(await staff_events(intake))
    created = await admin.post("/api/v1/staff", json=NEW_AGENT)

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == "lena" and body["email"] == "Lena.Berg@example.org"
    assert body["active"] is True and body["has_password"] is False
    [event] = (await staff_events(intake))[before:]
    assert (event.id, event.name, event.role, event.active) == ("lena", "Lena Berg", "agent", True)
    assert event.groups == ("service-desk", "network")
    [envelope] = (await intake.published("staff.updated"))[before:]
    assert envelope.ticket_id is None and envelope.source == "intake"

    listed = await admin.get("/api/v1/staff")
    assert [s["id"] for s in listed.json()["items"]] == ["ada", "lena", "sara"]


async def test_a_change_is_published_with_the_account_as_it_now_is(
    admin: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    changed = await admin.patch(
        "/api/v1/staff/sara", json={"name": "Sara Ahmadi", "groups": ["network"], "active": False}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["active"] is False and changed.json()["groups"] == ["network"]
    event = (await staff_events(intake))[-1]
    assert (event.id, event.name, event.groups, event.active) == (
        "sara",
        "Sara Ahmadi",
        ("network",),
        False,
    )
    # Inactive: she cannot sign in any more.
    async with client_of(intake) as http:
        refused = await http.post(
            "/api/v1/session", json={"email": "sara@example.org", "password": PASSWORD}
        )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/staff", {**NEW_AGENT, "is_superuser": True}),
        ("patch", "/api/v1/staff/sara", {"password_hash": "x"}),
        ("put", "/api/v1/staff/sara/password", {"password": PASSWORD + "?", "role": "admin"}),
        ("post", "/api/v1/staff", {**NEW_AGENT, "role": "integration"}),
        ("post", "/api/v1/staff", {**NEW_AGENT, "role": "requester"}),
        ("post", "/api/v1/staff", {**NEW_AGENT, "id": "Lena Berg"}),
        ("post", "/api/v1/staff", {**NEW_AGENT, "email": "lena"}),
        # PostgreSQL cannot store a NUL: refused with the other control characters.
        ("post", "/api/v1/staff", {**NEW_AGENT, "name": "Lena\u0000Berg"}),
        ("post", "/api/v1/staff", {**NEW_AGENT, "email": "lena\u0000@example.org"}),
        ("patch", "/api/v1/staff/sara", {"name": "Sara\u0000"}),
        ("patch", "/api/v1/staff/sara", {"name": "Sara\nAhmadi"}),
        ("patch", "/api/v1/staff/sara", {"email": "sara@exam\u0000ple.org"}),
        # A boolean is true or false, as the document says, not a number that looks like one.
        ("post", "/api/v1/staff", {**NEW_AGENT, "active": 0}),
        ("patch", "/api/v1/staff/sara", {"active": 1}),
        ("patch", "/api/v1/staff/sara", {"availability": "busy"}),
        ("put", "/api/v1/staff/sara/availability", {"availability": "busy"}),
        ("put", "/api/v1/staff/sara/availability", {"availability": "Away"}),
        ("put", "/api/v1/staff/sara/availability", {"availability": None}),
        ("put", "/api/v1/staff/sara/availability", {}),
        ("put", "/api/v1/staff/sara/availability", {"availability": "off", "active": False}),
    ],
)
async def test_unknown_fields_and_non_staff_roles_are_a_422(
    admin: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]
) -> None:
    answer = await admin.request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"


async def test_ids_and_addresses_are_unique_whatever_the_case(admin: httpx.AsyncClient) -> None:
    assert (await admin.post("/api/v1/staff", json=NEW_AGENT)).status_code == 201
    same_id = await admin.post("/api/v1/staff", json={**NEW_AGENT, "email": "l2@example.org"})
    assert same_id.status_code == 409 and same_id.json()["error"]["code"] == "staff_exists"
    same_email = await admin.post(
        "/api/v1/staff", json={**NEW_AGENT, "id": "lena2", "email": "LENA.BERG@example.org"}
    )
    assert same_email.status_code == 409 and same_email.json()["error"]["code"] == "email_taken"
    taken = await admin.patch("/api/v1/staff/sara", json={"email": "Ada@Example.org"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "email_taken"
    missing = await admin.patch("/api/v1/staff/nobody", json={"name": "X"})
    assert missing.status_code == 404


@pytest.mark.parametrize("password", ["short pass", "password1234", "example-only-pass-word"])
async def test_weak_passwords_are_refused(admin: httpx.AsyncClient, password: str) -> None:
    created = await admin.post("/api/v1/staff", json={**NEW_AGENT, "password": password})
    assert created.status_code == 422
    assert created.json()["error"]["code"] == "weak_password"
    set_ = await admin.put("/api/v1/staff/sara/password", json={"password": password})
    assert set_.status_code == 422 and set_.json()["error"]["code"] == "weak_password"


async def test_only_admins_manage_staff(agent: httpx.AsyncClient, intake: ServiceUnderTest) -> None:
    async with client_of(intake) as anonymous:
        unknown = await anonymous.get("/api/v1/staff")
        assert unknown.status_code == 401
        # No or bad credentials: the same code as the ticket routes and bearer tokens give.
        assert unknown.json()["error"]["code"] == "unauthenticated"
        assert (await anonymous.post("/api/v1/staff", json=NEW_AGENT)).status_code == 401
        assert (
            await anonymous.put("/api/v1/staff/sara/password", json={"password": PASSWORD + "!"})
        ).status_code == 401
    assert (await agent.get("/api/v1/staff")).status_code == 403
    assert (await agent.post("/api/v1/staff", json=NEW_AGENT)).status_code == 403
    assert (await agent.patch("/api/v1/staff/sara", json={"role": "admin"})).status_code == 403
    other = await agent.put("/api/v1/staff/ada/password", json={"password": "taken over now!"})
    assert other.status_code == 403


async def test_a_member_changes_their_own_password_only_with_the_current_one(
    agent: httpx.AsyncClient,
) -> None:
    new = {"password": "my own new passphrase"}
    missing = await agent.put("/api/v1/staff/sara/password", json=new)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "current_password_required"
    wrong = await agent.put(
        "/api/v1/staff/sara/password", json={**new, "current_password": "not my password"}
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    right = await agent.put(
        "/api/v1/staff/sara/password", json={**new, "current_password": PASSWORD}
    )
    assert right.status_code == 204


async def test_a_member_sets_their_own_availability_and_routing_is_told(
    agent: httpx.AsyncClient, admin: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    before = len(await staff_events(intake))
    away = await agent.put("/api/v1/staff/sara/availability", json={"availability": "away"})

    assert away.status_code == 200, away.text
    assert away.json()["id"] == "sara" and away.json()["availability"] == "away"
    [event] = (await staff_events(intake))[before:]
    assert (event.id, event.availability, event.active) == ("sara", "away", True)
    listed = {
        s["id"]: s["availability"] for s in (await admin.get("/api/v1/staff")).json()["items"]
    }
    assert listed == {"ada": "available", "sara": "away"}


async def test_the_same_availability_again_answers_and_publishes_nothing(
    agent: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    before = len(await staff_events(intake))
    for _ in range(2):
        answer = await agent.put("/api/v1/staff/sara/availability", json={"availability": "off"})
        assert answer.status_code == 200 and answer.json()["availability"] == "off"
    assert [e.availability for e in (await staff_events(intake))[before:]] == ["off"]
    # Two requests at once for one value: one change, one event.
    both = await asyncio.gather(
        *(
            agent.put("/api/v1/staff/sara/availability", json={"availability": "away"})
            for _ in range(2)
        )
    )
    assert [a.status_code for a in both] == [200, 200]
    assert [e.availability for e in (await staff_events(intake))[before:]] == ["off", "away"]


async def test_an_admin_sets_anyones_availability_and_nobody_else_does(
    admin: httpx.AsyncClient, agent: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    off = await admin.put("/api/v1/staff/sara/availability", json={"availability": "off"})
    assert off.status_code == 200 and off.json()["availability"] == "off"
    assert (await staff_events(intake))[-1].availability == "off"
    patched = await admin.patch("/api/v1/staff/sara", json={"availability": "available"})
    assert patched.status_code == 200 and patched.json()["availability"] == "available"
    assert (await staff_events(intake))[-1].availability == "available"

    before = len(await staff_events(intake))
    other = await agent.put("/api/v1/staff/ada/availability", json={"availability": "off"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    # Not even whether the account exists, to someone who may not set it.
    nobody = await agent.put("/api/v1/staff/nobody/availability", json={"availability": "off"})
    assert nobody.status_code == 403 and nobody.json()["error"]["code"] == "forbidden"
    unknown = await admin.put("/api/v1/staff/nobody/availability", json={"availability": "off"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "staff_not_found"
    async with client_of(intake) as anonymous:
        refused = await anonymous.put(
            "/api/v1/staff/sara/availability", json={"availability": "away"}
        )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert len(await staff_events(intake)) == before
    assert (await intake.container.staff.get("ada")).availability == "available"


async def test_a_session_sets_an_availability_only_from_the_desks_own_pages(
    agent: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    path, body = "/api/v1/staff/sara/availability", {"availability": "off"}
    # The session cookie without the desk's Origin: what another site's page can send.
    del agent.headers["Origin"]
    for origin in (None, "https://elsewhere.example"):
        headers = {"Origin": origin} if origin else {}
        refused = await agent.put(path, json=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "cross_site_request"
    assert (await intake.container.staff.get("sara")).availability == "available"


async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(
    admin: httpx.AsyncClient,
) -> None:
    for change in ({"role": "manager"}, {"active": False}):
        refused = await admin.patch("/api/v1/staff/ada", json=change)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "last_admin"
    assert (await admin.patch("/api/v1/staff/sara", json={"role": "admin"})).status_code == 200
    assert (await admin.patch("/api/v1/staff/ada", json={"role": "manager"})).status_code == 200


async def test_no_intake_route_documents_a_401_code_other_than_unauthenticated(
    admin: httpx.AsyncClient,
) -> None:
    document = (await admin.get("/openapi.json")).json()
    refusals = {
        (path, method): operation["responses"]["401"]["description"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        # /metrics and the other operator endpoints (the platform's) too: one word for 401.
        if "401" in operation.get("responses", {})
    }
    assert ("/api/v1/me", "get") in refusals and ("/api/v1/staff", "get") in refusals
    assert any(not path.startswith("/api/") for path, _ in refusals)
    for where, description in refusals.items():
        assert "unauthorized" not in description, where
    assert "`unauthenticated`" in refusals[("/api/v1/me", "get")]
    assert "`unauthenticated`" in refusals[("/api/v1/staff/{staff_id}", "patch")]


async def test_two_admins_demoted_at_once_leave_one_admin(
    admin: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    # Each demotion counts the other admins; without locking them, both would count one and
    # both go through, leaving the desk without an admin.
    for attempt in range(3):
        other = f"bea{attempt}"
        created = await admin.post(
            "/api/v1/staff",
            json={"id": other, "name": "Bea", "email": f"{other}@example.org", "role": "admin"},
        )
        assert created.status_code == 201, created.text
        answers = await asyncio.gather(
            admin.patch(f"/api/v1/staff/{other}", json={"role": "agent"}),
            admin.patch("/api/v1/staff/ada", json={"active": False}),
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409], [a.text for a in answers]
        admins = [p for p in await intake.container.staff.list() if p.role == "admin" and p.active]
        assert len(admins) == 1
        if admins[0].id != "ada":
            return  # ada is no admin any more: her session cannot start another round


async def test_the_desk_files_staff_are_synced_at_start_without_touching_passwords(
    database_url: str, tmp_path: Path
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text(
        "intake:\n"
        "  staff:\n"
        "    - {id: sara, name: Sara A, email: sara@example.org, role: agent,"
        " groups: [service-desk]}\n"
        "    - {id: ada, name: Ada, email: ada@example.org, role: admin}\n"
    )
    settings = {**CHEAP_HASHING, "desk_config": desk}
    async with service("intake", database_url, **settings) as first:
        assert {e.id for e in await staff_events(first)} == {"sara", "ada"}
        await first.container.staff.set_password(
            "sara", PasswordSet(password=PASSWORD), caller=Caller(role="admin")
        )
        await first.container.staff.update("sara", StaffUpdate(active=False))
        await first.container.staff.set_availability(
            "sara", AvailabilitySet(availability="off"), caller=Caller(role="admin")
        )
        published = len(await staff_events(first))

    desk.write_text(desk.read_text().replace("Sara A,", "Sara Ahmadi,"))
    async with service("intake", database_url, **settings) as second:
        events = (await staff_events(second))[published:]
        # Only the changed person is published again; the deactivation stands.
        assert [(e.id, e.name, e.availability) for e in events] == [("sara", "Sara Ahmadi", "off")]
        sara = await second.container.staff.get("sara")
        assert sara.has_password and sara.name == "Sara Ahmadi"
        # Neither is the desk file's to say: a restart puts nobody back on shift.
        assert sara.active is False and sara.availability == "off"


def test_the_first_admin_is_made_on_the_command_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("SPOC_INTAKE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SPOC_INTAKE_PASSWORD_MEMORY_KIB", "8192")
    monkeypatch.setenv("SPOC_INTAKE_PASSWORD_TIME_COST", "1")
    assert runner.invoke(spoc, ["migrate", "intake"]).exit_code == 0

    made = runner.invoke(
        spoc,
        [
            *("staff", "create", "--id", "ada", "--name", "Ada L", "--email", "ada@example.org"),
            *("--role", "admin", "--group", "service-desk", "--group", "network"),
        ],
    )
    assert made.exit_code == 0, made.output
    weak = runner.invoke(spoc, ["staff", "set-password", "ada", "--password-stdin"], "admin\n")
    assert weak.exit_code == 1 and "at least 12" in weak.output
    prompted = runner.invoke(spoc, ["staff", "set-password", "ada"], f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output

    listed = runner.invoke(spoc, ["staff", "list"])
    assert listed.exit_code == 0
    assert listed.output.split("\t")[:3] == ["ada", "admin", "active"]
    assert "service-desk,network" in listed.output
    again = runner.invoke(
        spoc,
        [
            *("staff", "create", "--id", "ada", "--name", "A", "--email", "x@example.org"),
            *("--role", "agent"),
        ],
    )
    assert again.exit_code == 1 and "exists" in again.output


def test_an_operator_sets_an_availability_on_the_command_line(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("SPOC_INTAKE_DATABASE_URL", sqlite_url)
    assert runner.invoke(spoc, ["migrate", "intake"]).exit_code == 0
    made = runner.invoke(
        spoc,
        [
            *("staff", "create", "--id", "sara", "--name", "Sara", "--email", "s@example.org"),
            *("--role", "agent", "--availability", "off"),
        ],
    )
    assert made.exit_code == 0, made.output
    assert (
        runner.invoke(spoc, ["staff", "list"]).output.split("\t")[2] == "active, off, no password"
    )

    set_ = runner.invoke(spoc, ["staff", "set-availability", "sara", "available"])
    assert set_.exit_code == 0 and set_.output.strip() == "sara is available"
    assert runner.invoke(spoc, ["staff", "list"]).output.split("\t")[2] == "active, no password"
    assert runner.invoke(spoc, ["staff", "set-availability", "sara", "busy"]).exit_code == 2
    missing = runner.invoke(spoc, ["staff", "set-availability", "nobody", "off"])
    assert missing.exit_code == 1 and "no staff account 'nobody'" in missing.output


async def test_an_empty_change_publishes_nothing_and_groups_are_kept_once(
    admin: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    before = len(await staff_events(intake))
    unchanged = await admin.patch("/api/v1/staff/sara", json={})
    assert unchanged.status_code == 200 and unchanged.json()["id"] == "sara"
    assert len(await staff_events(intake)) == before

    twice = await admin.patch("/api/v1/staff/sara", json={"groups": ["network", "a", "network"]})
    assert twice.json()["groups"] == ["network", "a"]
    assert (await staff_events(intake))[-1].groups == ("network", "a")


@pytest.mark.parametrize(
    "staff",
    [
        # One address twice, whatever the case.
        "    - {id: a, name: A, email: a@example.org}\n"
        "    - {id: b, name: B, email: A@EXAMPLE.org}\n",
        "    - {id: a, name: A, email: a@example.org, role: integration}\n",
        "    - {id: a, name: A, email: a@example.org, password: hunter2hunter2}\n",
    ],
)
def test_a_desk_file_with_a_wrong_staff_list_is_refused_at_start(
    tmp_path: Path, staff: str
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text("intake:\n  staff:\n" + staff)
    with pytest.raises(DeskConfigError, match="section 'intake' is invalid"):
        load_section(desk, "intake", IntakeDesk)


async def test_an_unreachable_database_does_not_stop_intake_starting_over_the_staff_list(
    tmp_path: Path,
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text("intake:\n  staff:\n    - {id: a, name: A, email: a@example.org}\n")
    settings = IntakeSettings(
        # Nothing listens on port 1: refused at once, as when PostgreSQL is down.
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/spoc_intake",
        bus="memory",
        desk_config=desk,
    )
    container = bootstrap(settings, bus=MemoryBus())
    try:
        await container.runtime.prepare()  # logs and goes on
    finally:
        await container.runtime.engine.dispose()
