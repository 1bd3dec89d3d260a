"""A service's running parts: consumer, outbox relay and housekeeping, started as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_contracts.topology import SUBSCRIPTIONS
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

# The default of ServiceSettings.inbox_retention_days, for runtimes built without settings.
INBOX_RETENTION = timedelta(days=7)
STOP_TIMEOUT = 10.0
READINESS_TIMEOUT = 2.0
RELAY_PASS_TIMEOUT = 5.0


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
        ready_without_bus: bool = False,
        apply_broker_policies: bool = False,
        inbox_retention: timedelta = INBOX_RETENTION,
        subscribed: Collection[str] | None = None,
    ) -> None:
        self.service = service
        self.inbox_retention = inbox_retention
        self.engine = engine
        self.bus = bus
        self._owns_bus = owns_bus
        self.unit_of_work = UnitOfWorkFactory(engine, tables, service)
        self.relay = OutboxRelay(
            service=service,
            engine=engine,
            tables=tables,
            bus=bus,
            settings=relay_settings,
            subscribed=subscribed,
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
        # While the consumer holds events through a database outage it takes no new ones.
        self._want_paused = self._paused = False
        self._pausing: asyncio.Task[None] | None = None
        self.consumer.pause_listeners.append(self._pause_changed)
        self._tasks: list[asyncio.Task[None]] = []
        self._on_start = list(on_start)
        self.workers = list(workers)
        self._housekeeping_jobs = list(housekeeping)
        self._ready_without_bus = ready_without_bus
        self._apply_broker_policies = apply_broker_policies
        metrics.initialise_event_series(service, publishes=publishes, consumes=list(handlers))

    @property
    def topology(self) -> list[QueueSpec]:
        """Every subscriber's queue, this service's own as configured: declared by every
        service, so nothing it publishes can find a consumer's queue missing."""
        others = [
            QueueSpec(name, bindings, delivery_limit=self.queue.delivery_limit)
            for name, bindings in SUBSCRIPTIONS.items()
            if name != self.service
        ]
        own = [self.queue] if self.queue.bindings else []
        return own + others

    def _pause_changed(self, paused: bool) -> None:
        self._want_paused = paused
        if self._pausing is None or self._pausing.done():
            self._pausing = asyncio.create_task(self._apply_pause(), name=f"{self.service}-pause")

    async def _apply_pause(self) -> None:
        # One change at a time, always towards the latest wish: a pause and a resume in quick
        # succession must not cross on the wire.
        while self._subscription is not None and self._paused != self._want_paused:
            target = self._want_paused
            try:
                await (self._subscription.pause() if target else self._subscription.resume())
            except Exception:
                log.exception("could not %s consuming", "pause" if target else "resume")
                await asyncio.sleep(1)
                continue
            self._paused = target
            log.warning("%s consuming", "paused" if target else "resumed")

    def _connection_changed(self, healthy: bool) -> None:
        metrics.bus_connected.labels(self.service).set(1 if healthy else 0)

    async def prepare(self) -> None:
        """Start-up work that needs the database only (e.g. loading desk configuration)."""
        for hook in self._on_start:
            await hook()

    async def declare(self) -> None:
        """Creates every subscriber's queue, dead-letter queue and bindings; idempotent. Runs
        before anything is published, so no event finds a consumer's queue missing."""
        for spec in self.topology:
            await self.bus.declare(spec)
        apply_policies = getattr(self.bus, "apply_policies", None)
        if self._apply_broker_policies and apply_policies is not None and self.queue.bindings:
            # Only its own queue's: each service may run with its own delivery limit.
            try:
                await apply_policies([self.queue])
            except Exception as error:  # noqa: BLE001 - the consumer enforces the limit anyway
                log.warning(
                    "broker policies for %s not applied (%r); run `spoc topology apply`",
                    self.queue.queue,
                    error,
                )

    async def start(self) -> None:
        await self.prepare()
        add_listener = getattr(self.bus, "add_connection_listener", None)
        if add_listener is not None:
            add_listener(self._connection_changed)
        if self._owns_bus:
            await self.bus.connect()
        await self.declare()
        if self.queue.bindings:
            self._subscription = await self.bus.consume(self.queue, self.consumer.handle)
        self._tasks = [
            # First: stop() waits for the relay's pass under way before its final flush.
            asyncio.create_task(self.relay.run(), name=f"{self.service}-relay"),
            asyncio.create_task(self._housekeeping(), name=f"{self.service}-housekeeping"),
            *(
                asyncio.create_task(w.run(), name=f"{self.service}-{type(w).__name__}")
                for w in self.workers
            ),
        ]
        self._connection_changed(self.bus.is_healthy())
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
            # Bounded too: a worker stuck on its own dependency must not hold back the flush.
            try:
                await asyncio.wait_for(worker.stop(), STOP_TIMEOUT)
            except Exception:  # stopping goes on whatever a worker does
                log.exception("%s did not stop cleanly", type(worker).__name__)
        await self.relay.stop()
        if self._tasks:
            # Let a pass under way finish: cancelled between claiming rows and marking them,
            # it would leave them leased, so the flush below could not take them and they would
            # wait out the lease after the next start.
            await asyncio.wait({self._tasks[0]}, timeout=RELAY_PASS_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay.relay_once(), RELAY_PASS_TIMEOUT)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._owns_bus:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bus.close(), STOP_TIMEOUT)
        await self.engine.dispose()
        log.info("%s stopped", self.service)

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            # The connect is bounded too: a server that drops packets instead of refusing
            # them would hold the probe past its own timeout, and it would never hear 503.
            await asyncio.wait_for(self._select_one(), READINESS_TIMEOUT)
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - readiness reports, it does not raise
            checks["database"] = f"unreachable: {type(error).__name__}"
        if self.consumer.paused_since is not None:
            paused_for = time.monotonic() - self.consumer.paused_since
            checks["consumer"] = (
                f"paused: database unreachable for {paused_for:.0f} s, "
                f"{self.consumer.held} event(s) held"
            )
        if self.bus.is_healthy():
            checks["bus"] = "ok"
        elif self._ready_without_bus and checks["database"] == "ok":
            # The outbox keeps what this service accepts until the broker is back: taking the
            # service out of rotation would refuse work that nothing stops it from keeping.
            pending, age = await self.relay.pending()
            checks["bus"] = (
                f"degraded: unreachable; {pending} event(s) wait in the outbox, oldest {age:.0f} s"
            )
        else:
            checks["bus"] = "unreachable"
        return checks

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def housekeep(self) -> None:
        """One pass of pruning: handled-event ids and failure counts past the redelivery
        horizon, and whatever the service added (e.g. intake's expired idempotency answers)."""
        cutoff = utc_now() - self.inbox_retention
        inbox, failures = self.tables.inbox, self.tables.delivery_failure
        async with self.engine.begin() as conn:
            await conn.execute(delete(inbox).where(inbox.c.handled_at < cutoff))
            # Counts left by events that were later handled as duplicates, or that the broker's
            # backstop dead-lettered before the consumer could clear them.
            await conn.execute(delete(failures).where(failures.c.last_failed_at < cutoff))
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
    ready_without_bus: bool = False,
) -> ServiceRuntime:
    """A service's runtime from its settings. Pass `bus` to share one (embedded default, tests)."""
    owns_bus = bus is None
    if bus is None and settings.bus == "amqp":
        # Imported here: the embedded default never loads the AMQP client (faster start).
        from spoc_platform.bus.amqp import AmqpBus
        from spoc_platform.bus.amqp_policies import DeadLetterBounds, ManagementApi

        bus = AmqpBus(
            settings.amqp_url,
            publish_timeout=settings.publish_timeout,
            management=ManagementApi.for_amqp_url(
                settings.amqp_url,
                settings.rabbitmq_management_url or None,
                DeadLetterBounds(settings.dead_letter_max_length, settings.dead_letter_ttl_days),
            ),
        )
    elif bus is None:
        bus = MemoryBus()
    own_bindings = SUBSCRIPTIONS.get(service, tuple(handlers)) if bindings is None else bindings
    return ServiceRuntime(
        service=service,
        engine=create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout,
        ),
        tables=tables,
        bus=bus,
        owns_bus=owns_bus,
        handlers=handlers,
        bindings=own_bindings,
        publishes=publishes,
        delivery_limit=settings.delivery_limit,
        prefetch=settings.prefetch,
        relay_settings=RelaySettings(
            window=settings.outbox_window,
            poll_interval=settings.outbox_poll_interval,
            retention=settings.outbox_retention_hours * 3600,
        ),
        inbox_retention=timedelta(days=settings.inbox_retention_days),
        on_start=on_start,
        workers=workers,
        housekeeping=housekeeping,
        ready_without_bus=ready_without_bus,
        apply_broker_policies=settings.apply_broker_policies,
        # The desk's whole topology: what no queue is bound to is a fact nobody hears yet.
        subscribed={kind for kinds in SUBSCRIPTIONS.values() for kind in kinds} | set(own_bindings),
    )
