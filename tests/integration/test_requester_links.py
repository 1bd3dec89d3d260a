"""Requesters' one-time sign-in links: asked for by address (the same answer whether it is
known), mailed by notify, good once and for a while, opening a session that ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from http.cookiejar import Cookie, CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from spoc_contracts import Envelope, RequesterSignInRequested
from spoc_intake.api.deps import CurrentCaller
from spoc_intake.app import create_app
from spoc_intake.models import RequesterLink, RequesterSession
from spoc_intake.requester_links import REQUESTER_SESSION_COOKIE
from spoc_notify.mail import OutgoingMail
from spoc_platform.db import utc_now
from spoc_platform.sealing import DEVELOPMENT_RECIPIENT, DEVELOPMENT_SECRET, open_sealed, seal_for
from tests.e2e.journey import NEW_TICKET
from tests.harness import ServiceUnderTest, envelope, service

pytestmark = pytest.mark.integration
KNOWN = NEW_TICKET["requester"]["email"]
LINKS = "/api/v1/requester/links"


@pytest.fixture
async def intake(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    # No trusted network: the loopback test client spends from the budgets like anyone.
    async with service(
        "intake", database_url, trusted_networks="", rate_limit_per_recipient="5/minute"
    ) as running:
        yield running


class NoCookies(CookieJar):
    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


@pytest.fixture
async def client(intake: ServiceUnderTest) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)

    @app.api_route("/whoami", methods=["GET", "POST"])
    async def whoami(caller: CurrentCaller) -> dict[str, Any]:
        return {"role": caller.role, "email": caller.email, "subject_id": caller.subject_id}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://intake",
        # Keeps no cookies: each request carries exactly the session the test gives it.
        cookies=NoCookies(),
    ) as http:
        response = await http.post("/api/v1/tickets", json=NEW_TICKET)
        assert response.status_code == 201, response.text
        yield http


SAME_SITE = {"Origin": "http://intake"}


async def use_link(
    client: httpx.AsyncClient, token: str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Presses the sign-in page's button: its form's same-origin POST."""
    return await client.post(
        "/requester/sign-in",
        data={} if token is None else {"token": token},
        headers=SAME_SITE if headers is None else headers,
    )


async def signed_in_session(client: httpx.AsyncClient, intake: ServiceUnderTest) -> str:
    await client.post(LINKS, json={"email": KNOWN})
    used = await use_link(client, await mailed_token(intake))
    assert used.status_code == 303, used.text
    return used.cookies[REQUESTER_SESSION_COOKIE]


def session_cookie(session: str) -> dict[str, str]:
    return {"Cookie": f"{REQUESTER_SESSION_COOKIE}={session}"}


async def mailed_token(intake: ServiceUnderTest) -> str:
    """The token of the last link intake asked notify to mail, opened as notify would."""
    event = (await intake.published(RequesterSignInRequested.TYPE))[-1]
    sealed = RequesterSignInRequested.model_validate(event.data).link_token_sealed
    return open_sealed(DEVELOPMENT_SECRET, sealed)


