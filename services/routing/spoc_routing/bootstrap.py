"""Routing's composition root: settings in, a runtime with its handlers wired out."""

from __future__ import annotations

from dataclasses import dataclass

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
from spoc_platform.consumer import bind_handler
from spoc_platform.desk_config import load_section
from spoc_platform.runtime import ServiceRuntime, build_runtime
from spoc_platform.token_projection import TokenProjection, feed_handlers
from spoc_routing import handlers, metrics, repository, sla_escalation, staff_requests
from spoc_routing.desk import RoutingDesk
from spoc_routing.models import MESSAGING, TOKENS
from spoc_routing.settings import RoutingSettings
from spoc_routing.waiting_queue import WaitingQueueSweeper


@dataclass
class RoutingContainer:
    settings: RoutingSettings
    desk: RoutingDesk
    runtime: ServiceRuntime
    # Intake's bearer tokens as routing last heard of them: the admin API honours them.
    bearer_tokens: TokenProjection


def bootstrap(settings: RoutingSettings, *, bus: MessageBus | None = None) -> RoutingContainer:
    desk = load_section(settings.desk_config, "routing", RoutingDesk)
    metrics.initialise(desk)
    runtime: ServiceRuntime

    async def sync_agents() -> None:
        async with runtime.engine.begin() as conn:
            await repository.sync_agents(conn, desk)

    runtime = build_runtime(
        settings,
        service="routing",
        tables=MESSAGING,
        handlers={
            TicketCreated.TYPE: bind_handler(handlers.on_ticket_created, desk=desk),
            StaffUpdated.TYPE: bind_handler(handlers.on_staff_updated, desk=desk),
            TicketUpdated.TYPE: bind_handler(handlers.on_ticket_updated, desk=desk),
            TicketStatusChanged.TYPE: bind_handler(handlers.on_ticket_status_changed, desk=desk),
            TicketAssignmentRequested.TYPE: bind_handler(
                staff_requests.on_assignment_requested, desk=desk
            ),
            TicketEscalationRequested.TYPE: bind_handler(
                staff_requests.on_escalation_requested, desk=desk
            ),
            TicketHandBackRequested.TYPE: bind_handler(
                staff_requests.on_hand_back_requested, desk=desk
            ),
            SlaWarning.TYPE: bind_handler(sla_escalation.on_sla_warning, desk=desk),
            SlaBreached.TYPE: bind_handler(sla_escalation.on_sla_breached, desk=desk),
            **feed_handlers(TOKENS),
        },
        publishes=sorted(
            {*handlers.PUBLISHES, *staff_requests.PUBLISHES, *sla_escalation.PUBLISHES}
        ),
        bus=bus,
        on_start=[sync_agents],
    )
    runtime.workers.append(
        WaitingQueueSweeper(runtime.unit_of_work, desk, interval=settings.queue_sweep_seconds)
    )
    bearer_tokens = TokenProjection(runtime.engine, TOKENS, service="routing")
    # Its admin tokens all refused while the feed is stale or behind: a gauge says it.
    bearer_tokens.export_on_scrape()
    return RoutingContainer(
        settings=settings,
        desk=desk,
        runtime=runtime,
        bearer_tokens=bearer_tokens,
    )
