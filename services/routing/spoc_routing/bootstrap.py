"""Routing's composition root: settings in, a runtime with its handlers wired out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spoc_contracts import (
    SlaBreached,
    SlaWarning,
    StaffUpdated,
    TicketAssignmentRequested,
    TicketCreated,
    TicketEscalationRequested,
    TicketHandBackRequested,
    TicketStatusChanged,
    TicketUpdated,
)
from spoc_platform.bus import MessageBus
from spoc_platform.consumer import Handler
from spoc_platform.desk_config import load_section
from spoc_platform.runtime import ServiceRuntime, build_runtime
from spoc_platform.token_projection import TokenProjection, feed_handlers
from spoc_routing import handlers, metrics, repository, sla_escalation, staff_requests
from spoc_routing.desk import RoutingDesk
from spoc_routing.desk_versions import DeskHolder, DeskRefresher
from spoc_routing.models import MESSAGING, TOKENS
from spoc_routing.settings import RoutingSettings
from spoc_routing.waiting_queue import WaitingQueueSweeper


@dataclass
class RoutingContainer:
    settings: RoutingSettings
    # The desk section in force: the newest set through the admin API, else the file's.
    desks: DeskHolder
    runtime: ServiceRuntime
    # Intake's bearer tokens as routing last heard of them: the admin API honours them.
    bearer_tokens: TokenProjection

    @property
    def desk(self) -> RoutingDesk:
        return self.desks.current


def with_desk(handler: Callable[..., Any], desks: DeskHolder) -> Handler:
    """The handler given the desk in force as its event's handling begins (`desk=`), so one
    event's decisions use, and record, one version."""

    async def bound(event: Any, *, envelope: Any, uow: Any) -> None:
        await handler(event, envelope=envelope, uow=uow, desk=desks.current)

    bound.__name__ = getattr(handler, "__name__", "handler")
    return bound


def bootstrap(settings: RoutingSettings, *, bus: MessageBus | None = None) -> RoutingContainer:
    from_file = load_section(settings.desk_config, "routing", RoutingDesk)
    metrics.initialise(from_file)
    runtime: ServiceRuntime

    async def sync_agents(desk: RoutingDesk) -> None:
        async with runtime.engine.begin() as conn:
            await repository.sync_agents(conn, desk)

    async def start_series(desk: RoutingDesk) -> None:
        metrics.initialise(desk)

    desks = DeskHolder(from_file, on_change=[sync_agents, start_series])

    async def load_desk() -> None:
        # The stored version if any (set through another replica), its agents synced either way.
        await desks.refresh(runtime.engine, force=True)

    runtime = build_runtime(
        settings,
        service="routing",
        tables=MESSAGING,
        handlers={
            TicketCreated.TYPE: with_desk(handlers.on_ticket_created, desks),
            StaffUpdated.TYPE: with_desk(handlers.on_staff_updated, desks),
            TicketUpdated.TYPE: with_desk(handlers.on_ticket_updated, desks),
            TicketStatusChanged.TYPE: with_desk(handlers.on_ticket_status_changed, desks),
            TicketAssignmentRequested.TYPE: with_desk(
                staff_requests.on_assignment_requested, desks
            ),
            TicketEscalationRequested.TYPE: with_desk(
                staff_requests.on_escalation_requested, desks
            ),
            TicketHandBackRequested.TYPE: with_desk(staff_requests.on_hand_back_requested, desks),
            SlaWarning.TYPE: with_desk(sla_escalation.on_sla_warning, desks),
            SlaBreached.TYPE: with_desk(sla_escalation.on_sla_breached, desks),
            **feed_handlers(TOKENS),
        },
        publishes=sorted(
            {*handlers.PUBLISHES, *staff_requests.PUBLISHES, *sla_escalation.PUBLISHES}
        ),
        bus=bus,
        on_start=[load_desk],
    )
    runtime.workers.append(
        WaitingQueueSweeper(
            runtime.unit_of_work, lambda: desks.current, interval=settings.queue_sweep_seconds
        )
    )
    runtime.workers.append(
        DeskRefresher(desks, runtime.engine, interval=settings.desk_refresh_seconds)
    )
    bearer_tokens = TokenProjection(runtime.engine, TOKENS, service="routing")
    # Its admin tokens all refused while the feed is stale or behind: a gauge says it.
    bearer_tokens.export_on_scrape()
    return RoutingContainer(
        settings=settings,
        desks=desks,
        runtime=runtime,
        bearer_tokens=bearer_tokens,
    )
