"""Routing's own Prometheus series."""

from prometheus_client import Counter

tickets_routed = Counter(
    "spoc_routing_tickets_routed_total",
    "Tickets triaged, by priority and group.",
    ["priority", "group"],
)
