"""HTTP plumbing for every service: JSON errors, body limits and read timeouts, a cap on each
client's concurrent requests, request metrics, ops endpoints."""

from __future__ import annotations

import asyncio
import email.message
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spoc_platform import metrics
from spoc_platform.bus import MessageBus
from spoc_platform.db import is_outage
from spoc_platform.openapi import (
    document_errors,
    error_response,
    install_offline_docs,
    operation_id,
)

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


def _error_details(error: Any) -> list[dict[str, Any]]:
    """One pydantic error as the answer's details: one, or, for a validator that raised a
    ValueError listing several `problems` ("<path>: <what>", e.g. routing's desk checks), one
    per problem, each at its own path."""
    field = _field_path(tuple(error["loc"]))
    problems = getattr((error.get("ctx") or {}).get("error"), "problems", None)
    if not (isinstance(problems, list) and problems and all(isinstance(p, str) for p in problems)):
        return [{"field": field, "message": error["msg"], "type": error["type"]}]
    # The problems' paths are from where the validator stands: the body itself, or a part.
    within = "" if tuple(error["loc"]) == ("body",) else field
    details = []
    for problem in problems:
        where, _, what = problem.partition(": ")
        path = ".".join(part for part in (within, where) if part)
        details.append({"field": path, "message": what or problem, "type": error["type"]})
    return details


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
        syntax = next((e for e in error.errors() if e["type"] == "json_invalid"), None)
        if syntax is not None:
            return _unparseable_json(_syntax_error_message(syntax, error.body))
        details = [detail for e in error.errors() for detail in _error_details(e)]
        fields = ", ".join(sorted({d["field"] for d in details}))
        return JSONResponse(
            error_body("validation_error", f"invalid request: {fields}", details), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and isinstance(error.__cause__, UNREADABLE_JSON):
            # FastAPI's own 400 for a body json.loads gave up on before any syntax error: the
            # same answer as a syntax error, whatever made the JSON unreadable.
            return _unparseable_json(_unreadable_message(error.__cause__))
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


# Raised while decoding a JSON body, before any syntax error could be found.
UNREADABLE_JSON = (UnicodeDecodeError, RecursionError)


def _unparseable_json(message: str) -> JSONResponse:
    """One answer whatever is wrong with a body's JSON, the 422 `validation_error` a syntax
    error has always been: the position is in the message, never in `field`, which names
    fields only."""
    return JSONResponse(
        error_body(
            "validation_error",
            "invalid request: body is not valid JSON",
            [{"type": "json_invalid", "message": message}],
        ),
        422,
    )


def _syntax_error_message(error: Any, document: Any) -> str:
    reason = str(error.get("ctx", {}).get("error", "syntax error"))
    position = error["loc"][-1] if isinstance(error["loc"][-1], int) else None
    if position is None or not isinstance(document, str):
        return reason
    line = document.count("\n", 0, position) + 1
    column = position - document.rfind("\n", 0, position)
    return f"{reason}: line {line} column {column} (char {position})"


def _unreadable_message(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"not UTF-8 text: byte {cause.start} cannot be decoded"
    return "nested too deeply"


def _is_json(content_type: str | None) -> bool:
    # As FastAPI decides whether to parse a body as JSON: application/json, application/*+json,
    # or no type at all (clients that send JSON without saying so have always been served).
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def require_json_body(request: Request) -> None:
    """Every route that takes a body takes JSON: a body explicitly of another type is a 415,
    not a 422 that calls the raw bytes an invalid object; a body without a type is read as
    JSON. Runs after FastAPI has read the body (it is cached), before it is validated."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or not await request.body():
        return
    if not _is_json(request.headers.get("content-type")):
        raise ApiError(
            415,
            "unsupported_media_type",
            "request body must be JSON (Content-Type: application/json)",
        )


def _unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("dependency unavailable on %s %s: %r", request.method, request.url.path, error)
    return JSONResponse(
        error_body("service_unavailable", "a service this request needs is not reachable"),
        503,
        headers={"Retry-After": "2"},
    )


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
        await _send_error(
            send, 413, "body_too_large", f"request body is larger than {self.max_bytes} bytes"
        )


class _BodyTooLarge(Exception):
    pass


class BodyReadTimeoutMiddleware:
    """Answers 408 and closes the connection when a request's body has not all arrived within
    `seconds` of the app first asking for it: a client trickling a body byte by byte would
    otherwise hold a request (and a slot of its cap) for as long as it likes."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_read = False
        timed_out = False
        answered = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_read, timed_out
            if body_read:
                # Past the body, the app only listens for the client going away.
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline if deadline is not None else loop.time() + self.seconds
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise _BodyTimedOut from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            # The app may catch the timeout and answer on its own (FastAPI says 400).
            if timed_out:
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except _BodyTimedOut:
            pass
        if timed_out and not answered:
            await _send_error(
                send,
                408,
                "body_timeout",
                f"the request body did not arrive within {self.seconds:g} s",
                [(b"connection", b"close")],
            )


class _BodyTimedOut(Exception):
    pass


# An IPv6 subscriber is given a /64 (or more) to pick addresses from: one client for all of it.
IPV6_CLIENT_PREFIX = 64


def client_key(address: str | None) -> str:
    """Who a client is for limits: its IPv4 address, or its IPv6 /64. The address is the one
    the server puts in the ASGI scope, which uvicorn takes from X-Forwarded-For only when the
    peer is a proxy SPOC_FORWARDED_ALLOW_IPS trusts."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        # No address (a Unix socket, a test transport): one client, never none.
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


class ClientConcurrencyMiddleware:
    """At most `limit` requests in flight per client (see `client_key`); beyond it a 429 with
    Retry-After at once, before the body is read. One client's flood then waits on itself
    while everyone else's requests are served as before."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._in_flight: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client_key(client[0] if client else None)
        in_flight = self._in_flight.get(key, 0)
        if in_flight >= self.limit:
            await _send_error(
                send,
                429,
                "too_many_requests",
                f"more than {self.limit} requests at once from this client",
                [(b"retry-after", b"1")],
            )
            return
        self._in_flight[key] = in_flight + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]


# The methods a label may name; any other (a caller may send any token) counts as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# Probes and scrapes are not the service's work: a /readyz answering 503 during an outage is
# the probe doing its job, not a server error, and scrapes would pad the request count.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class HttpMetricsMiddleware:
    """Counts and times requests by route template (never by raw path) and method (never one
    the caller made up): bounded label values. The operations endpoints are left out."""

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
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
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


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    # Each dependency: "ok", "degraded: …" (serving without it for now) or what is wrong.
    checks: dict[str, str]


class PrometheusText(Response):
    """The Prometheus text exposition format, as prometheus_client writes it."""

    media_type = CONTENT_TYPE_LATEST


# What a route behind spoc_platform.access may answer besides its own: 401 without the token,
# 404 in production while no token is configured.
_GUARDED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_response(
        401, headers={"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    ),
    404: error_response(404),
}


def ops_router(readiness: ReadinessCheck, metrics_access: Sequence[Any] = ()) -> APIRouter:
    """/healthz and /readyz for anyone (probes); /metrics behind `metrics_access`."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def get_liveness() -> Liveness:
        return Liveness(status="ok")

    @router.get(
        "/readyz",
        summary="Readiness: database and bus reachable",
        response_model=Readiness,
        responses={
            503: {"model": Readiness, "description": "Not ready: `checks` says what is down"}
        },
    )
    async def get_readiness() -> JSONResponse:
        checks = await readiness()
        # "degraded": serving, with a dependency down that the service can do without for now.
        degraded = any(v.startswith("degraded") for v in checks.values())
        ready = all(v == "ok" or v.startswith("degraded") for v in checks.values())
        status = ("degraded" if degraded else "ready") if ready else "not_ready"
        return JSONResponse({"status": status, "checks": checks}, 200 if ready else 503)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=PrometheusText,
        responses={
            200: {"description": "The Prometheus text exposition format"},
            **_GUARDED_RESPONSES,
        },
        dependencies=list(metrics_access),
    )
    async def get_metrics() -> PrometheusText:
        await metrics.refresh_gauges()
        return PrometheusText(generate_latest())

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
    version: str | None = None,
    bus: MessageBus | None = None,
    admin_token: SecretStr | str | None = None,
    metrics_token: SecretStr | str | None = None,
    staff_routers: Sequence[APIRouter] = (),
    open_without_token: bool = True,
    max_requests_per_client: int | None = 64,
    body_read_seconds: float | None = 30.0,
) -> FastAPI:
    """The FastAPI app every service shares the shape of; `start`/`stop` run in its lifespan.
    Given the service's `bus`, it exports its dead-letter count where the bus can tell it
    cheaply, and with an `admin_token` too, it serves the admin API (spoc_platform.admin).
    `version`, the API's in OpenAPI, is the service package's (spoc_platform's by default).
    /metrics takes the `metrics_token` or the admin token, `staff_routers` (views that name
    the desk's people) the admin token; without one they are open only if `open_without_token`
    (development), see spoc_platform.access. Each client has at most
    `max_requests_per_client` requests in flight, and `body_read_seconds` to send a body."""
    from spoc_platform import admin  # imports this module: here to keep the import one-way
    from spoc_platform.access import guarded_by

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start is not None:
            await start()
        try:
            yield
        finally:
            if stop is not None:
                await stop()

    app = FastAPI(
        title=title,
        version=version or metadata.version("spoc-platform"),
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # A route that takes a body takes JSON (415 otherwise); on the rest it does nothing.
        dependencies=[Depends(require_json_body)],
        # A body without a Content-Type is read as JSON, as clients sending
        # requests.post(url, data=json.dumps(...)) expect. FastAPI refuses it by default against
        # cross-site requests riding on a browser's ambient credentials; no Spoc route takes
        # any (admin is Bearer-only, opening a ticket needs none), and text/plain, the other
        # type a page may send without asking, is still a 415.
        strict_content_type=False,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_offline_docs(app, title)
    document_errors(app)
    metrics_access = guarded_by(
        (metrics_token, admin_token), open_without_token=open_without_token, realm="spoc-metrics"
    )
    app.include_router(ops_router(readiness, metrics_access))
    for router in routers:
        app.include_router(router)
    staff_access = guarded_by(
        (admin_token,), open_without_token=open_without_token, realm="spoc-admin"
    )
    for router in staff_routers:
        app.include_router(router, dependencies=staff_access, responses=_GUARDED_RESPONSES)
    if bus is not None:
        admin.export_in_process_bus(service, bus)
        token = (
            admin_token.get_secret_value() if isinstance(admin_token, SecretStr) else admin_token
        )
        if token:
            app.include_router(admin.admin_router(service, bus, token))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if body_read_seconds is not None:
        app.add_middleware(BodyReadTimeoutMiddleware, seconds=body_read_seconds)
    if max_requests_per_client is not None:
        # Outside the body limit and timeout: a request over the cap costs no body read.
        app.add_middleware(ClientConcurrencyMiddleware, limit=max_requests_per_client)
    # Added last, so outermost: it also counts the 413s, 408s and 429s the above answer.
    app.add_middleware(HttpMetricsMiddleware, service=service)
    metrics.initialise_http_series(service, api_routes(app))
    return app


class SharedPathRoute(APIRoute):
    """A route whose 405 names every method of its path in `Allow`, not only its own: Starlette
    answers a method no route takes from the first route of the path, as if it were alone."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = _methods_served(scope["app"].router.routes, scope)
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        await super().handle(scope, receive, send)


_HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _methods_served(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """The methods some route fully matches at this request's path. Asked through each
    route's own `matches`, since an included router need not list its routes in the app's
    (FastAPI 0.165 keeps it as one lazy entry)."""
    return {
        method
        for method in _HTTP_METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in routes)
    }
