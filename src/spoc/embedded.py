"""The embedded default: all four services in one process on one port, on SQLite and the
in-memory bus, sending mail to a Maildir. Same code as production but for transport and URLs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from spoc.services import SERVICES, ServiceName
from spoc_intake.app import create_app as create_intake_app
from spoc_intake.bootstrap import IntakeContainer
from spoc_intake.bootstrap import bootstrap as bootstrap_intake
from spoc_intake.settings import IntakeSettings
from spoc_notify.app import create_app as create_notify_app
from spoc_notify.bootstrap import NotifyContainer
from spoc_notify.bootstrap import bootstrap as bootstrap_notify
from spoc_notify.settings import NotifySettings
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
    settings: EmbeddedSettings
    containers: EmbeddedContainers

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

    # Environment variables still apply (desk file, log level); these fields are fixed.
    return EmbeddedSettings(
        intake=IntakeSettings(database_url=database_url(ServiceName.intake), bus="memory"),
        routing=RoutingSettings(database_url=database_url(ServiceName.routing), bus="memory"),
        sla=SlaSettings(database_url=database_url(ServiceName.sla), bus="memory"),
        notify=NotifySettings(
            database_url=database_url(ServiceName.notify),
            bus="memory",
            maildir=data_dir / "mail",
            portal_url=portal_url,
        ),
    )


def migrate_all(settings: EmbeddedSettings) -> None:
    for name, service_settings in settings.by_service().items():
        upgrade(SERVICES[name].migrations, service_settings.database_url)


def build_desk(data_dir: Path, *, portal_url: str = "http://127.0.0.1:8000") -> EmbeddedDesk:
    """Migrates the four SQLite databases and wires the services onto one memory bus."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = embedded_settings(data_dir, portal_url)
    migrate_all(settings)
    bus = MemoryBus()
    containers = EmbeddedContainers(
        intake=bootstrap_intake(settings.intake, bus=bus),
        routing=bootstrap_routing(settings.routing, bus=bus),
        sla=bootstrap_sla(settings.sla, bus=bus),
        notify=bootstrap_notify(settings.notify, bus=bus),
    )
    return EmbeddedDesk(data_dir=data_dir, bus=bus, settings=settings, containers=containers)


@asynccontextmanager
async def running(desk: EmbeddedDesk) -> AsyncIterator[EmbeddedDesk]:
    await desk.bus.connect()
    runtimes = desk.runtimes
    # Every queue exists before any relay publishes: otherwise an early event would reach the
    # services already declared and silently miss the others.
    for runtime in runtimes:
        await runtime.declare()
    # The in-memory bus forgot what it held when this process last stopped or crashed; the
    # outboxes did not. Re-send the recent past: inboxes drop what was handled already.
    replayed = [await runtime.relay.replay_published() for runtime in runtimes]
    if any(replayed):
        log.info("re-sending %d recent events after a restart", sum(replayed))
    started: list[ServiceRuntime] = []
    try:
        for runtime in runtimes:
            await runtime.start()
            started.append(runtime)
        yield desk
    finally:
        for runtime in reversed(started):
            await runtime.stop()
        await desk.bus.close()


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
