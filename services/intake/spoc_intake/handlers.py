"""Intake's projections: what routing, sla and notify report becomes the requester's view
(and, for staff only, the SLA state and the notifications of the agent's view)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from spoc_contracts import (
    Envelope,
    NotificationFailed,
    NotificationSent,
    SlaBreached,
    SlaClockStarted,
    SlaClockUpdated,
    SlaMet,
    SlaWarning,
    TicketAssigned,
    TicketAssignmentRefused,
    TicketAssistAssigned,
    TicketEscalated,
    TicketEscalationRefused,
    TicketHandBackRefused,
    TicketHandedBack,
    TicketRouted,
)
from spoc_intake import repository, sla_state
from spoc_intake.categories import Category, still_declared
from spoc_intake.sla_state import MetricState, SlaFact
from spoc_platform.consumer import Handler, PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork

CHANNEL_WORDS = {"email": "e-mail", "sms": "SMS", "chat": "chat", "webhook": "webhook"}
log = logging.getLogger(__name__)


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


async def on_ticket_routed(
    event: TicketRouted,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    categories: Sequence[Category] = (),
) -> None:
    """`categories`: the desk's (intake section); routing's guess fills a blank category only
    with one intake itself would take."""
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
        tags=event.tags,
    )
    if event.owner is not None:
        await repository.note_owner(uow.conn, ticket_id, event.owner.id)
    owner = f", owner {event.owner.name}" if event.owner else ""
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="routed",
        summary=f"Priority {event.priority}; assigned to {event.group.name}{owner}.",
    )
    category, subcategory, _ = still_declared(categories, event.category, event.subcategory, {})
    if event.auto_classified and category is not None:
        await repository.classify_if_unclassified(
            uow.conn,
            ticket_id,
            category=category,
            subcategory=subcategory,
            item=event.item if subcategory == event.subcategory else None,
        )
    # Why, for staff (D23, D24): what decided the priority and the group, which rules matched,
    # and which desk configuration did it.
    version = f" (desk {event.desk_version})" if event.desk_version else ""
    await repository.add_timeline(
        uow.conn,
        ticket_id=ticket_id,
        at=envelope.occurred_at,
        kind="triage",
        summary=f"Triage: {event.reason}{version}.",
        public=False,
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
    # The previous owner first: it had the ticket before this one (first-contact resolution).
    if event.previous_owner is not None:
        await repository.note_owner(uow.conn, ticket_id, event.previous_owner.id)
    await repository.note_owner(uow.conn, ticket_id, event.owner.id)
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
        # Whoever helped before does no more; ticket.assist_assigned names who helps now.
        # (A hierarchical escalation stays in the group, with whoever helps there.)
        **({"assignee_id": None, "assignee_name": None} if event.kind == "functional" else {}),
    )
    # Functional or hierarchical, an escalated ticket is no first-contact resolution (D4).
    await repository.note_escalated(uow.conn, ticket_id)
    if event.kind == "hierarchical":
        await _add_hierarchical(event, envelope, uow)
        return
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="escalated",
        summary=f"Referred to {event.to_group.name} (tier {event.to_group.tier}); "
        "your contact stays the same.",
    )


async def _add_hierarchical(event: TicketEscalated, envelope: Envelope, uow: UnitOfWork) -> None:
    """An SLA target near or missed took the ticket up to management (routing's escalation
    policy): the requester reads that it was escalated (D8), staff read the whole reason
    (which target, who was notified, what changed). A new owner or priority has its own
    entry, from ticket.assigned and ticket.routed."""
    staff_entry = f"Hierarchical escalation: {event.reason}."
    if not event.actions:
        # Nothing could be done (no manager, nobody else, already the most urgent): staff's.
        # Still the "escalated" kind: the first-contact facts are rebuilt from it (0012).
        await _add_timeline(
            uow,
            envelope,
            at=envelope.occurred_at,
            kind="escalated",
            summary=staff_entry,
            public=False,
        )
        return
    group = event.to_group.name
    to = f"to the management of {group}" if event.manager is not None else f"within {group}"
    contact = "" if "reassign" in event.actions else "; your contact stays the same"
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="escalated",
        summary=f"Escalated {to}{contact}.",
    )
    await repository.add_timeline(
        uow.conn,
        ticket_id=_ticket_id(envelope),
        at=envelope.occurred_at,
        kind="escalation",
        summary=staff_entry,
        public=False,
    )


async def on_assist_assigned(
    event: TicketAssistAssigned, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    await repository.apply_routing(
        uow.conn,
        _ticket_id(envelope),
        sequence=envelope.sequence,
        now=utc_now(),
        assignee_id=event.assignee.id,
        assignee_name=event.assignee.name,
    )
    owner = f" with {event.owner.name}" if event.owner else ""
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="assist_assigned",
        summary=f"{event.assignee.name} ({event.group.name}) helps{owner}: {event.reason}",
        # Behind the scenes: the requester's contact stays the owner (D3).
        public=False,
    )


async def on_handed_back(event: TicketHandedBack, *, envelope: Envelope, uow: UnitOfWork) -> None:
    await repository.apply_routing(
        uow.conn,
        _ticket_id(envelope),
        sequence=envelope.sequence,
        now=utc_now(),
        group_id=event.to_group.id,
        group_name=event.to_group.name,
        group_tier=event.to_group.tier,
        assignee_id=event.assignee.id if event.assignee else None,
        assignee_name=event.assignee.name if event.assignee else None,
    )
    # Why, for staff, is on the timeline already (hand_back_requested); the requester sees
    # which team has it (D8), and that their contact is the same.
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="handed_back",
        summary=f"Back with {event.to_group.name} (tier {event.to_group.tier}); "
        "your contact stays the same.",
    )


async def on_hand_back_refused(
    event: TicketHandBackRefused, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="hand_back_refused",
        summary=f"Not handed back: {event.reason}",
        public=False,
    )


async def on_assignment_refused(
    event: TicketAssignmentRefused, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    # The ticket stays where it was; whoever asked reads why on the agent's timeline.
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="assignment_refused",
        summary=f"Not reassigned: {event.reason}",
        public=False,
    )


async def on_escalation_refused(
    event: TicketEscalationRefused, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="escalation_refused",
        summary=f"Not escalated to {event.to_group}: {event.reason}",
        public=False,
    )


async def on_sla_clock_started(
    event: SlaClockStarted, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    due = {clock.metric: clock.due_at for clock in event.clocks}
    await _apply_sla(
        uow,
        envelope,
        {metric: SlaFact("going", envelope.sequence, due_at) for metric, due_at in due.items()},
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


# SLA state for agents: sla_state.py holds the ordering rules; every entry here is internal
# (a breach or a warning is the desk's business; the requester sees the targets only).


async def _apply_sla(uow: UnitOfWork, envelope: Envelope, facts: dict[str, SlaFact]) -> None:
    ticket_id = _ticket_id(envelope)
    row = await repository.ticket_for_sla(uow.conn, ticket_id)
    if row is None:
        raise PermanentError(f"{envelope.type} names a ticket intake does not have")
    before = {metric: MetricState.of(row, metric) for metric in sla_state.METRICS}
    after = dict(before)
    for metric, fact in facts.items():
        if metric not in after:
            # A metric intake has no columns for: the timeline still tells it.
            log.info("%s about metric %r: kept in the timeline only", envelope.type, metric)
            continue
        after[metric] = sla_state.apply(after[metric], fact)
    if after == before:
        return
    values: dict[str, Any] = sla_state.ticket_summary(after.values(), status=row.status)
    for metric, state in after.items():
        values.update(state.columns(metric))
    await repository.update_ticket(
        uow.conn,
        ticket_id,
        **values,
        sla_sequence=max(row.sla_sequence, envelope.sequence),
        updated_at=utc_now(),
    )


def _label(metric: str) -> str:
    return sla_state.LABELS.get(metric, metric.replace("_", " ").capitalize())


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M %Z}" if moment else "not set"


async def on_sla_clock_updated(
    event: SlaClockUpdated, *, envelope: Envelope, uow: UnitOfWork
) -> None:
    fact = SlaFact("going", envelope.sequence, event.due_at, state=event.state)
    if event.state in ("breached", "met"):
        # A clock sla reports stopped is the fact itself, at the moment sla saw it.
        kind: sla_state.FactKind = "breached" if event.state == "breached" else "met"
        fact = SlaFact(kind, envelope.sequence, event.due_at, at=envelope.occurred_at)
    await _apply_sla(uow, envelope, {event.metric: fact})
    why = f" ({event.reason})" if event.reason else ""
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="sla_clock_updated",
        summary=f"{_label(event.metric)} clock {event.state.replace('_', ' ')}{why}; "
        f"due {_when(event.due_at)}.",
        public=False,
    )


async def on_sla_warning(event: SlaWarning, *, envelope: Envelope, uow: UnitOfWork) -> None:
    fact = SlaFact("going", envelope.sequence, event.due_at, state="at_risk")
    await _apply_sla(uow, envelope, {event.metric: fact})
    await _add_timeline(
        uow,
        envelope,
        at=envelope.occurred_at,
        kind="sla_warning",
        summary=f"{_label(event.metric)} target at risk: {event.percent_elapsed}% of the time "
        f"used; due {_when(event.due_at)}.",
        public=False,
    )


async def on_sla_breached(event: SlaBreached, *, envelope: Envelope, uow: UnitOfWork) -> None:
    fact = SlaFact("breached", envelope.sequence, event.due_at, at=event.breached_at)
    await _apply_sla(uow, envelope, {event.metric: fact})
    await _add_timeline(
        uow,
        envelope,
        at=event.breached_at,
        kind="sla_breached",
        summary=f"{_label(event.metric)} target breached ({event.priority}): it was due "
        f"{_when(event.due_at)}.",
        public=False,
    )


async def on_sla_met(event: SlaMet, *, envelope: Envelope, uow: UnitOfWork) -> None:
    fact = SlaFact("met", envelope.sequence, event.due_at, at=event.met_at)
    await _apply_sla(uow, envelope, {event.metric: fact})
    await _add_timeline(
        uow,
        envelope,
        at=event.met_at,
        kind="sla_met",
        summary=f"{_label(event.metric)} target met (due {_when(event.due_at)}).",
        public=False,
    )


# Notifications: a timeline entry for the history, and a row for the agent's list.


async def _record_notification(
    uow: UnitOfWork,
    envelope: Envelope,
    event: NotificationSent | NotificationFailed,
    **outcome: Any,
) -> None:
    contacts = await repository.requester_contacts(uow.conn, _ticket_id(envelope))
    if contacts is None:
        raise PermanentError(f"{envelope.type} names a ticket intake does not have")
    email, phone = contacts
    to_requester = event.recipient.casefold() == email.casefold() or event.recipient == phone
    await repository.add_notification(
        uow.conn,
        ticket_id=envelope.ticket_id,
        event_id=envelope.id,
        notification_id=event.notification_id,
        kind=event.kind,
        channel=event.channel,
        recipient=event.recipient,
        recipient_kind="requester" if to_requester else "other",
        **outcome,
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
    await _record_notification(uow, envelope, event, at=event.sent_at, outcome="sent")


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
    await _record_notification(
        uow,
        envelope,
        event,
        at=envelope.occurred_at,
        outcome="failed",
        attempts=event.attempts,
        error=event.error,
    )


HANDLERS: dict[str, Handler] = {
    TicketRouted.TYPE: on_ticket_routed,
    TicketAssigned.TYPE: on_ticket_assigned,
    TicketEscalated.TYPE: on_ticket_escalated,
    TicketAssignmentRefused.TYPE: on_assignment_refused,
    TicketEscalationRefused.TYPE: on_escalation_refused,
    TicketAssistAssigned.TYPE: on_assist_assigned,
    TicketHandedBack.TYPE: on_handed_back,
    TicketHandBackRefused.TYPE: on_hand_back_refused,
    SlaClockStarted.TYPE: on_sla_clock_started,
    SlaClockUpdated.TYPE: on_sla_clock_updated,
    SlaWarning.TYPE: on_sla_warning,
    SlaBreached.TYPE: on_sla_breached,
    SlaMet.TYPE: on_sla_met,
    NotificationSent.TYPE: on_notification_sent,
    NotificationFailed.TYPE: on_notification_failed,
}
PUBLISHES = [
    "ticket.created",
    "ticket.commented",
    "ticket.status_changed",
    "ticket.updated",
    "ticket.escalation_requested",
    "ticket.assignment_requested",
    "ticket.hand_back_requested",
    "feedback.submitted",
    "staff.updated",
    "requester.sign_in_requested",
    "credential.token_issued",
    "credential.token_revoked",
    "credential.heartbeat",
]
