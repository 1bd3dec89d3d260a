"""The embedded default: all four services in one process on one port, on SQLite and the
in-memory bus, sending mail to a Maildir. Same code as production but for transport and URLs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from spoc.datadir_lock import DataDirLock
from spoc.keys import data_dir_key_pair
from spoc.services import SERVICES, ServiceName
from spoc_intake.app import create_app as create_intake_app
from spoc_intake.bootstrap import IntakeContainer
from spoc_intake.bootstrap import bootstrap as bootstrap_intake
from spoc_intake.settings import IntakeSettings
from spoc_notify.app import create_app as create_notify_app
from spoc_notify.bootstrap import NotifyContainer
from spoc_notify.bootstrap import bootstrap as bootstrap_notify
from spoc_notify.settings import NotifySettings
from spoc_platform.bus.journal import BusJournal
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.migrations import upgrade
from spoc_platform.runtime import ServiceRuntime
from spoc_platform.settings import ServiceSettings
from spoc_routing.app import create_app as create_routing_app
from spoc_routing.bootstrap import RoutingContainer
from spoc_routing.bootstrap import bootstrap as bootstrap_routing
from spoc_routing.settings import RoutingSettings
from spoc_sla.app import create_app as create_sla_app
from spoc_sla.bootstrap import SlaContainer
from spoc_sla.bootstrap import bootstrap as bootstrap_sla
from spoc_sla.settings import SlaSettings

log = logging.getLogger(__name__)

BUS_JOURNAL = "bus.sqlite3"
# How often dead letters past their retention are dropped.
DEAD_LETTER_PRUNE_INTERVAL = 300.0


@dataclass(frozen=True)
class EmbeddedSettings:
    """Each service's settings, under its own type."""

    intake: IntakeSettings
    routing: RoutingSettings
    sla: SlaSettings
    notify: NotifySettings

    def by_service(self) -> dict[ServiceName, ServiceSettings]:
        """In start order: intake, routing, sla, notify."""
        return {
            ServiceName.intake: self.intake,
            ServiceName.routing: self.routing,
            ServiceName.sla: self.sla,
            ServiceName.notify: self.notify,
        }


@dataclass(frozen=True)
class EmbeddedContainers:
    """Each service's wired container, under its own type."""

    intake: IntakeContainer
    routing: RoutingContainer
    sla: SlaContainer
    notify: NotifyContainer

    @property
    def runtimes(self) -> list[ServiceRuntime]:
        """In start order: intake, routing, sla, notify."""
        return [
            self.intake.runtime,
            self.routing.runtime,
            self.sla.runtime,
            self.notify.runtime,
        ]


@dataclass
class EmbeddedDesk:
    data_dir: Path
    bus: MemoryBus
    journal: BusJournal
    settings: EmbeddedSettings
    containers: EmbeddedContainers
    lock: DataDirLock

    @property
    def maildir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def runtimes(self) -> list[ServiceRuntime]:
        return self.containers.runtimes

    @property
    def intake(self) -> IntakeContainer:
        return self.containers.intake

    @property
    def notify(self) -> NotifyContainer:
        return self.containers.notify


def embedded_settings(data_dir: Path, portal_url: str) -> EmbeddedSettings:
    data_dir = data_dir.resolve()

    def database_url(name: ServiceName) -> str:
        return f"sqlite+aiosqlite:///{data_dir / f'{name.value}.sqlite3'}"

    # This installation's own access-key pair (spoc.keys), not the well-known development one.
    keys = data_dir_key_pair(data_dir)
    # Environment variables still apply (desk file, log level); these fields are fixed.
    return EmbeddedSettings(
        intake=IntakeSettings(
            database_url=database_url(ServiceName.intake),
            bus="memory",
            access_key_recipient=keys.recipient,
        ),
        routing=RoutingSettings(database_url=database_url(ServiceName.routing), bus="memory"),
        sla=SlaSettings(database_url=database_url(ServiceName.sla), bus="memory"),
        notify=NotifySettings(
            database_url=database_url(ServiceName.notify),
            bus="memory",
            maildir=data_dir / "mail",
            portal_url=portal_url,
            access_key_secret=keys.secret,
        ),
    )


def migrate_all(settings: EmbeddedSettings) -> None:
    for name, service_settings in settings.by_service().items():
        upgrade(SERVICES[name].migrations, service_settings.database_url)


