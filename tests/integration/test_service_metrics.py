"""What the services' /metrics say: truthful error rates, every series from the start, no noise."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest

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
