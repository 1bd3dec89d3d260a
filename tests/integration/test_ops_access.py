"""Operational routes are not public: /metrics takes the metrics or the admin token, the desk
views (routing's names its groups and agents) the admin token; /healthz and /readyz stay open.
Without any token they are open in development (the embedded default) and absent in production."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from spoc.services import SERVICES, ServiceName
from tests.harness import service

pytestmark = pytest.mark.integration

ADMIN = "a" * 40
SCRAPER = "m" * 40
DESKS = {"routing": "/api/v1/routing/desk", "sla": "/api/v1/sla/desk"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def client(name: str, sqlite_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with service(name, sqlite_url, **settings) as running:
        app = SERVICES[ServiceName(name)].create_app(
            running.container.settings, running.container, manage_runtime=False
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{name}"
        ) as http:
            yield http


@pytest.mark.parametrize("name", ["routing", "sla"])
async def test_with_tokens_metrics_and_the_desk_view_need_them(name: str, sqlite_url: str) -> None:
    async with client(
        name, sqlite_url, environment="production", admin_token=ADMIN, metrics_token=SCRAPER
    ) as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert (await http.get("/metrics", headers=bearer("x" * 40))).status_code == 401
        for token in (SCRAPER, ADMIN):
            scraped = await http.get("/metrics", headers=bearer(token))
            assert scraped.status_code == 200 and "spoc_" in scraped.text

        desk = DESKS[name]
        assert (await http.get(desk)).status_code == 401
        # The scraper's token reads metrics and nothing else.
        assert (await http.get(desk, headers=bearer(SCRAPER))).status_code == 401
        assert (await http.get("/admin/dead-letters", headers=bearer(SCRAPER))).status_code == 401
        assert (await http.get(desk, headers=bearer(ADMIN))).status_code == 200

        # Probes never need credentials.
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code in {200, 503}


async def test_in_production_without_a_token_they_do_not_exist(sqlite_url: str) -> None:
    async with client("routing", sqlite_url, environment="production") as http:
        for path in ("/metrics", DESKS["routing"]):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
        assert (await http.get("/healthz")).status_code == 200


async def test_in_development_without_a_token_they_are_open(sqlite_url: str) -> None:
    async with client("routing", sqlite_url) as http:
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get(DESKS["routing"])).status_code == 200


async def test_the_intake_api_stays_public_when_metrics_are_guarded(sqlite_url: str) -> None:
    async with client("intake", sqlite_url, admin_token=ADMIN) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/api/v1/tickets/SD-000001")).status_code != 401
