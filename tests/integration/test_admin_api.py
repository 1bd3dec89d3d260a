"""The admin API every service serves: dead letters behind a bearer token, or nothing at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from spoc.services import SERVICES, ServiceName
from spoc_contracts import Envelope
from spoc_platform.bus import OutgoingMessage
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
            assert answer.json()["error"]["code"] == "unauthorized"
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
