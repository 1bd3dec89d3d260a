"""Notify: one acknowledgement per ticket (D2), whatever the order or number of deliveries."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from spoc_contracts import ClockTarget, NotificationFailed, NotificationSent, SlaClockStarted
from spoc_notify.mail import OutgoingMail
from spoc_notify.models import TicketContact
from tests.harness import ServiceUnderTest, envelope, service, ticket_created

pytestmark = pytest.mark.unit
DUE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class RecordingTransport:
    """A mail transport that keeps what it is given, and can be told to fail first."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[EmailMessage] = []
        self.envelopes: list[tuple[str, tuple[str, ...]]] = []
        self.failures = failures

    async def send(self, mail: OutgoingMail) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("mail server unreachable")
        parsed = message_from_bytes(mail.raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.sent.append(parsed)
        self.envelopes.append((mail.sender, mail.recipients))

    async def close(self) -> None:
        return None


def clocks_started() -> SlaClockStarted:
    return SlaClockStarted(
        number="SD-000042",
        priority="P2",
        policy="standard",
        calendar="office",
        clocks=[
            ClockTarget(metric="first_response", due_at=DUE, target_seconds=1800),
            ClockTarget(metric="resolution", due_at=DUE.replace(day=24), target_seconds=28800),
        ],
    )


async def journey_events(notify: ServiceUnderTest, order: str) -> uuid.UUID:
    ticket_id = uuid.uuid4()
    created = envelope(ticket_created(), ticket_id=ticket_id, source="intake")
    clocks = envelope(clocks_started(), ticket_id=ticket_id, source="sla")
    for event in (created, clocks) if order == "created first" else (clocks, created):
        await notify.deliver(event)
    return ticket_id


@pytest.mark.parametrize("order", ["created first", "clocks first"])
async def test_the_acknowledgement_waits_for_both_halves_in_any_order(
    sqlite_url: str, order: str
) -> None:
    transport = RecordingTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        await journey_events(notify, order)
        assert await notify.container.dispatcher.dispatch_once() == 1

        [mail] = transport.sent
        assert transport.envelopes == [("desk@spoc.localhost", ("ala@example.org",))]
        assert mail["Subject"] == "[SD-000042] We have your request: Laptop will not boot"
        assert mail["To"] == "Ala Kowalska <ala@example.org>"
        text = mail.get_body(("plain",)).get_content()
        assert "SD-000042" in text and "P2" in text
        assert "http://127.0.0.1:8000/t/SD-000042?key=secret-key-123" in text
        assert "First response by: Mon 23 Nov 2026 12:00 UTC" in text
        [sent] = await notify.published("notification.sent")
        assert NotificationSent.model_validate(sent.data).recipient == "ala@example.org"


async def test_a_second_creation_of_the_same_ticket_does_not_owe_a_second_mail(
    sqlite_url: str,
) -> None:
    transport = RecordingTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        ticket_id = await journey_events(notify, "created first")
        await notify.deliver(envelope(ticket_created(), ticket_id=ticket_id, source="intake"))
        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))
        await notify.container.dispatcher.dispatch_once()
        assert await notify.container.dispatcher.dispatch_once() == 0
        assert len(transport.sent) == 1


async def test_the_access_key_is_forgotten_once_the_acknowledgement_is_written(
    sqlite_url: str,
) -> None:
    async with service("notify", sqlite_url, transport=RecordingTransport()) as notify:
        ticket_id = await journey_events(notify, "clocks first")
        table = TicketContact.__table__
        async with notify.runtime.engine.connect() as conn:
            key = (
                await conn.execute(
                    select(table.c.access_key_sealed).where(table.c.ticket_id == ticket_id)
                )
            ).scalar_one()
        assert key is None


async def test_a_mail_server_outage_is_retried_until_the_mail_goes_out(sqlite_url: str) -> None:
    transport = RecordingTransport(failures=1)
    async with service("notify", sqlite_url, transport=transport) as notify:
        await journey_events(notify, "created first")
        await notify.container.dispatcher.dispatch_once()
        assert transport.sent == [] and await notify.published() == []

        await _make_retries_due(notify)
        await notify.container.dispatcher.dispatch_once()
        assert len(transport.sent) == 1
        assert len(await notify.published("notification.sent")) == 1


