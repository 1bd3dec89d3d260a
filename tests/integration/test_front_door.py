"""The front door under abuse (D19): rate limits per client and per recipient address, the block
list and their metrics, on anonymous ticket creation, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.types import Message

from spoc_intake.app import create_app
from spoc_intake.front_door import FrontDoor
from spoc_intake.settings import IntakeSettings
from spoc_platform.web import ApiError, create_service_app
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration

Clients = Callable[[str], httpx.AsyncClient]


@asynccontextmanager
async def front_door(
    database_url: str, **settings: Any
) -> AsyncIterator[tuple[ServiceUnderTest, Clients]]:
    """Intake, and HTTP clients for it each seen coming from the address given."""
    settings.setdefault("trusted_networks", "")
    async with service("intake", database_url, **settings) as intake:
        app = create_app(intake.container.settings, intake.container, manage_runtime=False)
        opened: list[httpx.AsyncClient] = []

        def client_from(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            opened.append(httpx.AsyncClient(transport=transport, base_url="http://intake"))
            return opened[-1]

        try:
            yield intake, client_from
        finally:
            for client in opened:
                await client.aclose()


def ticket_for(email: str) -> dict[str, Any]:
    body = copy.deepcopy(NEW_TICKET)
    body["requester"]["email"] = email
    return body


def refusals(action: str, scope: str) -> float:
    value = REGISTRY.get_sample_value(
        "spoc_intake_front_door_refusals_total", {"action": action, "scope": scope}
    )
    assert value is not None, "the series exists from the start"
    return value


async def test_a_client_over_its_budget_gets_429_with_retry_after_and_others_are_served(
    database_url: str,
) -> None:
    async with front_door(database_url, rate_limit_per_client="3/minute") as (intake, client):
        flooder, neighbour = client("198.51.100.7"), client("198.51.100.8")
        before = refusals("create", "client")
        answers = [
            await flooder.post("/api/v1/tickets", json=ticket_for(f"victim{i}@example.org"))
            for i in range(4)
        ]
        served = await neighbour.post("/api/v1/tickets", json=ticket_for("ann@example.org"))

        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert served.status_code == 201
        assert refusals("create", "client") == before + 1
        # The refused request opened nothing and mailed no one.
        assert len(await intake.published("ticket.created")) == 4


async def test_one_recipient_is_mailed_at_most_its_budget_whoever_asks(
    database_url: str,
) -> None:
    async with front_door(
        database_url, rate_limit_per_client="100/minute", rate_limit_per_recipient="2/minute"
    ) as (intake, client):
        before = refusals("create", "recipient")
        answers = [
            await client(f"198.51.100.{10 + i}").post(
                "/api/v1/tickets", json=ticket_for("victim@example.org")
            )
            for i in range(3)
        ]
        # The address is compared as mail servers would: case does not make a new one.
        shouted = await client("198.51.100.20").post(
            "/api/v1/tickets", json=ticket_for("VICTIM@example.org")
        )
        other = await client("198.51.100.21").post(
            "/api/v1/tickets", json=ticket_for("someone.else@example.org")
        )

        assert [a.status_code for a in answers] == [201, 201, 429]
        assert "retry-after" in answers[-1].headers
        assert shouted.status_code == 429
        assert other.status_code == 201
        assert refusals("create", "recipient") == before + 2
        assert len(await intake.published("ticket.created")) == 3


async def test_a_refused_request_spends_none_of_the_clients_budget(database_url: str) -> None:
    async with front_door(
        database_url, rate_limit_per_client="3/minute", rate_limit_per_recipient="1/minute"
    ) as (_, client):
        http = client("198.51.100.30")
        first = await http.post("/api/v1/tickets", json=ticket_for("ann@example.org"))
        refused = await http.post("/api/v1/tickets", json=ticket_for("ann@example.org"))
        rest = [
            await http.post("/api/v1/tickets", json=ticket_for(f"b{i}@example.org"))
            for i in range(3)
        ]

    assert (first.status_code, refused.status_code) == (201, 429)
    assert [a.status_code for a in rest] == [201, 201, 429]


async def test_an_ipv6_client_has_one_budget_for_its_whole_64(database_url: str) -> None:
    async with front_door(database_url, rate_limit_per_client="2/minute") as (_, client):
        same_subscriber = [client("2001:db8:0:7::1"), client("2001:db8:0:7::beef")]
        answers = [
            await http.post("/api/v1/tickets", json=ticket_for(f"v{i}@example.org"))
            for i, http in enumerate([*same_subscriber, same_subscriber[0]])
        ]
        next_door = await client("2001:db8:0:8::1").post(
            "/api/v1/tickets", json=ticket_for("w@example.org")
        )

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert next_door.status_code == 201


async def test_trusted_networks_pass_the_rate_limits(database_url: str) -> None:
    async with front_door(
        database_url, rate_limit_per_client="1/minute", trusted_networks="10.0.0.0/8"
    ) as (_, client):
        inside = [
            await client("10.1.2.3").post("/api/v1/tickets", json=ticket_for(f"i{i}@example.org"))
            for i in range(3)
        ]
    assert [a.status_code for a in inside] == [201, 201, 201]


async def test_blocked_addresses_domains_and_networks_get_403_and_no_ticket(
    database_url: str,
) -> None:
    async with front_door(
        database_url,
        blocked_senders="spam@example.org, @junk.example",
        blocked_networks="192.0.2.0/24",
    ) as (intake, client):
        before = refusals("create", "blocked_recipient"), refusals("create", "blocked_client")
        http = client("198.51.100.40")
        address = await http.post("/api/v1/tickets", json=ticket_for("Spam@Example.org"))
        subdomain = await http.post("/api/v1/tickets", json=ticket_for("x@mail.junk.example"))
        network = await client("192.0.2.99").post(
            "/api/v1/tickets", json=ticket_for("ann@example.org")
        )
        unblocked = await http.post("/api/v1/tickets", json=ticket_for("ham@example.org"))

        assert [address.status_code, subdomain.status_code, network.status_code] == [403] * 3
        assert {a.json()["error"]["code"] for a in (address, subdomain, network)} == {"blocked"}
        assert address.json()["error"]["details"][0]["field"] == "requester.email"
        assert unblocked.status_code == 201
        assert refusals("create", "blocked_recipient") == before[0] + 2
        assert refusals("create", "blocked_client") == before[1] + 1
        assert len(await intake.published("ticket.created")) == 1


async def test_a_sign_in_link_to_a_blocked_address_is_accepted_silently_and_spends_nothing(
    sqlite_url: str,
) -> None:
    settings = IntakeSettings(
        database_url=sqlite_url,
        blocked_senders="junk.example",
        rate_limit_per_client="1/minute",
        trusted_networks="",
    )
    door = FrontDoor(settings)
    admitted = await door.admit("sign_in_link", client="198.51.100.50", recipient="a@junk.example")
    assert admitted is False
    # Nothing was spent: the client's one request this minute is still there.
    assert await door.admit("sign_in_link", client="198.51.100.50", recipient="a@ok.example")
    with pytest.raises(ApiError) as refused:
        await door.admit("reply", client="198.51.100.50", recipient="b@ok.example")
    assert refused.value.status == 429


def test_loopback_is_trusted_in_development_and_nothing_in_production(sqlite_url: str) -> None:
    from spoc_platform.sealing import generate_key_pair

    development = FrontDoor(IntakeSettings(database_url=sqlite_url))
    production = FrontDoor(
        IntakeSettings(
            database_url=sqlite_url,
            environment="production",
            bus="memory",
            access_key_recipient=generate_key_pair().recipient,
        )
    )
    assert development.trusts("127.0.0.1") and development.trusts("::1")
    assert development.trusts("testclient") and development.trusts(None)
    assert not development.trusts("198.51.100.1")
    assert not production.trusts("127.0.0.1") and not production.trusts(None)
    configured = FrontDoor(IntakeSettings(database_url=sqlite_url, trusted_networks="10.0.0.0/8"))
    assert configured.trusts("10.9.8.7")
    assert not configured.trusts("127.0.0.1") and not configured.trusts("testclient")


@pytest.mark.parametrize(
    "setting", [{"rate_limit_per_client": "lots"}, {"blocked_networks": "10.0.0.0/99"}]
)
def test_unreadable_front_door_settings_are_refused_at_start(
    sqlite_url: str, setting: dict[str, str]
) -> None:
    with pytest.raises(ValidationError) as error:
        IntakeSettings(database_url=sqlite_url, **setting)
    assert next(iter(setting)) in str(error.value)


# --- Small correctness points found by probing the front door ----------------------------


@pytest.mark.parametrize("channel", ["phone", "email"])
async def test_an_anonymous_caller_cannot_claim_the_desks_own_channels(
    database_url: str, channel: str
) -> None:
    async with front_door(database_url) as (intake, client):
        http = client("198.51.100.60")
        claimed = await http.post("/api/v1/tickets", json={**NEW_TICKET, "channel": channel})
        portal = await http.post("/api/v1/tickets", json={**NEW_TICKET, "channel": "portal"})

        assert claimed.status_code == 422
        error = claimed.json()["error"]
        assert error["code"] == "validation_error"
        assert [d["field"] for d in error["details"]] == ["channel"]
        assert portal.status_code == 201
        assert len(await intake.published("ticket.created")) == 1


async def test_an_anonymous_idempotency_key_is_scoped_to_the_requesters_address(
    database_url: str,
) -> None:
    async with front_door(database_url) as (intake, client):
        headers = {"Idempotency-Key": "form-1"}
        ann = await client("198.51.100.61").post(
            "/api/v1/tickets", json=ticket_for("ann@example.org"), headers=headers
        )
        # A stranger's request under the same key is their own: neither Ann's answer nor a 422.
        bob = await client("198.51.100.62").post(
            "/api/v1/tickets", json=ticket_for("bob@example.org"), headers=headers
        )
        # Whoever replays Ann's request learns the number, never the access key.
        replay = await client("198.51.100.63").post(
            "/api/v1/tickets", json=ticket_for("ann@example.org"), headers=headers
        )

        assert ann.status_code == bob.status_code == replay.status_code == 201
        assert bob.json()["number"] != ann.json()["number"]
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["number"] == ann.json()["number"]
        assert replay.json()["access_key"] is None
        assert ann.json()["access_key"] not in replay.text
        assert len(await intake.published("ticket.created")) == 2


async def test_a_credentials_idempotency_key_is_its_own_and_replays_the_whole_answer(
    sqlite_url: str,
) -> None:
    from spoc_intake.callers import Caller
    from spoc_intake.schemas import TicketCreate

    data = TicketCreate.model_validate(NEW_TICKET)
    one = Caller(role="integration", subject_id="t1", credential_id="token-1")
    other = Caller(role="integration", subject_id="t2", credential_id="token-2")
    async with service("intake", sqlite_url) as intake:
        tickets = intake.container.tickets
        first = await tickets.create(data, idempotency_key="k", caller=one)
        again = await tickets.create(data, idempotency_key="k", caller=one)
        theirs = await tickets.create(data, idempotency_key="k", caller=other)
        anonymous = await tickets.create(data, idempotency_key="k", caller=Caller(role=None))

    assert again.replayed and again.body == first.body and again.body["access_key"]
    assert not theirs.replayed and theirs.body["number"] != first.body["number"]
    assert not anonymous.replayed and anonymous.body["number"] != first.body["number"]


async def test_a_number_in_another_scripts_digits_names_no_ticket(database_url: str) -> None:
    async with front_door(database_url) as (_, client):
        http = client("198.51.100.64")
        created = (await http.post("/api/v1/tickets", json=NEW_TICKET)).json()
        assert created["number"] == "SD-000001"
        key = {"X-Access-Key": created["access_key"]}
        ascii_digits = await http.get("/api/v1/tickets/SD-1", headers=key)
        arabic_indic = await http.get("/api/v1/tickets/SD-\u0661", headers=key)

    assert ascii_digits.status_code == 200
    assert arabic_indic.status_code == 404


def largest_valid_ticket() -> dict[str, Any]:
    """Every field at its limit, in the character JSON writes longest: an emoji, which
    json.dumps (and so Python's requests) escapes as a 12-byte surrogate pair."""
    from spoc_intake.schemas import MAX_FIELD_TEXT, MAX_FIELDS

    widest = "\U0001f600"
    return {
        "subject": widest * 200,
        "description": widest * 20_000,
        "requester": {
            "name": widest * 200,
            "email": f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 57}.org",
            "phone": "+" + "1" * 31,
            "locale": "en-abcdefgh-abcdefgh-abcdefgh",
            "preferred_channel": "portal",
        },
        "type": "suggestion",
        "category": widest * 100,
        "subcategory": widest * 100,
        "item": widest * 100,
        "impact": "medium",
        "urgency": "medium",
        "fields": {f"f{i:02d}{'x' * 61}": widest * MAX_FIELD_TEXT for i in range(MAX_FIELDS)},
        "channel": "portal",
    }


