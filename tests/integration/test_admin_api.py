"""The admin API every service serves: dead letters behind a bearer token, or nothing at all."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from prometheus_client import REGISTRY

from spoc.services import SERVICES, ServiceName
from spoc_contracts import Envelope
from spoc_platform.admin import detail, export_in_process_bus
from spoc_platform.bus import DeadLetter, MessageBus, OutgoingMessage, PublishError, QueueSpec
from spoc_platform.bus.amqp_dead_letters import DeadLetterQueueMissing
from spoc_platform.web import create_service_app
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.support import eventually

pytestmark = pytest.mark.integration

TOKEN = "an-admin-token-long-enough-not-to-be-guessed"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/admin/dead-letters", None),
    ("GET", "/admin/dead-letters/m-1", None),
    ("POST", "/admin/dead-letters/replay", {}),
    ("POST", "/admin/dead-letters/purge", {"all": True}),
]


@asynccontextmanager
async def routing_app(
    sqlite_url: str, **settings: Any
) -> AsyncIterator[tuple[ServiceUnderTest, httpx.AsyncClient]]:
    async with service("routing", sqlite_url, **settings) as routing:
        subscription = await routing.bus.consume(
            routing.runtime.queue, routing.runtime.consumer.handle
        )
        app = SERVICES[ServiceName.routing].create_app(
            routing.container.settings, routing.container, manage_runtime=False
        )
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
                yield routing, http
        finally:
            await subscription.cancel()


def broken_creation() -> Envelope:
    """A ticket.created routing can never handle: its data lacks what the event requires."""
    good = envelope(ticket_created())
    return good.model_copy(update={"data": {"number": "SD-000042"}})


async def dead_letter_two(routing: ServiceUnderTest) -> Envelope:
    broken = broken_creation()
    await routing.bus.publish(OutgoingMessage(str(broken.id), broken.type, broken.to_bytes()))
    await routing.bus.publish(OutgoingMessage("m-garbage", "ticket.created", b"not json"))

    async def both_dead() -> bool:
        return len(await routing.bus.dead_letters("routing")) == 2

    await eventually(both_dead, message="two dead letters")
    return broken


async def test_the_admin_api_exists_only_when_a_token_is_configured(sqlite_url: str) -> None:
    async with routing_app(sqlite_url) as (routing, http):
        await dead_letter_two(routing)
        for method, path, body in ADMIN_CALLS:
            answer = await http.request(method, path, json=body, headers=AUTH)
            assert answer.status_code == 404, (method, path, answer.text)
        assert "/admin/dead-letters" not in (await http.get("/openapi.json")).text
        assert len(await routing.bus.dead_letters("routing")) == 2

    async with routing_app(sqlite_url, admin_token=TOKEN) as (routing, http):
        assert "/admin/dead-letters" in (await http.get("/openapi.json")).text
        assert (await http.get("/admin/dead-letters")).status_code == 401


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "]
)
async def test_the_admin_api_refuses_a_missing_or_wrong_token(
    sqlite_url: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with routing_app(sqlite_url, admin_token=TOKEN) as (routing, http):
        await dead_letter_two(routing)
        for method, path, body in ADMIN_CALLS:
            answer = await http.request(method, path, json=body, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "unauthenticated"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        assert len(await routing.bus.dead_letters("routing")) == 2


async def test_with_the_token_an_operator_lists_shows_replays_and_purges_dead_letters(
    sqlite_url: str,
) -> None:
    async with routing_app(sqlite_url, admin_token=TOKEN) as (routing, http):
        broken = await dead_letter_two(routing)

        listed = await http.get("/admin/dead-letters", headers=AUTH)
        assert listed.status_code == 200
        body = listed.json()
        assert (body["service"], body["count"]) == ("routing", 2)
        by_id = {d["message_id"]: d for d in body["dead_letters"]}
        first = by_id[str(broken.id)]
        assert first["type"] == "ticket.created"
        assert (first["ticket_id"], first["number"]) == (str(broken.ticket_id), "SD-000042")
        assert first["reason"] and first["attempts"] >= 0
        assert first["age_seconds"] is None or first["age_seconds"] >= 0
        assert by_id["m-garbage"]["ticket_id"] is None

        shown = await http.get(f"/admin/dead-letters/{broken.id}", headers=AUTH)
        assert shown.status_code == 200
        assert shown.json()["envelope"]["data"] == {"number": "SD-000042"}
        garbage = (await http.get("/admin/dead-letters/m-garbage", headers=AUTH)).json()
        assert (garbage["envelope"], garbage["body"]) == (None, "not json")
        missing = await http.get("/admin/dead-letters/m-404", headers=AUTH)
        assert missing.status_code == 404

        # Replayed, it goes through the consumer again; still broken, it dies again.
        replay = await http.post(
            "/admin/dead-letters/replay", json={"ids": ["m-garbage"]}, headers=AUTH
        )
        assert replay.json() == {"service": "routing", "replayed": 1}

        async def dead_again() -> bool:
            return "m-garbage" in {d.message_id for d in await routing.bus.dead_letters("routing")}

        await eventually(dead_again, message="the replayed garbage died again")

        refused = await http.post("/admin/dead-letters/purge", json={}, headers=AUTH)
        assert refused.status_code == 422
        both = await http.post(
            "/admin/dead-letters/purge", json={"ids": ["m-garbage"], "all": True}, headers=AUTH
        )
        assert both.status_code == 422
        assert len(await routing.bus.dead_letters("routing")) == 2

        one = await http.post(
            "/admin/dead-letters/purge", json={"ids": ["m-garbage"]}, headers=AUTH
        )
        assert one.json() == {"service": "routing", "purged": 1}
        everything = await http.post("/admin/dead-letters/purge", json={"all": True}, headers=AUTH)
        assert everything.json() == {"service": "routing", "purged": 1}
        assert (await http.get("/admin/dead-letters", headers=AUTH)).json()["count"] == 0


async def test_the_in_process_dead_letter_count_is_exported_at_each_scrape(
    sqlite_url: str,
) -> None:
    async with routing_app(sqlite_url) as (routing, http):
        assert 'spoc_dead_letters{service="routing"} 0.0' in (await http.get("/metrics")).text
        await dead_letter_two(routing)
        assert 'spoc_dead_letters{service="routing"} 2.0' in (await http.get("/metrics")).text


def test_a_short_admin_token_is_refused_at_start(sqlite_url: str) -> None:
    from pydantic import ValidationError

    from spoc_routing.settings import RoutingSettings

    with pytest.raises(ValidationError, match="admin_token"):
        RoutingSettings(database_url=sqlite_url, admin_token="short-guessable")


class UnansweringBus:
    """A bus whose every dead-letter operation fails with `error`, as a broker can."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def dead_letters(self, service: str, *, limit: int = 100) -> list[DeadLetter]:
        raise self.error

    async def replay_dead_letters(self, service: str, message_ids: Any = None) -> int:
        raise self.error

    async def purge_dead_letters(self, service: str, message_ids: Any = None) -> int:
        raise self.error


