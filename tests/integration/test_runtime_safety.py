"""The runtime's safety nets, on SQLite and the real PostgreSQL: housekeeping keeps what the
redelivery horizon still needs, a failed publish backs off, and a stop always ends."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from spoc_contracts import Envelope
from spoc_contracts.topology import SUBSCRIPTIONS
from spoc_platform.bus import (
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    QueueSpec,
    RetryLater,
)
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.db import create_engine, utc_now
from spoc_platform.relay import RelaySettings
from spoc_platform.retry import Backoff
from spoc_platform.runtime import ServiceRuntime
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.harness import envelope, ticket_created
from tests.integration.test_outbox_and_inbox import FlakyBus, Store, relay_for, write_note
from tests.support import eventually

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=2)


class Handled:
    """A handler that counts its runs and fails while `failing` is set."""

    def __init__(self) -> None:
        self.runs = 0
        self.failing = False

    async def __call__(self, event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        self.runs += 1
        if self.failing:
            raise RuntimeError("a dependency of the handler is down")


def runtime_for(store: Store, bus: MemoryBus, handler: Handled, **options: Any) -> ServiceRuntime:
    return ServiceRuntime(
        service="desk",
        engine=store.engine,
        tables=store.tables,
        bus=bus,
        owns_bus=False,
        handlers={"ticket.created": handler},
        bindings=("ticket.created",),
        publishes=("ticket.created",),
        inbox_retention=RETENTION,
        **options,
    )


def delivery_of(env: Envelope, count: int = 0) -> Delivery:
    return Delivery(str(env.id), env.type, env.to_bytes(), count)


async def age(store: Store, column: Any, event: Envelope, by: timedelta) -> None:
    """Moves the event's row in `column`'s table back in time, as if written `by` ago."""
    async with store.engine.begin() as conn:
        await conn.execute(
            update(column.table)
            .where(column.table.c.event_id == event.id)
            .values({column.name: utc_now() - by})
        )


async def test_housekeeping_keeps_handled_ids_within_the_horizon_so_redeliveries_stay_duplicates(
    store: Store,
) -> None:
    handler = Handled()
    runtime = runtime_for(store, MemoryBus(), handler)
    recent, old = envelope(ticket_created()), envelope(ticket_created())
    for event in (recent, old):
        await runtime.consumer.handle(delivery_of(event))
    await age(store, store.tables.inbox.c.handled_at, recent, RETENTION - timedelta(hours=1))
    await age(store, store.tables.inbox.c.handled_at, old, RETENTION + timedelta(hours=1))

    await runtime.housekeep()

    await runtime.consumer.handle(delivery_of(recent, count=1))
    assert handler.runs == 2, "a redelivery within the horizon was handled a second time"
    inbox = store.tables.inbox
    assert await store.count(inbox, inbox.c.event_id == old.id) == 0, "kept past its horizon"


async def test_housekeeping_keeps_failure_counts_within_the_horizon_so_the_limit_still_holds(
    store: Store,
) -> None:
    handler = Handled()
    handler.failing = True
    runtime = runtime_for(store, MemoryBus(), handler, delivery_limit=2)
    recent, old = envelope(ticket_created()), envelope(ticket_created())
    for event in (recent, old):
        with pytest.raises(RetryLater):
            await runtime.consumer.handle(delivery_of(event))
    failures = store.tables.delivery_failure.c.last_failed_at
    await age(store, failures, recent, RETENTION - timedelta(hours=1))
    await age(store, failures, old, RETENTION + timedelta(hours=1))

    await runtime.housekeep()

    # The recent event's first failure still counts: its second one reaches the limit.
    with pytest.raises(PoisonMessage, match="failed 2 times"):
        await runtime.consumer.handle(delivery_of(recent, count=1))
    # The old one's count was forgotten: it starts again from one.
    with pytest.raises(RetryLater):
        await runtime.consumer.handle(delivery_of(old, count=1))


async def test_a_publish_that_keeps_failing_is_retried_later_and_later_up_to_the_ceiling(
    store: Store, bus: FlakyBus
) -> None:
    await write_note(store, "while the broker is away")
    relay = relay_for(store, bus, max_backoff=1.5)
    outbox = store.tables.outbox
    bus.down = True

    pauses = []
    for _ in range(4):
        before = utc_now()
        assert await relay.relay_once() == 0
        after = utc_now()
        async with store.engine.begin() as conn:
            due = (await conn.execute(select(outbox.c.next_attempt_at))).scalar_one()
            # Due now, so the next pass tries it again instead of waiting out the pause.
            await conn.execute(
                update(outbox).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
        # The pause the relay chose lies between these two (the pass took after - before).
        pauses.append(((due - after).total_seconds(), (due - before).total_seconds()))

    slack = 0.05  # the database's clock and ours, read a moment apart
    for failed, ((shortest, longest), expected) in enumerate(
        zip(pauses, [0.5, 1.0, 1.5, 1.5], strict=True), start=1
    ):
        assert shortest - slack <= expected <= longest + slack, (
            f"after {failed} failed publish(es) the pause was {shortest:.3f}-{longest:.3f} s, "
            f"not {expected} s"
        )


class HangingBus(MemoryBus):
    """A broker whose connection hangs: cancelling a consumer never gets its answer."""

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> _HangingSubscription:
        return _HangingSubscription(await super().consume(spec, handler))


class _HangingSubscription:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def cancel(self) -> None:
        await self._inner.cancel()  # the memory bus stops delivering; the answer never comes
        await asyncio.Event().wait()

    async def pause(self) -> None:
        await self._inner.pause()

    async def resume(self) -> None:
        await self._inner.resume()


async def test_a_stop_ends_and_flushes_the_outbox_even_when_the_broker_never_answers(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "STOP_TIMEOUT", 0.05)
    bus = HangingBus()
    await bus.connect()
    await bus.declare(QueueSpec("listener", ("#",)))
    # Without a wake-up the relay would not look again for an hour: only the final flush can
    # send what is committed once it has settled.
    runtime = runtime_for(store, bus, Handled(), relay_settings=RelaySettings(poll_interval=3600))
    # Another replica's unit of work: its commits do not wake this runtime's relay.
    elsewhere = UnitOfWorkFactory(store.engine, store.tables, "desk")

    async def publish_elsewhere() -> None:
        async with elsewhere() as uow:
            await uow.publish(ticket_created(), ticket_id=uuid.uuid4())

    await publish_elsewhere()
    await runtime.start()
    try:

        async def relay_settled() -> bool:
            return bus.depth("listener") == 1

        await eventually(relay_settled, message="the relay's first pass published nothing")
        await publish_elsewhere()
    finally:
        try:
            await asyncio.wait_for(runtime.stop(), 5)
        except TimeoutError:
            pytest.fail("the stop waited for the broker's answer and never ended")
        await bus.close()

    assert bus.depth("listener") == 2, "the final flush did not run"


class StuckWorker:
    """A background worker whose stop waits on a dependency that never answers."""

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        await asyncio.Event().wait()


async def test_a_stop_ends_and_flushes_the_outbox_even_when_a_worker_never_stops(
    store: Store, bus: FlakyBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "STOP_TIMEOUT", 0.05)
    runtime = runtime_for(
        store,
        bus,
        Handled(),
        relay_settings=RelaySettings(poll_interval=3600),
        workers=[StuckWorker()],
    )
    elsewhere = UnitOfWorkFactory(store.engine, store.tables, "desk")
    await runtime.start()
    try:
        async with elsewhere() as uow:
            await uow.publish(ticket_created(), ticket_id=uuid.uuid4())
    finally:
        try:
            await asyncio.wait_for(runtime.stop(), 5)
        except TimeoutError:
            pytest.fail("the stop waited for a stuck worker and never ended")

    assert bus.depth("listener") == 1, "the final flush did not run"


async def test_readiness_says_not_ready_in_time_when_the_database_server_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "READINESS_TIMEOUT", 0.3)
    # A server that takes the TCP connection and then says nothing (a half-dead host, a
    # firewall that swallows packets): the connect itself never finishes.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://spoc@127.0.0.1:{port}/spoc")
    bus = MemoryBus()
    await bus.connect()
    runtime = runtime_for(Store(engine), bus, Handled())
    try:
        checks = await asyncio.wait_for(runtime.readiness(), 5)
    except TimeoutError:
        pytest.fail("readiness waited for the silent server and never answered")
    finally:
        silent.close()
        await bus.close()
        await engine.dispose()

    assert checks["database"] == "unreachable: TimeoutError"


class DatabaseOutage:
    """A handler whose database is unreachable while `down` is set."""

    def __init__(self) -> None:
        self.down = asyncio.Event()
        self.down.set()
        self.handled: list[str] = []

    async def __call__(self, event: Any, *, envelope: Envelope, uow: UnitOfWork) -> None:
        if self.down.is_set():
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused"))
        self.handled.append(str(envelope.id))


async def test_readiness_says_the_consumer_is_paused_for_how_long_and_holding_what(
    store: Store,
) -> None:
    handler = DatabaseOutage()
    bus = MemoryBus()
    await bus.connect()
    runtime = runtime_for(store, bus, handler)  # type: ignore[arg-type]
    runtime.consumer.outage_retry = Backoff(first=0.01, ceiling=0.02)
    event = envelope(ticket_created())
    held = asyncio.create_task(runtime.consumer.handle(delivery_of(event)))
    try:

        async def paused() -> bool:
            return runtime.consumer.paused

        await eventually(paused, message="the outage did not pause the consumer")
        checks = await runtime.readiness()
        assert set(checks) == {"database", "consumer", "bus"}
        assert (checks["database"], checks["bus"]) == ("ok", "ok")
        assert re.fullmatch(
            r"paused: database unreachable for [01] s, 1 event\(s\) held", checks["consumer"]
        ), checks["consumer"]
        handler.down.clear()
        await asyncio.wait_for(held, 5)
        assert await runtime.readiness() == {"database": "ok", "bus": "ok"}
        assert handler.handled == [str(event.id)]
    finally:
        handler.down.clear()
        await asyncio.gather(held, return_exceptions=True)
        await bus.close()


class StubbornResumeBus(MemoryBus):
    """A broker whose first resume of a paused consumer fails (its channel closed meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.resumes: list[float] = []

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> _StubbornSubscription:
        return _StubbornSubscription(await super().consume(spec, handler), self.resumes)


class _StubbornSubscription:
    def __init__(self, inner: Any, resumes: list[float]) -> None:
        self._inner = inner
        self._resumes = resumes

    async def cancel(self) -> None:
        await self._inner.cancel()

    async def pause(self) -> None:
        await self._inner.pause()

    async def resume(self) -> None:
        self._resumes.append(time.monotonic())
        if len(self._resumes) == 1:
            raise ConnectionError("channel closed while resuming")
        await self._inner.resume()


async def test_a_consumer_whose_resume_failed_tries_again_a_second_later_and_takes_events_again(
    store: Store,
) -> None:
    handler = DatabaseOutage()
    bus = StubbornResumeBus()
    await bus.connect()
    runtime = runtime_for(store, bus, handler)  # type: ignore[arg-type]
    runtime.consumer.outage_retry = Backoff(first=0.01, ceiling=0.02)
    first, later = envelope(ticket_created()), envelope(ticket_created())
    await runtime.start()
    try:
        await bus.publish(OutgoingMessage(str(first.id), first.type, first.to_bytes()))

        async def paused() -> bool:
            return runtime.consumer.paused

        await eventually(paused, message="the outage did not pause the consumer")
        handler.down.clear()
        await bus.publish(OutgoingMessage(str(later.id), later.type, later.to_bytes()))

        async def both_handled() -> bool:
            return handler.handled == [str(first.id), str(later.id)]

        await eventually(both_handled, timeout=5, message="consuming was never resumed")
    finally:
        await runtime.stop()
        await bus.close()

    failed, succeeded = bus.resumes
    assert 1.0 <= succeeded - failed < 2.0, succeeded - failed


class ObservedBus(MemoryBus):
    """An in-process bus that tells its listeners when its connection drops and comes back."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: list[Callable[[bool], None]] = []

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        self.listeners.append(listener)

    def connection(self, healthy: bool) -> None:
        for listener in self.listeners:
            listener(healthy)


async def test_the_bus_connected_gauge_follows_the_connection_from_the_start(
    store: Store,
) -> None:
    def connected() -> float | None:
        return REGISTRY.get_sample_value("spoc_bus_connected", {"service": "desk"})

    bus = ObservedBus()
    await bus.connect()
    runtime = runtime_for(store, bus, Handled())
    assert connected() == 0.0, "a runtime that has not started is not connected"
    await runtime.start()
    try:
        assert connected() == 1.0
        bus.connection(False)
        assert connected() == 0.0
        bus.connection(True)
        assert connected() == 1.0
    finally:
        await runtime.stop()
        await bus.close()


async def test_after_a_stop_the_service_takes_no_more_events(store: Store) -> None:
    handler = Handled()
    bus = MemoryBus()
    await bus.connect()
    runtime = runtime_for(store, bus, handler)
    await runtime.start()
    await runtime.stop()
    try:
        event = envelope(ticket_created())
        await bus.publish(OutgoingMessage(str(event.id), event.type, event.to_bytes()))
        await asyncio.sleep(0.1)
        assert handler.runs == 0, "a stopped service handled an event"
        assert bus.depth("desk") == 1, "the event did not stay in the queue for the next start"
    finally:
        await bus.close()


async def test_a_stop_of_an_idle_runtime_ends_at_once(store: Store, bus: FlakyBus) -> None:
    runtime = runtime_for(store, bus, Handled())
    await runtime.start()
    started = time.monotonic()
    await runtime.stop()
    assert time.monotonic() - started < 2, "the stop waited out a timeout with nothing to wait for"


async def test_a_stop_ends_in_time_when_the_database_server_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay's pass and the final flush both hang on a connect that never finishes: the
    stop gives each its bounded time, and the process can exit."""
    import socket

    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "RELAY_PASS_TIMEOUT", 0.3)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    engine = create_engine(f"postgresql+asyncpg://spoc@127.0.0.1:{silent.getsockname()[1]}/spoc")
    bus = MemoryBus()
    await bus.connect()
    runtime = runtime_for(Store(engine), bus, Handled())
    try:
        await runtime.start()
        await asyncio.sleep(0.1)  # the relay's first pass is stuck connecting
        await asyncio.wait_for(runtime.stop(), 5)
    except TimeoutError:
        pytest.fail("the stop waited for a database that never answers")
    finally:
        silent.close()
        await bus.close()
        await engine.dispose()


