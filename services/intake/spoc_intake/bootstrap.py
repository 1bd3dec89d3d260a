"""Intake's composition root: settings in, runtime, handlers and use cases out."""

from __future__ import annotations

from dataclasses import dataclass

from spoc_intake import handlers
from spoc_intake.models import MESSAGING
from spoc_intake.service import TicketService
from spoc_intake.settings import IntakeSettings
from spoc_platform.bus import MessageBus
from spoc_platform.runtime import ServiceRuntime, build_runtime


@dataclass
class IntakeContainer:
    settings: IntakeSettings
    runtime: ServiceRuntime
    tickets: TicketService


def bootstrap(settings: IntakeSettings, *, bus: MessageBus | None = None) -> IntakeContainer:
    runtime = build_runtime(
        settings,
        service="intake",
        tables=MESSAGING,
        handlers=handlers.HANDLERS,
        publishes=handlers.PUBLISHES,
        bus=bus,
    )
    return IntakeContainer(
        settings=settings, runtime=runtime, tickets=TicketService(runtime.unit_of_work, settings)
    )
