"""Intake's projections: what routing, sla and notify report becomes the requester's view."""

from __future__ import annotations

import uuid

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
from spoc_platform.consumer import PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork

CHANNEL_WORDS = {"email": "e-mail", "sms": "SMS", "chat": "chat", "webhook": "webhook"}


async def _known_ticket(uow: UnitOfWork, envelope: Envelope) -> uuid.UUID:
    if envelope.ticket_id is None or not await repository.ticket_exists(
        uow.conn, envelope.ticket_id
    ):
        # Intake writes the ticket before anyone can hear of it, so this is never "not yet".
        raise PermanentError(f"{envelope.type} names a ticket intake does not have")
    return envelope.ticket_id


async def on_ticket_routed(event: TicketRouted, *, envelope: Envelope, uow: UnitOfWork) -> None:
    ticket_id = await _known_ticket(uow, envelope)
    await repository.apply_routing(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        priority=event.priority,
        group_name=event.group.name,
        group_tier=event.group.tier,
        owner_name=event.owner.name if event.owner else None,
    )
    owner = f", owner {event.owner.name}" if event.owner else ""
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=envelope.occurred_at,
        kind="routed",
        summary=f"Priority {event.priority}; assigned to {event.group.name}{owner}.",
        event_id=envelope.id,
    )


async def on_ticket_assigned(event: TicketAssigned, *, envelope: Envelope, uow: UnitOfWork) -> None:
    ticket_id = await _known_ticket(uow, envelope)
    await repository.apply_routing(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        owner_name=event.owner.name,
        group_name=event.group.name,
        group_tier=event.group.tier,
    )
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=envelope.occurred_at,
        kind="assigned",
        summary=f"{event.owner.name} ({event.group.name}) now handles this request.",
        event_id=envelope.id,
    )


async def on_ticket_escalated(
    event: TicketEscalated, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    ticket_id = await _known_ticket(uow, envelope)
    # The requester sees which team has it (D8); the owner stays the one contact (D3).
    await repository.apply_routing(
        uow.conn,
        ticket_id,
        sequence=envelope.sequence,
        now=utc_now(),
        group_name=event.to_group.name,
        group_tier=event.to_group.tier,
    )
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=envelope.occurred_at,
        kind="escalated",
        summary=f"Referred to {event.to_group.name} (tier {event.to_group.tier}); "
        "your contact stays the same.",
        event_id=envelope.id,
    )


async def on_sla_clock_started(
    event: SlaClockStarted, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    ticket_id = await _known_ticket(uow, envelope)
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
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=envelope.occurred_at,
        kind="targets_set",
        summary=f"Targets set ({event.priority}): {'; '.join(parts)}.",
        event_id=envelope.id,
    )


async def on_notification_sent(
    event: NotificationSent, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    ticket_id = await _known_ticket(uow, envelope)
    what = "Acknowledgement" if event.kind == "acknowledgement" else "Update"
    channel = CHANNEL_WORDS.get(event.channel, event.channel)
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=event.sent_at,
        kind="notified",
        summary=f"{what} sent by {channel} to {event.recipient}.",
        event_id=envelope.id,
    )


async def on_notification_failed(
    event: NotificationFailed, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    ticket_id = await _known_ticket(uow, envelope)
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=envelope.occurred_at,
        kind="notification_failed",
        summary=f"{event.kind} to {event.recipient} by {event.channel} failed after "
        f"{event.attempts} attempts: {event.error}",
        public=False,
        event_id=envelope.id,
    )


HANDLERS = {
    TicketRouted.TYPE: on_ticket_routed,
    TicketAssigned.TYPE: on_ticket_assigned,
    TicketEscalated.TYPE: on_ticket_escalated,
    SlaClockStarted.TYPE: on_sla_clock_started,
    NotificationSent.TYPE: on_notification_sent,
    NotificationFailed.TYPE: on_notification_failed,
}
PUBLISHES = ["ticket.created"]
