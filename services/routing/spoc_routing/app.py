"""Routing's HTTP app: operations endpoints and the desk view; the work happens in the consumer."""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI

from spoc_platform.web import create_service_app
from spoc_routing.api.desk import desk_admin_router, desk_router
from spoc_routing.bootstrap import RoutingContainer, bootstrap
from spoc_routing.settings import RoutingSettings


def create_app(
    settings: RoutingSettings,
    container: RoutingContainer | None = None,
    *,
    manage_runtime: bool = True,
) -> FastAPI:
    container = container or bootstrap(settings)
    runtime = container.runtime
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    app = create_service_app(
        service="routing",
        title="Spoc routing",
        version=metadata.version("spoc-routing"),
        readiness=runtime.readiness,
        # Checking and changing the desk at run time: admins only, and like the rest of the
        # admin API, only where an admin token is configured.
        routers=[desk_admin_router(container.desks, runtime.engine, token)] if token else [],
        # The desk configuration (routing's names groups and agents): for staff only.
        staff_routers=[desk_router(container.desks)],
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
