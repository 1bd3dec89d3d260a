"""Claim leases: what a dead holder claimed is taken over after its lease (nothing lost), and a
holder whose lease was taken over records nothing over the new holder's outcome (the fence)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_notify import repository
from spoc_notify.dispatcher import DeliveryDispatcher
from spoc_notify.mail import OutgoingMail
from spoc_notify.models import MESSAGING
from spoc_platform.bus import PublishError
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.db import create_engine
from spoc_platform.relay import OutboxRelay, RelaySettings
from spoc_platform.runtime import ServiceRuntime
from spoc_platform.unit_of_work import UnitOfWorkFactory
from tests.integration.test_claims_clock import HeldBus, HeldTransport, listening, write_events
from tests.integration.test_notify_dispatch import (
    SENDER,
    RecordingTransport,
    notify_database,
    owe,
    sent_events_by_ticket,
    statuses,
)
from tests.integration.test_outbox_and_inbox import Store
from tests.support import eventually

pytestmark = pytest.mark.integration

# Short, so a takeover is seen in about a second instead of the default quarter of a minute.
LEASE = 1.0
# Wall clock (the database's) against the loop's monotonic one, over a second or two.
CLOCK_SLACK = 0.05


async def die(worker: asyncio.Task[int]) -> None:
    """Kills a worker mid-pass, as a crash would: nothing after this point of it runs."""
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)


async def test_rows_a_dead_relay_had_claimed_are_published_by_another_relay_after_the_lease(
    store: Store,
) -> None:
    await write_events(store, 5)
    held = await listening(HeldBus())
    other = await listening(MemoryBus())
    settings = RelaySettings(lease=LEASE)
    dead = OutboxRelay(
        service="test", engine=store.engine, tables=store.tables, bus=held, settings=settings
    )
    taker = OutboxRelay(
        service="test", engine=store.engine, tables=store.tables, bus=other, settings=settings
    )

    claimed_from = time.monotonic()
    pass_of_dead = asyncio.create_task(dead.relay_once())
    await held.holding.wait()  # claimed, publishing, not yet marked
    await die(pass_of_dead)

    published = 0

    async def all_taken_over() -> bool:
        nonlocal published
        published += await taker.relay_once()
        return published == 5

    await eventually(all_taken_over, timeout=10, message="the other relay publishes every row")
    assert time.monotonic() - claimed_from >= LEASE - CLOCK_SLACK  # not before the lease ended
    assert other.depth("listener") == 5 and held.depth("listener") == 0
    outbox = store.tables.outbox
    assert await store.count(outbox, outbox.c.published_at.is_(None)) == 0


class HungTransport(RecordingTransport):
    """A mail server that never answers: the dispatcher using it dies before any send ends."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()

    async def send(self, mail: OutgoingMail) -> None:
        self.holding.set()
        await asyncio.Event().wait()


def replica(
    engine: AsyncEngine, transport: Any, *, max_attempts: int = 8, lease: float = 60.0
) -> DeliveryDispatcher:
    return DeliveryDispatcher(
        unit_of_work=UnitOfWorkFactory(engine, MESSAGING, "notify"),
        transport=transport,
        sender=SENDER,
        max_attempts=max_attempts,
        lease=lease,
        # A claim covers what the slots send in half a lease: with a short one, keep it > 1 row.
        send_estimate=0.05,
    )


async def test_deliveries_a_dead_dispatcher_had_claimed_are_sent_by_another_after_the_lease(
    database_url: str,
) -> None:
    async with notify_database(database_url) as engine:
        numbers = await owe(engine, 3)
        hung, recording = HungTransport(), RecordingTransport()
        dead, taker = replica(engine, hung, lease=LEASE), replica(engine, recording, lease=LEASE)

        claimed_from = time.monotonic()
        pass_of_dead = asyncio.create_task(dead.dispatch_once())
        await hung.holding.wait()  # claimed, sending, not yet marked
        await die(pass_of_dead)

        async def all_sent() -> bool:
            await taker.dispatch_once()
            return set((await statuses(engine)).values()) == {"sent"}

        await eventually(all_sent, timeout=10, message="the other dispatcher sends every mail")
        assert time.monotonic() - claimed_from >= LEASE - CLOCK_SLACK  # not before the lease ended
        assert sorted(message_from_bytes(m.raw)["X-Spoc-Ticket"] for m in recording.sent) == numbers
        assert await sent_events_by_ticket(engine) == dict.fromkeys(numbers, 1)


