"""From intake's front door to notify's mailbox: the acknowledgement to an address the desk has
never heard from carries no words of whoever opened the ticket in its headers (D19); a ticket
after vouched contact from the address (test_vouched_contact.py), staff, an integration or a
trusted network may have them there."""

from __future__ import annotations

import mailbox
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import create_async_engine

from spoc.services import SERVICES, ServiceName
from spoc_contracts import ClockTarget, SlaClockStarted
from spoc_intake.api.deps import current_caller
from spoc_intake.app import create_app
from spoc_intake.callers import ANONYMOUS, Caller
from spoc_platform.migrations import upgrade
from spoc_platform.sealing import DEVELOPMENT_RECIPIENT, seal_for
from tests.harness import ServiceUnderTest, envelope, service
from tests.integration.ticket_callers import HEADER, MONITOR, PEOPLE, REZA, SARA, as_

pytestmark = pytest.mark.integration

PHISHING_SUBJECT = "Your mailbox is full: confirm your password at evil.example"
PHISHING_NAME = "IT Security Team"
TRUSTED = "192.0.2.0/24"
INSIDE, OUTSIDE = "192.0.2.7", "198.51.100.9"


def phishing_ticket(email: str = "victim@example.org") -> dict[str, Any]:
    return {
        "subject": PHISHING_SUBJECT,
        "description": "Follow the link.",
        "type": "request",
        "requester": {"name": PHISHING_NAME, "email": email},
    }


async def _caller_from_test_header(request: Request) -> Caller:
    return PEOPLE.get(request.headers.get(HEADER, ""), ANONYMOUS)


@asynccontextmanager
async def client_from(intake: ServiceUnderTest, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on intake's app that connects from `address`."""
    app = create_app(intake.container.settings, intake.container, manage_runtime=False)
    app.dependency_overrides[current_caller] = _caller_from_test_header
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


@asynccontextmanager
async def desk(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Any]]:
    # Only 192.0.2.0/24 is trusted: in development the loopback would be, by default.
    async with (
        service("intake", database_url, trusted_networks=TRUSTED) as intake,
        service(
            "notify",
            f"sqlite+aiosqlite:///{tmp_path / 'notify.sqlite3'}",
            maildir=tmp_path / "mail",
        ) as notify,
    ):
        yield intake, notify


async def acknowledgements(
    intake: ServiceUnderTest, notify: ServiceUnderTest, tmp_path: Path
) -> dict[str, EmailMessage]:
    """Hands notify what intake published (and sla's targets), sends what it owes, and
    returns the mails in the Maildir by ticket number."""
    created = await intake.published("ticket.created")
    for event in created:
        await notify.deliver(event)
        targets = clocks(event.data["number"])
        await notify.deliver(envelope(targets, ticket_id=event.ticket_id, source="sla"))
    while await notify.container.dispatcher.dispatch_once():
        pass
    mails: dict[str, EmailMessage] = {}
    for kept in mailbox.Maildir(tmp_path / "mail", create=False):
        parsed = message_from_bytes(kept.as_bytes(), policy=default)
        assert isinstance(parsed, EmailMessage)
        mails[str(parsed["X-Spoc-Ticket"])] = parsed
    assert len(mails) == len(created)
    return mails


def clocks(number: str) -> SlaClockStarted:
    due = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    return SlaClockStarted(
        number=number,
        priority="P3",
        policy="standard",
        calendar="office",
        clocks=[ClockTarget(metric="first_response", due_at=due, target_seconds=3600)],
    )


def assert_no_opener_text(mail: EmailMessage, number: str) -> None:
    assert str(mail["To"]) == "victim@example.org"
    assert str(mail["Subject"]) == f"[{number}] We have your request"
    headers = "\n".join(str(value) for value in mail.values())
    assert PHISHING_NAME not in headers and "evil.example" not in headers
    # The text is still in the body, and so is the link.
    body = mail.get_body(("plain",))
    assert body is not None and f"/t/{number}?key=" in body.get_content()


async def test_a_strangers_first_ticket_is_acknowledged_with_the_desks_words_only(
    database_url: str, tmp_path: Path
) -> None:
    async with desk(database_url, tmp_path) as (intake, notify):
        async with client_from(intake, OUTSIDE) as http:
            answer = await http.post("/api/v1/tickets", json=phishing_ticket())
        assert answer.status_code == 201, answer.text
        [created] = await intake.published("ticket.created")
        assert created.data["requester_known"] is False

        mails = await acknowledgements(intake, notify, tmp_path)

        assert_no_opener_text(mails["SD-000001"], "SD-000001")