async def test_the_body_limit_holds_the_largest_valid_ticket_and_no_more(sqlite_url: str) -> None:
    body = json.dumps(largest_valid_ticket()).encode()
    async with front_door(sqlite_url) as (intake, client):
        http = client("198.51.100.65")
        limit = intake.container.settings.max_body_bytes
        fits = await http.post(
            "/api/v1/tickets", content=body, headers={"Content-Type": "application/json"}
        )
        over = await http.post(
            "/api/v1/tickets",
            content=body[:-1] + b" " * (limit - len(body) + 1) + b"}",
            headers={"Content-Type": "application/json"},
        )

    assert len(body) > 1_400_000
    assert fits.status_code == 201, fits.text[:300]
    assert over.status_code == 413
    assert str(limit) in over.json()["error"]["message"]


# --- The front door under a flood ----------------------------------------------------------


def gated_app(**options: Any) -> tuple[FastAPI, asyncio.Event, list[str]]:
    """A service whose /slow answers once the gate opens, and whose /fast answers at once."""
    router = APIRouter()
    gate = asyncio.Event()
    waiting: list[str] = []

    @router.get("/slow")
    async def slow(request: Request) -> dict[str, str]:
        waiting.append(request.client.host if request.client else "?")
        await gate.wait()
        return {"answer": "slow"}

    @router.get("/fast")
    async def fast() -> dict[str, str]:
        return {"answer": "fast"}

    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    app = create_service_app(
        service="gated", title="gated", readiness=ready, routers=[router], **options
    )
    return app, gate, waiting


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