# The fence. A dispatcher's lease can run out while it still works on a delivery (a stalled
# process, a mail server slower than the send limit); another dispatcher then claims it and the
# delivery's attempts move on. The first one's outcome comes late and must not count: the
# delivery is the new holder's, whose own outcome is the one recorded.


async def expire_leases(engine: AsyncEngine) -> None:
    """Ends every lease now, instead of waiting for it."""
    async with engine.begin() as conn:
        await conn.execute(
            update(repository.delivery).values(next_attempt_at=datetime(2000, 1, 1, tzinfo=UTC))
        )


async def the_deliveries(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    table = repository.delivery
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                table.c.status, table.c.attempts, table.c.next_attempt_at, table.c.last_error
            ).order_by(table.c.id)
        )
        return [tuple(row) for row in rows]


# Everything a dispatcher may still do with a delivery it claimed, given the attempts it claimed.
LATE_CALLS: dict[str, Callable[..., Awaitable[bool]]] = {
    "renew before sending": partial(repository.hold_for_sending, lease_seconds=60),
    "hand back": repository.release,
    "record as sent": partial(repository.mark_sent, sent_at=datetime(2026, 1, 1, tzinfo=UTC)),
    "record a failed attempt": partial(
        repository.mark_failed_attempt, error="old: timed out", retry_in=0.5
    ),
    "record as failed for good": partial(
        repository.mark_failed_attempt, error="old: timed out", retry_in=None
    ),
}


async def test_a_dispatcher_whose_lease_was_taken_over_can_neither_renew_hand_back_nor_settle(
    database_url: str,
) -> None:
    async with notify_database(database_url) as engine:
        await owe(engine, len(LATE_CALLS))  # one delivery for each thing the old holder tries
        async with engine.begin() as conn:
            old = await repository.claim_due_deliveries(conn, limit=10, lease_seconds=60)
        await expire_leases(engine)
        async with engine.begin() as conn:
            new = await repository.claim_due_deliveries(conn, limit=10, lease_seconds=60)
        held_by_new = await the_deliveries(engine)

        done: dict[str, bool] = {}
        for (what, call), row in zip(
            LATE_CALLS.items(), sorted(old, key=lambda r: r.id), strict=True
        ):
            async with engine.begin() as conn:
                done[what] = await call(conn, row.id, claimed_attempts=row.attempts)

        assert done == dict.fromkeys(LATE_CALLS, False)
        assert await the_deliveries(engine) == held_by_new
        async with engine.begin() as conn:
            for row in new:  # the new holder's outcome is the one that counts
                assert await repository.mark_sent(
                    conn, row.id, claimed_attempts=row.attempts, sent_at=datetime.now(UTC)
                )


