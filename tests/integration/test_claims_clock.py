"""Leases by the database's clock: a replica whose own clock runs ahead takes nothing early."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert

from spoc_notify.dispatcher import DeliveryDispatcher
from spoc_notify.mail import OutgoingMail
from spoc_notify.models import MESSAGING
from spoc_platform.bus import OutgoingMessage, QueueSpec
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.db import create_engine, utc_now
from spoc_platform.relay import OutboxRelay, RelaySettings
from spoc_platform.unit_of_work import UnitOfWorkFactory
from tests.integration.test_notify_dispatch import RecordingTransport, notify_database, owe
from tests.integration.test_outbox_and_inbox import Store

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SKEW = timedelta(seconds=20)
# Every module that reads the wall clock for claims, leases or due times.
CLOCK_READERS = (
    "spoc_platform.db",
    "spoc_platform.claims",
    "spoc_platform.relay",
    "spoc_platform.unit_of_work",
    "spoc_notify.dispatcher",
    "spoc_notify.repository",
)


def run_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on this process's clock is SKEW ahead of the database's (and other replicas')."""

    def ahead() -> datetime:
        return utc_now() + SKEW

    for name in CLOCK_READERS:
        module = importlib.import_module(name)
        if hasattr(module, "utc_now"):
            monkeypatch.setattr(module, "utc_now", ahead)


class HeldBus(MemoryBus):
    """A broker that holds every publish until released: its relay keeps its claim meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def publish(self, message: OutgoingMessage) -> None:
        self.holding.set()
        await self.release.wait()
        await super().publish(message)


class HeldTransport(RecordingTransport):
    """A mail server that holds every send until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def send(self, mail: OutgoingMail) -> None:
        self.holding.set()
        await self.release.wait()
        await super().send(mail)


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[Store]:
    engine = create_engine(postgres_url)
    built = Store(engine)
    async with engine.begin() as conn:
        await conn.run_sync(built.metadata.create_all)
    try:
        yield built
    finally:
        await engine.dispose()


async def write_events(store: Store, count: int) -> None:
    """Outbox rows as any service writes them, due at once."""
    now = utc_now()
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(store.tables.outbox),
            [
                {
                    "event_id": uuid.uuid4(),
                    "event_type": "test.noted",
                    "body": "{}",
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for _ in range(count)
            ],
        )


async def listening(bus: MemoryBus) -> MemoryBus:
    await bus.connect()
    await bus.declare(QueueSpec("listener", ("#",)))
    return bus


async def test_a_relay_whose_clock_runs_ahead_does_not_take_rows_another_relay_holds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await write_events(store, 10)
    held = await listening(HeldBus())
    other = await listening(MemoryBus())
    settings = RelaySettings(lease=15.0)
    holder = OutboxRelay(
        service="test", engine=store.engine, tables=store.tables, bus=held, settings=settings
    )
    ahead = OutboxRelay(
        service="test", engine=store.engine, tables=store.tables, bus=other, settings=settings
    )
    first = asyncio.create_task(holder.relay_once())
    await held.holding.wait()  # the rows are claimed, their publishes under way

    run_clock_ahead(monkeypatch)
    assert await ahead.relay_once() == 0
    assert other.depth("listener") == 0

    held.release.set()
    assert await first == 10
    assert held.depth("listener") == 10


async def test_a_dispatcher_whose_clock_runs_ahead_does_not_take_deliveries_another_holds(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with notify_database(postgres_url) as engine:
        await owe(engine, 3)

        def replica(transport: RecordingTransport) -> DeliveryDispatcher:
            return DeliveryDispatcher(
                unit_of_work=UnitOfWorkFactory(engine, MESSAGING, "notify"),
                transport=transport,
                sender="desk@spoc.localhost",
                max_attempts=8,
                lease=15.0,
            )

        held, other = HeldTransport(), RecordingTransport()
        holder, ahead = replica(held), replica(other)
        first = asyncio.create_task(holder.dispatch_once())
        await held.holding.wait()  # the deliveries are claimed, their sends under way

        run_clock_ahead(monkeypatch)
        assert await ahead.dispatch_once() == 0
        assert other.sent == []

        held.release.set()
        assert await first == 3
        assert len(held.sent) == 3
