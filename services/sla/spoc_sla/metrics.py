"""SLA's own Prometheus series."""

from prometheus_client import Counter

clocks_started = Counter(
    "spoc_sla_clocks_started_total", "SLA clocks started, by priority.", ["priority"]
)