class UnclosableBus(MemoryBus):
    """A broker connection whose close never gets its answer."""

    async def close(self) -> None:
        await asyncio.Event().wait()


async def test_a_stop_ends_in_time_when_closing_its_own_bus_never_answers(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "STOP_TIMEOUT", 0.05)
    bus = UnclosableBus()
    runtime = ServiceRuntime(
        service="desk",
        engine=store.engine,
        tables=store.tables,
        bus=bus,
        owns_bus=True,
        handlers={"ticket.created": Handled()},
        bindings=("ticket.created",),
        publishes=("ticket.created",),
    )
    await runtime.start()
    try:
        await asyncio.wait_for(runtime.stop(), 5)
    except TimeoutError:
        pytest.fail("the stop waited for the bus to close and never ended")


class PolicyBus(MemoryBus):
    """An in-process bus that, like RabbitMQ's, takes policies for queues (or fails to)."""

    def __init__(self, fails: bool = False) -> None:
        super().__init__()
        self.fails = fails
        self.applied: list[list[QueueSpec]] = []

    async def apply_policies(self, specs: list[QueueSpec]) -> None:
        self.applied.append(list(specs))
        if self.fails:
            raise ConnectionRefusedError(111, "management API unreachable")


@pytest.mark.parametrize("fails", [False, True], ids=["applied", "api-unreachable"])
async def test_a_service_puts_policies_for_its_own_queue_only_when_told_to(
    store: Store, fails: bool
) -> None:
    told, untold, consumes_nothing = PolicyBus(fails), PolicyBus(fails), PolicyBus(fails)
    for bus in (told, untold, consumes_nothing):
        await bus.connect()
    own = runtime_for(store, told, Handled(), apply_broker_policies=True)
    await own.declare()  # an unreachable API is a warning: the consumer enforces the limit
    await runtime_for(store, untold, Handled()).declare()
    publisher = ServiceRuntime(
        service="front",
        engine=store.engine,
        tables=store.tables,
        bus=consumes_nothing,
        owns_bus=False,
        handlers={},
        bindings=(),
        publishes=("ticket.created",),
        apply_broker_policies=True,
    )
    await publisher.declare()

    assert told.applied == [[own.queue]]
    assert untold.applied == consumes_nothing.applied == []
    # Whatever the policies did, every subscriber's queue exists.
    for bus in (told, untold, consumes_nothing):
        assert set(bus.queue_names()) >= {f"{name}.events" for name in SUBSCRIPTIONS}
        await bus.close()


