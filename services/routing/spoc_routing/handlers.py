"""Routing's reactions to events: plain async functions, wired by the HANDLERS mapping."""

from __future__ import annotations

import logging
from typing import Any

from spoc_contracts import (
    Envelope,
    StaffUpdated,
    TicketAssigned,
    TicketAssignmentRefused,
    TicketAssignmentRequested,
    TicketCreated,
    TicketCreatedV1,
    TicketRouted,
)
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_platform.consumer import AlreadyHandled, PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork
from spoc_routing import metrics, repository
from spoc_routing.desk import Group, RoutingDesk

log = logging.getLogger(__name__)


async def on_ticket_created(
    # v1 is still accepted for creations published before v2 (in flight or dead-lettered).
    event: TicketCreated | TicketCreatedV1,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    desk: RoutingDesk,
) -> None:
    if envelope.ticket_id is None:
        raise PermanentError("ticket.created without a ticket_id")
    impact = event.impact or desk.default_impact
    urgency = event.urgency or desk.default_urgency
    priority = desk.priority(impact, urgency)
    group = desk.group(desk.default_group)
    owner = await repository.take_least_loaded_agent(uow.conn, group.id)
    first_time = await repository.save_triage(
        uow.conn,
        ticket_id=envelope.ticket_id,
        number=event.number,
        impact=impact,
        urgency=urgency,
        priority=priority,
        category=event.category,
        group_id=group.id,
        owner_id=owner[0] if owner else None,
        routed_at=utc_now(),
    )
    if not first_time:
        # Same ticket under a new event id (a re-sent creation): it keeps its first triage.
        raise AlreadyHandled(f"ticket {event.number} was already triaged")
    if owner is None:
        log.warning(
            "group %s has no active agent; %s routed without an owner", group.id, event.number
        )
    await uow.publish(
        TicketRouted(
            number=event.number,
            priority=priority,
            impact=impact,
            urgency=urgency,
            category=event.category,
            group=GroupRef(id=group.id, name=group.name, tier=group.tier),
            owner=AgentRef(id=owner[0], name=owner[1]) if owner else None,
            reason=f"impact {impact} × urgency {urgency} → {priority}; default group",
            ticket_created_at=event.created_at,
        ),
        ticket_id=envelope.ticket_id,
    )
    metrics.tickets_routed.labels(priority, group.id).inc()


class NotTriagedYet(Exception):
    """An assignment request overtook the ticket's creation in routing's queue: retried (the
    creation is handled meanwhile), never dropped."""


async def on_assignment_requested(
    event: TicketAssignmentRequested,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    desk: RoutingDesk,
) -> None:
    """Staff asked for the ticket to go to a person or a group: routing checks that the person
    may take it (a known, active agent of that group) or picks one by the group's strategy,
    and answers with ticket.assigned, or ticket.assignment_refused saying why."""
    if envelope.ticket_id is None:
        raise PermanentError("ticket.assignment_requested without a ticket_id")
    current = await repository.triage_for_change(uow.conn, envelope.ticket_id)
    if current is None:
        raise NotTriagedYet(f"{event.number} is not triaged yet")
    decision = await _decide_assignment(uow, event, desk, current)
    if isinstance(decision, str):
        await uow.publish(
            TicketAssignmentRefused(
                number=event.number,
                agent=event.agent,
                group=event.group,
                reason=decision,
                requested_by=event.requested_by,
                requested_by_id=event.requested_by_id,
            ),
            ticket_id=envelope.ticket_id,
        )
        metrics.assignments.labels("refused").inc()
        return
    group, owner = decision
    await repository.reassign(uow.conn, envelope.ticket_id, group_id=group.id, owner_id=owner.id)
    previous = None
    if current.owner_id is not None:
        previous_name = await repository.agent_name(uow.conn, current.owner_id)
        previous = AgentRef(id=current.owner_id, name=previous_name or current.owner_id)
    await uow.publish(
        TicketAssigned(
            number=event.number,
            owner=owner,
            group=GroupRef(id=group.id, name=group.name, tier=group.tier),
            previous_owner=previous,
            reason=_assignment_reason(event, owner),
        ),
        ticket_id=envelope.ticket_id,
    )
    metrics.assignments.labels("assigned").inc()


