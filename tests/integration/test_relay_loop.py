"""The outbox relay as it runs in a service: it finds work nobody announced, drains a backlog
pass after pass, survives a failed pass, and tells operators what it published and what waits."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text, update

from spoc_platform.bus import OutgoingMessage, PublishError, QueueSpec
from spoc_platform.db import create_engine, utc_now
from spoc_platform.relay import OutboxRelay
from tests.integration.test_claims_clock import SKEW, run_clock_ahead
from tests.integration.test_outbox_and_inbox import FlakyBus, Store, relay_for, write_note
from tests.support import eventually

pytestmark = pytest.mark.integration


async def written_elsewhere(store: Store, count: int = 1) -> None:
    """Rows committed by another replica: no commit hook of this relay's runs for them."""
    for n in range(count):
        await write_note(store, f"elsewhere {n}")


async def running(relay: OutboxRelay) -> asyncio.Task[None]:
    return asyncio.create_task(relay.run())


async def stopped(relay: OutboxRelay, task: asyncio.Task[None]) -> None:
    await relay.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_running_relay_finds_rows_nobody_announced_at_its_poll_interval(
    store: Store, bus: FlakyBus
) -> None:
    relay = relay_for(store, bus, poll_interval=0.05)
    task = await running(relay)
    try:
        await asyncio.sleep(0.1)  # a first pass found nothing and waits
        await written_elsewhere(store)

        async def published() -> bool:
            return bus.depth("listener") == 1

        await eventually(published, timeout=3, message="the relay never polled again")
    finally:
        await stopped(relay, task)


async def test_a_pass_takes_at_most_its_window_and_a_backlog_drains_without_waiting_to_poll(
    store: Store, bus: FlakyBus
) -> None:
    await written_elsewhere(store, 5)
    assert await relay_for(store, bus, window=2).relay_once() == 2
    assert bus.depth("listener") == 2

    # Five wait, three passes' worth; with an hour between polls only "a full batch: go on"
    # gets them all out.
    relay = relay_for(store, bus, window=2, poll_interval=3600)
    await written_elsewhere(store, 2)
    task = await running(relay)
    try:

        async def drained() -> bool:
            return bus.depth("listener") == 7

        await eventually(drained, timeout=3, message="the backlog waited for the next poll")
    finally:
        await stopped(relay, task)


def published_count(event_type: str, outcome: str) -> float:
    labels = {"service": "test", "type": event_type, "outcome": outcome}
    return REGISTRY.get_sample_value("spoc_events_published_total", labels) or 0.0


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": "test"})


class RoutingBus(FlakyBus):
    """Refuses one routing key as unroutable (nothing bound); while `down`, fails the rest with
    a PublishError, or with whatever `breaks` says (a bug, a dropped socket)."""

    def __init__(self, unroutable: str) -> None:
        super().__init__()
        self.unroutable = unroutable
        self.breaks: Exception | None = None

    async def publish(self, message: OutgoingMessage) -> None:
        if message.routing_key == self.unroutable:
            raise PublishError(f"no queue is bound to {message.routing_key}", unroutable=True)
        if self.down and self.breaks is not None:
            raise self.breaks
        await super().publish(message)