def build_desk(data_dir: Path, *, portal_url: str = "http://127.0.0.1:8000") -> EmbeddedDesk:
    """Locks the data directory (or raises DataDirInUse), migrates the four SQLite databases
    and wires the services onto one memory bus journalled in the same directory."""
    lock = DataDirLock(data_dir, url=portal_url)
    lock.acquire()
    try:
        settings = embedded_settings(data_dir, portal_url)
        migrate_all(settings)
        journal = BusJournal(data_dir / BUS_JOURNAL)
        services = settings.by_service().values()
        # One bus serves all four: it keeps dead letters as long as the most patient asks.
        bus = MemoryBus(
            journal,
            dead_letter_retention=timedelta(days=max(s.dead_letter_ttl_days for s in services)),
            dead_letter_limit=max(s.dead_letter_max_length for s in services),
        )
        containers = EmbeddedContainers(
            intake=bootstrap_intake(settings.intake, bus=bus),
            routing=bootstrap_routing(settings.routing, bus=bus),
            sla=bootstrap_sla(settings.sla, bus=bus),
            notify=bootstrap_notify(settings.notify, bus=bus),
        )
    except BaseException:
        lock.release()
        raise
    return EmbeddedDesk(
        data_dir=data_dir,
        bus=bus,
        journal=journal,
        settings=settings,
        containers=containers,
        lock=lock,
    )


@asynccontextmanager
async def running(desk: EmbeddedDesk) -> AsyncIterator[EmbeddedDesk]:
    """Runs the desk; on exit, stops it without losing anything a stop may interrupt."""
    desk.lock.acquire()
    # Loads what the journal kept: messages no consumer acknowledged, and dead letters.
    await desk.bus.connect()
    runtimes = desk.runtimes
    # Every queue exists before any relay publishes: otherwise an early event would reach the
    # services already declared and silently miss the others.
    for runtime in runtimes:
        await runtime.declare()
    if desk.journal.created:
        # A data directory from a release whose bus forgot everything on exit: what it held
        # then is lost, but the outboxes still have it (for their retention). Send it again
        # once; inboxes drop what was handled. With a journal, restarts need no replay.
        replayed = [await runtime.relay.replay_published() for runtime in runtimes]
        if any(replayed):
            log.info("bus journal created: re-sending %d recent events", sum(replayed))
    started: list[ServiceRuntime] = []
    pruning = asyncio.create_task(_prune_dead_letters(desk.bus), name="dead-letter-retention")
    try:
        for runtime in runtimes:
            await runtime.start()
            started.append(runtime)
        yield desk
    finally:
        pruning.cancel()
        await asyncio.gather(pruning, return_exceptions=True)
        # Downstream first: each service stops consuming, lets its handlers finish (those a
        # stop cancels leave their message journalled, unacknowledged) and flushes its relay.
        # The bus accepts publishes until all four have stopped, so every final flush lands
        # in the journal, and the consumers take it up at the next start.
        try:
            for runtime in reversed(started):
                await runtime.stop()
        finally:
            await desk.bus.close()
            desk.lock.release()


async def _prune_dead_letters(bus: MemoryBus) -> None:
    while True:
        try:
            await bus.prune_dead_letters()
        except Exception:
            log.exception("pruning dead letters failed; trying again later")
        await asyncio.sleep(DEAD_LETTER_PRUNE_INTERVAL)


def create_embedded_app(desk: EmbeddedDesk) -> FastAPI:
    """Intake's app at the root (the one door); the others' admin APIs under their names."""
    settings = desk.settings
    containers = desk.containers

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with running(desk):
            log.info("Spoc is ready (embedded default, data in %s)", desk.data_dir)
            yield

    app = create_intake_app(settings.intake, containers.intake, manage_runtime=False)
    app.router.lifespan_context = lifespan
    app.mount(
        f"/{ServiceName.routing.value}",
        create_routing_app(settings.routing, containers.routing, manage_runtime=False),
    )
    app.mount(
        f"/{ServiceName.sla.value}",
        create_sla_app(settings.sla, containers.sla, manage_runtime=False),
    )
    app.mount(
        f"/{ServiceName.notify.value}",
        create_notify_app(settings.notify, containers.notify, manage_runtime=False),
    )
    return app
