"""Notify's dispatcher with real mail servers and databases: one mail per delivery, always."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts import Envelope
from spoc_notify import repository
from spoc_notify.dispatcher import DeliveryDispatcher
from spoc_notify.mail import OutgoingMail, SmtpTransport
from spoc_notify.models import MESSAGING, Base
from spoc_platform.db import create_engine
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.localstack import _free_port
from tests.support import eventually

pytestmark = pytest.mark.integration
SENDER = "desk@spoc.localhost"


class SlowMailServer:
    """A real SMTP server (aiosmtpd, own thread) that takes `delay` seconds to accept each
    message, and counts how many it was given at once."""

    def __init__(self, delay: float) -> None:
        from aiosmtpd.controller import Controller

        self.delay = delay
        self.messages: list[Message] = []
        self.in_flight = 0
        self.most_at_once = 0
        self._lock = threading.Lock()
        server = self

        class _Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                with server._lock:
                    server.in_flight += 1
                    server.most_at_once = max(server.most_at_once, server.in_flight)
                try:
                    await asyncio.sleep(server.delay)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                        server.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self._controller = Controller(_Handler(), hostname="127.0.0.1", port=_free_port())

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self._controller.port}"

    def count_by_ticket(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for message in self.messages:
                number = str(message["X-Spoc-Ticket"])
                counts[number] = counts.get(number, 0) + 1
            return counts

    def __enter__(self) -> SlowMailServer:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()


@pytest.fixture
def slow_mail() -> Iterator[SlowMailServer]:
    with SlowMailServer(delay=0.3) as server:
        yield server


@asynccontextmanager
async def notify_database(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


def raw_mail(number: str) -> str:
    return (
        f"From: Spoc <{SENDER}>\r\nTo: someone@example.org\r\nSubject: [{number}] We have it\r\n"
        f"Message-ID: <ack.{number}@spoc.localhost>\r\nX-Spoc-Ticket: {number}\r\n\r\n"
        f"Your request is {number}.\r\n"
    )


async def owe(engine: AsyncEngine, count: int) -> list[str]:
    numbers = [f"SD-{i:06d}" for i in range(1, count + 1)]
    async with engine.begin() as conn:
        for number in numbers:
            await repository.owe_delivery(
                conn,
                ticket_id=uuid.uuid4(),
                number=number,
                kind="acknowledgement",
                channel="email",
                recipient="someone@example.org",
                message=raw_mail(number),
            )
    return numbers


async def statuses(engine: AsyncEngine) -> dict[str, str]:
    table = repository.delivery
    async with engine.connect() as conn:
        rows = (await conn.execute(select(table.c.number, table.c.status))).all()
    return {row.number: row.status for row in rows}


async def sent_events_by_ticket(engine: AsyncEngine) -> dict[str, int]:
    outbox = MESSAGING.outbox
    async with engine.connect() as conn:
        bodies = (
            await conn.execute(
                select(outbox.c.body).where(outbox.c.event_type == "notification.sent")
            )
        ).scalars()
        counts: dict[str, int] = {}
        for body in bodies:
            number = str(Envelope.model_validate_json(body).data["number"])
            counts[number] = counts.get(number, 0) + 1
    return counts


def dispatcher(
    engine: AsyncEngine, transport: Any, uow: UnitOfWorkFactory | None = None, **options: Any
) -> DeliveryDispatcher:
    return DeliveryDispatcher(
        unit_of_work=uow or UnitOfWorkFactory(engine, MESSAGING, "notify"),
        transport=transport,
        sender=SENDER,
        max_attempts=8,
        **options,
    )


class RecordingTransport:
    """Keeps what it is given: the mails a dispatcher really sent."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []

    async def send(self, mail: OutgoingMail) -> None:
        self.sent.append(mail)

    async def close(self) -> None:
        return None


async def test_the_smtp_transport_sends_as_many_messages_at_once_as_it_declares(
    slow_mail: SlowMailServer,
) -> None:
    transport = SmtpTransport(slow_mail.url, concurrency=4)
    mails = [
        OutgoingMail(raw=raw_mail(f"SD-{i}").encode(), sender=SENDER, recipients=("a@b.org",))
        for i in range(4)
    ]
    await asyncio.gather(*(transport.send(mail) for mail in mails))
    await transport.close()
    assert slow_mail.most_at_once == 4
    assert len(slow_mail.messages) == 4


@pytest.mark.postgres
async def test_two_dispatchers_and_a_slow_mail_server_send_each_mail_exactly_once(
    postgres_url: str, slow_mail: SlowMailServer
) -> None:
    """A short lease and a server taking 0.3 s a message: a claim larger than the lease can
    cover used to run out mid-batch, and the other replica sent the rest a second time."""
    async with notify_database(postgres_url) as first, notify_database(postgres_url) as second:
        numbers = await owe(first, 40)
        workers = [
            dispatcher(engine, SmtpTransport(slow_mail.url, concurrency=4), lease=2.0)
            for engine in (first, second)
        ]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:

            async def all_settled() -> bool:
                return set((await statuses(first)).values()) == {"sent"}

            await eventually(all_settled, timeout=60, message="every delivery sent")
        finally:
            for worker in workers:
                await worker.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        assert slow_mail.count_by_ticket() == dict.fromkeys(numbers, 1)
        assert await sent_events_by_ticket(first) == dict.fromkeys(numbers, 1)


@pytest.mark.postgres
async def test_stop_lets_a_send_in_flight_finish_and_records_it(
    postgres_url: str, slow_mail: SlowMailServer
) -> None:
    async with notify_database(postgres_url) as engine:
        [number] = await owe(engine, 1)
        worker = dispatcher(engine, SmtpTransport(slow_mail.url, concurrency=4))
        task = asyncio.create_task(worker.run())

        async def sending() -> bool:
            return slow_mail.in_flight > 0

        await eventually(sending, message="the mail server is receiving the message")
        await worker.stop()
        # As the service runtime does after stopping its workers.
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        assert slow_mail.count_by_ticket() == {number: 1}
        assert await statuses(engine) == {number: "sent"}
        assert await sent_events_by_ticket(engine) == {number: 1}


class BlinkingUnitOfWork(UnitOfWorkFactory):
    """The real unit of work, whose first `blinks` commits fail as a dropped database
    connection would (the transaction is rolled back, the error is an outage)."""

    def __init__(self, engine: AsyncEngine, blinks: int) -> None:
        super().__init__(engine, MESSAGING, "notify")
        self.blinks = blinks

    @asynccontextmanager
    async def __call__(self, causation: Envelope | None = None) -> AsyncIterator[UnitOfWork]:
        async with super().__call__(causation) as uow:
            yield uow
            if self.blinks:
                self.blinks -= 1
                raise OperationalError("COMMIT", {}, ConnectionResetError("connection reset"))


async def test_a_database_blip_after_a_send_does_not_send_the_mail_again(
    database_url: str,
) -> None:
    async with notify_database(database_url) as engine:
        [number] = await owe(engine, 1)
        transport = RecordingTransport()
        blinking = BlinkingUnitOfWork(engine, blinks=2)
        worker = dispatcher(engine, transport, uow=blinking, lease=5.0)

        assert await worker.dispatch_once() == 1
        assert blinking.blinks == 0  # both blips were met, and waited out
        assert await statuses(engine) == {number: "sent"}
        assert await sent_events_by_ticket(engine) == {number: 1}

        # Nothing is left for a later pass (or another replica) to send a second time.
        assert await worker.dispatch_once() == 0
        assert len(transport.sent) == 1
