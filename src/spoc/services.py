"""The four services as the command line sees them: settings, app factory, migrations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from spoc_intake.app import create_app as create_intake_app
from spoc_intake.bootstrap import bootstrap as bootstrap_intake
from spoc_intake.migrations import MIGRATIONS_DIR as INTAKE_MIGRATIONS
from spoc_intake.settings import IntakeSettings
from spoc_notify.app import create_app as create_notify_app
from spoc_notify.bootstrap import bootstrap as bootstrap_notify
from spoc_notify.migrations import MIGRATIONS_DIR as NOTIFY_MIGRATIONS
from spoc_notify.settings import NotifySettings
from spoc_platform.settings import ServiceSettings
from spoc_routing.app import create_app as create_routing_app
from spoc_routing.bootstrap import bootstrap as bootstrap_routing
from spoc_routing.migrations import MIGRATIONS_DIR as ROUTING_MIGRATIONS
from spoc_routing.settings import RoutingSettings
from spoc_sla.app import create_app as create_sla_app
from spoc_sla.bootstrap import bootstrap as bootstrap_sla
from spoc_sla.migrations import MIGRATIONS_DIR as SLA_MIGRATIONS
from spoc_sla.settings import SlaSettings


class ServiceName(StrEnum):
    intake = "intake"
    routing = "routing"
    sla = "sla"
    notify = "notify"


@dataclass(frozen=True)
class ServiceEntry:
    settings: type[ServiceSettings]
    bootstrap: Callable[..., Any]
    create_app: Callable[..., FastAPI]
    migrations: Path


SERVICES: dict[ServiceName, ServiceEntry] = {
    ServiceName.intake: ServiceEntry(
        IntakeSettings, bootstrap_intake, create_intake_app, INTAKE_MIGRATIONS
    ),
    ServiceName.routing: ServiceEntry(
        RoutingSettings, bootstrap_routing, create_routing_app, ROUTING_MIGRATIONS
    ),
    ServiceName.sla: ServiceEntry(SlaSettings, bootstrap_sla, create_sla_app, SLA_MIGRATIONS),
    ServiceName.notify: ServiceEntry(
        NotifySettings, bootstrap_notify, create_notify_app, NOTIFY_MIGRATIONS
    ),
}
