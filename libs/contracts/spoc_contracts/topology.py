"""Who hears what: every consuming service's queue and the event types bound to it.

One definition for the whole desk. Every service declares all of it at start (and `spoc topology
apply` does so before a deploy), so an event published before its consumers ever ran still finds
their queues. A new release adds a type here; old replicas still consuming the queue give that
type back to the queue for a replica that can handle it (see spoc_platform.consumer)."""

from __future__ import annotations

from types import MappingProxyType

SUBSCRIPTIONS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "intake": (
            "ticket.routed",
            "ticket.assigned",
            "ticket.escalated",
            "ticket.assignment_refused",
            "ticket.escalation_refused",
            "ticket.assist_assigned",
            "ticket.handed_back",
            "ticket.hand_back_refused",
            "sla.clock_started",
            "sla.clock_updated",
            "sla.warning",
            "sla.breached",
            "sla.met",
            "notification.sent",
            "notification.failed",
        ),
        "routing": (
            "ticket.created",
            "ticket.assignment_requested",
            "ticket.escalation_requested",
            "ticket.hand_back_requested",
            "ticket.updated",
            "ticket.status_changed",
            "staff.updated",
            "sla.warning",
            "sla.breached",
            "credential.token_issued",
            "credential.token_revoked",
            "credential.heartbeat",
        ),
        "sla": (
            "ticket.routed",
            "credential.token_issued",
            "credential.token_revoked",
            "credential.heartbeat",
        ),
        "notify": ("ticket.created", "sla.clock_started", "requester.sign_in_requested"),
    }
)
"""service → the event types (routing keys) bound to its queue `<service>.events`."""