async def test_after_the_last_attempt_the_failure_is_published(sqlite_url: str) -> None:
    transport = RecordingTransport(failures=100)
    async with service("notify", sqlite_url, transport=transport, max_attempts=2) as notify:
        await journey_events(notify, "created first")
        for _ in range(2):
            await _make_retries_due(notify)
            await notify.container.dispatcher.dispatch_once()

        [failed] = await notify.published("notification.failed")
        event = NotificationFailed.model_validate(failed.data)
        assert event.attempts == 2 and "mail server unreachable" in event.error
        await _make_retries_due(notify)
        assert await notify.container.dispatcher.dispatch_once() == 0


async def _make_retries_due(notify: ServiceUnderTest) -> None:
    """Moves every retry time to the past instead of sleeping through the back-off."""
    from sqlalchemy import update

    from spoc_notify.models import Delivery

    async with notify.runtime.engine.begin() as conn:
        await conn.execute(
            update(Delivery.__table__).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
        )


async def test_an_address_that_cannot_be_written_is_a_published_failure_not_a_dead_letter(
    sqlite_url: str,
) -> None:
    from spoc_contracts import Requester

    transport = RecordingTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        ticket_id = uuid.uuid4()
        odd = ticket_created(requester=Requester(name="José", email="josé@example.org"))
        await notify.deliver(envelope(odd, ticket_id=ticket_id, source="intake"))
        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))

        [failed] = await notify.published("notification.failed")
        assert "cannot compose" in NotificationFailed.model_validate(failed.data).error
        assert await notify.container.dispatcher.dispatch_once() == 0
        assert transport.sent == []


class HeldTransport(RecordingTransport):
    """Holds the first send until released, as a slow mail server would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def send(self, mail: OutgoingMail) -> None:
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        await super().send(mail)


async def test_a_dispatcher_whose_lease_ran_out_does_not_record_the_send_again(
    sqlite_url: str,
) -> None:
    from spoc_notify.dispatcher import DeliveryDispatcher

    transport = HeldTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        await journey_events(notify, "created first")
        slow = notify.container.dispatcher
        other = DeliveryDispatcher(
            unit_of_work=notify.runtime.unit_of_work,
            # The same mail server, through the same unboxing as the first dispatcher.
            transport=notify.container.transport,
            sender="desk@spoc.localhost",
            max_attempts=8,
        )
        first = asyncio.create_task(slow.dispatch_once())
        await transport.holding.wait()
        await _make_retries_due(notify)  # the first dispatcher's lease has run out
        assert await other.dispatch_once() == 1
        transport.release.set()
        await first

        assert len(transport.sent) == 2  # the mail went twice: Message-ID folds the copies
        assert len(await notify.published("notification.sent")) == 1


async def test_an_acknowledgement_written_again_from_the_same_events_has_the_same_message_id(
    tmp_path: Path,
) -> None:
    """The Message-ID is what folds a second copy into one for the reader. A re-send of a
    stored delivery repeats its bytes; this is the case where the mail is written anew: notify's
    database restored from a backup taken before the ticket, its events replayed."""
    tickets = [uuid.uuid4(), uuid.uuid4()]
    events = [
        envelope(event, ticket_id=ticket_id, source=source)
        for ticket_id in tickets
        for event, source in ((ticket_created(), "intake"), (clocks_started(), "sla"))
    ]
    message_ids: dict[str, list[str]] = {}
    for database in ("before the backup", "restored"):
        transport = RecordingTransport()
        url = f"sqlite+aiosqlite:///{tmp_path / database}.sqlite3"
        async with service("notify", url, transport=transport) as notify:
            for ticket_events in (events[:2], events[2:]):  # one ticket after the other
                for event in ticket_events:
                    await notify.deliver(event)
                assert await notify.container.dispatcher.dispatch_once() == 1
        message_ids[database] = [str(mail["Message-ID"]) for mail in transport.sent]

    first, second = message_ids["before the backup"]
    assert message_ids["restored"] == [first, second]
    assert first != second  # each ticket its own: two tickets' mails must never fold
