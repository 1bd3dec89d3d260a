"""Routing's own Prometheus series."""

from prometheus_client import Counter

from spoc_routing.desk import RoutingDesk

tickets_routed = Counter(
    "spoc_routing_tickets_routed_total",
    "Tickets triaged, by priority and group.",
    ["priority", "group"],
)
assignments = Counter(
    "spoc_routing_assignment_requests_total",
    "Staff requests to take or hand over a ticket, by outcome (assigned or refused).",
    ["outcome"],
)
escalations = Counter(
    "spoc_routing_escalation_requests_total",
    "Staff requests for another group's help (functional escalation), by outcome.",
    ["outcome"],
)


def initialise(desk: RoutingDesk) -> None:
    """Every priority × group the desk can produce, at zero from the start: a series born at
    its first increment makes rate() miss that first burst after every start."""
    priorities = {p for row in desk.matrix.values() for p in row.values()}
    for priority in sorted(priorities):
        for group in desk.groups:
            tickets_routed.labels(priority, group.id)
    for outcome in ("assigned", "refused"):
        assignments.labels(outcome)
    for outcome in ("escalated", "refused"):
        escalations.labels(outcome)