async def test_each_publish_is_counted_by_type_and_outcome_and_the_backlog_is_gauged(
    store: Store,
) -> None:
    bus = RoutingBus(unroutable="ticket.closed")
    await bus.connect()
    await bus.declare(QueueSpec("listener", ("#",)))
    relay = relay_for(store, bus)
    outcomes = [("ticket.created", o) for o in ("ok", "failed", "unroutable")]
    outcomes.append(("ticket.closed", "unroutable"))
    before = {key: published_count(*key) for key in outcomes}
    try:
        await write_note(store, "refused while the broker is down")
        async with store.engine.begin() as conn:
            await conn.execute(
                store.tables.outbox.insert().values(
                    event_id=uuid.uuid4(),
                    event_type="ticket.closed",
                    body="{}",
                    created_at=utc_now() - timedelta(seconds=90),
                    attempts=0,
                    next_attempt_at=utc_now(),
                )
            )
        bus.down = True
        assert await relay.relay_once() == 0
        await relay.update_gauges()
        assert gauge("spoc_outbox_pending") == 2.0
        oldest = gauge("spoc_outbox_oldest_pending_age_seconds")
        assert oldest is not None and 90 <= oldest < 100, oldest

        outbox = store.tables.outbox
        bus.breaks = ConnectionResetError(104, "connection reset by peer")
        async with store.engine.begin() as conn:
            await conn.execute(update(outbox).values(next_attempt_at=utc_now()))
        assert await relay.relay_once() == 0

        bus.down = False
        async with store.engine.begin() as conn:
            await conn.execute(update(outbox).values(next_attempt_at=utc_now()))
        assert await relay.relay_once() == 1
        await relay.update_gauges()
        assert gauge("spoc_outbox_pending") == 1.0
    finally:
        await bus.close()

    moved = {key: published_count(*key) - before[key] for key in outcomes}
    assert moved == {
        ("ticket.created", "ok"): 1.0,
        ("ticket.created", "failed"): 2.0,  # a PublishError, then a reset connection
        ("ticket.created", "unroutable"): 0.0,
        ("ticket.closed", "unroutable"): 3.0,
    }


async def test_a_running_relay_keeps_its_backlog_gauges_current(
    store: Store, bus: FlakyBus
) -> None:
    relay = relay_for(store, bus, poll_interval=0.05, max_backoff=0.1)
    bus.down = True
    task = await running(relay)
    try:
        await written_elsewhere(store, 2)

        async def waiting(count: float) -> bool:
            return gauge("spoc_outbox_pending") == count

        await eventually(lambda: waiting(2.0), timeout=3, message="the backlog was not gauged")
        bus.down = False
        await eventually(lambda: waiting(0.0), timeout=3, message="the gauge stayed behind")
    finally:
        await stopped(relay, task)


async def test_a_fresh_row_is_gauged_as_just_written_and_an_empty_outbox_as_nothing_waiting(
    store: Store, bus: FlakyBus
) -> None:
    relay = relay_for(store, bus)
    await written_elsewhere(store)
    await relay.update_gauges()
    assert gauge("spoc_outbox_pending") == 1.0
    just_written = gauge("spoc_outbox_oldest_pending_age_seconds")
    assert just_written is not None and 0.0 <= just_written < 0.5, just_written
    assert await relay.relay_once() == 1
    await relay.update_gauges()
    assert (gauge("spoc_outbox_pending"), gauge("spoc_outbox_oldest_pending_age_seconds")) == (
        0.0,
        0.0,
    )


async def test_the_last_publish_error_is_kept_in_full_up_to_two_thousand_characters(
    store: Store,
) -> None:
    class Verbose(FlakyBus):
        async def publish(self, message: OutgoingMessage) -> None:
            raise PublishError("x" * 1999 + "yz" + "!" * 3000)

    bus = Verbose()
    await bus.connect()
    await written_elsewhere(store)
    assert await relay_for(store, bus).relay_once() == 0
    outbox = store.tables.outbox
    async with store.engine.connect() as conn:
        last_error = (await conn.execute(select(outbox.c.last_error))).scalar_one()
    assert last_error == "x" * 1999 + "y"


@pytest.mark.postgres
async def test_a_pass_that_fails_on_a_dropped_database_connection_does_not_end_the_relay(
    postgres_url: str, bus: FlakyBus
) -> None:
    engine = create_engine(postgres_url)
    store = Store(engine)
    async with engine.begin() as conn:
        await conn.run_sync(store.metadata.create_all)
    relay = relay_for(store, bus, poll_interval=0.05)
    task = await running(relay)
    try:
        await written_elsewhere(store)

        async def published(count: int) -> bool:
            return bus.depth("listener") == count

        await eventually(lambda: published(1), timeout=3, message="first row not published")
        # The server drops every connection of this database (a restart, a failover): the
        # relay's next pass fails on its pooled connection.
        killer = create_engine(postgres_url, pool_size=1)
        try:
            async with killer.connect() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
        finally:
            await killer.dispose()
        await asyncio.sleep(0.2)  # at least one pass meets the dropped connection
        writer = Store(create_engine(postgres_url, pool_size=1))
        try:
            await written_elsewhere(writer)
        finally:
            await writer.engine.dispose()
        await eventually(lambda: published(2), timeout=5, message="the relay ended")
        assert not task.done()
    finally:
        await stopped(relay, task)
        await engine.dispose()


