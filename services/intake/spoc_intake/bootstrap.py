"""Intake's composition root: settings in, runtime, handlers and use cases out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from spoc_intake import handlers, repository
from spoc_intake.models import MESSAGING
from spoc_intake.service import TicketService
from spoc_intake.settings import IntakeSettings
from spoc_platform.bus import MessageBus
from spoc_platform.db import utc_now
from spoc_platform.runtime import ServiceRuntime, build_runtime


@dataclass
class IntakeContainer:
    settings: IntakeSettings
    runtime: ServiceRuntime
    tickets: TicketService


def bootstrap(settings: IntakeSettings, *, bus: MessageBus | None = None) -> IntakeContainer:
    runtime: ServiceRuntime

    async def forget_old_idempotency_keys() -> None:
        # The replayable answers hold requesters' access keys (sealed under each client's
        # Idempotency-Key): keep them only as long as promised.
        cutoff = utc_now() - timedelta(hours=settings.idempotency_hours)
        async with runtime.engine.begin() as conn:
            await repository.prune_idempotency(conn, cutoff)

    runtime = build_runtime(
        settings,
        service="intake",
        tables=MESSAGING,
        handlers=handlers.HANDLERS,
        publishes=handlers.PUBLISHES,
        bus=bus,
        housekeeping=[forget_old_idempotency_keys],
        # The front door keeps taking tickets while the broker is down: the outbox holds them.
        ready_without_bus=True,
    )
    return IntakeContainer(
        settings=settings, runtime=runtime, tickets=TicketService(runtime.unit_of_work, settings)
    )
