"""Fixtures the outbox, relay and runtime tests share: a service-like store and a listening bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spoc_platform.bus import QueueSpec
from spoc_platform.db import create_engine
from tests.integration.test_outbox_and_inbox import FlakyBus, Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """Messaging tables and a note table, on SQLite and on the real PostgreSQL (a module may
    override it, e.g. with a PostgreSQL-only one)."""
    engine = create_engine(database_url)
    built = Store(engine)
    async with engine.begin() as conn:
        await conn.run_sync(built.metadata.create_all)
    try:
        yield built
    finally:
        await engine.dispose()


@pytest.fixture
async def bus() -> AsyncIterator[FlakyBus]:
    """An in-process bus with one queue bound to everything, whose broker can be made to refuse."""
    memory = FlakyBus()
    await memory.connect()
    await memory.declare(QueueSpec("listener", ("#",)))
    yield memory
    await memory.close()
