"""A service's running parts: consumer, outbox relay and housekeeping, started as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_platform import metrics
from spoc_platform.bus import MessageBus, QueueSpec, Subscription
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.consumer import EventConsumer, Handler
from spoc_platform.db import create_engine, utc_now
from spoc_platform.messaging_tables import MessagingTables
from spoc_platform.relay import OutboxRelay, RelaySettings
from spoc_platform.settings import ServiceSettings
from spoc_platform.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

INBOX_RETENTION = timedelta(days=7)
STOP_TIMEOUT = 10.0


class BackgroundWorker(Protocol):
    """A loop a service runs beside its consumer (e.g. notify's mail dispatcher)."""

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class ServiceRuntime:
    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        tables: MessagingTables,
        bus: MessageBus,
        owns_bus: bool,
        handlers: Mapping[str, Handler],
        bindings: Sequence[str],
        publishes: Sequence[str],
        delivery_limit: int = 10,
        prefetch: int = 64,
        relay_settings: RelaySettings | None = None,
        on_start: Sequence[Callable[[], Awaitable[None]]] = (),
        workers: Sequence[BackgroundWorker] = (),
        housekeeping: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.service = service
        self.engine = engine
        self.bus = bus
        self._owns_bus = owns_bus
        self.unit_of_work = UnitOfWorkFactory(engine, tables, service)
        self.relay = OutboxRelay(
            service=service, engine=engine, tables=tables, bus=bus, settings=relay_settings
        )
        self.unit_of_work.on_commit(self.relay.kick)
        self.tables = tables
        self.queue = QueueSpec(
            service, tuple(bindings), delivery_limit=delivery_limit, prefetch=prefetch
        )
        self.consumer = EventConsumer(
            service=service,
            unit_of_work=self.unit_of_work,
            handlers=handlers,
            delivery_limit=delivery_limit,
        )
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._on_start = list(on_start)
        self.workers = list(workers)
        self._housekeeping_jobs = list(housekeeping)
        metrics.initialise_event_series(service, publishes=publishes, consumes=list(handlers))

    async def prepare(self) -> None:
        """Start-up work that needs the database only (e.g. loading desk configuration)."""
        for hook in self._on_start:
            await hook()

    async def declare(self) -> None:
        """Creates this service's queue and bindings; idempotent. A service sharing a bus with
        others declares before any of them publishes, so no event finds its queue missing."""
        if self.queue.bindings:
            await self.bus.declare(self.queue)

    async def start(self) -> None:
        await self.prepare()
        if self._owns_bus:
            await self.bus.connect()
        if self.queue.bindings:
            self._subscription = await self.bus.consume(self.queue, self.consumer.handle)
        self._tasks = [
            asyncio.create_task(self.relay.run(), name=f"{self.service}-relay"),
            asyncio.create_task(self._housekeeping(), name=f"{self.service}-housekeeping"),
            *(
                asyncio.create_task(w.run(), name=f"{self.service}-{type(w).__name__}")
                for w in self.workers
            ),
        ]
        metrics.bus_connected.labels(self.service).set(1 if self.bus.is_healthy() else 0)
        log.info("%s started: consuming %s", self.service, ", ".join(self.queue.bindings) or "-")

    async def stop(self) -> None:
        # Stop taking work first, let in-flight handlers finish, then flush what they wrote.
        if self._subscription is not None:
            # Bounded: with the broker unreachable, cancelling would wait for a reconnect
            # that may never come, and the final flush below would never run.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._subscription.cancel(), STOP_TIMEOUT)
            self._subscription = None
        for worker in self.workers:
            await worker.stop()
        await self.relay.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay.relay_once(), 5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._owns_bus:
            await self.bus.close()
        await self.engine.dispose()
        log.info("%s stopped", self.service)

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 2)
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - readiness reports, it does not raise
            checks["database"] = f"unreachable: {type(error).__name__}"
        healthy = self.bus.is_healthy()
        metrics.bus_connected.labels(self.service).set(1 if healthy else 0)
        checks["bus"] = "ok" if healthy else "unreachable"
        return checks

    async def housekeep(self) -> None:
        """One pass of pruning: handled-event ids past the redelivery horizon, and whatever
        the service added (e.g. intake's expired idempotency answers)."""
        cutoff = utc_now() - INBOX_RETENTION
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(self.tables.inbox).where(self.tables.inbox.c.handled_at < cutoff)
            )
        for job in self._housekeeping_jobs:
            await job()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(300)
            try:
                await self.housekeep()
            except Exception:
                log.exception("housekeeping failed")


def build_runtime(
    settings: ServiceSettings,
    *,
    service: str,
    tables: MessagingTables,
    handlers: Mapping[str, Handler],
    publishes: Sequence[str],
    bus: MessageBus | None = None,
    bindings: Sequence[str] | None = None,
    on_start: Sequence[Callable[[], Awaitable[None]]] = (),
    workers: Sequence[BackgroundWorker] = (),
    housekeeping: Sequence[Callable[[], Awaitable[None]]] = (),
) -> ServiceRuntime:
    """A service's runtime from its settings. Pass `bus` to share one (embedded default, tests)."""
    owns_bus = bus is None
    if bus is None and settings.bus == "amqp":
        # Imported here: the embedded default never loads the AMQP client (faster start).
        from spoc_platform.bus.amqp import AmqpBus

        bus = AmqpBus(settings.amqp_url, publish_timeout=settings.publish_timeout)
    elif bus is None:
        bus = MemoryBus()
    return ServiceRuntime(
        service=service,
        engine=create_engine(settings.database_url, pool_size=settings.database_pool_size),
        tables=tables,
        bus=bus,
        owns_bus=owns_bus,
        handlers=handlers,
        bindings=list(handlers) if bindings is None else bindings,
        publishes=publishes,
        delivery_limit=settings.delivery_limit,
        prefetch=settings.prefetch,
        relay_settings=RelaySettings(
            window=settings.outbox_window, poll_interval=settings.outbox_poll_interval
        ),
        on_start=on_start,
        workers=workers,
        housekeeping=housekeeping,
    )
