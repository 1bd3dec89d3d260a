"""What a deployer sets reaches the running parts: the queue's limits, the relay's pace and
retention, the database pool, and who owns (opens and closes) the bus."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Table, func, select, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from spoc.services import SERVICES, ServiceName
from spoc_contracts.topology import SUBSCRIPTIONS
from spoc_platform.bus import QueueSpec
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.db import UtcDateTime, create_engine, new_metadata
from spoc_platform.migrations import upgrade
from spoc_platform.relay import RelaySettings
from spoc_routing.bootstrap import bootstrap
from spoc_routing.settings import RoutingSettings

pytestmark = pytest.mark.integration


def test_a_runtime_takes_its_queue_relay_and_retention_knobs_from_its_settings(
    sqlite_url: str,
) -> None:
    settings = RoutingSettings(
        database_url=sqlite_url,
        bus="memory",
        delivery_limit=7,
        prefetch=5,
        outbox_window=3,
        outbox_poll_interval=0.25,
        outbox_retention_hours=2,
        inbox_retention_days=3,
    )
    runtime = bootstrap(settings).runtime

    assert runtime.queue == QueueSpec(
        "routing", SUBSCRIPTIONS["routing"], delivery_limit=7, prefetch=5
    )
    assert runtime.relay.settings == RelaySettings(window=3, poll_interval=0.25, retention=7200.0)
    assert runtime.inbox_retention == timedelta(days=3)
    # Every other subscriber's queue is declared with the same delivery limit.
    assert {spec.service: spec.delivery_limit for spec in runtime.topology} == {
        name: 7 for name in SUBSCRIPTIONS
    }


async def test_a_runtime_opens_and_closes_the_bus_it_made_and_leaves_a_shared_one_open(
    sqlite_url: str,
) -> None:
    upgrade(SERVICES[ServiceName.routing].migrations, sqlite_url)
    settings = RoutingSettings(database_url=sqlite_url, bus="memory")

    own = bootstrap(settings).runtime
    assert isinstance(own.bus, MemoryBus) and not own.bus.is_healthy()
    await own.start()
    assert own.bus.is_healthy(), "a runtime that made its bus connects it"
    await own.stop()
    assert not own.bus.is_healthy(), "a runtime that made its bus closes it"

    shared = MemoryBus()
    await shared.connect()
    try:
        runtime = bootstrap(settings, bus=shared).runtime
        assert runtime.bus is shared
        await runtime.start()
        await runtime.stop()
        assert shared.is_healthy(), "a runtime closed a bus it was given"
        # A bus given is the one used, whatever transport the settings name.
        amqp_settings = RoutingSettings(database_url=sqlite_url, bus="amqp")
        assert bootstrap(amqp_settings, bus=shared).runtime.bus is shared
    finally:
        await shared.close()


@pytest.mark.postgres
async def test_work_waits_for_a_pooled_connection_only_as_long_as_the_settings_say(
    postgres_url: str,
) -> None:
    settings = RoutingSettings(
        database_url=postgres_url, bus="memory", database_pool_size=1, database_pool_timeout=0.2
    )
    engine = bootstrap(settings).runtime.engine
    try:

        async def second_connection() -> None:
            async with engine.connect():
                pass

        async with engine.connect():  # the pool's only connection
            started = time.monotonic()
            with pytest.raises(PoolTimeoutError):
                await asyncio.wait_for(second_connection(), 5)
            waited = time.monotonic() - started
        assert 0.15 <= waited < 2, waited
    finally:
        await engine.dispose()


async def test_a_sqlite_database_is_opened_in_wal_mode_with_foreign_keys_and_one_connection(
    sqlite_url: str,
) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
            # One connection per process: a second user waits for it instead of opening one.
            second = asyncio.create_task(engine.connect().__aenter__())
            await asyncio.sleep(0.1)
            assert not second.done(), "a second connection was opened beside the first"
        other = await asyncio.wait_for(second, 5)
        await other.close()
    finally:
        await engine.dispose()
    # NORMAL is 1; SQLite never waits itself (sqlite_inline waits with asyncio instead).
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 0,
        "foreign_keys": 1,
    }


async def test_a_host_in_another_time_zone_stores_and_reads_the_same_instants(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tehran")
    time.tzset()
    try:
        engine = create_engine(database_url)
        metadata = new_metadata()
        moments = Table("moment", metadata, Column("at", UtcDateTime, nullable=False))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
                given = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
                await conn.execute(moments.insert().values(at=given))
                read = (await conn.execute(select(moments.c.at))).scalar_one()
                later = (
                    await conn.execute(
                        select(func.count())
                        .select_from(moments)
                        .where(moments.c.at > datetime(2026, 11, 23, 9, 59, tzinfo=UTC))
                    )
                ).scalar_one()
            with pytest.raises(Exception, match="naive datetime given to a UtcDateTime column"):
                async with engine.begin() as conn:
                    await conn.execute(moments.insert().values(at=datetime(2026, 11, 23, 12, 0)))
        finally:
            await engine.dispose()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert read == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert read.utcoffset() == timedelta(0)
    assert later == 1, "the stored instant does not compare as the instant it is"
