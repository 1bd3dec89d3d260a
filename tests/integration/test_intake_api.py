"""Intake's public API on SQLite and on the real PostgreSQL: the front door's promises."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import Message

from spoc_intake.app import create_app
from spoc_intake.bootstrap import bootstrap
from spoc_intake.models import MESSAGING, Ticket
from spoc_intake.service import TicketService
from spoc_intake.settings import IntakeSettings
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.db import create_engine
from spoc_platform.unit_of_work import UnitOfWorkFactory
from spoc_routing.app import create_app as create_routing_app
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url) as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


# Nothing listens on port 1: every connection is refused at once, as when PostgreSQL is down.
UNREACHABLE_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/spoc_intake"


@pytest.fixture
async def cut_off() -> AsyncIterator[FastAPI]:
    """Intake as deployed, started while its PostgreSQL is unreachable; its broker is up."""
    settings = IntakeSettings(database_url=UNREACHABLE_POSTGRES, bus="memory")
    bus = MemoryBus()
    await bus.connect()
    container = bootstrap(settings, bus=bus)
    try:
        yield create_app(settings, container, manage_runtime=False)
    finally:
        await container.runtime.engine.dispose()
        await bus.close()


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


def ticket(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(NEW_TICKET)
    body.update(changes)
    return body


async def test_a_valid_ticket_gets_a_tracking_number_a_key_and_one_event(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    first = await client.post("/api/v1/tickets", json=ticket())
    second = await client.post("/api/v1/tickets", json=ticket(subject="Another"))

    assert first.status_code == second.status_code == 201
    assert first.json()["number"] == "SD-000001" and second.json()["number"] == "SD-000002"
    assert first.headers["location"] == "/api/v1/tickets/SD-000001"
    assert len(first.json()["access_key"]) >= 32
    created = await intake.published("ticket.created")
    assert [e.data["number"] for e in created] == ["SD-000001", "SD-000002"]
    assert str(created[0].ticket_id) == first.json()["id"]


async def test_the_requester_sees_their_ticket_with_the_key_and_nothing_without_it(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/api/v1/tickets", json=ticket())).json()
    path = f"/api/v1/tickets/{created['number']}"

    own = await client.get(path, headers={"X-Access-Key": created["access_key"]})
    by_link = await client.get(path, params={"key": created["access_key"]})
    assert own.status_code == by_link.status_code == 200
    view = own.json()
    assert view["status"] == "new" and view["subject"] == NEW_TICKET["subject"]
    assert view["timeline"][0]["kind"] == "created"
    assert "email" not in view["requester"] and "access_key" not in view

    answers = [
        await client.get(path),
        await client.get(path, headers={"X-Access-Key": "guessed"}),
        await client.get("/api/v1/tickets/SD-999999", headers={"X-Access-Key": "guessed"}),
        await client.get("/api/v1/tickets/not-a-number"),
    ]
    assert {a.status_code for a in answers} == {404}
    assert {a.json()["error"]["code"] for a in answers} == {"ticket_not_found"}


async def test_one_requester_key_does_not_open_another_ticket(client: httpx.AsyncClient) -> None:
    mine = (await client.post("/api/v1/tickets", json=ticket())).json()
    theirs = (await client.post("/api/v1/tickets", json=ticket())).json()
    response = await client.get(
        f"/api/v1/tickets/{theirs['number']}", headers={"X-Access-Key": mine["access_key"]}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (ticket(subject=""), {"subject"}),
        (ticket(subject="x" * 201), {"subject"}),
        (ticket(type="rant"), {"type"}),
        (ticket(impact="huge"), {"impact"}),
        (ticket(requester={"name": "A", "email": "not-an-address"}), {"requester.email"}),
        (
            ticket(requester={"name": "A", "email": "a@example.org", "preferred_channel": "sms"}),
            {"requester"},
        ),
        (ticket(colour="red"), {"colour"}),
        (ticket(fields={"bad key!": 1}), {"fields.bad key!.[key]"}),
        (ticket(fields={f"f{i}": i for i in range(51)}), {"fields"}),
        ({"subject": "only"}, {"description", "requester", "type"}),
        (ticket(subject="nul \u0000 byte"), {"subject"}),
        (ticket(description="bell \u0007"), {"description"}),
        (ticket(requester={"name": "A\nB", "email": "a@example.org"}), {"requester.name"}),
        (ticket(fields={"device": ["a", "list"]}), {"fields.device"}),
        (ticket(fields={"count": 10**30}), {"fields.count"}),
        (ticket(fields={"note": "nul \u0000"}), {"fields.note"}),
        (ticket(fields={"note": "\udc00"}), {"fields.note"}),
        (ticket(requester={"name": "A", "email": "josé@example.org"}), {"requester.email"}),
    ],
    ids=[
        "empty subject",
        "long subject",
        "unknown type",
        "unknown impact",
        "bad e-mail",
        "sms without phone",
        "unknown field",
        "bad field name",
        "too many fields",
        "missing",
        "NUL in subject",
        "control character",
        "line break in a name",
        "list as field value",
        "number out of range",
        "NUL in field text",
        "lone surrogate in field text",
        "non-ASCII before the @",
    ],
)
async def test_bad_input_is_a_422_naming_each_bad_field(
    client: httpx.AsyncClient, intake: ServiceUnderTest, body: dict[str, Any], fields: set[str]
) -> None:
    # Sent as ASCII-escaped JSON, as any client may: a lone surrogate arrives as "\\udc00".
    response = await client.post(
        "/api/v1/tickets",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert {d["field"] for d in error["details"]} == fields
    assert await intake.published() == []


async def test_non_finite_numbers_and_overlong_numbers_are_422s(client: httpx.AsyncClient) -> None:
    infinite = await client.post(
        "/api/v1/tickets",
        content=b'{"subject": "s", "description": "d", "type": "incident",'
        b' "requester": {"name": "a", "email": "a@example.org"}, "fields": {"x": 1e400}}',
        headers={"content-type": "application/json"},
    )
    overlong = await client.get("/api/v1/tickets/SD-" + "9" * 5000)
    assert infinite.status_code == overlong.status_code == 422
    assert infinite.json()["error"]["details"][0]["field"] == "fields.x"
    assert overlong.json()["error"]["details"][0]["field"] == "path.number"


async def test_an_international_domain_is_kept_in_the_form_mail_servers_take(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    body = ticket(requester={"name": "Jörg", "email": "jorg@bücher.de"})
    assert (await client.post("/api/v1/tickets", json=body)).status_code == 201
    [created] = await intake.published("ticket.created")
    assert created.data["requester"]["email"] == "jorg@xn--bcher-kva.de"


@pytest.mark.parametrize(
    ("email", "status"),
    [
        ("ann@desk.test", 201),  # RFC 2606 keeps .test for testing: an address all the same
        ("root@intranet", 201),  # a dotless domain: well-formed, and the desk's to reach
        ("Ann <ann@example.org>", 201),
        ("ann@desk.localhost", 422),
        ("ann@desk.invalid", 422),
    ],
)
async def test_a_well_formed_address_is_accepted_and_a_special_use_name_refused(
    client: httpx.AsyncClient, email: str, status: int
) -> None:
    body = ticket(requester={"name": "Ann", "email": email})
    response = await client.post("/api/v1/tickets", json=body)
    assert response.status_code == status, response.json()


async def test_free_text_keeps_its_line_breaks(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    body = ticket(description="Line one\nLine two\twith a tab", fields={"steps": "1. a\n2. b"})
    assert (await client.post("/api/v1/tickets", json=body)).status_code == 201
    [created] = await intake.published("ticket.created")
    assert created.data["description"] == "Line one\nLine two\twith a tab"


async def test_a_body_that_is_not_json_is_a_422_that_names_no_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/tickets", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    [detail] = error["details"]
    assert detail["type"] == "json_invalid" and "field" not in detail
    assert "line 1 column 2" in detail["message"]


async def test_json_sent_without_a_content_type_opens_a_ticket(
    client: httpx.AsyncClient,
) -> None:
    # As requests.post(url, data=json.dumps(body)) sends it: no Content-Type at all.
    response = await client.post("/api/v1/tickets", content=json.dumps(ticket()).encode())
    assert response.status_code == 201


async def test_surrounding_whitespace_is_accepted_and_not_kept(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    subject = " " + "s" * 200 + "\t "  # 200 characters once stripped: the limit counts those
    body = ticket(
        subject=subject,
        requester={
            "name": " Ann ",
            "email": " ann@example.org ",
            "phone": " +48 600 700 800 ",
            "locale": " pl ",
            "preferred_channel": "sms",
        },
    )
    assert (await client.post("/api/v1/tickets", json=body)).status_code == 201
    async with intake.runtime.engine.connect() as conn:
        row = (await conn.execute(select(Ticket.__table__))).mappings().one()
    assert row["subject"] == "s" * 200
    assert (row["requester_name"], row["requester_email"]) == ("Ann", "ann@example.org")
    assert (row["requester_phone"], row["requester_locale"]) == ("+48 600 700 800", "pl")


async def test_an_oversized_body_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    # Over the limit, which holds the largest valid ticket (test_front_door): 1.5 MiB.
    limit = IntakeSettings.model_fields["max_body_bytes"].default
    huge = ticket(description="x" * limit)
    declared = await client.post("/api/v1/tickets", json=huge)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 8192 + 1):
            yield b" " * 8192

    streamed = await client.post(
        "/api/v1/tickets", content=chunks(), headers={"content-type": "application/json"}
    )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"


async def test_a_body_declared_too_large_is_refused_before_any_of_it_is_read(
    cut_off: FastAPI,
) -> None:
    limit = cut_off.state.container.settings.max_body_bytes
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b" " * (limit + 1), "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/tickets",
        "raw_path": b"/api/v1/tickets",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"intake"),
            (b"content-type", b"application/json"),
            (b"content-length", str(limit + 1).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("intake", 80),
    }
    await cut_off(scope, receive, send)

    assert reads == 0, "the body was read before the declared length was checked"
    start, body = sent
    assert start["status"] == 413
    assert json.loads(body["body"])["error"]["code"] == "body_too_large"


async def test_the_same_idempotency_key_and_body_return_the_same_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    headers = {"Idempotency-Key": "portal-form-7f3a"}
    first = await client.post("/api/v1/tickets", json=ticket(), headers=headers)
    again = await client.post("/api/v1/tickets", json=ticket(), headers=headers)

    assert first.status_code == again.status_code == 201
    # The same ticket, but not its access key: an anonymous caller who replays may be anyone
    # who learnt the key, and the requester has the access key by mail.
    assert again.json() == {**first.json(), "access_key": None}
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await intake.published("ticket.created")) == 1


async def test_the_same_idempotency_key_with_another_body_is_a_422(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    headers = {"Idempotency-Key": "portal-form-7f3a"}
    await client.post("/api/v1/tickets", json=ticket(), headers=headers)
    other = await client.post("/api/v1/tickets", json=ticket(subject="Else"), headers=headers)

    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(await intake.published("ticket.created")) == 1


async def test_concurrent_requests_with_one_key_create_one_ticket(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    headers = {"Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/tickets", json=ticket(), headers=headers) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["number"] for a in answers}) == 1
    async with intake.runtime.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(Ticket.__table__))).scalar()
    assert count == 1
    assert len(await intake.published("ticket.created")) == 1


async def test_a_bad_idempotency_key_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/tickets", json=ticket(), headers={"Idempotency-Key": "k" * 300}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "header.Idempotency-Key"


async def test_unknown_routes_and_methods_answer_in_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    wrong = await client.delete("/api/v1/tickets")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")


async def test_metrics_exist_at_zero_before_any_traffic(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    for series in (
        'spoc_events_published_total{outcome="ok",service="intake",type="ticket.created"}',
        'spoc_events_consumed_total{outcome="duplicate",service="intake",type="ticket.routed"}',
        'spoc_event_handler_duration_seconds_count{service="intake",type="sla.clock_started"}',
        'spoc_outbox_pending{service="intake"}',
        'spoc_outbox_oldest_pending_age_seconds{service="intake"}',
        'spoc_http_request_errors_total{kind="server",method="POST",route="/api/v1/tickets",'
        'service="intake"}',
        'spoc_intake_tickets_created_total{channel="email",type="complaint"}',
    ):
        assert series in text, series


async def test_requests_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/tickets/SD-000123")
    text = (await client.get("/metrics")).text
    assert (
        'spoc_http_requests_total{method="GET",route="/api/v1/tickets/{number}",'
        'service="intake",status="404"}'
    ) in text
    assert "SD-000123" not in text


async def test_intake_stays_ready_but_degraded_while_only_the_broker_is_down(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    """The outbox keeps new tickets while the broker is away: taking every intake pod out of
    rotation would refuse work the front door can safely take."""
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "bus": "ok"}

    await intake.bus.close()
    assert (await client.post("/api/v1/tickets", json=ticket())).status_code == 201
    degraded = await client.get("/readyz")
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    bus = degraded.json()["checks"]["bus"]
    assert bus.startswith("degraded: unreachable; 1 event(s) wait in the outbox"), bus


async def test_a_consuming_service_is_not_ready_without_its_broker(database_url: str) -> None:
    async with service("routing", database_url) as routing:
        app = create_routing_app(
            routing.container.settings, routing.container, manage_runtime=False
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://routing"
        ) as routing_client:
            assert (await routing_client.get("/readyz")).status_code == 200
            await routing.bus.close()
            not_ready = await routing_client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["bus"] == "unreachable"


async def test_a_database_outage_is_a_503_to_retry_not_a_500(
    client: httpx.AsyncClient, intake: ServiceUnderTest, database_url: str
) -> None:
    unreachable = (
        "sqlite+aiosqlite:////nonexistent/dir/intake.sqlite3"
        if database_url.startswith("sqlite")
        else "postgresql+asyncpg://postgres@127.0.0.1:1/spoc_intake"
    )
    broken = create_engine(unreachable)
    container = intake.container
    container.tickets = TicketService(
        UnitOfWorkFactory(broken, MESSAGING, "intake"), container.settings
    )
    try:
        response = await client.post("/api/v1/tickets", json=ticket())
    finally:
        await broken.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "2"


async def test_a_saturated_connection_pool_is_a_503_to_retry_not_a_500(
    client: httpx.AsyncClient, intake: ServiceUnderTest, database_url: str
) -> None:
    """Every connection busy for longer than a request may wait for one: the caller is told
    to come back, and nothing is created."""
    saturated = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    container = intake.container
    container.tickets = TicketService(
        UnitOfWorkFactory(saturated, MESSAGING, "intake"), container.settings
    )
    try:
        async with saturated.connect():  # the pool's only connection, held by someone else
            response = await client.post("/api/v1/tickets", json=ticket())
    finally:
        await saturated.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "2"
    assert await intake.published() == []


async def test_a_read_during_a_database_outage_is_a_503_to_retry_not_a_500(
    cut_off: FastAPI,
) -> None:
    async with client_of(cut_off) as http:
        response = await http.get(
            "/api/v1/tickets/SD-000001", headers={"X-Access-Key": "secret-key-123"}
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["retry-after"] == "2"


async def test_intake_is_not_ready_while_its_database_is_unreachable(cut_off: FastAPI) -> None:
    """Even the front door, which stays ready without its broker, cannot keep a ticket
    without its database: it must be taken out of rotation."""
    async with client_of(cut_off) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    checks = response.json()["checks"]
    assert checks["database"].startswith("unreachable"), checks
    assert checks["bus"] == "ok"


async def test_expired_idempotency_answers_and_their_keys_are_forgotten(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    from sqlalchemy import update

    from spoc_intake.models import IdempotencyAnswer

    headers = {"Idempotency-Key": "yesterday"}
    first = await client.post("/api/v1/tickets", json=ticket(), headers=headers)
    table = IdempotencyAnswer.__table__
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(update(table).values(created_at=datetime(2000, 1, 1, tzinfo=UTC)))

    await intake.runtime.housekeep()

    async with intake.runtime.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(table))).scalar() == 0
    again = await client.post("/api/v1/tickets", json=ticket(), headers=headers)
    assert again.json()["number"] != first.json()["number"]