@asynccontextmanager
async def admin_over(bus: UnansweringBus) -> AsyncIterator[httpx.AsyncClient]:
    async def ready() -> dict[str, str]:
        return {"bus": "ok"}

    app = create_service_app(
        service="routing",
        title="routing",
        readiness=ready,
        bus=cast(MessageBus, bus),
        admin_token=TOKEN,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://routing") as http:
        yield http


async def test_an_admin_call_for_a_dead_letter_queue_the_broker_lacks_is_a_404() -> None:
    missing = DeadLetterQueueMissing("routing.dead does not exist in this vhost")
    async with admin_over(UnansweringBus(missing)) as http:
        for method, path, body in ADMIN_CALLS:
            answer = await http.request(method, path, json=body, headers=AUTH)
            assert (answer.status_code, answer.json()) == (
                404,
                {
                    "error": {
                        "code": "not_found",
                        "message": "routing.dead does not exist in this vhost",
                        "details": [],
                    }
                },
            ), (method, path)


async def test_an_admin_call_the_bus_cannot_answer_is_a_503_to_retry() -> None:
    async with admin_over(UnansweringBus(PublishError("channel closed"))) as http:
        for method, path, body in ADMIN_CALLS:
            answer = await http.request(method, path, json=body, headers=AUTH)
            assert (answer.status_code, answer.json()) == (
                503,
                {
                    "error": {
                        "code": "service_unavailable",
                        "message": "the message bus did not answer: PublishError('channel closed')",
                        "details": [],
                    }
                },
            ), (method, path)
            assert answer.headers["retry-after"] == "2", (method, path)


DIED_AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_a_dead_letter_reads_with_its_ticket_its_type_and_how_long_ago_it_died() -> None:
    event = envelope(ticket_created())
    # The broker did not keep the routing key: the type is read from the envelope.
    letter = DeadLetter(str(event.id), "", event.to_bytes(), "handler failed", 3, DIED_AT)

    assert detail(letter, DIED_AT + timedelta(seconds=90)).model_dump() == {
        "message_id": str(event.id),
        "type": "ticket.created",
        "ticket_id": str(event.ticket_id),
        "number": "SD-000042",
        "reason": "handler failed",
        "attempts": 3,
        "dead_at": DIED_AT,
        "age_seconds": 90.0,
        "envelope": json.loads(event.to_bytes()),
        "body": None,
    }


@pytest.mark.parametrize(
    ("routing_key", "body", "shown"),
    [
        ("ticket.created", b"not json", "not json"),
        ("ticket.created", b'["json", "but not an envelope"]', '["json", "but not an envelope"]'),
        ("ticket.created", b"\x80 not utf-8", "\ufffd not utf-8"),
        ("", b"not json", "not json"),
    ],
)
def test_a_poison_dead_letter_shows_its_raw_body_and_what_little_is_known(
    routing_key: str, body: bytes, shown: str
) -> None:
    letter = DeadLetter("m-1", routing_key, body, "not an event envelope", 0, None)

    assert detail(letter, DIED_AT).model_dump() == {
        "message_id": "m-1",
        "type": routing_key,
        "ticket_id": None,
        "number": None,
        "reason": "not an event envelope",
        "attempts": 0,
        "dead_at": None,
        "age_seconds": None,
        "envelope": None,
        "body": shown,
    }


@pytest.mark.parametrize(
    "authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN}", f"BEARER {TOKEN} "]
)
async def test_the_admin_token_is_taken_in_any_form_the_bearer_scheme_allows(
    sqlite_url: str, authorization: str
) -> None:
    """RFC 6750: the scheme is case-insensitive and one or more spaces separate it."""
    async with routing_app(sqlite_url, admin_token=TOKEN) as (_, http):
        answer = await http.get("/admin/dead-letters", headers={"Authorization": authorization})
    assert answer.status_code == 200, answer.text


