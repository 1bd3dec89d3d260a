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
from spoc_notify.app import create_app as create_notify_app
from spoc_notify.bootstrap import NotifyContainer
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.migrations import upgrade
from spoc_platform.runtime import ServiceRuntime
from spoc_platform.settings import ServiceSettings
from spoc_routing.app import create_app as create_routing_app
from spoc_sla.app import create_app as create_sla_app

log = logging.getLogger(__name__)


@dataclass
class EmbeddedDesk:
    data_dir: Path
    bus: MemoryBus
    settings: dict[ServiceName, ServiceSettings]
    containers: dict[ServiceName, object]

    @property
    def maildir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def runtimes(self) -> list[ServiceRuntime]:
        return [c.runtime for c in self.containers.values()]  # type: ignore[attr-defined]

    @property
    def intake(self) -> IntakeContainer:
        return self.containers[ServiceName.intake]  # type: ignore[return-value]

    @property
    def notify(self) -> NotifyContainer:
        return self.containers[ServiceName.notify]  # type: ignore[return-value]


def embedded_settings(data_dir: Path, portal_url: str) -> dict[ServiceName, ServiceSettings]:
    data_dir = data_dir.resolve()
    settings: dict[ServiceName, ServiceSettings] = {}
    for name, entry in SERVICES.items():
        extra: dict[str, object] = {}
        if name is ServiceName.notify:
            extra = {"maildir": data_dir / "mail", "portal_url": portal_url}
        # Environment variables still apply (desk file, log level); these fields are fixed.
        settings[name] = entry.settings(
            database_url=f"sqlite+aiosqlite:///{data_dir / f'{name.value}.sqlite3'}",
            bus="memory",
            **extra,
        )
    return settings


def migrate_all(settings: dict[ServiceName, ServiceSettings]) -> None:
    for name, service_settings in settings.items():
        upgrade(SERVICES[name].migrations, service_settings.database_url)


def build_desk(data_dir: Path, *, portal_url: str = "http://127.0.0.1:8000") -> EmbeddedDesk:
    """Migrates the four SQLite databases and wires the services onto one memory bus."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = embedded_settings(data_dir, portal_url)
    migrate_all(settings)
    bus = MemoryBus()
    containers = {
        name: SERVICES[name].bootstrap(service_settings, bus=bus)
        for name, service_settings in settings.items()
    }
    return EmbeddedDesk(data_dir=data_dir, bus=bus, settings=settings, containers=containers)


@asynccontextmanager
async def running(desk: EmbeddedDesk) -> AsyncIterator[EmbeddedDesk]:
    await desk.bus.connect()
    started: list[ServiceRuntime] = []
    try:
        for runtime in desk.runtimes:
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

    app = create_intake_app(
        settings[ServiceName.intake],
        containers[ServiceName.intake],  # type: ignore[arg-type]
        manage_runtime=False,
    )
    app.router.lifespan_context = lifespan
    for name, factory in (
        (ServiceName.routing, create_routing_app),
        (ServiceName.sla, create_sla_app),
        (ServiceName.notify, create_notify_app),
    ):
        app.mount(
            f"/{name.value}",
            factory(settings[name], containers[name], manage_runtime=False),  # type: ignore[operator]
        )
    return app
