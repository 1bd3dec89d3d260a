"""The consumer decides every message's fate itself, on SQLite and the real PostgreSQL: the
delivery limit counted in the service's own database, unknown types given back, outages held."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from spoc_contracts import Envelope, TicketCommented, TicketUpdated
from spoc_platform import metrics
from spoc_platform.bus import Delivery, OutgoingMessage, PoisonMessage, RetryLater
from spoc_platform.consumer import AlreadyHandled, EventConsumer, PermanentError
from spoc_platform.db import create_engine, new_metadata
from spoc_platform.messaging_tables import MessagingTables, define_messaging_tables
from spoc_platform.retry import Backoff
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.harness import envelope
from tests.support import eventually

pytestmark = pytest.mark.integration

FAST = Backoff(first=0.001, ceiling=0.002)


def ticket_updated() -> TicketUpdated:
    return TicketUpdated(number="SD-000042", changes={"urgency": "high"})


@pytest.fixture
async def unit_of_work(database_url: str) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(database_url)
    metadata = new_metadata()
    tables: MessagingTables = define_messaging_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield UnitOfWorkFactory(engine, tables, "test")
    finally:
        await engine.dispose()


def consumer(unit_of_work: UnitOfWorkFactory, handler: Any, limit: int = 3) -> EventConsumer:
    built = EventConsumer(
        service="test",
        unit_of_work=unit_of_work,
        handlers={"ticket.updated": handler},
        delivery_limit=limit,
    )
    built.outage_retry = FAST
    return built


def delivery(env: Envelope, count: int = 0) -> Delivery:
    return Delivery(str(env.id), env.type, env.to_bytes(), count)


async def failures_recorded(unit_of_work: UnitOfWorkFactory) -> int:
    table = unit_of_work.tables.delivery_failure
    async with unit_of_work.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_failing_handler_is_retried_with_growing_pauses_then_dead_lettered_at_the_limit(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def broken(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise RuntimeError("a bug in the handler")

    failing = consumer(unit_of_work, broken, limit=3)
    failing.retry = Backoff(first=1.0, ceiling=30.0)
    event = envelope(ticket_updated())

    delays = []
    for count in range(2):
        with pytest.raises(RetryLater) as retry:
            await failing.handle(delivery(event, count))
        delays.append(retry.value.delay)
    with pytest.raises(PoisonMessage, match="failed 3 times; last: RuntimeError: a bug"):
        await failing.handle(delivery(event, 2))

    assert delays == [1.0, 2.0]
    # A dead letter carries its attempts; a replay of it starts with a clean count.
    assert await failures_recorded(unit_of_work) == 0


async def test_the_limit_counts_handler_failures_not_the_brokers_deliveries(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    """A connection cut hands a message out again without its handler having failed: the
    broker's count moves, the consumer's does not. And a count the broker lost (RabbitMQ 4.3
    does not count nacks) does not let a poison message loop: the consumer's count is its own."""

    async def broken(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise RuntimeError("always")

    handled: list[str] = []

    async def fine(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        handled.append(event.number)

    # Redelivered many times by connection cuts, never failed: still handled, not dead.
    await consumer(unit_of_work, fine, limit=1).handle(delivery(envelope(ticket_updated()), 40))
    assert handled == ["SD-000042"]

    # Failing while the broker reports every delivery as the first: dead at the limit anyway.
    poison = envelope(ticket_updated())
    failing = consumer(unit_of_work, broken, limit=2)
    failing.retry = FAST
    with pytest.raises(RetryLater):
        await failing.handle(delivery(poison, 0))
    with pytest.raises(PoisonMessage):
        await failing.handle(delivery(poison, 0))


async def test_a_success_after_failures_clears_the_count(unit_of_work: UnitOfWorkFactory) -> None:
    attempts = 0

    async def flaky(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("once")

    flaky_consumer = consumer(unit_of_work, flaky)
    event = envelope(ticket_updated())
    with pytest.raises(RetryLater):
        await flaky_consumer.handle(delivery(event, 0))
    assert await failures_recorded(unit_of_work) == 1

    await flaky_consumer.handle(delivery(event, 1))
    assert await failures_recorded(unit_of_work) == 0


async def test_a_type_this_replica_cannot_handle_goes_back_to_the_queue_never_acked(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    """During a rolling deploy an old replica meets a newer release's event type on the shared
    queue: it must leave it for a replica that can handle it, and dead-letter it only after the
    limit, never acknowledge it without effect."""

    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AssertionError("must not run")

    old_replica = consumer(unit_of_work, handler, limit=2)
    newer = envelope(
        TicketCommented(
            number="SD-1",
            comment_id="c-1",
            author_kind="agent",
            author_name="Sara",
            visibility="public",
            body="On it.",
        )
    )
    unknown_version = envelope(ticket_updated()).model_copy(update={"version": 99})

    for message in (newer, unknown_version):
        with pytest.raises(RetryLater) as retry:
            await old_replica.handle(delivery(message))
        # Not a hot loop: the message waits a moment before it goes back for another replica.
        assert retry.value.delay >= 0.5
        with pytest.raises(PoisonMessage, match="no handler"):
            await old_replica.handle(delivery(message, 1))

    async with unit_of_work.engine.connect() as conn:
        inbox = unit_of_work.tables.inbox
        assert (await conn.execute(select(func.count()).select_from(inbox))).scalar_one() == 0


async def test_an_event_no_handler_here_knows_is_counted_unhandled_then_dead_for_its_type(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    """Operators alert on spoc_events_consumed_total{outcome="dead"} by service and type."""

    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AssertionError("must not run")

    old_replica = consumer(unit_of_work, handler, limit=2)
    newer = envelope(ticket_updated()).model_copy(update={"version": 99})
    unhandled = metrics.events_consumed.labels("test", "ticket.updated", "unhandled")
    dead = metrics.events_consumed.labels("test", "ticket.updated", "dead")
    before = (unhandled._value.get(), dead._value.get())

    with pytest.raises(RetryLater, match=r"^no handler for ticket.updated v99 in this replica$"):
        await old_replica.handle(delivery(newer))
    assert (unhandled._value.get(), dead._value.get()) == (before[0] + 1, before[1])

    with pytest.raises(
        PoisonMessage,
        match=r"^no handler for ticket.updated v99 in this replica \(after 2 deliveries\)$",
    ):
        await old_replica.handle(delivery(newer, 1))
    assert (unhandled._value.get(), dead._value.get()) == (before[0] + 1, before[1] + 1)


async def test_a_message_that_is_not_an_envelope_is_dead_lettered_and_counted_by_its_key(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AssertionError("must not run")

    dead = metrics.events_consumed.labels("test", "ticket.garbled", "dead")
    before = dead._value.get()
    with pytest.raises(PoisonMessage, match=r"^not a valid envelope: .*Invalid JSON"):
        await consumer(unit_of_work, handler).handle(
            Delivery("m-garbled", "ticket.garbled", b"\x00garbage", 0)
        )
    assert dead._value.get() == before + 1


async def test_an_event_whose_payload_breaks_its_schema_is_dead_lettered_and_counted(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AssertionError("must not run")

    broken = envelope(ticket_updated()).model_copy(update={"data": {"number": 42}})
    dead = metrics.events_consumed.labels("test", "ticket.updated", "dead")
    before = dead._value.get()
    with pytest.raises(PoisonMessage, match="number"):
        await consumer(unit_of_work, handler).handle(delivery(broken))
    assert dead._value.get() == before + 1


async def test_handled_and_refused_events_are_counted_ok_and_dead_for_their_type(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        if event.changes.get("urgency") == "never":
            raise PermanentError("this change can never apply")

    ok = metrics.events_consumed.labels("test", "ticket.updated", "ok")
    dead = metrics.events_consumed.labels("test", "ticket.updated", "dead")
    before = (ok._value.get(), dead._value.get())
    await consumer(unit_of_work, handler).handle(delivery(envelope(ticket_updated())))
    assert (ok._value.get(), dead._value.get()) == (before[0] + 1, before[1])

    refused = envelope(TicketUpdated(number="SD-000042", changes={"urgency": "never"}))
    with pytest.raises(PoisonMessage, match="can never apply"):
        await consumer(unit_of_work, handler).handle(delivery(refused))
    assert (ok._value.get(), dead._value.get()) == (before[0] + 1, before[1] + 1)


async def test_a_failing_handler_is_counted_retry_until_its_last_delivery_then_dead(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def failing(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise RuntimeError("a dependency of the handler is down")

    counted = {
        outcome: metrics.events_consumed.labels("test", "ticket.updated", outcome)
        for outcome in ("retry", "dead")
    }

    def counts() -> tuple[float, float]:
        return (counted["retry"]._value.get(), counted["dead"]._value.get())

    timed = {"service": "test", "type": "ticket.updated"}

    def timing() -> tuple[float, float]:
        count = REGISTRY.get_sample_value("spoc_event_handler_duration_seconds_count", timed)
        total = REGISTRY.get_sample_value("spoc_event_handler_duration_seconds_sum", timed)
        return (count or 0.0, total or 0.0)

    before, timed_before = counts(), timing()
    event = envelope(ticket_updated())
    handling = consumer(unit_of_work, failing, limit=2)
    handling.retry = FAST
    with pytest.raises(RetryLater):
        await handling.handle(delivery(event))
    assert counts() == (before[0] + 1, before[1])
    with pytest.raises(PoisonMessage):
        await handling.handle(delivery(event, count=1))
    assert counts() == (before[0] + 1, before[1] + 1)
    # Failed runs are timed too, under the service and the event's type, for what they took.
    count, total = timing()
    assert count == timed_before[0] + 2
    assert 0 < total - timed_before[1] < 5


async def test_an_event_published_by_a_handler_continues_the_handled_event_s_story(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    published: list[Envelope] = []

    async def following_up(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        published.append(await uow.publish(ticket_updated(), ticket_id=envelope.ticket_id))

    cause = envelope(ticket_updated(), correlation_id=uuid.uuid4())
    await consumer(unit_of_work, following_up).handle(delivery(cause))

    [follows] = published
    assert (follows.correlation_id, follows.causation_id) == (cause.correlation_id, cause.id)


async def test_the_failure_count_keeps_the_start_of_a_long_error_only(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def verbose(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise RuntimeError("x" * 5000)

    failing = consumer(unit_of_work, verbose)
    failing.retry = FAST
    with pytest.raises(RetryLater):
        await failing.handle(delivery(envelope(ticket_updated())))

    table = unit_of_work.tables.delivery_failure
    async with unit_of_work.engine.connect() as conn:
        [(failures, last_error)] = (
            await conn.execute(select(table.c.failures, table.c.last_error))
        ).all()
    assert failures == 1
    assert last_error == ("RuntimeError: " + "x" * 5000)[:2000]


async def test_an_effect_that_exists_already_is_acknowledged_like_a_duplicate(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    async def triaged_before(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        raise AlreadyHandled("ticket SD-000042 was already triaged")

    duplicates = metrics.events_consumed.labels("test", "ticket.updated", "duplicate")
    before = duplicates._value.get()
    await consumer(unit_of_work, triaged_before).handle(delivery(envelope(ticket_updated())))
    assert duplicates._value.get() == before + 1


async def test_a_database_outage_of_any_length_holds_the_event_and_pauses_the_consumer(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    outage = asyncio.Event()
    outage.set()
    attempts = 0

    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        if outage.is_set():
            raise OperationalError("INSERT …", {}, ConnectionError("server closed the connection"))

    held = consumer(unit_of_work, handler, limit=1)
    paused = metrics.consumer_paused.labels("test")
    task = asyncio.create_task(held.handle(delivery(envelope(ticket_updated()))))
    # Far more attempts than any delivery limit or the old five-minute patience allowed.
    while attempts < 200:
        await asyncio.sleep(0.001)
    assert not task.done(), "no verdict reaches the bus during an outage"
    assert held.paused and held.held == 1 and paused._value.get() == 1
    assert await failures_recorded(unit_of_work) == 0, "an outage spends no delivery"

    outage.clear()
    await asyncio.wait_for(task, 5)
    assert not held.paused and held.held == 0 and paused._value.get() == 0


async def test_a_paused_service_takes_no_new_events_until_its_database_is_back(
    unit_of_work: UnitOfWorkFactory,
) -> None:
    """Held events keep their deliveries; new ones stay in the queue, so a long outage cannot
    pile up held messages (on RabbitMQ the consumer is cancelled, and restored after)."""
    from spoc_platform.bus.memory import MemoryBus
    from spoc_platform.runtime import ServiceRuntime

    outage = asyncio.Event()
    outage.set()
    seen: list[str] = []

    async def handler(event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        seen.append(event.number)
        if outage.is_set():
            raise OperationalError("SELECT …", {}, ConnectionError("connection refused"))

    bus = MemoryBus()
    await bus.connect()
    runtime = ServiceRuntime(
        service="desk",
        engine=unit_of_work.engine,
        tables=unit_of_work.tables,
        bus=bus,
        owns_bus=False,
        handlers={"ticket.updated": handler},
        bindings=("ticket.updated",),
        publishes=(),
    )
    runtime.consumer.outage_retry = FAST
    await runtime.start()
    try:
        first = envelope(TicketUpdated(number="SD-1", changes={}))
        await bus.publish(OutgoingMessage(str(first.id), first.type, first.to_bytes()))
        await eventually(lambda: _is(runtime.consumer.paused), message="not paused")
        await asyncio.sleep(0.05)  # let the pause reach the subscription
        for n in range(2, 6):
            later = envelope(TicketUpdated(number=f"SD-{n}", changes={}))
            await bus.publish(OutgoingMessage(str(later.id), later.type, later.to_bytes()))
        await asyncio.sleep(0.2)
        assert set(seen) == {"SD-1"}, "a paused consumer took new events"

        outage.clear()
        await eventually(
            lambda: _is(set(seen) == {f"SD-{n}" for n in range(1, 6)}), message="not resumed"
        )
    finally:
        await runtime.stop()
        await bus.close()


async def _is(value: object) -> bool:
    return bool(value)