class _QuickSleeps:
    """asyncio as the runtime module sees it, but its sleeps a thousand times shorter."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float) -> None:
        await asyncio.sleep(delay / 1000)


async def test_a_running_service_housekeeps_again_and_again_even_after_a_failed_pass(
    store: Store, bus: FlakyBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spoc_platform.runtime

    monkeypatch.setattr(spoc_platform.runtime, "asyncio", _QuickSleeps())
    passes = 0

    async def job() -> None:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise RuntimeError("the first pass fails")

    runtime = runtime_for(store, bus, Handled(), housekeeping=[job])
    await runtime.start()
    try:

        async def housekept_after_failing() -> bool:
            return passes >= 3

        await eventually(housekept_after_failing, timeout=5, message="housekeeping stopped")
    finally:
        await runtime.stop()


class PoliteWorker:
    """A background worker that ends its run when asked to stop."""

    def __init__(self) -> None:
        self.asked_to_stop = 0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        self.asked_to_stop += 1
        self._stopping.set()


async def test_a_stop_asks_each_worker_to_stop_and_leaves_none_of_the_service_s_tasks_running(
    store: Store, bus: FlakyBus
) -> None:
    worker = PoliteWorker()
    runtime = runtime_for(store, bus, Handled(), workers=[worker])
    await runtime.start()
    ours = {task for task in asyncio.all_tasks() if task.get_name().startswith("desk-")}
    # Named after the service and their role, as a task dump shows them.
    assert {"desk-relay", "desk-housekeeping", "desk-PoliteWorker"} <= {
        task.get_name() for task in ours
    }

    await runtime.stop()

    assert worker.asked_to_stop == 1, "the worker was cancelled instead of asked to stop"
    still_running = [task.get_name() for task in ours if not task.done()]
    assert still_running == [], "stop() returned before the service's tasks ended"
    await runtime.stop()  # a second stop (a signal after the lifespan's) is harmless
    assert worker.asked_to_stop == 2