async def test_known_and_unknown_addresses_get_the_same_answer_but_only_one_gets_a_link(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    unknown = await client.post(LINKS, json={"email": "nobody@example.org"})
    known = await client.post(LINKS, json={"email": KNOWN})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    assert unknown.headers["Cache-Control"] == known.headers["Cache-Control"] == "no-store"

    [event] = await intake.published(RequesterSignInRequested.TYPE)
    assert event.ticket_id is None
    requested = RequesterSignInRequested.model_validate(event.data)
    assert requested.email == KNOWN
    assert requested.locale == "fa-IR"  # from their latest ticket
    assert requested.expires_at - utc_now() <= timedelta(minutes=30)
    token = await mailed_token(intake)
    assert token not in event.model_dump_json()  # sealed: only notify can open it
    async with intake.runtime.engine.connect() as conn:
        rows = (await conn.execute(select(RequesterLink))).all()
    assert [row.email for row in rows] == [KNOWN]
    assert token not in " ".join(str(v) for row in rows for v in row)


async def test_a_link_signs_in_once_and_the_session_sees_the_requester(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await client.post(LINKS, json={"email": KNOWN})
    token = await mailed_token(intake)

    shown = await client.get("/requester/sign-in", params={"token": token})
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "no-store"
    assert shown.headers["Referrer-Policy"] == "strict-origin"
    assert '<form method="post" action="sign-in">' in shown.text
    assert f'<input type="hidden" name="token" value="{token}">' in shown.text
    assert "Set-Cookie" not in shown.headers

    followed = await use_link(client, token)
    assert followed.status_code == 303
    assert followed.headers["Location"] == "/my"
    cookie = followed.headers["Set-Cookie"]
    assert cookie.startswith(f"{REQUESTER_SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    session = followed.cookies[REQUESTER_SESSION_COOKIE]

    me = await client.get("/whoami", headers=session_cookie(session))
    assert me.json() == {"role": "requester", "email": KNOWN, "subject_id": KNOWN}

    again = await use_link(client, token)
    assert again.status_code == 400 and "no longer works" in again.text
    assert REQUESTER_SESSION_COOKIE not in again.cookies
    async with intake.runtime.engine.connect() as conn:
        [stored] = (await conn.execute(select(RequesterSession))).all()
    assert session not in " ".join(str(v) for v in stored)


async def test_opening_the_link_uses_nothing_and_only_a_same_site_post_does(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await client.post(LINKS, json={"email": KNOWN})
    token = await mailed_token(intake)
    # A mail scanner fetching the link, twice: the link is still good afterwards.
    for _ in range(2):
        scanned = await client.get("/requester/sign-in", params={"token": token})
        assert scanned.status_code == 200 and "Set-Cookie" not in scanned.headers
    # Another site's form posting the attacker's link into a victim's browser; a script
    # without Origin or Referer; a page under no-referrer (Origin: null).
    for headers in (
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {},
        {"Origin": "null"},
    ):
        refused = await use_link(client, token, headers)
        assert refused.status_code == 403, headers
        assert "Set-Cookie" not in refused.headers
    async with intake.runtime.engine.connect() as conn:
        [link] = (await conn.execute(select(RequesterLink))).all()
    assert link.used_at is None
    assert (
        await use_link(client, token, {"Referer": "http://intake/requester/sign-in"})
    ).status_code == 303


async def test_an_expired_or_made_up_link_signs_nobody_in(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    await client.post(LINKS, json={"email": KNOWN})
    token = await mailed_token(intake)
    async with intake.runtime.engine.begin() as conn:
        await conn.execute(
            update(RequesterLink).values(expires_at=utc_now() - timedelta(seconds=1))
        )
    for chosen in (token, "made-up", None):
        refused = await use_link(client, chosen)
        assert refused.status_code == 400
        assert "no longer works" in refused.text
        assert "Set-Cookie" not in refused.headers
    # A page without a token to show says the same at once.
    empty = await client.get("/requester/sign-in")
    assert empty.status_code == 400 and "no longer works" in empty.text


async def test_a_session_ends_when_idle_too_long_at_its_limit_or_on_sign_out(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    async def signed_in() -> str:
        return await signed_in_session(client, intake)

    async def role(session: str) -> Any:
        me = await client.get("/whoami", headers=session_cookie(session))
        return me.json()["role"]

    engine = intake.runtime.engine
    idle = await signed_in()
    async with engine.begin() as conn:
        await conn.execute(
            update(RequesterSession).values(last_seen_at=utc_now() - timedelta(hours=3))
        )
    assert await role(idle) is None

    ended = await signed_in()
    async with engine.begin() as conn:
        await conn.execute(
            update(RequesterSession).values(
                last_seen_at=utc_now(), expires_at=utc_now() - timedelta(seconds=1)
            )
        )
    assert await role(ended) is None

    leaving = await signed_in()
    assert await role(leaving) == "requester"
    out = await client.delete("/api/v1/requester/session", headers=session_cookie(leaving))
    assert out.status_code == 204
    assert f'{REQUESTER_SESSION_COOKIE}=""' in out.headers["Set-Cookie"]
    assert await role(leaving) is None


async def test_links_are_rate_limited_per_address_known_or_not_and_bad_input_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    # The address's budget is shared with the mail its tickets caused (the fixture opened one).
    for address, allowed in ((KNOWN, 4), ("nobody@example.org", 5)):
        answers = [(await client.post(LINKS, json={"email": address})) for _ in range(6)]
        assert [a.status_code for a in answers] == [202] * allowed + [429] * (6 - allowed)
        assert int(answers[-1].headers["Retry-After"]) >= 1
    bad = await client.post(LINKS, json={"email": "not an address"})
    assert bad.status_code == 422
    extra = await client.post(LINKS, json={"email": KNOWN, "name": "x"})
    assert extra.status_code == 422


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, mail: OutgoingMail) -> None:
        parsed = message_from_bytes(mail.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.sent.append(parsed)

    async def close(self) -> None:
        return None


def sign_in_requested(expires_in: timedelta, token: str = "the-token") -> Envelope:
    event = RequesterSignInRequested(
        email="ala@example.org",
        locale="pl-PL",
        link_token_sealed=seal_for(DEVELOPMENT_RECIPIENT, token),
        expires_at=utc_now() + expires_in,
    )
    return envelope(event, source="intake").model_copy(update={"ticket_id": None})


async def test_notify_mails_the_link_once_and_announces_no_ticket_notification(
    tmp_path: Path,
) -> None:
    transport = RecordingTransport()
    url = f"sqlite+aiosqlite:///{tmp_path / 'notify.sqlite3'}"
    async with service(
        "notify", url, transport=transport, portal_url="https://desk.example.org/help"
    ) as notify:
        request = sign_in_requested(timedelta(minutes=30))
        await notify.deliver(request)
        await notify.deliver(request)  # redelivered: still one mail
        await notify.deliver(sign_in_requested(-timedelta(seconds=1)))  # too late: none
        assert await notify.container.dispatcher.dispatch_once() == 1
        assert await notify.container.dispatcher.dispatch_once() == 0

        [mail] = transport.sent
        assert mail["To"] == "ala@example.org"
        assert "the-token" not in str(mail["Subject"])
        link = next(
            word
            for word in mail.get_body(("plain",)).get_content().split()
            if word.startswith("https://")
        )
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
            "https://desk.example.org/help/requester/sign-in"
        )
        assert parse_qs(parts.query) == {"token": ["the-token"]}
        # About no ticket: nothing for intake to put on a timeline.
        assert await notify.published() == []


async def test_a_link_asked_of_intake_reaches_the_requester_through_notify(
    tmp_path: Path,
) -> None:
    transport = RecordingTransport()
    intake_url = f"sqlite+aiosqlite:///{tmp_path / 'intake.sqlite3'}"
    notify_url = f"sqlite+aiosqlite:///{tmp_path / 'notify.sqlite3'}"
    async with (
        service("intake", intake_url) as intake,
        service("notify", notify_url, transport=transport) as notify,
    ):
        app = create_app(intake.container.settings, intake.container, manage_runtime=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as http:
            assert (await http.post("/api/v1/tickets", json=NEW_TICKET)).status_code == 201
            assert (await http.post(LINKS, json={"email": KNOWN})).status_code == 202
            [event] = await intake.published(RequesterSignInRequested.TYPE)
            await notify.deliver(event)
            await notify.container.dispatcher.dispatch_once()
            [mail] = transport.sent
            text = mail.get_body(("plain",)).get_content()
            link = next(w for w in text.split() if "/requester/sign-in?" in w)
            token = parse_qs(urlsplit(link).query)["token"][0]
            shown = await http.get("/requester/sign-in", params={"token": token})
            assert shown.status_code == 200
            followed = await http.post(
                "/requester/sign-in", data={"token": token}, headers=SAME_SITE
            )
            assert followed.status_code == 303


async def test_a_session_cookie_cannot_carry_another_sites_unsafe_request(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    cookie = session_cookie(await signed_in_session(client, intake))

    own = await client.post("/whoami", headers={**cookie, "Origin": "http://intake"})
    assert own.json()["role"] == "requester"
    forged = await client.post("/whoami", headers={**cookie, "Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "cross_site_request"


async def test_housekeeping_forgets_links_and_sessions_past_their_end(
    client: httpx.AsyncClient, intake: ServiceUnderTest
) -> None:
    for _ in range(2):
        await client.post(LINKS, json={"email": KNOWN})
    await use_link(client, await mailed_token(intake))
    engine = intake.runtime.engine
    past = utc_now() - timedelta(seconds=1)
    async with engine.begin() as conn:
        await conn.execute(update(RequesterSession).values(expires_at=past))
        # One link ended; the other is still good and must stay.
        first = (await conn.execute(select(RequesterLink.token_hash))).scalars().first()
        await conn.execute(
            update(RequesterLink).where(RequesterLink.token_hash == first).values(expires_at=past)
        )
    await intake.container.requester_sign_in.forget_expired()
    async with engine.connect() as conn:
        assert (await conn.execute(select(RequesterSession))).all() == []
        links = (await conn.execute(select(RequesterLink.token_hash))).scalars().all()
    assert len(links) == 1 and first not in links
