"""Notify's HTTP app: operations endpoints; deliveries happen in the consumer and dispatcher."""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI

from spoc_notify.bootstrap import NotifyContainer, bootstrap
from spoc_notify.settings import NotifySettings
from spoc_platform.web import create_service_app


def create_app(
    settings: NotifySettings,
    container: NotifyContainer | None = None,
    *,
    manage_runtime: bool = True,
) -> FastAPI:
    container = container or bootstrap(settings)
    runtime = container.runtime
    app = create_service_app(
        service="notify",
        title="Spoc notify",
        version=metadata.version("spoc-notify"),
        readiness=runtime.readiness,
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
