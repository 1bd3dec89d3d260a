"""Outbox and inbox on SQLite and the real PostgreSQL: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts import Envelope
from spoc_platform.bus import (
    Delivery,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    RetryLater,
)
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.consumer import EventConsumer, PermanentError
from spoc_platform.db import new_metadata
from spoc_platform.messaging_tables import MessagingTables, define_messaging_tables
from spoc_platform.relay import OutboxRelay, RelaySettings
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.harness import envelope, ticket_created

pytestmark = pytest.mark.integration


class Store:
    """A tiny service database: one state table beside the messaging tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        metadata: MetaData = new_metadata()
        self.notes = Table("note", metadata, Column("text", String(100)))
        self.tables: MessagingTables = define_messaging_tables(metadata)
        self.metadata = metadata
        self.engine = engine
        self.unit_of_work = UnitOfWorkFactory(engine, self.tables, "test")

    async def count(self, table: Table, *where: Any) -> int:
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(select(func.count()).select_from(table).where(*where))
                ).scalar_one()
            )


class FlakyBus(MemoryBus):
    """A memory bus whose broker refuses to confirm while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.confirmed: list[OutgoingMessage] = []

    async def publish(self, message: OutgoingMessage) -> None:
        if self.down:
            raise PublishError("broker unreachable")
        await super().publish(message)
        self.confirmed.append(message)


async def write_note(store: Store, text: str) -> Envelope:
    async with store.unit_of_work() as uow:
        await uow.conn.execute(store.notes.insert().values(text=text))
        return await uow.publish(ticket_created(subject=text), ticket_id=uuid.uuid4())


def relay_for(store: Store, bus: MemoryBus, **settings: Any) -> OutboxRelay:
    return OutboxRelay(
        service="test",
        engine=store.engine,
        tables=store.tables,
        bus=bus,
        settings=RelaySettings(**settings),
    )


async def test_state_and_its_event_commit_together_or_not_at_all(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            await uow.conn.execute(store.notes.insert().values(text="lost"))
            await uow.publish(ticket_created(), ticket_id=uuid.uuid4())
            raise RuntimeError("crash before commit")
    assert await store.count(store.notes) == 0
    assert await store.count(store.tables.outbox) == 0

    await write_note(store, "kept")
    assert await store.count(store.notes) == 1
    assert await store.count(store.tables.outbox) == 1


async def test_events_about_a_ticket_are_numbered_in_order_per_ticket(store: Store) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with store.unit_of_work() as uow:
        a1 = await uow.publish(ticket_created(), ticket_id=first)
        b1 = await uow.publish(ticket_created(), ticket_id=second)
        a2 = await uow.publish(ticket_created(), ticket_id=first)
    async with store.unit_of_work() as uow:
        a3 = await uow.publish(ticket_created(), ticket_id=first)
        loose = await uow.publish(ticket_created(), ticket_id=None)

    assert [e.sequence for e in (a1, a2, a3)] == [1, 2, 3]
    assert (b1.sequence, loose.sequence) == (1, 0)
    # The outbox holds exactly the envelopes the unit of work returned, each due at once.
    outbox = store.tables.outbox
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    assert [Envelope.model_validate_json(r.body) for r in rows] == [a1, b1, a2, a3, loose]
    assert [(r.event_id, r.event_type, r.ticket_id) for r in rows] == [
        (e.id, e.type, e.ticket_id) for e in (a1, b1, a2, a3, loose)
    ]
    for row in rows:
        assert (row.attempts, row.published_at, row.last_error) == (0, None, None)
        assert row.next_attempt_at == row.created_at
        assert abs(row.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_events_published_while_handling_one_continue_its_correlation(store: Store) -> None:
    cause = envelope(ticket_created(), correlation_id=uuid.uuid4())
    other = uuid.uuid4()
    async with store.unit_of_work(causation=cause) as uow:
        follows = await uow.publish(ticket_created(), ticket_id=cause.ticket_id)
        told = await uow.publish(
            ticket_created(), ticket_id=cause.ticket_id, correlation_id=other, causation_id=other
        )
    async with store.unit_of_work() as uow:
        fresh = await uow.publish(ticket_created(), ticket_id=None)

    assert (follows.correlation_id, follows.causation_id) == (cause.correlation_id, cause.id)
    assert (told.correlation_id, told.causation_id) == (other, other)
    assert follows.source == told.source == fresh.source == "test"
    assert fresh.causation_id is None and fresh.correlation_id == fresh.id


async def test_the_commit_callback_runs_after_commits_that_published_something(
    store: Store,
) -> None:
    commits: list[int] = []
    factory = UnitOfWorkFactory(
        store.engine,
        store.tables,
        "test",
        on_commit=lambda: commits.append(len(commits)),
    )
    async with factory() as uow:
        await uow.conn.execute(store.notes.insert().values(text="no event"))
    assert commits == []
    async with factory() as uow:
        await uow.publish(ticket_created(), ticket_id=uuid.uuid4())
        assert commits == []  # not before the commit
    assert commits == [0]


async def test_the_relay_publishes_pending_rows_and_marks_them(store: Store, bus: FlakyBus) -> None:
    sent = [await write_note(store, f"n{i}") for i in range(3)]
    relay = relay_for(store, bus)

    assert await relay.relay_once() == 3
    assert await relay.relay_once() == 0
    assert bus.depth("listener") == 3
    # Each as written: its id, its type to route by, and the envelope itself.
    published = {message.message_id: message for message in bus.confirmed}
    assert set(published) == {str(event.id) for event in sent}
    for event in sent:
        message = published[str(event.id)]
        assert message.routing_key == event.type
        assert Envelope.model_validate_json(message.body) == event
    outbox = store.tables.outbox
    assert await store.count(outbox, outbox.c.published_at.is_(None)) == 0
    assert await store.count(outbox, outbox.c.event_id.in_([e.id for e in sent])) == 3


async def test_an_unconfirmed_publish_is_retried_later_not_lost(
    store: Store, bus: FlakyBus
) -> None:
    await write_note(store, "during an outage")
    relay = relay_for(store, bus)
    outbox = store.tables.outbox

    bus.down = True
    assert await relay.relay_once() == 0
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(outbox))).one()
    assert row.published_at is None and row.attempts == 1
    assert row.next_attempt_at > datetime.now(UTC) and "broker unreachable" in row.last_error
    assert await relay.relay_once() == 0  # backing off: not due yet

    bus.down = False
    async with store.engine.begin() as conn:
        await conn.execute(update(outbox).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC)))
    assert await relay.relay_once() == 1
    assert bus.depth("listener") == 1
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(outbox))).one()
    assert row.published_at is not None and row.last_error is None  # the outage is over


async def test_an_event_nobody_listens_to_waits_instead_of_vanishing(store: Store) -> None:
    lonely = MemoryBus()
    await lonely.connect()
    await write_note(store, "unbound")
    assert await relay_for(store, lonely).relay_once() == 0
    outbox = store.tables.outbox
    assert await store.count(outbox, outbox.c.published_at.is_(None)) == 1


async def test_the_relay_wakes_at_once_when_a_transaction_commits(
    store: Store, bus: FlakyBus
) -> None:
    relay = relay_for(store, bus, poll_interval=30)
    store.unit_of_work.on_commit(relay.kick)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.05)
        await write_note(store, "now")
        async with asyncio.timeout(2):
            while bus.depth("listener") == 0:
                await asyncio.sleep(0.01)
    finally:
        await relay.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def consumer_for(store: Store, handler: Any) -> EventConsumer:
    return EventConsumer(
        service="test",
        unit_of_work=store.unit_of_work,
        handlers={"ticket.created": handler},
        delivery_limit=3,
    )


def delivery_of(env: Envelope, count: int = 0) -> Delivery:
    return Delivery(str(env.id), env.type, env.to_bytes(), count)


async def test_a_redelivered_event_is_acknowledged_without_doing_it_again(store: Store) -> None:
    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        await uow.conn.execute(store.notes.insert().values(text=event.subject))
        await uow.publish(ticket_created(), ticket_id=envelope.ticket_id)

    consumer = consumer_for(store, handler)
    event = envelope(ticket_created(subject="once"))
    await consumer.handle(delivery_of(event))
    await consumer.handle(delivery_of(event, count=1))

    assert await store.count(store.notes) == 1
    assert await store.count(store.tables.outbox) == 1
    assert await store.count(store.tables.inbox) == 1


async def test_a_failed_handler_leaves_no_trace_so_the_retry_runs_in_full(store: Store) -> None:
    attempts = 0

    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await uow.conn.execute(store.notes.insert().values(text="half done"))
        if attempts == 1:
            raise RuntimeError("the handler tripped over a bug")

    consumer = consumer_for(store, handler)
    event = envelope(ticket_created())
    with pytest.raises(RetryLater):
        await consumer.handle(delivery_of(event))
    assert await store.count(store.notes) == 0 and await store.count(store.tables.inbox) == 0

    await consumer.handle(delivery_of(event, count=1))
    assert attempts == 2 and await store.count(store.notes) == 1


@pytest.mark.parametrize(
    "body",
    [b"\x00garbage", b'{"id": "nope"}'],
    ids=["not json", "not an envelope"],
)
async def test_a_message_that_can_never_be_handled_is_poison(store: Store, body: bytes) -> None:
    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AssertionError("must not run")

    with pytest.raises(PoisonMessage):
        await consumer_for(store, handler).handle(Delivery("x", "ticket.created", body, 0))


async def test_a_handler_refusing_for_good_sends_the_event_to_the_dead_letters(
    store: Store,
) -> None:
    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise PermanentError("this ticket cannot exist")

    with pytest.raises(PoisonMessage, match="cannot exist"):
        await consumer_for(store, handler).handle(delivery_of(envelope(ticket_created())))
