"""Intake behind a proxy, on a real uvicorn server configured as `spoc serve` configures it:
X-Forwarded-Proto is believed from the proxies SPOC_FORWARDED_ALLOW_IPS names and no one
else, the access cookie is Secure whenever the requester is on https (and always in
production), and redirects stay under the prefix the proxy serves intake at."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from spoc.cli import _uvicorn_options
from spoc_intake.app import create_app
from spoc_platform.sealing import generate_key_pair
from tests.e2e.journey import NEW_TICKET
from tests.harness import service

pytestmark = pytest.mark.integration

TLS_AT_THE_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def served_intake(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Intake on a real uvicorn listening on 127.0.0.1, and a client for it (the "proxy")."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}"
    async with service("intake", url, **settings) as intake:
        app = create_app(intake.container.settings, intake.container, manage_runtime=False)
        port = free_port()
        options = _uvicorn_options(intake.container.settings)
        options.pop("loop", None)  # the test's own loop serves it
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                assert not serving.done(), "uvicorn stopped before it started"
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                yield http
        finally:
            server.should_exit = True
            await serving


async def follow_mail_link(http: httpx.AsyncClient, root_path: str = "") -> httpx.Response:
    """Opens a ticket, then the requester's mail link through the proxy (over https)."""
    answer = await http.post("/api/v1/tickets", json=NEW_TICKET)
    created = answer.json()
    assert answer.headers["location"] == f"{root_path}/api/v1/tickets/{created['number']}"
    return await http.get(
        f"/t/{created['number']}", params={"key": created["access_key"]}, headers=TLS_AT_THE_PROXY
    )


async def test_a_trusted_proxys_https_makes_the_cookie_secure_and_the_redirect_keeps_the_prefix(
    tmp_path: Path,
) -> None:
    async with served_intake(tmp_path, forwarded_allow_ips="127.0.0.1", root_path="/desk") as http:
        opened = await follow_mail_link(http, root_path="/desk")

    assert opened.status_code == 303
    number = opened.headers["location"].rsplit("/", 1)[-1]
    assert opened.headers["location"] == f"/desk/t/{number}"
    cookie = opened.headers["set-cookie"]
    assert "; secure" in cookie.lower() and "httponly" in cookie.lower()


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path) -> None:
    # The proxy is said to be elsewhere: this client's X-Forwarded-Proto is a claim, not a fact.
    async with served_intake(tmp_path, forwarded_allow_ips="192.0.2.10") as http:
        opened = await follow_mail_link(http)

    assert opened.status_code == 303
    assert opened.headers["location"].startswith("/t/")
    assert "secure" not in opened.headers["set-cookie"].lower()


async def test_in_production_the_access_cookie_is_secure_even_when_the_scheme_is_not_known(
    tmp_path: Path,
) -> None:
    async with served_intake(
        tmp_path,
        environment="production",
        access_key_recipient=generate_key_pair().recipient,
        forwarded_allow_ips="192.0.2.10",
    ) as http:
        opened = await follow_mail_link(http)

    assert opened.status_code == 303
    assert "; secure" in opened.headers["set-cookie"].lower()
