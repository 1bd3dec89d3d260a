"""Intake's HTTP app: the public ticket API, the requester's page and operations endpoints."""

from __future__ import annotations

from importlib import metadata

from fastapi import FastAPI

from spoc_intake.api import (
    categories,
    my_requests,
    portal,
    reports,
    requester,
    session,
    staff,
    tickets,
)
from spoc_intake.bootstrap import IntakeContainer, bootstrap
from spoc_intake.settings import IntakeSettings
from spoc_platform.web import create_service_app


def create_app(
    settings: IntakeSettings,
    container: IntakeContainer | None = None,
    *,
    manage_runtime: bool = True,
) -> FastAPI:
    container = container or bootstrap(settings)
    runtime = container.runtime
    front_door = container.front_door

    async def stop() -> None:
        await runtime.stop()
        # A shared rate-limit store (Redis) holds connections of its own.
        await front_door.aclose()

    app = create_service_app(
        service="intake",
        title="Spoc intake",
        version=metadata.version("spoc-intake"),
        readiness=runtime.readiness,
        routers=[
            tickets.router,
            categories.router,
            portal.router,
            session.router,
            staff.router,
            requester.router,
            requester.pages,
            my_requests.router,
            reports.router,
        ],
        max_body_bytes=settings.max_body_bytes,
        max_requests_per_client=settings.max_requests_per_client or None,
        body_read_seconds=settings.body_read_seconds,
        bus=runtime.bus,
        admin_token=settings.admin_token,
        metrics_token=settings.metrics_token,
        open_without_token=settings.environment != "production",
        start=runtime.start if manage_runtime else None,
        stop=stop if manage_runtime else None,
    )
    app.state.container = container
    return app
