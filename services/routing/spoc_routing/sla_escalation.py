"""Hierarchical escalation (D27): when sla warns that a ticket's target is near, or says it is
breached, routing takes the steps of the desk's escalation policy — notify the group's
manager, hand the ticket to another member of its group, raise its priority one step — and
says what it did on ticket.escalated (kind hierarchical: the group stays; the owner too,
unless the policy reassigns, D3)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from spoc_contracts import (
    Envelope,
    SlaBreached,
    SlaWarning,
    TicketAssigned,
    TicketEscalated,
    TicketRouted,
)
from spoc_contracts.routing import AgentRef
from spoc_platform.consumer import PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork
from spoc_routing import metrics, repository
from spoc_routing.assignment import hand_to_another
from spoc_routing.desk import Group, RoutingDesk
from spoc_routing.staff_requests import NotTriagedYet, agent_ref, group_ref

log = logging.getLogger(__name__)

Stage = Literal["warning", "breach"]
# How far a target has escalated (repository.advance_escalation): a breach acts after a
# warning, never a warning after a breach.
_LEVEL: dict[Stage, int] = {"warning": 1, "breach": 2}


async def on_sla_warning(
    event: SlaWarning, *, envelope: Envelope, uow: UnitOfWork, desk: RoutingDesk
) -> None:
    due = f"due {_clock(event.due_at)}"
    trigger = f"{_target(event.metric)} {event.percent_elapsed}% elapsed ({due})"
    await _escalate(envelope, uow, desk, event.number, event.metric, "warning", trigger)


async def on_sla_breached(
    event: SlaBreached, *, envelope: Envelope, uow: UnitOfWork, desk: RoutingDesk
) -> None:
    trigger = f"{_target(event.metric)} breached at {_clock(event.breached_at)}"
    await _escalate(envelope, uow, desk, event.number, event.metric, "breach", trigger)


@dataclass
class _Outcome:
    """What the steps did, for ticket.escalated: the steps taken and the words for each."""

    priority: str
    owner: AgentRef | None
    taken: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    manager: AgentRef | None = None
    # Why the new owner (ticket.assigned's reason).
    handed_over: str = ""


async def _escalate(
    envelope: Envelope,
    uow: UnitOfWork,
    desk: RoutingDesk,
    number: str,
    metric: str,
    stage: Stage,
    trigger: str,
) -> None:
    if envelope.ticket_id is None:
        raise PermanentError(f"{envelope.type} without a ticket_id")
    current = await repository.triage_for_change(uow.conn, envelope.ticket_id)
    if current is None:
        # sla times only what routing routed: this overtook the creation in routing's queue.
        raise NotTriagedYet(f"{number} is not triaged yet")
    if current.active is False:
        # Resolved or closed before sla's word arrived: nothing left to push.
        log.info("%s %s for %s, which is no longer active: ignored", metric, stage, number)
        return
    ticket_id: uuid.UUID = current.ticket_id
    if not await repository.advance_escalation(
        uow.conn, ticket_id, metric, _LEVEL[stage], now=utc_now()
    ):
        # The same target warned or breached again (sla re-sent it, or re-timed the clock):
        # its steps were taken once; a second raise of the priority would punish twice.
        log.info("%s of %s already escalated at this stage: ignored", metric, number)
        return
    steps = desk.escalation.steps(current.priority, stage)
    if not steps:
        return
    group = next((g for g in desk.groups if g.id == current.group_id), None)
    if group is None:
        log.warning("%s is in group %s, which this desk no longer has", number, current.group_id)
        group = desk.group(desk.default_group)
    outcome = _Outcome(priority=current.priority, owner=await agent_ref(uow, current.owner_id))
    for step in steps:
        taken = await _STEPS[step](uow, desk, group, current, outcome)
        if taken:
            outcome.taken.append(step)
        metrics.hierarchical_escalations.labels(stage, step, "taken" if taken else "skipped").inc()
    await uow.publish(
        TicketEscalated(
            number=number,
            kind="hierarchical",
            to_group=group_ref(group),
            from_group=group_ref(group),
            owner=outcome.owner,
            reason=f"{trigger}: {'; '.join(outcome.said)}",
            manager=outcome.manager,
            actions=outcome.taken,
        ),
        ticket_id=ticket_id,
    )
    if "reassign" in outcome.taken and outcome.owner is not None:
        await uow.publish(
            TicketAssigned(
                number=number,
                owner=outcome.owner,
                group=group_ref(group),
                previous_owner=await agent_ref(uow, current.owner_id),
                reason=f"{trigger}: {outcome.handed_over}",
            ),
            ticket_id=ticket_id,
        )
    if "raise_priority" in outcome.taken:
        # As a re-triage says it (handlers.on_ticket_updated): sla re-times, intake shows it.
        await uow.publish(
            TicketRouted(
                number=number,
                priority=outcome.priority,
                impact=current.impact,
                urgency=current.urgency,
                category=current.category,
                subcategory=current.subcategory,
                item=current.item,
                auto_classified=current.auto_classified,
                tags=list(current.tags or []),
                rules=list(current.rules or []),
                desk_version=current.desk_version,
                group=group_ref(group),
                owner=outcome.owner,
                reason=f"priority raised {current.priority} → {outcome.priority}: {trigger}; "
                + (
                    f"{group.name} stays"
                    if "reassign" in outcome.taken
                    else f"{group.name} and the owner stay"
                ),
            ),
            ticket_id=ticket_id,
        )


async def _notify_manager(
    uow: UnitOfWork, desk: RoutingDesk, group: Group, current: Any, outcome: _Outcome
) -> bool:
    if group.manager is None:
        outcome.said.append(f"{group.name} has no manager to notify")
        return False
    manager = AgentRef(id=group.manager, name=await _name(uow, group.manager))
    outcome.manager = manager
    outcome.said.append(f"{group.name}'s manager {manager.name} notified")
    return True


async def _reassign(
    uow: UnitOfWork, desk: RoutingDesk, group: Group, current: Any, outcome: _Outcome
) -> bool:
    """Another member of the group, by its strategy (counted in their load, the ticket out
    of the previous owner's); nobody else with room: the owner keeps it."""
    if current.escalation_depth > 0:
        # Another group helps with it: the owner is the front line's, and stays (D3).
        outcome.said.append(f"not reassigned: {group.name} helps with it, and its owner stays")
        return False
    picked = await hand_to_another(uow.conn, desk, group, current)
    if picked is None:
        others = " else" if current.owner_id is not None else ""
        outcome.said.append(f"not reassigned: nobody{others} in {group.name} is on duty with room")
        return False
    if current.owner_id is not None and current.active is not None:
        # Out of the previous owner's load (a ticket triaged before loads were kept, active
        # NULL, was in nobody's).
        await repository.release_ticket(uow.conn, current.owner_id)
    was = f" from {outcome.owner.name}" if outcome.owner is not None else ""
    outcome.owner = AgentRef(id=picked.id, name=picked.name)
    outcome.handed_over = f"reassigned{was} to {picked.name} ({picked.why})"
    outcome.said.append(outcome.handed_over)
    return True


async def _raise_priority(
    uow: UnitOfWork, desk: RoutingDesk, group: Group, current: Any, outcome: _Outcome
) -> bool:
    raised = desk.more_urgent(current.priority)
    if raised is None:
        known = current.priority in desk.ranks
        outcome.said.append(
            f"priority stays {current.priority}, the most urgent"
            if known
            else f"priority stays {current.priority}, which this desk no longer ranks"
        )
        return False
    await repository.retriage(uow.conn, current.ticket_id, priority=raised, priority_floor=raised)
    outcome.priority = raised
    outcome.said.append(f"priority raised {current.priority} → {raised}")
    return True


_STEPS = {
    "notify_manager": _notify_manager,
    "reassign": _reassign,
    "raise_priority": _raise_priority,
}


async def _name(uow: UnitOfWork, staff_id: str) -> str:
    """As routing knows the person (the desk file, or intake's staff.updated), else their id."""
    return await repository.agent_name(uow.conn, staff_id) or staff_id


def _target(metric: str) -> str:
    return f"{metric.replace('_', '-')} target"


def _clock(at: datetime) -> str:
    return at.strftime("%H:%M UTC")


PUBLISHES = [TicketEscalated.TYPE, TicketAssigned.TYPE, TicketRouted.TYPE]
