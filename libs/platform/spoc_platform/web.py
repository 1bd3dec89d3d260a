"""HTTP plumbing for every service: JSON errors, body limits, request metrics, ops endpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spoc_platform import metrics
from spoc_platform.bus import MessageBus
from spoc_platform.db import is_outage

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A caller's mistake, answered as {"error": {"code", "message", "details"}}."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def _field_path(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        where, rest = parts[0], parts[1:]
        return ".".join(rest) if where == "body" and rest else ".".join([where, *rest])
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message, error.details),
            error.status,
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field_path(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
        fields = ", ".join(sorted({d["field"] for d in details}))
        return JSONResponse(
            error_body("validation_error", f"invalid request: {fields}", details), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(error.detail)), error.status_code, headers=error.headers
        )

    async def _dependency_failed(request: Request, error: Exception) -> JSONResponse:
        # An outage (database unreachable, pool exhausted, connection refused) passes: 503 with
        # a hint to retry. Any other database error is a bug: 500.
        if is_outage(error):
            return _unavailable(request, error)
        log.exception("database error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "an unexpected error occurred"), 500)

    for dependency_error in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(dependency_error, _dependency_failed)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "an unexpected error occurred"), 500)


def _unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("dependency unavailable on %s %s: %r", request.method, request.url.path, error)
    return JSONResponse(
        error_body("service_unavailable", "a service this request needs is not reachable"),
        503,
        headers={"Retry-After": "2"},
    )


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 before the app reads them, chunked ones too."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app may catch the overrun and answer on its own (FastAPI says 400): the
            # caller must hear 413, so its answer is dropped.
            if not too_large:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if too_large:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body("body_too_large", f"request body is larger than {self.max_bytes} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


# Probes and scrapes are not the service's work: a /readyz answering 503 during an outage is
# the probe doing its job, not a server error, and scrapes would pad the request count.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class HttpMetricsMiddleware:
    """Counts and times requests by route template (never by raw path: bounded label values);
    the operations endpoints are left out."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not _is_ops_route(scope):
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = _route_template(scope)
        method = scope["method"]
        metrics.http_requests.labels(self.service, method, route, str(status)).inc()
        metrics.http_duration.labels(self.service, method, route).observe(seconds)
        if status >= 400:
            kind = "server" if status >= 500 else "client"
            metrics.http_errors.labels(self.service, method, route, kind).inc()


def _is_ops_route(scope: Scope) -> bool:
    route = scope.get("route")
    return route is not None and getattr(route, "path", None) in OPS_PATHS


def _route_template(scope: Scope) -> str:
    """The route's template in the service's own app, whatever prefix serves it (a proxy's
    --root-path, the embedded default's mount): the series started at zero use the same."""
    route = scope.get("route")
    if route is None or not hasattr(route, "path"):
        return "unmatched"
    return str(route.path)


ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]


def ops_router(readiness: ReadinessCheck) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: database and bus reachable")
    async def readyz() -> JSONResponse:
        checks = await readiness()
        # "degraded": serving, with a dependency down that the service can do without for now.
        degraded = any(v.startswith("degraded") for v in checks.values())
        ready = all(v == "ok" or v.startswith("degraded") for v in checks.values())
        status = ("degraded" if degraded else "ready") if ready else "not_ready"
        return JSONResponse({"status": status, "checks": checks}, 200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        await metrics.refresh_gauges()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every documented route, from the public OpenAPI document."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi().get("paths", {}).items()
        for method in operations
        if path not in OPS_PATHS
    ]


def create_service_app(
    *,
    service: str,
    title: str,
    readiness: ReadinessCheck,
    routers: Sequence[APIRouter] = (),
    max_body_bytes: int = 65_536,
    start: Callable[[], Awaitable[None]] | None = None,
    stop: Callable[[], Awaitable[None]] | None = None,
    version: str = "1.0.0",
    bus: MessageBus | None = None,
    admin_token: SecretStr | str | None = None,
) -> FastAPI:
    """The FastAPI app every service shares the shape of; `start`/`stop` run in its lifespan.
    Given the service's `bus`, it exports its dead-letter count where the bus can tell it
    cheaply, and with an `admin_token` too, it serves the admin API (spoc_platform.admin)."""
    from spoc_platform import admin  # imports this module: here to keep the import one-way

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start is not None:
            await start()
        try:
            yield
        finally:
            if stop is not None:
                await stop()

    app = FastAPI(title=title, version=version, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(ops_router(readiness))
    for router in routers:
        app.include_router(router)
    if bus is not None:
        admin.export_in_process_bus(service, bus)
        token = (
            admin_token.get_secret_value() if isinstance(admin_token, SecretStr) else admin_token
        )
        if token:
            app.include_router(admin.admin_router(service, bus, token))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    # Added last, so outermost: it also counts the 413s the body limit answers.
    app.add_middleware(HttpMetricsMiddleware, service=service)
    metrics.initialise_http_series(service, api_routes(app))
    return app
