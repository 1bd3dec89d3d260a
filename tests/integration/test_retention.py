"""Nothing grows forever: housekeeping forgets what is past its retention and keeps the rest,
on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Table, func, insert, select, update

from spoc_notify.models import Delivery, TicketContact
from spoc_platform.db import utc_now
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.unit.test_notify_acknowledgement import RecordingTransport, clocks_started

pytestmark = pytest.mark.integration


def days_ago(days: float) -> Any:
    return utc_now() - timedelta(days=days)


async def count(running: ServiceUnderTest, table: Any, *where: Any) -> int:
    table = table if isinstance(table, Table) else table.__table__
    async with running.runtime.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def acknowledge(notify: ServiceUnderTest, number: str) -> uuid.UUID:
    ticket_id = uuid.uuid4()
    created = ticket_created(number=number)
    clocks = clocks_started().model_copy(update={"number": number})
    await notify.deliver(envelope(created, ticket_id=ticket_id, source="intake"))
    await notify.deliver(envelope(clocks, ticket_id=ticket_id, source="sla"))
    return ticket_id


async def age(notify: ServiceUnderTest, ticket_id: uuid.UUID, days: float) -> None:
    delivery, contact = Delivery.__table__, TicketContact.__table__
    async with notify.runtime.engine.begin() as conn:
        await conn.execute(
            update(delivery)
            .where(delivery.c.ticket_id == ticket_id)
            .values(created_at=days_ago(days))
        )
        await conn.execute(
            update(contact)
            .where(contact.c.ticket_id == ticket_id)
            .values(updated_at=days_ago(days))
        )


async def test_notify_forgets_old_settled_deliveries_and_contacts_and_keeps_the_rest(
    database_url: str,
) -> None:
    transport = RecordingTransport()
    async with service(
        "notify",
        database_url,
        transport=transport,
        delivery_retention_days=30,
        contact_retention_days=30,
    ) as notify:
        old = await acknowledge(notify, "SD-000001")
        recent = await acknowledge(notify, "SD-000002")
        assert await notify.container.dispatcher.dispatch_once() == 2
        unsent = await acknowledge(notify, "SD-000003")  # owed, never sent: kept at any age
        waiting = uuid.uuid4()  # its clocks never came
        await notify.deliver(envelope(ticket_created(), ticket_id=waiting, source="intake"))
        for ticket_id, days in ((old, 31), (recent, 29), (unsent, 31), (waiting, 31)):
            await age(notify, ticket_id, days)

        await notify.runtime.housekeep()

        delivery, contact = Delivery.__table__, TicketContact.__table__
        sequence = notify.runtime.tables.event_sequence
        assert await count(notify, delivery, delivery.c.ticket_id == old) == 0
        assert await count(notify, sequence, sequence.c.ticket_id == old) == 0
        assert await count(notify, delivery, delivery.c.ticket_id == recent) == 1
        assert await count(notify, sequence, sequence.c.ticket_id == recent) == 1
        assert await count(notify, delivery, delivery.c.ticket_id == unsent) == 1
        async with notify.runtime.engine.connect() as conn:
            contacts = set((await conn.execute(select(contact.c.ticket_id))).scalars())
        assert contacts == {recent}


async def test_handled_event_ids_are_kept_as_long_as_the_inbox_retention_says(
    database_url: str,
) -> None:
    async with service("routing", database_url, inbox_retention_days=2) as routing:
        inbox = routing.runtime.tables.inbox
        past, within = uuid.uuid4(), uuid.uuid4()
        async with routing.runtime.engine.begin() as conn:
            await conn.execute(
                insert(inbox),
                [
                    {"event_id": past, "event_type": "ticket.created", "handled_at": days_ago(3)},
                    {"event_id": within, "event_type": "ticket.created", "handled_at": days_ago(1)},
                ],
            )

        await routing.runtime.housekeep()

        async with routing.runtime.engine.connect() as conn:
            kept = set((await conn.execute(select(inbox.c.event_id))).scalars())
        assert kept == {within}


async def test_failure_counts_are_forgotten_past_the_inbox_retention(database_url: str) -> None:
    async with service("routing", database_url, inbox_retention_days=2) as routing:
        failures = routing.runtime.tables.delivery_failure
        past, within = uuid.uuid4(), uuid.uuid4()
        async with routing.runtime.engine.begin() as conn:
            await conn.execute(
                insert(failures),
                [
                    {
                        "event_id": event_id,
                        "event_type": "ticket.created",
                        "failures": 2,
                        "first_failed_at": at,
                        "last_failed_at": at,
                    }
                    for event_id, at in ((past, days_ago(3)), (within, days_ago(1)))
                ],
            )

        await routing.runtime.housekeep()

        async with routing.runtime.engine.connect() as conn:
            kept = set((await conn.execute(select(failures.c.event_id))).scalars())
        assert kept == {within}


async def test_published_outbox_rows_are_kept_as_long_as_the_outbox_retention_says(
    database_url: str,
) -> None:
    async with service("sla", database_url, outbox_retention_hours=0.5) as sla:
        outbox = sla.runtime.tables.outbox
        now = utc_now()
        rows = [
            {
                "event_id": uuid.uuid4(),
                "event_type": "sla.clock_started",
                "body": "{}",
                "created_at": now - timedelta(minutes=minutes),
                "attempts": 1,
                "next_attempt_at": now,
                "published_at": now - timedelta(minutes=minutes),
            }
            for minutes in (45, 15)
        ]
        async with sla.runtime.engine.begin() as conn:
            await conn.execute(insert(outbox), rows)

        await sla.runtime.relay.prune()

        async with sla.runtime.engine.connect() as conn:
            kept = set((await conn.execute(select(outbox.c.event_id))).scalars())
        assert kept == {rows[1]["event_id"]}