async def test_a_second_anonymous_ticket_from_the_address_is_still_a_strangers(
    database_url: str, tmp_path: Path
) -> None:
    async with desk(database_url, tmp_path) as (intake, notify):
        async with client_from(intake, OUTSIDE) as http:
            for email in ("victim@example.org", "someone.else@example.org", "victim@example.org"):
                answer = await http.post("/api/v1/tickets", json=phishing_ticket(email))
                assert answer.status_code == 201, answer.text
        created = await intake.published("ticket.created")
        # The first ticket vouches for nothing: whoever filed it may file the next one too.
        assert [event.data["requester_known"] for event in created] == [False, False, False]

        mails = await acknowledgements(intake, notify, tmp_path)

        assert_no_opener_text(mails["SD-000001"], "SD-000001")
        assert str(mails["SD-000002"]["Subject"]) == "[SD-000002] We have your request"
        assert_no_opener_text(mails["SD-000003"], "SD-000003")


@pytest.mark.parametrize(
    ("address", "caller", "known"),
    [
        (INSIDE, ANONYMOUS, True),
        (OUTSIDE, SARA, True),
        (OUTSIDE, MONITOR, True),
        # A requester signed in by a mailed link owns their address, not another's.
        (OUTSIDE, REZA, False),
    ],
    ids=["trusted network", "agent", "integration", "requester for another address"],
)
async def test_a_trusted_network_or_a_credential_vouches_for_the_opener(
    database_url: str, tmp_path: Path, address: str, caller: Caller, known: bool
) -> None:
    async with desk(database_url, tmp_path) as (intake, notify):
        headers = {} if caller is ANONYMOUS else as_(caller)
        async with client_from(intake, address) as http:
            answer = await http.post("/api/v1/tickets", json=phishing_ticket(), headers=headers)
        assert answer.status_code == 201, answer.text
        [created] = await intake.published("ticket.created")
        assert created.data["requester_known"] is known

        [mail] = (await acknowledgements(intake, notify, tmp_path)).values()

        if known:
            assert str(mail["Subject"]) == f"[SD-000001] We have your request: {PHISHING_SUBJECT}"
            assert str(mail["To"]) == f"{PHISHING_NAME} <victim@example.org>"
        else:
            assert_no_opener_text(mail, "SD-000001")


async def test_a_signed_in_requester_filing_for_their_own_address_is_known(
    database_url: str, tmp_path: Path
) -> None:
    async with desk(database_url, tmp_path) as (intake, _notify):
        async with client_from(intake, OUTSIDE) as http:
            answer = await http.post(
                "/api/v1/tickets", json=phishing_ticket(str(REZA.email)), headers=as_(REZA)
            )
        assert answer.status_code == 201, answer.text
        [created] = await intake.published("ticket.created")
        assert created.data["requester_known"] is True


async def test_a_record_kept_before_the_upgrade_is_acknowledged_as_a_strangers(
    database_url: str, tmp_path: Path
) -> None:
    """A ticket.created that arrived before notify knew the fact, its clocks after: the
    acknowledgement still owed keeps the opener's words out of its headers."""
    migrations = SERVICES[ServiceName.notify].migrations
    upgrade(migrations, database_url, "0003")
    ticket_id = uuid.uuid4()
    before = sa.table(
        "ticket_contact",
        *(sa.column(name) for name in ("ticket_id", "number", "subject", "name", "email")),
        sa.column("access_key_sealed"),
        sa.column("created_event_id"),
    )
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(before).values(
                    ticket_id=sa.bindparam("ticket_id", ticket_id, type_=sa.Uuid()),
                    number="SD-000007",
                    subject=PHISHING_SUBJECT,
                    name=PHISHING_NAME,
                    email="victim@example.org",
                    access_key_sealed=seal_for(DEVELOPMENT_RECIPIENT, "k" * 32),
                    created_event_id=sa.bindparam("event_id", uuid.uuid4(), type_=sa.Uuid()),
                )
            )
    finally:
        await engine.dispose()

    async with service("notify", database_url, maildir=tmp_path / "mail") as notify:
        targets = envelope(clocks("SD-000007"), ticket_id=ticket_id, source="sla")
        await notify.deliver(targets)
        assert await notify.container.dispatcher.dispatch_once() == 1

    [kept] = mailbox.Maildir(tmp_path / "mail", create=False)
    mail = message_from_bytes(kept.as_bytes(), policy=default)
    assert isinstance(mail, EmailMessage)
    assert_no_opener_text(mail, "SD-000007")
