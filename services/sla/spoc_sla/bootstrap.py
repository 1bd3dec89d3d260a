"""SLA's composition root: settings in, a runtime with its handlers wired out."""

from __future__ import annotations

from dataclasses import dataclass

from spoc_contracts import TicketRouted
from spoc_platform import metrics as platform_metrics
from spoc_platform.bus import MessageBus
from spoc_platform.consumer import bind_handler
from spoc_platform.db import utc_now
from spoc_platform.desk_config import load_section
from spoc_platform.runtime import ServiceRuntime, build_runtime
from spoc_platform.token_projection import TokenProjection, feed_handlers
from spoc_sla import handlers, metrics, repository
from spoc_sla.desk import SlaDesk
from spoc_sla.models import MESSAGING, TOKENS
from spoc_sla.settings import SlaSettings


@dataclass
class SlaContainer:
    settings: SlaSettings
    desk: SlaDesk
    runtime: ServiceRuntime
    # Intake's bearer tokens as sla last heard of them: the admin API honours them.
    bearer_tokens: TokenProjection


def bootstrap(settings: SlaSettings, *, bus: MessageBus | None = None) -> SlaContainer:
    desk = load_section(settings.desk_config, "sla", SlaDesk)
    metrics.initialise(desk)
    runtime = build_runtime(
        settings,
        service="sla",
        tables=MESSAGING,
        handlers={
            TicketRouted.TYPE: bind_handler(handlers.on_ticket_routed, desk=desk),
            **feed_handlers(TOKENS),
        },
        publishes=handlers.PUBLISHES,
        bus=bus,
    )

    async def count_overdue() -> None:
        async with runtime.engine.connect() as conn:
            metrics.set_overdue(await repository.count_overdue(conn, utc_now()))

    # Late work is a count of rows, cheaper to read when Prometheus asks than to keep current.
    platform_metrics.refresh_on_scrape("sla overdue clocks", count_overdue)
    bearer_tokens = TokenProjection(runtime.engine, TOKENS, service="sla")
    # Its admin tokens all refused while the feed is stale or behind: a gauge says it.
    bearer_tokens.export_on_scrape()
    return SlaContainer(
        settings=settings,
        desk=desk,
        runtime=runtime,
        bearer_tokens=bearer_tokens,
    )