async def test_a_relay_whose_database_is_down_tries_once_per_poll_not_in_a_tight_loop(
    bus: FlakyBus, caplog: pytest.LogCaptureFixture
) -> None:
    """Even with a window of one, where one claimed row means "go straight on", a failed pass
    waits for the poll: a relay must not hammer a database that is down, nor flood the log."""
    engine = create_engine("postgresql+asyncpg://spoc@127.0.0.1:1/spoc")  # refused at once
    relay = relay_for(Store(engine), bus, window=1, poll_interval=0.1)
    task = await running(relay)
    try:
        await asyncio.sleep(0.5)
    finally:
        await stopped(relay, task)
        await engine.dispose()
    failed = [r for r in caplog.records if r.getMessage().startswith("outbox relay pass failed")]
    assert 1 <= len(failed) <= 10, len(failed)


async def outbox_rows(store: Store) -> dict[str, Any]:
    outbox = store.tables.outbox
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    return {row.event_type: row for row in rows}


async def test_a_failed_publish_reschedules_only_its_own_row_and_only_while_it_holds_it(
    store: Store,
) -> None:
    """A failure is written back to the row that failed, and only if no other relay took the
    row over meanwhile (its lease ran out, another claimed it): that relay's lease stands."""
    outbox = store.tables.outbox
    far = utc_now() + timedelta(days=365)

    class TakenOverBus(FlakyBus):
        """While this relay publishes, another relay claims the row (an attempt more, its own
        lease); then this broker refuses."""

        async def publish(self, message: OutgoingMessage) -> None:
            async with store.engine.begin() as conn:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.event_id == uuid.UUID(message.message_id))
                    .values(attempts=outbox.c.attempts + 1, next_attempt_at=far)
                )
            raise PublishError("broker unreachable")

    # A row that failed before and backs off for a long while, untouched by what follows.
    await write_event(store, "backing.off")
    bus = FlakyBus()
    await bus.connect()
    bus.down = True
    assert await relay_for(store, bus).relay_once() == 0
    async with store.engine.begin() as conn:
        await conn.execute(
            update(outbox).values(next_attempt_at=far, last_error="an older failure")
        )

    await write_event(store, "taken.over")
    taken = TakenOverBus()
    await taken.connect()
    assert await relay_for(store, taken).relay_once() == 0

    rows = await outbox_rows(store)
    backing_off, taken_over = rows["backing.off"], rows["taken.over"]
    assert (backing_off.attempts, backing_off.next_attempt_at) == (1, far)
    assert backing_off.last_error == "an older failure"
    # The other relay's claim (attempt 2, its lease) is left as it wrote it.
    assert (taken_over.attempts, taken_over.next_attempt_at) == (2, far)
    assert taken_over.last_error is None