def http_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gated")


async def test_one_clients_flood_waits_on_itself_and_others_are_served_at_once() -> None:
    app, gate, waiting = gated_app(max_requests_per_client=4)
    async with http_from(app, "198.51.100.70") as flooder, http_from(app, "2001:db8::5") as other:
        flood = [asyncio.create_task(flooder.get("/slow")) for _ in range(30)]
        # Four held, the rest answered: a cap that let more through would time out here.
        await until(lambda: len(waiting) >= 4 and sum(t.done() for t in flood) >= 26)
        # The flooder's four requests still hold their places: another client is not behind them.
        started = time.perf_counter()
        served = await other.get("/fast")
        waited = time.perf_counter() - started
        others_slow = asyncio.create_task(other.get("/slow"))
        await until(lambda: len(waiting) >= 5)
        gate.set()
        answers = await asyncio.gather(*flood)
        await others_slow

    assert served.status_code == 200 and waited < 0.5
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 4 + [429] * 26
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert refused.headers["retry-after"] == "1"
    assert waiting.count("198.51.100.70") == 4


async def test_a_finished_request_gives_its_place_back() -> None:
    app, gate, _ = gated_app(max_requests_per_client=1)
    gate.set()
    async with http_from(app, "198.51.100.71") as http:
        answers = [await http.get("/slow") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]