async def test_a_refused_admin_call_says_why_and_how_to_authenticate(sqlite_url: str) -> None:
    async with routing_app(sqlite_url, admin_token=TOKEN) as (_, http):
        refused = await http.get("/admin/dead-letters", headers={"Authorization": "Bearer no"})
        document = (await http.get("/openapi.json")).json()
    assert (refused.status_code, refused.json()) == (
        401,
        {
            "error": {
                "code": "unauthenticated",
                "message": "a valid admin token is required (Authorization: Bearer …)",
                "details": [],
            }
        },
    )
    assert refused.headers["www-authenticate"] == 'Bearer realm="spoc-admin"'
    admin_paths = [path for path in document["paths"] if path.startswith("/admin/")]
    assert admin_paths and all(
        operation["tags"] == ["admin"]
        for path in admin_paths
        for operation in document["paths"][path].values()
    )
    # The document says so too: every admin operation may answer 401 with the header that
    # names the scheme, or 503 (the bus did not answer) with Retry-After.
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path in admin_paths:
        for method, operation in document["paths"][path].items():
            responses = operation["responses"]
            assert responses["401"] == {
                "description": "Missing or wrong credentials; code `unauthenticated`",
                "content": error,
                "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
            }, (method, path)
            assert responses["403"] == {
                "description": "A live bearer token whose role may not use the admin API",
                "content": error,
            }, (method, path)
            assert responses["503"]["content"] == error, (method, path)
            assert "Retry-After" in responses["503"]["headers"], (method, path)


def gauge(name: str, service: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service})


async def test_each_service_on_one_in_process_bus_exports_its_own_dead_letters_and_queue(
    sqlite_url: str,
) -> None:
    """As in the embedded default: routing and sla share one bus in one process, and each
    service's gauges say its own counts, from the start and past any page size."""
    async with routing_app(sqlite_url) as (routing, http):
        # sla's queue on the same bus, and its export beside routing's, as one process has.
        await routing.bus.declare(QueueSpec("sla", ("ticket.routed",)))
        export_in_process_bus("sla", routing.bus)
        for service_name in ("routing", "sla"):
            assert gauge("spoc_dead_letters", service_name) == 0.0, service_name
            assert gauge("spoc_queue_messages", service_name) == 0.0, service_name

        for n in range(101):
            await routing.bus.publish(OutgoingMessage(f"m-{n}", "ticket.created", b"nope"))

        async def all_dead() -> bool:
            return len(await routing.bus.dead_letters("routing", limit=1000)) == 101

        await eventually(all_dead, message="101 dead letters")
        # Nothing consumes sla's queue here: what is published to it waits.
        for n in range(3):
            await routing.bus.publish(OutgoingMessage(f"r-{n}", "ticket.routed", b"{}"))
        scraped = (await http.get("/metrics")).text

    assert 'spoc_dead_letters{service="routing"} 101.0' in scraped
    assert 'spoc_dead_letters{service="sla"} 0.0' in scraped
    assert 'spoc_queue_messages{service="sla"} 3.0' in scraped
    assert 'spoc_queue_messages{service="routing"} 0.0' in scraped


@pytest.mark.parametrize("with_container", [True, False], ids=["notify", "bare app"])
async def test_a_spoc_token_where_no_token_is_known_is_a_401_not_a_crash(
    sqlite_url: str, with_container: bool
) -> None:
    """notify keeps no copy of intake's tokens (nor does an app without a container): a
    `spoc_` token there is just a wrong token."""
    token = "spoc_" + "x" * 43
    if with_container:
        async with service("notify", sqlite_url, admin_token=TOKEN) as notify:
            app = SERVICES[ServiceName.notify].create_app(
                notify.container.settings, notify.container, manage_runtime=False
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://notify") as http:
                answer = await http.get(
                    "/admin/dead-letters", headers={"Authorization": f"Bearer {token}"}
                )
    else:
        async with admin_over(UnansweringBus(DeadLetterQueueMissing("none"))) as http:
            answer = await http.get(
                "/admin/dead-letters", headers={"Authorization": f"Bearer {token}"}
            )
    assert answer.status_code == 401, answer.text
