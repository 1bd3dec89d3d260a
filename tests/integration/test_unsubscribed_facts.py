"""A fact no service subscribes to yet is published to nobody, not retried for ever; a fact
whose subscriber's queue is missing is retried until it is bound."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from spoc_platform.bus import QueueSpec
from spoc_platform.db import utc_now
from spoc_platform.relay import OutboxRelay, RelaySettings
from tests.integration.test_claims_clock import SKEW, run_clock_ahead
from tests.integration.test_outbox_and_inbox import FlakyBus, Store, write_note
from tests.integration.test_relay_loop import postgres_store as postgres_store  # a fixture

pytestmark = pytest.mark.integration


def relay(store: Store, bus: FlakyBus, subscribed: set[str]) -> OutboxRelay:
    return OutboxRelay(
        service="unheard",
        engine=store.engine,
        tables=store.tables,
        bus=bus,
        settings=RelaySettings(),
        subscribed=subscribed,
    )


async def outbox_rows(store: Store) -> list[Any]:
    outbox = store.tables.outbox
    async with store.engine.connect() as conn:
        query = select(outbox.c.published_at, outbox.c.attempts, outbox.c.last_error)
        return list((await conn.execute(query)).all())


def published(outcome: str) -> float:
    labels = {"service": "unheard", "type": "ticket.created", "outcome": outcome}
    return REGISTRY.get_sample_value("spoc_events_published_total", labels) or 0.0


async def test_a_fact_no_service_subscribes_to_is_marked_published_to_nobody(
    store: Store,
) -> None:
    bus = FlakyBus()  # no queue at all: anything published would come back unroutable
    await bus.connect()
    before = published("unsubscribed")
    try:
        await write_note(store, "nobody listens")
        assert await relay(store, bus, subscribed={"ticket.routed"}).relay_once() == 0
        [row] = await outbox_rows(store)
        assert row.published_at is not None
        assert row.last_error == "no service subscribes to this event type"
        assert bus.confirmed == []  # never sent: nothing to come back unroutable
        assert published("unsubscribed") == before + 1
    finally:
        await bus.close()


async def test_a_fact_whose_subscribers_queue_is_missing_waits_for_it(store: Store) -> None:
    bus = FlakyBus()
    await bus.connect()
    try:
        await write_note(store, "queue not declared yet")
        subscribed = relay(store, bus, subscribed={"ticket.created"})
        assert await subscribed.relay_once() == 0
        [row] = await outbox_rows(store)
        assert row.published_at is None  # kept, to be retried
        assert "no queue is bound" in row.last_error

        await bus.declare(QueueSpec("late", ("ticket.created",)))
        # Its back-off ends now rather than in a second or two.
        outbox = store.tables.outbox
        async with store.engine.begin() as conn:
            await conn.execute(outbox.update().values(next_attempt_at=utc_now()))
        assert await subscribed.relay_once() == 1
        assert bus.depth("late") == 1
    finally:
        await bus.close()


async def test_in_a_mixed_batch_the_heard_fact_is_sent_and_only_the_unheard_one_set_aside(
    store: Store,
) -> None:
    bus = FlakyBus()
    await bus.connect()
    try:
        await bus.declare(QueueSpec("listening", ("ticket.created",)))
        heard = await write_note(store, "someone listens")
        unheard = await write_note(store, "nobody listens")
        later = await write_note(store, "not due yet")
        outbox = store.tables.outbox
        async with store.engine.begin() as conn:
            # Same body, another type: one no service subscribes to.
            await conn.execute(
                outbox.update()
                .where(outbox.c.event_id == unheard.id)
                .values(event_type="ticket.routed")
            )
            # A heard fact outside this pass (backing off after a failure) is not touched.
            await conn.execute(
                outbox.update()
                .where(outbox.c.event_id == later.id)
                .values(attempts=1, next_attempt_at=utc_now() + timedelta(minutes=5))
            )

        assert await relay(store, bus, subscribed={"ticket.created"}).relay_once() == 1
        assert bus.depth("listening") == 1
        async with store.engine.connect() as conn:
            rows = {
                row.event_id: row
                for row in await conn.execute(
                    select(outbox.c.event_id, outbox.c.published_at, outbox.c.last_error)
                )
            }
        assert rows[heard.id].published_at is not None and rows[heard.id].last_error is None
        assert rows[unheard.id].last_error == "no service subscribes to this event type"
        assert rows[later.id].published_at is None and rows[later.id].last_error is None
    finally:
        await bus.close()


async def test_a_fact_published_to_nobody_is_dated_by_the_databases_clock(
    postgres_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention counts from published_at: a replica whose clock runs ahead must not date it
    in the future (and so keep it past the horizon)."""
    bus = FlakyBus()
    await bus.connect()
    try:
        await write_note(postgres_store, "nobody listens")
        run_clock_ahead(monkeypatch)  # SKEW ahead from now on
        assert await relay(postgres_store, bus, subscribed={"ticket.routed"}).relay_once() == 0
        [row] = await outbox_rows(postgres_store)
        assert row.published_at < utc_now() + SKEW / 2, row.published_at
    finally:
        await bus.close()