async def test_a_body_that_does_not_arrive_in_time_is_a_408_and_closes_the_connection() -> None:
    router = APIRouter()

    @router.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    app = create_service_app(
        service="slow-body", title="t", readiness=ready, routers=[router], body_read_seconds=0.2
    )
    chunks = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        # ... and the rest never comes.
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("198.51.100.72", 40000),
        "server": ("testserver", 80),
    }
    started = time.perf_counter()
    await asyncio.wait_for(app(scope, receive, send), 5)

    assert time.perf_counter() - started < 2
    start, body = sent
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(body["body"])["error"]["code"] == "body_timeout"


async def test_a_made_up_method_is_counted_as_other_never_by_its_name() -> None:
    app, gate, _ = gated_app()
    gate.set()
    labels = {"service": "gated", "route": "/fast", "status": "405"}
    before = (
        REGISTRY.get_sample_value("spoc_http_requests_total", {**labels, "method": "other"}) or 0.0
    )
    async with http_from(app, "198.51.100.73") as http:
        answers = [await http.request(f"X-FLOOD-{i}", "/fast") for i in range(3)]

    assert {a.status_code for a in answers} == {405}
    after = REGISTRY.get_sample_value("spoc_http_requests_total", {**labels, "method": "other"})
    assert after == before + 3
    exposed = generate_latest().decode()
    assert "X-FLOOD" not in exposed


