"""Outbox guarantees that only show with real concurrency, on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from spoc_platform.bus.memory import MemoryBus
from spoc_platform.relay import OutboxRelay, RelaySettings
from tests.harness import ticket_created
from tests.integration.test_outbox_and_inbox import Store, write_note

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """The shared store and bus (tests/integration/conftest.py), on PostgreSQL only: these
    tests are about its row locks and concurrent transactions."""
    return postgres_url


def relay(store: Store, bus: MemoryBus, window: int = 256) -> OutboxRelay:
    return OutboxRelay(
        service="test",
        engine=store.engine,
        tables=store.tables,
        bus=bus,
        settings=RelaySettings(window=window),
    )


async def test_a_row_committed_late_is_still_published(store: Store, bus: MemoryBus) -> None:
    """A transaction that took its outbox id first but committed last must not be skipped,
    as a relay polling "id > last seen" would."""
    slow_started = asyncio.Event()
    let_slow_commit = asyncio.Event()

    async def slow_writer() -> None:
        async with store.unit_of_work() as uow:
            await uow.publish(ticket_created(subject="slow"), ticket_id=uuid.uuid4())
            await uow._flush_outbox()  # takes its id now
            uow.pending.clear()
            slow_started.set()
            await let_slow_commit.wait()

    slow = asyncio.create_task(slow_writer())
    await slow_started.wait()
    await write_note(store, "fast")
    worker = relay(store, bus)
    assert await worker.relay_once() == 1

    let_slow_commit.set()
    await slow
    assert await worker.relay_once() == 1
    assert bus.depth("listener") == 2


async def test_two_relays_never_publish_the_same_row_twice(store: Store, bus: MemoryBus) -> None:
    for i in range(200):
        await write_note(store, f"n{i}")
    first, second = relay(store, bus, window=20), relay(store, bus, window=20)

    async def drain(worker: OutboxRelay) -> int:
        total = 0
        while published := await worker.relay_once():
            total += published
        return total

    counts = await asyncio.gather(drain(first), drain(second))
    assert sum(counts) == 200 and bus.depth("listener") == 200
    assert min(counts) > 0  # both took part
