"""Intake's projections: what routing, sla and notify report becomes the requester's view."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from spoc_contracts import (
    Envelope,
    NotificationFailed,
    NotificationSent,
    SlaClockStarted,
    TicketAssigned,
    TicketEscalated,
    TicketRouted,
)
from spoc_intake import repository
from spoc_platform.consumer import Handler, PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork

CHANNEL_WORDS = {"email": "e-mail", "sms": "SMS", "chat": "chat", "webhook": "webhook"}


def _ticket_id(envelope: Envelope) -> uuid.UUID:
    if envelope.ticket_id is None:
        raise PermanentError(f"{envelope.type} without a ticket_id")
    return envelope.ticket_id


async def _add_timeline(uow: UnitOfWork, envelope: Envelope, **entry: Any) -> None:
    """Records the event in the ticket's history. The entry's foreign key also proves the ticket
    exists: intake writes a ticket before anyone can hear of it, so this is never "not yet"."""
    try:
        await repository.add_timeline(
            uow.conn, ticket_id=_ticket_id(envelope), event_id=envelope.id, **entry
        )
    except IntegrityError as error:
        raise PermanentError(f"{envelope.type} names a ticket intake does not have") from error


async def on_ticket_routed(event: TicketRouted, *, envelope: Envelope, uow: UnitOfWork) -> None:
    ticket_id = _ticket_id(envelope)
    await repository.apply_routing(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        priority=event.priority,
        group_id=event.group.id,
        group_name=event.group.name,
        group_tier=event.group.tier,
        owner_id=event.owner.id if event.owner else None,
        owner_name=event.owner.name if event.owner else None,
    )
    owner = f", owner {event.owner.name}" if event.owner else ""
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="routed",
        summary=f"Priority {event.priority}; assigned to {event.group.name}{owner}.",
    )


async def on_ticket_assigned(event: TicketAssigned, *, envelope: Envelope, uow: UnitOfWork) -> None:
    ticket_id = _ticket_id(envelope)
    await repository.apply_routing(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        owner_id=event.owner.id,
        owner_name=event.owner.name,
        group_id=event.group.id,
        group_name=event.group.name,
        group_tier=event.group.tier,
    )
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="assigned",
        summary=f"{event.owner.name} ({event.group.name}) now handles this request.",
    )


async def on_ticket_escalated(
    event: TicketEscalated, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    ticket_id = _ticket_id(envelope)
    # The requester sees which team has it (D8); the owner stays the one contact (D3).
    await repository.apply_routing(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        group_id=event.to_group.id,
        group_name=event.to_group.name,
        group_tier=event.to_group.tier,
    )
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="escalated",
        summary=f"Referred to {event.to_group.name} (tier {event.to_group.tier}); "
        "your contact stays the same.",
    )


async def on_sla_clock_started(
    event: SlaClockStarted, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    ticket_id = _ticket_id(envelope)
    due = {clock.metric: clock.due_at for clock in event.clocks}
    await repository.apply_targets(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        first_response_due_at=due.get("first_response"),
        resolution_due_at=due.get("resolution"),
    )
    parts = [
        f"{label} by {due[metric]:%Y-%m-%d %H:%M %Z}"
        for metric, label in (("first_response", "first response"), ("resolution", "resolution"))
        if metric in due
    ]
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="targets_set",
        summary=f"Targets set ({event.priority}): {'; '.join(parts)}.",
    )


async def on_notification_sent(
    event: NotificationSent, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    what = "Acknowledgement" if event.kind == "acknowledgement" else "Update"
    channel = CHANNEL_WORDS.get(event.channel, event.channel)
    await _add_timeline(
        uow,
        envelope,
        at=event.sent_at,
        kind="notified",
        summary=f"{what} sent by {channel} to {event.recipient}.",
    )


async def on_notification_failed(
    event: NotificationFailed, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="notification_failed",
        summary=f"{event.kind} to {event.recipient} by {event.channel} failed after "
        f"{event.attempts} attempts: {event.error}",
        public=False,
    )


HANDLERS: dict[str, Handler] = {
    TicketRouted.TYPE: on_ticket_routed,
    TicketAssigned.TYPE: on_ticket_assigned,
    TicketEscalated.TYPE: on_ticket_escalated,
    SlaClockStarted.TYPE: on_sla_clock_started,
    NotificationSent.TYPE: on_notification_sent,
    NotificationFailed.TYPE: on_notification_failed,
}
PUBLISHES = [
    "ticket.created",
    "ticket.commented",
    "ticket.status_changed",
    "ticket.updated",
    "ticket.escalation_requested",
    "feedback.submitted",
    "staff.updated",
    "requester.sign_in_requested",
    "credential.token_issued",
    "credential.token_revoked",
    "credential.heartbeat",
]
