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
        # Ala reads Polish: the date is hers, on the desk's clock (UTC by default).
        assert "First response by: pon., 23 lis 2026, 12:00 (uniwersalny czas koordynowany)" in text
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


async def stored_delivery(notify: ServiceUnderTest, ticket_id: uuid.UUID) -> dict[str, object]:
    """The ticket's row in notify's delivery log, without the values the database invents."""
    from spoc_notify.models import Delivery

    table = Delivery.__table__
    async with notify.runtime.engine.connect() as conn:
        [row] = (await conn.execute(select(table).where(table.c.ticket_id == ticket_id))).all()
    stored = dict(row._mapping)
    for invented in ("id", "delivery_id", "next_attempt_at", "created_at"):
        assert stored.pop(invented) is not None
    return stored


async def stored_access_key(notify: ServiceUnderTest, ticket_id: uuid.UUID) -> object:
    table = TicketContact.__table__
    async with notify.runtime.engine.connect() as conn:
        query = select(table.c.access_key_sealed, table.c.access_key)
        return tuple((await conn.execute(query.where(table.c.ticket_id == ticket_id))).one())


async def test_an_acknowledgement_that_cannot_be_written_is_logged_kept_and_told_to_intake(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What staff see of a mail that can never go: a failed row in the delivery log, an error in
    the log, and a notification.failed for intake's internal history; the key is not kept."""
    from spoc_contracts import Requester

    error = (
        "cannot compose: 'ascii' codec can't encode character '\\xe9' in position 3: "
        "ordinal not in range(128)"
    )
    async with service("notify", sqlite_url, transport=RecordingTransport()) as notify:
        ticket_id = uuid.uuid4()
        odd = ticket_created(requester=Requester(name="José", email="josé@example.org"))
        created = envelope(odd, ticket_id=ticket_id, source="intake")
        clocks = envelope(clocks_started(), ticket_id=ticket_id, source="sla")
        await notify.deliver(created)
        with caplog.at_level("ERROR", logger="spoc_notify.handlers"):
            await notify.deliver(clocks)

        assert await stored_delivery(notify, ticket_id) == {
            "ticket_id": ticket_id,
            "number": "SD-000042",
            "kind": "acknowledgement",
            "channel": "email",
            "recipient": "josé@example.org",
            "message": "",
            "status": "failed",
            "attempts": 0,
            "last_error": error,
            "correlation_id": clocks.correlation_id,
            "causation_id": clocks.id,
            "sent_at": None,
        }
        assert await stored_access_key(notify, ticket_id) == (None, None)
        assert [
            (r.name, r.levelname, r.getMessage())
            for r in caplog.records
            if r.name == "spoc_notify.handlers"
        ] == [
            (
                "spoc_notify.handlers",
                "ERROR",
                f"acknowledgement for SD-000042 cannot be sent: {error}",
            )
        ]
        [published] = await notify.published("notification.failed")
        assert published.ticket_id == ticket_id
        assert published.data == {
            "number": "SD-000042",
            "notification_id": f"acknowledgement:{ticket_id}",
            "kind": "acknowledgement",
            "channel": "email",
            "recipient": "josé@example.org",
            "attempts": 0,
            "error": error,
        }


async def test_a_long_composing_error_is_cut_to_what_the_log_and_the_event_carry(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delivery log keeps 2000 characters of the reason, the event 500 (the same bounds
    as a failed send's): a template that fails with a page of text does not bloat either."""
    reason = "".join(f"{n % 10}" for n in range(3000))

    def unwritable(*args: object, **kwargs: object) -> None:
        raise ValueError(reason)

    monkeypatch.setattr("spoc_notify.handlers.acknowledgement_message", unwritable)
    async with service("notify", sqlite_url, transport=RecordingTransport()) as notify:
        ticket_id = await journey_events(notify, "created first")

        stored = await stored_delivery(notify, ticket_id)
        assert stored["last_error"] == f"cannot compose: {reason}"[:2000]
        [published] = await notify.published("notification.failed")
        assert published.data["error"] == f"cannot compose: {reason}"[:500]


async def stored_contact(notify: ServiceUnderTest, ticket_id: uuid.UUID) -> dict[str, object]:
    """What notify keeps of the ticket's requester and targets, but for when it last changed."""
    table = TicketContact.__table__
    async with notify.runtime.engine.connect() as conn:
        query = select(table).where(table.c.ticket_id == ticket_id)
        stored = dict((await conn.execute(query)).one()._mapping)
    assert stored.pop("updated_at") is not None
    return stored


async def test_the_requesters_record_gathers_what_each_half_brings(sqlite_url: str) -> None:
    async with service("notify", sqlite_url, transport=RecordingTransport()) as notify:
        ticket_id = uuid.uuid4()
        from spoc_contracts import Requester

        requester = Requester(
            name="Ala Kowalska",
            email="ala@example.org",
            phone="+48 600 100 200",
            locale="pl-PL",
            preferred_channel="sms",
        )
        ticket = ticket_created(requester=requester)
        created = envelope(ticket, ticket_id=ticket_id, source="intake")
        clocks = envelope(clocks_started(), ticket_id=ticket_id, source="sla")
        await notify.deliver(created)

        from_intake = {
            "ticket_id": ticket_id,
            "number": "SD-000042",
            "subject": "Laptop will not boot",
            "name": "Ala Kowalska",
            "email": "ala@example.org",
            "locale": "pl-PL",
            "preferred_channel": "sms",
            "access_key_sealed": ticket.access_key_sealed,
            "access_key": None,
            "requester_known": True,
            "created_event_id": created.id,
        }
        no_targets_yet = {
            "priority": None,
            "first_response_due_at": None,
            "resolution_due_at": None,
            "clocks_event_id": None,
        }
        assert await stored_contact(notify, ticket_id) == {**from_intake, **no_targets_yet}

        await notify.deliver(clocks)
        assert await stored_contact(notify, ticket_id) == {
            **from_intake,
            "access_key_sealed": None,  # the acknowledgement is written: the key is not kept
            "priority": "P2",
            "first_response_due_at": DUE,
            "resolution_due_at": DUE.replace(day=24),
            "clocks_event_id": clocks.id,
        }


ACKNOWLEDGEMENT_TEXT = """\
Hello Ala Kowalska,

your request is registered as SD-000042. Please quote this number whenever you
contact us about it.

  Subject:           Laptop will not boot
  Priority:          P2
  First response by: pon., 23 lis 2026, 12:00 (uniwersalny czas koordynowany)
  Resolution by:     wt., 24 lis 2026, 12:00 (uniwersalny czas koordynowany)

Follow your request, see who is handling it and add information at any time:
http://127.0.0.1:8000/t/SD-000042?key=secret-key-123

This is an automatic reply. Reply to this message to add to your request.

Spoc Service Desk"""


async def test_the_acknowledgement_is_owed_to_the_requester_and_says_everything_they_need(
    sqlite_url: str,
) -> None:
    transport = RecordingTransport()
    async with service("notify", sqlite_url, transport=transport) as notify:
        ticket_id = uuid.uuid4()
        created = envelope(ticket_created(), ticket_id=ticket_id, source="intake")
        clocks = envelope(clocks_started(), ticket_id=ticket_id, source="sla")
        await notify.deliver(created)
        await notify.deliver(clocks)

        owed = await stored_delivery(notify, ticket_id)
        boxed = owed.pop("message")
        assert isinstance(boxed, str) and "secret-key-123" not in boxed  # sealed until sent
        assert owed == {
            "ticket_id": ticket_id,
            "number": "SD-000042",
            "kind": "acknowledgement",
            "channel": "email",
            "recipient": "ala@example.org",
            "status": "pending",
            "attempts": 0,
            "last_error": None,
            # The event that completed the pair caused it.
            "correlation_id": clocks.correlation_id,
            "causation_id": clocks.id,
            "sent_at": None,
        }

        assert await notify.container.dispatcher.dispatch_once() == 1
        [mail] = transport.sent
        assert mail["Message-ID"] == f"<ack.{ticket_id}@spoc.localhost>"
        body = mail.get_body(("plain",))
        assert body is not None and body.get_content() == ACKNOWLEDGEMENT_TEXT


@pytest.mark.parametrize("half", ["ticket.created", "sla.clock_started"])
async def test_a_half_that_names_no_ticket_is_dead_lettered_with_the_reason(
    sqlite_url: str, half: str
) -> None:
    from spoc_contracts import Envelope
    from spoc_platform.bus import PoisonMessage

    event = ticket_created() if half == "ticket.created" else clocks_started()
    orphan = Envelope.wrap(event, source="test", ticket_id=None, sequence=1)
    async with service("notify", sqlite_url, transport=RecordingTransport()) as notify:
        with pytest.raises(PoisonMessage) as dead:
            await notify.deliver(orphan)
        assert str(dead.value) == f"{half} without a ticket_id"


async def test_a_subject_that_would_smuggle_in_a_header_is_recorded_as_unwritable(
    sqlite_url: str,
) -> None:
    """intake refuses control characters, but an event from any other producer may carry them:
    the mail is refused as unwritable (no Bcc slips in), not retried until it is dead-lettered."""
    async with service("notify", sqlite_url, transport=RecordingTransport()) as notify:
        ticket_id = uuid.uuid4()
        smuggling = ticket_created(subject="Printer\r\nBcc: someone@example.org")
        await notify.deliver(envelope(smuggling, ticket_id=ticket_id, source="intake"))
        await notify.deliver(envelope(clocks_started(), ticket_id=ticket_id, source="sla"))

        stored = await stored_delivery(notify, ticket_id)
        assert (stored["status"], stored["message"]) == ("failed", "")
        assert stored["last_error"].startswith("cannot compose: ")
        assert await stored_access_key(notify, ticket_id) == (None, None)
        [failed] = await notify.published("notification.failed")
        assert failed.ticket_id == ticket_id