async def raw_exchange(base_url: httpx.URL, head: bytes, wait: float = 5) -> bytes:
    """What the server answers on a fresh connection to `head`, until it closes it."""
    reader, writer = await asyncio.open_connection(base_url.host, base_url.port)
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (b"".join(b"X-Field-%d: a\r\n" % i for i in range(150)), b"too_many_headers"),
        (b"X-Big: " + b"a" * 20_000 + b"\r\n", b"headers_too_large"),
    ],
)
async def test_a_request_head_over_the_limits_is_a_431_and_the_connection_closes(
    tmp_path: Path, head: bytes, code: bytes
) -> None:
    from tests.integration.test_behind_a_proxy import served_intake

    async with served_intake(tmp_path) as http:
        answer = await raw_exchange(http.base_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head)
        still_serving = await http.get("/healthz")

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"connection: close" in answer.lower() and code in answer
    assert still_serving.status_code == 200


async def test_a_request_head_that_trickles_in_is_a_408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spoc.guarded_http import GuardedHttpToolsProtocol
    from tests.integration.test_behind_a_proxy import served_intake

    monkeypatch.setattr(GuardedHttpToolsProtocol, "head_seconds", 0.3)
    async with served_intake(tmp_path) as http:
        started = time.perf_counter()
        answer = await raw_exchange(http.base_url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        waited = time.perf_counter() - started
        silent = await raw_exchange(http.base_url, b"")
        whole = await http.get("/healthz")

    assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in answer
    assert 0.2 < waited < 3
    assert silent == b"", "a connection that asked nothing is closed without an answer"
    assert whole.status_code == 200


async def test_large_bodies_on_one_kept_alive_connection_are_not_taken_for_heads(
    tmp_path: Path,
) -> None:
    from tests.integration.test_behind_a_proxy import served_intake

    body = {**NEW_TICKET, "description": "\u5b57" * 20_000}
    async with served_intake(tmp_path) as http:
        answers = [await http.post("/api/v1/tickets", json=body) for _ in range(3)]
        answers.append(await http.get("/healthz"))
        head = "X-Padding: " + "a" * 8000
        raw = await raw_exchange(
            http.base_url,
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n\r\n".encode(),
            wait=2,
        )

    assert [a.status_code for a in answers] == [201, 201, 201, 200]
    assert raw.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("proxy_trusted", [True, False])
async def test_the_client_address_comes_from_x_forwarded_for_only_through_a_trusted_proxy(
    tmp_path: Path, proxy_trusted: bool
) -> None:
    from tests.integration.test_behind_a_proxy import served_intake

    async with served_intake(
        tmp_path,
        forwarded_allow_ips="127.0.0.1" if proxy_trusted else "192.0.2.10",
        trusted_networks="",
        rate_limit_per_client="1/minute",
    ) as http:

        async def open_from(address: str, email: str) -> int:
            answer = await http.post(
                "/api/v1/tickets", json=ticket_for(email), headers={"X-Forwarded-For": address}
            )
            return answer.status_code

        first = await open_from("203.0.113.1", "a@example.org")
        # Another client, if the header is believed; the same peer claiming so, if not.
        claimed_other = await open_from("203.0.113.2", "b@example.org")
        again = await open_from("203.0.113.1", "c@example.org")

    assert first == 201
    assert claimed_other == (201 if proxy_trusted else 429)
    assert again == 429


async def test_300_concurrent_anonymous_posts_leave_a_requesters_get_quick(
    tmp_path: Path,
) -> None:
    from tests.integration.test_behind_a_proxy import served_intake

    async with served_intake(tmp_path, trusted_networks="") as http:
        created = (await http.post("/api/v1/tickets", json=NEW_TICKET)).json()
        mine = {"X-Access-Key": created["access_key"], "X-Forwarded-For": "198.51.100.90"}
        path = f"/api/v1/tickets/{created['number']}"
        assert (await http.get(path, headers=mine)).status_code == 200
        flooder = {"X-Forwarded-For": "203.0.113.66"}
        limits = httpx.Limits(max_connections=400)
        async with httpx.AsyncClient(
            base_url=http.base_url, limits=limits, timeout=60
        ) as flood_client:
            flood = [
                asyncio.create_task(
                    flood_client.post(
                        "/api/v1/tickets", json=ticket_for(f"v{i}@example.org"), headers=flooder
                    )
                )
                for i in range(300)
            ]
            await until(lambda: sum(t.done() for t in flood) >= 100, seconds=30)
            started = time.perf_counter()
            read = await http.get(path, headers=mine)
            waited = time.perf_counter() - started
            answers = await asyncio.gather(*flood)

    assert read.status_code == 200
    assert waited < 1.0, f"the requester waited {waited:.2f} s behind the flood"
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 429} and statuses.count(201) <= 20
