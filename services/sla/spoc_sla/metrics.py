"""SLA's own Prometheus series."""

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from spoc_sla.desk import SlaDesk

METRICS = ("first_response", "resolution")

clocks_started = Counter(
    "spoc_sla_clocks_started_total", "SLA clocks started, by priority.", ["priority"]
)
clocks_overdue = Gauge(
    "spoc_sla_clocks_overdue",
    "Running clocks past their due time (work that is late now), by metric; read at scrape.",
    ["metric"],
)


def initialise(desk: SlaDesk) -> None:
    """Every priority the policy names (unnamed ones count under the fallback), at zero from
    the start: a series born at its first increment makes rate() miss that first burst."""
    for priority in desk.policies:
        clocks_started.labels(priority)
    for metric in METRICS:
        clocks_overdue.labels(metric).set(0)


def set_overdue(counts: Mapping[str, int]) -> None:
    for metric in {*METRICS, *counts}:
        clocks_overdue.labels(metric).set(counts.get(metric, 0))
