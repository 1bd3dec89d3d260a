"""SLA's HTTP app: operations endpoints and the policy view; clocks start in the consumer."""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI

from spoc_platform.web import create_service_app
from spoc_sla.api.desk import desk_router
from spoc_sla.bootstrap import SlaContainer, bootstrap
from spoc_sla.settings import SlaSettings


def create_app(
    settings: SlaSettings, container: SlaContainer | None = None, *, manage_runtime: bool = True
) -> FastAPI:
    container = container or bootstrap(settings)
    runtime = container.runtime
    app = create_service_app(
        service="sla",
        title="Spoc sla",
        version=metadata.version("spoc-sla"),
        readiness=runtime.readiness,
        # The desk configuration (routing's names groups and agents): for staff only.
        staff_routers=[desk_router(container.desk)],
        max_body_bytes=settings.max_body_bytes,
        max_requests_per_client=settings.max_requests_per_client or None,
        body_read_seconds=settings.body_read_seconds,
        bus=runtime.bus,
        admin_token=settings.admin_token,
        metrics_token=settings.metrics_token,
        open_without_token=settings.environment != "production",
        start=runtime.start if manage_runtime else None,
        stop=runtime.stop if manage_runtime else None,
    )
    app.state.container = container
    return app
