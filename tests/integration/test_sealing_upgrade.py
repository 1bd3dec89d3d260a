"""Upgrading a running desk to sealed access keys: what was stored in plaintext before keeps
working (replays, acknowledgements owed) and stops being plaintext where it can."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import JSON, Integer, String, Uuid, column, insert, select, table

from spoc.services import SERVICES, ServiceName
from spoc_intake.schemas import TicketCreate
from spoc_intake.service import _request_hash
from spoc_notify.models import Delivery
from spoc_platform.db import UtcDateTime, create_engine, utc_now
from spoc_platform.migrations import upgrade
from tests.e2e.journey import NEW_TICKET
from tests.harness import envelope, service
from tests.unit.test_notify_acknowledgement import RecordingTransport, clocks_started

pytestmark = pytest.mark.integration
KEY = "plaintext-key-from-before"


async def test_an_idempotent_answer_stored_before_the_upgrade_still_replays_but_sealed(
    database_url: str,
) -> None:
    upgrade(SERVICES[ServiceName.intake].migrations, database_url, "0002")
    # An answer as intake stored it before: the client's key and the access key in plaintext.
    body = {"id": str(uuid.uuid4()), "number": "SD-000007", "access_key": KEY}
    old = table(
        "idempotency_key",
        column("key", String),
        column("request_hash", String),
        column("ticket_id", Uuid),
        column("response", JSON),
        column("created_at", UtcDateTime),
    )
    row = {
        "key": "form-before",
        "request_hash": _request_hash(TicketCreate.model_validate(NEW_TICKET)),
        "ticket_id": uuid.UUID(body["id"]),
        "response": body,
        "created_at": utc_now(),
    }
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(old), [row])
    finally:
        await engine.dispose()

    async with service("intake", database_url) as intake:  # upgrades to head
        answers = table("idempotency_answer", column("key_digest"), column("answer"))
        async with intake.runtime.engine.connect() as conn:
            stored = repr((await conn.execute(select(answers))).all())
        assert stored and KEY not in stored and "form-before" not in stored
        again = await intake.container.tickets.create(
            TicketCreate.model_validate(NEW_TICKET), idempotency_key="form-before"
        )
        assert again.replayed and again.body == body


async def test_notify_work_owed_before_the_upgrade_is_still_done_and_failures_keep_no_mail(
    database_url: str,
) -> None:
    upgrade(SERVICES[ServiceName.notify].migrations, database_url, "0002")
    waiting, owed, failed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    contact = table(
        "ticket_contact",
        *(column(name, String) for name in ("number", "subject", "name", "email", "access_key")),
        column("ticket_id", Uuid),
        column("created_event_id", Uuid),
    )
    delivery = table(
        "delivery",
        *(column(n, String) for n in ("number", "kind", "channel", "recipient", "message")),
        column("status", String),
        column("attempts", Integer),
        column("delivery_id", Uuid),
        column("ticket_id", Uuid),
        column("next_attempt_at", UtcDateTime),
        column("created_at", UtcDateTime),
    )
    mail = f"To: ala@example.org\r\nSubject: owed\r\n\r\nhttp://desk/t/SD-000002?key={KEY}\r\n"
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(contact),
                [
                    {
                        "ticket_id": waiting,
                        "number": "SD-000042",
                        "subject": "Laptop will not boot",
                        "name": "Ala Kowalska",
                        "email": "ala@example.org",
                        "access_key": KEY,
                        "created_event_id": uuid.uuid4(),
                    }
                ],
            )
            await conn.execute(
                insert(delivery),
                [
                    {
                        "delivery_id": uuid.uuid4(),
                        "ticket_id": ticket_id,
                        "number": number,
                        "kind": "acknowledgement",
                        "channel": "email",
                        "recipient": "ala@example.org",
                        "message": mail,
                        "status": status,
                        "attempts": 0,
                        "next_attempt_at": utc_now(),
                        "created_at": utc_now(),
                    }
                    for ticket_id, number, status in (
                        (owed, "SD-000002", "pending"),
                        (failed, "SD-000003", "failed"),
                    )
                ],
            )
    finally:
        await engine.dispose()

    transport = RecordingTransport()
    async with service("notify", database_url, transport=transport) as notify:
        await notify.deliver(envelope(clocks_started(), ticket_id=waiting, source="sla"))
        assert await notify.container.dispatcher.dispatch_once() == 2

        texts = " ".join(m.get_body(("plain",)).get_content() for m in transport.sent)
        assert f"/t/SD-000002?key={KEY}" in texts and f"/t/SD-000042?key={KEY}" in texts
        rows = Delivery.__table__
        async with notify.runtime.engine.connect() as conn:
            kept = (await conn.execute(select(rows.c.number, rows.c.message))).all()
            left = (await conn.execute(select(contact.c.access_key))).scalars().all()
        assert {number: message for number, message in kept} == dict.fromkeys(
            ("SD-000002", "SD-000003", "SD-000042"), ""
        )
        assert left == [None]
