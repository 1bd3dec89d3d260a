"""The "my requests" page signs its requester out: a same-site form POST ends the session on
the server and clears the cookie; another site's form cannot."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import httpx
import pytest

from spoc_contracts import RequesterSignInRequested
from spoc_intake.app import create_app
from spoc_intake.requester_links import REQUESTER_SESSION_COOKIE
from spoc_platform.sealing import DEVELOPMENT_SECRET, open_sealed
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration
REZA = NEW_TICKET["requester"]["email"]
SAME_SITE = {"Origin": "http://intake"}
SIGN_OUT_FORM = '<form method="post" action="my/sign-out">'


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("intake", database_url, trusted_networks="") as running:
        yield running


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as http:
        yield http


async def signed_in(client: httpx.AsyncClient, intake: ServiceUnderTest) -> str:
    """Opens a ticket for Reza, signs him in by the mailed link, and returns the session."""
    created = await client.post("/api/v1/tickets", json=copy.deepcopy(NEW_TICKET))
    assert created.status_code == 201, created.text
    asked = await client.post("/my", data={"email": REZA}, headers=SAME_SITE)
    assert asked.status_code == 200
    event = (await intake.published(RequesterSignInRequested.TYPE))[-1]
    sealed = RequesterSignInRequested.model_validate(event.data).link_token_sealed
    token = open_sealed(DEVELOPMENT_SECRET, sealed)
    used = await client.post("/requester/sign-in", data={"token": token}, headers=SAME_SITE)
    assert used.status_code == 303
    session = client.cookies.get(REQUESTER_SESSION_COOKIE)
    assert session
    return session


async def test_the_page_signs_out_on_the_server_and_clears_the_cookie(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    session = await signed_in(client, intake)
    page = await client.get("/my")
    assert f"Signed in as {REZA}" in page.text and SIGN_OUT_FORM in page.text

    out = await client.post("/my/sign-out", headers=SAME_SITE)

    assert out.status_code == 303 and out.headers["Location"] == "/my"
    assert out.headers["Cache-Control"] == "no-store"
    cleared = out.headers["set-cookie"]
    assert cleared.startswith(f"{REQUESTER_SESSION_COOKIE}=") and "Max-Age=0" in cleared
    assert client.cookies.get(REQUESTER_SESSION_COOKIE) is None
    after = await client.get("/my")
    assert "Signed in as" not in after.text and '<form method="post" action="my">' in after.text
    # A copy of the cookie kept from before signs nobody in: the session ended on the server.
    client.cookies.set(REQUESTER_SESSION_COOKIE, session)
    replayed = await client.get("/my")
    assert "Signed in as" not in replayed.text and SIGN_OUT_FORM not in replayed.text
    listed = await client.get("/api/v1/tickets")
    assert listed.status_code == 401


@pytest.mark.parametrize(
    "origin",
    [{"Origin": "https://evil.example"}, {}],
    ids=["another site's form", "no origin or referer"],
)
async def test_another_sites_form_cannot_sign_the_requester_out(
    client: httpx.AsyncClient, intake: ServiceUnderTest, origin: dict[str, str]
) -> None:
    await signed_in(client, intake)

    refused = await client.post("/my/sign-out", headers=origin)

    assert refused.status_code == 403
    assert "Sign out from the desk&#39;s own page." in refused.text
    assert "set-cookie" not in refused.headers
    assert f"Signed in as {REZA}" in (await client.get("/my")).text
