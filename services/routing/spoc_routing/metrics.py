"""Routing's own Prometheus series."""

from prometheus_client import Counter, Gauge

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

hand_backs = Counter(
    "spoc_routing_hand_back_requests_total",
    "Staff requests to hand an escalated ticket back to the group that asked, by outcome.",
    ["outcome"],
)
waiting_tickets = Gauge(
    "spoc_routing_waiting_tickets",
    "Active tickets in a group's queue, waiting for an owner or (escalated) for someone to "
    "help, as of the last queue sweep.",
    ["group", "waiting_for"],
)
hierarchical_escalations = Counter(
    "spoc_routing_hierarchical_escalations_total",
    "Steps taken on SLA warnings and breaches (sla_escalation.py), by stage, step and outcome "
    "(taken, or skipped: no manager, nobody else with room, already the most urgent).",
    ["stage", "step", "outcome"],
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
    for outcome in ("handed_back", "refused"):
        hand_backs.labels(outcome)
    for group in desk.groups:
        for waiting_for in ("owner", "assist"):
            waiting_tickets.labels(group.id, waiting_for)
    for stage in ("warning", "breach"):
        for step in ("notify_manager", "reassign", "raise_priority"):
            for outcome in ("taken", "skipped"):
                hierarchical_escalations.labels(stage, step, outcome)