async def _decide_assignment(
    uow: UnitOfWork, event: TicketAssignmentRequested, desk: RoutingDesk, current: Any
) -> tuple[Group, AgentRef] | str:
    """The group and owner the request leads to, or why it cannot be done. A request that
    would change nothing (a repeated click, or one that raced the previous answer) is refused
    before anyone is counted: intake's already_assigned check reads a projection that lags."""
    known = {group.id: group for group in desk.groups}
    if event.group is not None and event.group not in known:
        return f"there is no group {event.group}"
    if event.agent is None:
        if event.group is None:
            return "the request names neither an agent nor a group"
        if not _may_hand_into(event, event.group):
            return _outside(event, known[event.group])
        same_group = event.group == current.group_id and current.owner_id is not None
        taken = await repository.take_least_loaded_agent(
            uow.conn, event.group, excluding=current.owner_id if same_group else None
        )
        if taken is None:
            others = " else" if same_group else ""
            return f"nobody{others} in {known[event.group].name} can take it now"
        return known[event.group], AgentRef(id=taken[0], name=taken[1])
    person = await repository.agent_profile(uow.conn, event.agent)
    if person is None:
        return f"{event.agent} is not an agent of this desk"
    if not person.staff_active:
        return f"{person.name}'s account is deactivated"
    if not person.active or person.group_id not in known:
        return f"{person.name} is in no group of this desk"
    group_id = event.group or person.group_id
    if group_id != person.group_id and group_id not in (person.staff_groups or []):
        return f"{person.name} is not a member of {known[group_id].name}"
    if not _may_hand_into(event, group_id):
        return _outside(event, known[group_id])
    if person.id == current.owner_id and group_id == current.group_id:
        return f"{person.name} has it already, in {known[group_id].name}"
    await repository.count_assignment(uow.conn, person.id)
    return known[group_id], AgentRef(id=person.id, name=person.name)


def _may_hand_into(event: TicketAssignmentRequested, group_id: str) -> bool:
    return event.within_groups is None or group_id in event.within_groups


def _outside(event: TicketAssignmentRequested, group: Group) -> str:
    asked_by = event.requested_by or "the agent"
    return (
        f"{group.name} is not a group of {asked_by}'s: ask it for help with an escalation "
        "(the owner stays), or ask a manager"
    )


def _assignment_reason(event: TicketAssignmentRequested, owner: AgentRef) -> str:
    asked_by = event.requested_by or "staff"
    if event.requested_by_id is not None and event.requested_by_id == owner.id:
        said = f"taken by {owner.name}"
    elif event.agent is None:
        said = f"{asked_by} asked for the group; {owner.name} has the fewest tickets"
    else:
        said = f"{asked_by} asked for {owner.name}"
    return f"{said}: {event.reason}" if event.reason else said


async def on_staff_updated(
    event: StaffUpdated, *, envelope: Envelope, uow: UnitOfWork, desk: RoutingDesk
) -> None:
    """Intake's word on a person: their name on tickets, whether they may get tickets, and
    their groups (an agent new to routing is placed in the first group of this desk)."""
    known = {group.id for group in desk.groups}
    placement = next((group for group in event.groups if group in known), None)
    applied = await repository.apply_staff_profile(
        uow.conn,
        agent_id=event.id,
        name=event.name,
        groups=list(event.groups),
        active=event.active,
        updated_at=event.updated_at,
        placement=placement,
        fallback_group=desk.default_group,
    )
    if not applied:
        log.info("staff.updated for %s is older than what routing has; ignored", event.id)


PUBLISHES = [TicketRouted.TYPE, TicketAssigned.TYPE, TicketAssignmentRefused.TYPE]