class LateTransport(HeldTransport):
    """Holds its send until released, then ends it as told: accepted, or refused."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error

    async def send(self, mail: OutgoingMail) -> None:
        self.holding.set()
        await self.release.wait()
        if self.error:
            raise ConnectionError(self.error)
        self.sent.append(mail)


class RefusingTransport(RecordingTransport):
    async def send(self, mail: OutgoingMail) -> None:
        raise ConnectionError("new: 451 try again later")


async def published(engine: AsyncEngine, event_type: str) -> int:
    outbox = MESSAGING.outbox
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(outbox.c.id).where(outbox.c.event_type == event_type))
        ).all()
    return len(rows)


LATE_OUTCOMES = {
    # (the old holder's mail server's answer, its dispatcher's max_attempts)
    "sent": (None, 8),
    "failed, to retry": ("old: connection reset", 8),
    "failed for good": ("old: connection reset", 1),
}


@pytest.mark.parametrize("outcome", LATE_OUTCOMES)
async def test_a_late_outcome_does_not_count_while_the_new_holder_is_sending(
    sqlite_url: str, outcome: str
) -> None:
    error, max_attempts = LATE_OUTCOMES[outcome]
    async with notify_database(sqlite_url) as engine:
        [number] = await owe(engine, 1)
        slow, sending = LateTransport(error), LateTransport()
        old = replica(engine, slow, max_attempts=max_attempts)
        new = replica(engine, sending)

        old_pass = asyncio.create_task(old.dispatch_once())
        await slow.holding.wait()
        await expire_leases(engine)
        new_pass = asyncio.create_task(new.dispatch_once())
        await sending.holding.wait()  # the new holder's send is under way
        held_by_new = await the_deliveries(engine)

        slow.release.set()
        await old_pass
        # Still the new holder's, its lease untouched: no third dispatcher may take it now.
        assert await the_deliveries(engine) == held_by_new
        assert await published(engine, "notification.sent") == 0
        assert await published(engine, "notification.failed") == 0

        sending.release.set()
        await new_pass
        assert await statuses(engine) == {number: "sent"}
        assert await sent_events_by_ticket(engine) == {number: 1}
        assert await published(engine, "notification.failed") == 0


@pytest.mark.parametrize("outcome", LATE_OUTCOMES)
async def test_a_late_outcome_does_not_overwrite_the_new_holders_failed_attempt(
    sqlite_url: str, outcome: str
) -> None:
    """The new holder's attempt failed and the delivery waits for its retry; the old holder's
    late answer changes nothing (a late "sent" included: the retry's copy carries the same
    Message-ID, and the reader sees one mail)."""
    error, max_attempts = LATE_OUTCOMES[outcome]
    async with notify_database(sqlite_url) as engine:
        await owe(engine, 1)
        slow = LateTransport(error)
        old = replica(engine, slow, max_attempts=max_attempts)
        new = replica(engine, RefusingTransport())

        old_pass = asyncio.create_task(old.dispatch_once())
        await slow.holding.wait()
        await expire_leases(engine)
        assert await new.dispatch_once() == 1
        [after_new] = await the_deliveries(engine)
        assert (
            after_new[0] == "pending"
            and after_new[3] == "ConnectionError: new: 451 try again later"
        )

        slow.release.set()
        await old_pass
        assert await the_deliveries(engine) == [after_new]
        assert await published(engine, "notification.sent") == 0
        assert await published(engine, "notification.failed") == 0


class RefusingHeldBus(HeldBus):
    """A broker that holds every publish until released, then refuses to confirm it."""

    async def publish(self, message: Any) -> None:
        self.holding.set()
        await self.release.wait()
        raise PublishError("broker unreachable")


async def test_a_relay_whose_lease_was_taken_over_leaves_the_new_holders_outcome_alone(
    store: Store,
) -> None:
    await write_events(store, 3)
    slow = await listening(RefusingHeldBus())
    other = await listening(MemoryBus())
    settings = RelaySettings(lease=LEASE)
    late = OutboxRelay(
        service="test", engine=store.engine, tables=store.tables, bus=slow, settings=settings
    )
    taker = OutboxRelay(
        service="test", engine=store.engine, tables=store.tables, bus=other, settings=settings
    )
    pass_of_late = asyncio.create_task(late.relay_once())
    await slow.holding.wait()
    published = 0

    async def all_taken_over() -> bool:
        nonlocal published
        published += await taker.relay_once()
        return published == 3

    await eventually(all_taken_over, timeout=10, message="the other relay publishes every row")
    slow.release.set()  # the first relay hears its publishes failed, long after its lease
    assert await pass_of_late == 0

    outbox = store.tables.outbox
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.published_at, outbox.c.last_error))).all()
    assert all(row.published_at is not None for row in rows)
    assert [row.last_error for row in rows] == [None] * 3, "a stale failure overwrote the rows"


async def test_a_stop_lets_the_relays_pass_under_way_finish_so_nothing_waits_out_a_lease(
    store: Store,
) -> None:
    held = await listening(HeldBus())
    runtime = ServiceRuntime(
        service="test",
        engine=store.engine,
        tables=store.tables,
        bus=held,
        owns_bus=False,
        handlers={},
        bindings=(),
        publishes=("test.noted",),
        # Long enough that a row left leased by the stop could not be flushed by it.
        relay_settings=RelaySettings(lease=60.0),
    )
    await runtime.start()
    await write_events(store, 2)
    runtime.relay.kick()
    await held.holding.wait()  # the relay's pass has claimed the rows and is publishing
    stopping = asyncio.create_task(runtime.stop())
    await asyncio.sleep(0.05)
    held.release.set()  # the broker confirms while the runtime stops
    await asyncio.wait_for(stopping, 10)

    outbox = store.tables.outbox
    assert await store.count(outbox, outbox.c.published_at.is_(None)) == 0
    assert held.depth("listener") == 2


async def test_the_row_due_longest_is_claimed_first_whatever_its_age(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row written later but due earlier (its back-off ran out) goes before one written
    earlier and due later: one row per pass, so the order is what a busy relay keeps."""
    from sqlalchemy import insert

    from spoc_platform.bus import QueueSpec
    from spoc_platform.db import utc_now
    from tests.harness import envelope, ticket_created

    bus = MemoryBus()
    await bus.connect()
    await bus.declare(QueueSpec("listener", ("#",)))
    sent: list[str] = []
    publish = bus.publish

    async def recording(message: Any) -> None:
        await publish(message)
        sent.append(message.message_id)

    monkeypatch.setattr(bus, "publish", recording)
    now = utc_now()
    earlier_written, later_written = envelope(ticket_created()), envelope(ticket_created())
    async with store.engine.begin() as conn:
        for event, due_seconds_ago in ((earlier_written, 1), (later_written, 30)):
            await conn.execute(
                insert(store.tables.outbox).values(
                    event_id=event.id,
                    event_type=event.type,
                    body=event.to_bytes().decode(),
                    created_at=now,
                    attempts=2,
                    next_attempt_at=now - timedelta(seconds=due_seconds_ago),
                )
            )
    relay = OutboxRelay(
        service="test",
        engine=store.engine,
        tables=store.tables,
        bus=bus,
        settings=RelaySettings(window=1),
    )
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 1
    assert sent == [str(later_written.id), str(earlier_written.id)]
    await bus.close()


@pytest.mark.postgres
async def test_a_relay_skips_rows_another_replica_is_claiming_instead_of_waiting_for_them(
    postgres_url: str,
) -> None:
    from sqlalchemy import text

    from spoc_platform.bus import QueueSpec
    from tests.integration.test_outbox_and_inbox import write_note

    engine = create_engine(postgres_url)
    store = Store(engine)
    async with engine.begin() as conn:
        await conn.run_sync(store.metadata.create_all)
    bus = MemoryBus()
    await bus.connect()
    await bus.declare(QueueSpec("listener", ("#",)))
    try:
        for n in range(3):
            await write_note(store, f"row {n}")
        relay = OutboxRelay(
            service="test", engine=engine, tables=store.tables, bus=bus, settings=RelaySettings()
        )
        async with engine.connect() as other_replica:
            # Another replica's claim, still under way: it holds the oldest row's lock.
            await other_replica.execute(
                text("SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE")
            )
            try:
                assert await asyncio.wait_for(relay.relay_once(), 3) == 2
            except TimeoutError:
                pytest.fail("the relay queued behind another replica's locked row")
            await other_replica.rollback()
        assert await relay.relay_once() == 1
        assert bus.depth("listener") == 3
    finally:
        await bus.close()
        await engine.dispose()