async def write_event(store: Store, event_type: str) -> None:
    """An outbox row as any service writes it, due at once."""
    now = utc_now()
    async with store.engine.begin() as conn:
        await conn.execute(
            store.tables.outbox.insert().values(
                event_id=uuid.uuid4(),
                event_type=event_type,
                body="{}",
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[Store]:
    engine = create_engine(postgres_url)
    built = Store(engine)
    async with engine.begin() as conn:
        await conn.run_sync(built.metadata.create_all)
    try:
        yield built
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_relay_whose_clock_runs_ahead_marks_and_reschedules_by_the_database_s_clock(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published and due times are PostgreSQL's: a replica's clock that runs ahead neither
    pushes a retry back nor dates a publish in the future."""
    store = postgres_store
    await write_event(store, "test.noted")
    bus = FlakyBus()
    await bus.connect()
    await bus.declare(QueueSpec("listener", ("#",)))
    relay = relay_for(store, bus)
    run_clock_ahead(monkeypatch)  # SKEW (20 s) ahead from now on

    bus.down = True
    before = utc_now()
    assert await relay.relay_once() == 0
    failed = (await outbox_rows(store))["test.noted"]
    # The first back-off step (0.5 s) from the database's now, not from this replica's.
    assert failed.next_attempt_at < before + SKEW / 2, failed.next_attempt_at - before

    bus.down = False
    outbox = store.tables.outbox
    async with store.engine.begin() as conn:
        await conn.execute(update(outbox).values(next_attempt_at=before - timedelta(hours=1)))
    assert await relay.relay_once() == 1
    published = (await outbox_rows(store))["test.noted"]
    assert published.published_at < utc_now() + SKEW / 2, published.published_at - before
    assert published.last_error is None  # the earlier failure is over


async def test_a_replay_starts_published_rows_over_ahead_of_newer_ones(
    store: Store, bus: FlakyBus
) -> None:
    """What the embedded default's first start with a journal does: rows the outbox still keeps
    are sent again, due at once and first in line, and retried as if never tried before."""
    outbox = store.tables.outbox
    relay = relay_for(store, bus, window=1)
    assert await relay.replay_published() == 0, "an empty outbox has nothing to replay"
    await write_event(store, "sent.before")
    assert await relay.relay_once() == 1
    # As a relay leaves a row the broker confirmed on its fifth attempt: due a lease ahead.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(outbox).values(attempts=5, next_attempt_at=utc_now() + timedelta(seconds=15))
        )

    assert await relay.replay_published() == 1
    await write_event(store, "written.after")
    bus.confirmed.clear()
    assert await relay.relay_once() == 1
    assert [message.routing_key for message in bus.confirmed] == ["sent.before"]

    # Both replayed, and refused: the first failure waits the first back-off step (0.5 s).
    assert await relay.relay_once() == 1
    assert await relay.replay_published() == 2
    bus.down = True
    before = utc_now()
    assert await relay.relay_once() == 0
    refused = (await outbox_rows(store))["sent.before"]
    assert refused.published_at is None and refused.attempts == 1
    # (A quarter second either side: PostgreSQL's clock decides there, not this process's.)
    assert refused.next_attempt_at <= utc_now() + timedelta(seconds=0.75)  # not the second step
    assert refused.next_attempt_at >= before + timedelta(seconds=0.25)


async def test_a_row_never_tried_is_due_at_once_whatever_due_time_its_writer_gave_it(
    store: Store, bus: FlakyBus
) -> None:
    """A writer whose clock runs ahead dates its rows' first due time in the future: a row not
    yet tried goes out at once all the same."""
    await write_event(store, "ahead.of.time")
    async with store.engine.begin() as conn:
        await conn.execute(
            update(store.tables.outbox).values(next_attempt_at=utc_now() + timedelta(hours=1))
        )
    assert await relay_for(store, bus).relay_once() == 1


class HeldBus(FlakyBus):
    """A broker that holds every publish until released: its relay keeps its claim meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def publish(self, message: OutgoingMessage) -> None:
        self.holding.set()
        await self.release.wait()
        await super().publish(message)


@pytest.mark.postgres
async def test_a_relay_whose_clock_runs_behind_still_holds_its_claim_for_the_whole_lease(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease ends by PostgreSQL's clock: a replica whose clock runs behind by more than the
    lease does not hand its rows to the next relay while it is still publishing them."""
    store = postgres_store
    await write_event(store, "test.noted")
    held = HeldBus()
    await held.connect()
    await held.declare(QueueSpec("listener", ("#",)))
    holder = relay_for(store, held, lease=15.0)

    def behind() -> datetime:
        return utc_now() - SKEW * 2  # 40 s: more than the lease

    for name in ("spoc_platform.db", "spoc_platform.claims", "spoc_platform.relay"):
        module = importlib.import_module(name)
        if hasattr(module, "utc_now"):
            monkeypatch.setattr(module, "utc_now", behind)
    first = asyncio.create_task(holder.relay_once())
    await held.holding.wait()  # claimed, its publish under way

    other = FlakyBus()
    await other.connect()
    await other.declare(QueueSpec("listener", ("#",)))
    assert await relay_for(store, other).relay_once() == 0, "another relay took a held row"
    held.release.set()
    assert await first == 1
