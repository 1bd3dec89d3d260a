"""What the services' /metrics say: truthful error rates, every series from the start, no noise."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import REGISTRY, generate_latest
from starlette.types import Message

from spoc_platform.web import create_service_app
from tests.harness import service

pytestmark = pytest.mark.integration

# Labels no other test uses, so the process-wide registry cannot have made them already.
DESK = """
routing:
  matrix:
    high: {high: X1, medium: X1, low: X2}
    medium: {high: X2, medium: X2, low: X3}
    low: {high: X3, medium: X3, low: X3}
  default_group: night-shift
  groups:
    - {id: night-shift, name: Night shift}
    - {id: on-site, name: On site}
sla:
  calendars:
    always: {}
  policies:
    X1: {calendar: always, first_response_minutes: 5, resolution_minutes: 60}
    X7: {calendar: always, first_response_minutes: 50, resolution_minutes: 600}
  fallback_priority: X7
"""


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_probes_and_scrapes_are_not_counted_as_requests_or_server_errors() -> None:
    async def failing_readiness() -> dict[str, str]:
        return {"database": "unreachable: OSError", "bus": "unreachable"}

    unmatched = {"service": "probed", "method": "GET", "route": "unmatched", "kind": "client"}
    # Counters are process-wide: count from what they hold now (the test may run again).
    before = sample("spoc_http_request_errors_total", **unmatched) or 0.0
    app = create_service_app(service="probed", title="probed", readiness=failing_readiness)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://probed"
    ) as http:
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404

    text = generate_latest().decode()
    probed = [line for line in text.splitlines() if 'service="probed"' in line]
    assert not [line for line in probed if "/readyz" in line or "/metrics" in line]
    assert not [line for line in probed if "/healthz" in line]
    assert sample("spoc_http_request_errors_total", **unmatched) == before + 1
    assert not [line for line in probed if 'kind="server"' in line and not line.endswith(" 0.0")]


async def test_routing_and_sla_counters_exist_at_zero_for_every_label_their_desk_allows(
    sqlite_url: str, tmp_path: Path
) -> None:
    desk = tmp_path / "desk.yaml"
    desk.write_text(DESK)

    async with service("routing", sqlite_url, desk_config=desk):
        for priority in ("X1", "X2", "X3"):
            for group in ("night-shift", "on-site"):
                assert (
                    sample("spoc_routing_tickets_routed_total", priority=priority, group=group)
                    == 0.0
                ), (priority, group)

    sla_url = sqlite_url.replace("service.sqlite3", "sla.sqlite3")
    async with service("sla", sla_url, desk_config=desk):
        for priority in ("X1", "X7"):
            assert sample("spoc_sla_clocks_started_total", priority=priority) == 0.0, priority


async def test_notify_delivery_outcomes_exist_at_zero_before_any_delivery() -> None:
    import spoc_notify.metrics  # noqa: F401 - registers the series, as notify's bootstrap does

    for outcome in ("sent", "retry", "failed", "lost_lease"):
        value = sample(
            "spoc_notify_deliveries_total",
            kind="acknowledgement",
            channel="email",
            outcome=outcome,
        )
        assert value is not None, outcome


def test_no_created_timestamp_series_doubles_the_series_count() -> None:
    import spoc_intake.metrics  # noqa: F401
    import spoc_platform.metrics  # noqa: F401

    names = {
        line.split("{")[0].split(" ")[0]
        for line in generate_latest().decode().splitlines()
        if line and not line.startswith("#")
    }
    assert "spoc_intake_tickets_created_total" in names
    assert not [n for n in names if n.endswith("_created")]


def answering_app(service: str) -> FastAPI:
    """A service whose one route answers with the status it is asked for."""
    router = APIRouter()

    @router.get("/answers/{status}")
    async def answer(status: int) -> Response:
        if status == 0:
            raise RuntimeError("a bug: no answer at all")
        return Response(status_code=status)

    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    return create_service_app(service=service, title=service, readiness=ready, routers=[router])


def requests_counted(service: str, route: str, status: int) -> float:
    labels = {"service": service, "method": "GET", "route": route, "status": str(status)}
    return sample("spoc_http_requests_total", **labels) or 0.0


async def test_each_answer_is_counted_by_route_template_status_and_error_kind() -> None:
    route = {"service": "counted", "method": "GET", "route": "/answers/{status}"}
    statuses = (200, 399, 400, 404, 499, 500, 503)

    def counts() -> dict[str, float]:
        found = {
            str(status): requests_counted("counted", route["route"], status) for status in statuses
        }
        for kind in ("client", "server"):
            found[kind] = sample("spoc_http_request_errors_total", **route, kind=kind) or 0.0
        found["timed"] = sample("spoc_http_request_duration_seconds_count", **route) or 0.0
        found["seconds"] = sample("spoc_http_request_duration_seconds_sum", **route) or 0.0
        return found

    app = answering_app("counted")
    before = counts()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://counted",
    ) as http:
        for status in statuses:
            assert (await http.get(f"/answers/{status}")).status_code == status
        # A handler that raises never starts an answer itself: it is counted as the 500 it is.
        assert (await http.get("/answers/0")).status_code == 500
    after = counts()

    moved = {key: after[key] - before[key] for key in after}
    seconds = moved.pop("seconds")
    assert moved == {
        **{str(status): 1.0 for status in statuses},
        "500": 2.0,
        "client": 3.0,  # 400, 404, 499
        "server": 3.0,  # 500 twice, 503
        "timed": 8.0,
    }
    assert 0 < seconds < 8 * 5, "eight quick answers took longer than they did"


def test_every_routes_http_series_exist_at_zero_before_any_request() -> None:
    answering_app("fresh")
    route = {"service": "fresh", "method": "GET", "route": "/answers/{status}"}
    assert sample("spoc_http_request_duration_seconds_count", **route) == 0.0
    for kind in ("client", "server"):
        assert sample("spoc_http_request_errors_total", **route, kind=kind) == 0.0, kind
    text = generate_latest().decode()
    fresh = [line for line in text.splitlines() if 'service="fresh"' in line]
    assert not [line for line in fresh if "/healthz" in line or "/readyz" in line]


async def test_the_route_label_is_the_apps_own_template_whatever_prefix_serves_it() -> None:
    app = answering_app("prefixed")
    labels = [("/answers/{status}", 201), ("unmatched", 404), ("/answers/{status}", 202)]
    before = [requests_counted("prefixed", route, status) for route, status in labels]

    # Served under a path prefix (a proxy's), as uvicorn --root-path does.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, root_path="/desk"), base_url="http://prefixed"
    ) as http:
        assert (await http.get("/desk/answers/201")).status_code == 201
        assert (await http.get("/desk/nowhere")).status_code == 404
    # A server that leaves root_path out of the scope (ASGI: it defaults to "").
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/answers/202",
        "raw_path": b"/answers/202",
        "query_string": b"",
        "headers": [(b"host", b"prefixed")],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 202

    after = [requests_counted("prefixed", route, status) for route, status in labels]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]
    # The prefixed request moved the series started at zero, not one of its own.
    timed = {"service": "prefixed", "method": "GET"}
    assert (
        sample("spoc_http_request_duration_seconds_count", **timed, route="/desk/answers/{status}")
        is None
    )
    assert (
        sample("spoc_http_request_duration_seconds_count", **timed, route="/answers/{status}") >= 2
    )
