"""Routing's reactions to new tickets and to intake's word on staff (staff's requests about a
ticket are in staff_requests.py)."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from spoc_contracts import (
    Envelope,
    StaffUpdated,
    TicketAssigned,
    TicketCreated,
    TicketCreatedV1,
    TicketRouted,
    TicketStatusChanged,
    TicketUpdated,
)
from spoc_contracts.routing import AgentRef
from spoc_platform.consumer import AlreadyHandled, PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork
from spoc_routing import metrics, repository
from spoc_routing.assignment import hand_to_another, pick_owner
from spoc_routing.desk import RoutingDesk
from spoc_routing.staff_requests import NotTriagedYet, agent_ref, group_ref
from spoc_routing.triage import RETRIAGED_BY, TicketFacts, recalled, remembered, triage
from spoc_routing.waiting_queue import give_waiting_work

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
    facts = TicketFacts(
        subject=event.subject,
        description=event.description,
        type=event.type,
        channel=event.channel,
        requester_email=event.requester.email,
        # v1 creations never said: not vouched.
        requester_vouched=getattr(event, "requester_known", False),
        category=event.category,
        subcategory=event.subcategory,
        item=event.item,
        impact=event.impact,
        urgency=event.urgency,
    )
    kept = remembered(facts, desk)
    # The text is searched once, for every keyword of the desk; triage reads the words found.
    decision = triage(replace(facts, words=frozenset(kept["words"])), desk)
    group = decision.group
    now = utc_now()
    owner = await pick_owner(uow.conn, desk, group, skills=decision.skills, now=now)
    first_time = await repository.save_triage(
        uow.conn,
        ticket_id=envelope.ticket_id,
        number=event.number,
        **decision.outcome(),
        desk_version=desk.version,
        facts=kept,
        group_id=group.id,
        owner_id=owner.id if owner else None,
        skills=list(decision.skills) or None,
        routed_at=now,
    )
    if not first_time:
        # Same ticket under a new event id (a re-sent creation): it keeps its first triage.
        raise AlreadyHandled(f"ticket {event.number} was already triaged")
    if owner is None:
        log.warning(
            "nobody in group %s is on duty with room; %s waits in its queue, unowned",
            group.id,
            event.number,
        )
    await uow.publish(
        TicketRouted(
            number=event.number,
            **decision.outcome(),
            desk_version=desk.version,
            group=group_ref(group),
            owner=AgentRef(id=owner.id, name=owner.name) if owner else None,
            reason="; ".join(
                [
                    decision.reason,
                    owner.why
                    if owner
                    else f"nobody in {group.name} is on duty with room: it waits in the queue",
                ]
            ),
            ticket_created_at=event.created_at,
        ),
        ticket_id=envelope.ticket_id,
    )
    metrics.tickets_routed.labels(decision.priority, group.id).inc()


async def on_ticket_updated(
    event: TicketUpdated, *, envelope: Envelope, uow: UnitOfWork, desk: RoutingDesk
) -> None:
    """An agent re-classified the ticket: routing triages it again (a new priority reaches sla
    and intake on ticket.routed), and the group and owner stay, whatever the tree or the rules
    would say now (moving the work is a hand-over or an escalation, D3)."""
    if not RETRIAGED_BY & event.changes.keys():
        return
    if envelope.ticket_id is None:
        raise PermanentError("ticket.updated without a ticket_id")
    current = await repository.triage_for_change(uow.conn, envelope.ticket_id)
    if current is None:
        raise NotTriagedYet(f"{event.number} is not triaged yet")
    record = current.facts or {
        # Triaged before routing kept the ticket's facts: what it decided then stands in.
        # Type and channel are unknown: no rule on them matches (rather than every legacy
        # request passing for an API incident).
        "type": "",
        "channel": "",
        "requester_email": "",
        **{field: current._mapping[field] for field in ("category", "subcategory", "item")},
        "impact": current.impact,
        "urgency": current.urgency,
    }
    classified = current.auto_classified and "category" not in event.changes
    if classified and record.get("category") is None:
        # Routing chose the category and intake shows it: an agent's change of subcategory,
        # item, type, impact or urgency applies to that place in the tree, not to a fresh
        # guess from the words (which would undo the agent's subcategory, or move the ticket
        # under a tree changed since).
        record = {
            **record,
            **{field: current._mapping[field] for field in ("category", "subcategory", "item")},
        }
    facts = recalled(record, event.changes)
    decision = triage(facts, desk)
    if classified and not decision.auto_classified:
        decision = replace(decision, auto_classified=True)
    floor = current.priority_floor
    if floor in desk.ranks and desk.ranks[floor] < desk.ranks.get(decision.priority, 1 << 30):
        # An SLA escalation raised it: a re-classification does not lower it below that.
        decision = replace(
            decision,
            priority=floor,
            steps=(
                *decision.steps[:-1],
                f"kept at {floor}, as an SLA escalation raised it",
                decision.steps[-1],
            ),
        )
    group = next((g for g in desk.groups if g.id == current.group_id), decision.group)
    await repository.retriage(
        uow.conn,
        envelope.ticket_id,
        **decision.outcome(),
        desk_version=desk.version,
        facts={**record, **{f: getattr(facts, f) for f in RETRIAGED_BY}},
        # What working it takes follows its new place in the tree (the queue's skill match).
        skills=list(decision.skills) or None,
    )
    owner = await agent_ref(uow, current.owner_id)
    by = f" by {event.updated_by}" if event.updated_by else ""
    changed = ", ".join(sorted(RETRIAGED_BY & event.changes.keys()))
    await uow.publish(
        TicketRouted(
            number=event.number,
            **decision.outcome(),
            desk_version=desk.version,
            group=group_ref(group),
            owner=owner,
            reason="; ".join(
                [
                    f"re-triaged after a change of {changed}{by}",
                    *decision.steps[:-1],
                    f"{group.name} and the owner stay",
                ]
            ),
        ),
        ticket_id=envelope.ticket_id,
    )


ACTIVE = frozenset({"new", "open", "in_progress", "pending"})


async def on_ticket_status_changed(
    event: TicketStatusChanged, *, envelope: Envelope, uow: UnitOfWork, desk: RoutingDesk
) -> None:
    """The owner's load follows the ticket (D3: a reopened ticket comes back to its owner,
    room or not, and to whoever helped with it); a resolution gives them room for their
    group's longest-waiting ticket."""
    if envelope.ticket_id is None:
        raise PermanentError("ticket.status_changed without a ticket_id")
    current = await repository.triage_for_change(uow.conn, envelope.ticket_id)
    if current is None:
        raise NotTriagedYet(f"{event.number} is not triaged yet")
    if envelope.sequence <= current.status_sequence:
        # Older than a status routing has heard (events of one ticket may be handled in any
        # order): the newer one stands.
        return
    active = event.to_status in ACTIVE
    await repository.set_active(uow.conn, envelope.ticket_id, active, sequence=envelope.sequence)
    if current.active is None or active == current.active:
        # Unchanged; or triaged before loads were kept, so in nobody's load to change.
        return
    if active and current.owner_id is not None and current.escalation_depth == 0:
        successor = await _successor_of_departed_owner(uow, desk, current, event.number)
        if successor is not None:
            current = successor
    # The owner, and whoever helps while it is escalated (an assist), carry it alike.
    # In id order: two transactions moving the same two people's rows never wait on each other.
    holders = sorted({h for h in (current.owner_id, current.assignee_id) if h is not None})
    for holder in holders:
        if active:
            await repository.take_ticket(uow.conn, holder, counted=False)
        else:
            await repository.release_ticket(uow.conn, holder)
    if not active:
        for holder in holders:
            await give_waiting_work(uow, desk, holder)


async def _successor_of_departed_owner(
    uow: UnitOfWork, desk: RoutingDesk, current: Any, number: str
) -> Any:
    """A reopened ticket whose owner no longer takes tickets (deactivated, or gone from the
    desk) goes to whoever the group's strategy picks now (ticket.assigned). Returns the triage
    as it now is (its new owner counted already), or None when the owner still works here or
    nobody can take it (it stays theirs: a manager hands it on)."""
    person = await repository.agent_profile(uow.conn, current.owner_id)
    if person is not None and person.active and person.staff_active:
        return None
    group = next((g for g in desk.groups if g.id == current.group_id), None)
    if group is None:
        return None
    picked = await hand_to_another(uow.conn, desk, group, current)
    if picked is None:
        log.warning(
            "%s was reopened, its owner left, and nobody in %s can take it", number, group.id
        )
        return None
    departed = person.name if person is not None else current.owner_id
    await uow.publish(
        TicketAssigned(
            number=number,
            owner=AgentRef(id=picked.id, name=picked.name),
            group=group_ref(group),
            previous_owner=AgentRef(id=current.owner_id, name=departed),
            reason=f"reopened, and {departed} no longer takes tickets: {picked.why}",
        ),
        ticket_id=current.ticket_id,
    )
    # Its owner is counted (the claim): only a helper, if any, is left to take it up again.
    return SimpleNamespace(owner_id=None, assignee_id=current.assignee_id)


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
        availability=event.availability,
        updated_at=event.updated_at,
        placement=placement,
        fallback_group=desk.default_group,
    )
    if not applied:
        log.info("staff.updated for %s is older than what routing has; ignored", event.id)
        return
    # Someone new to the group, or back (re-activated, available again): the queue's waiting
    # tickets go to them first.
    await give_waiting_work(uow, desk, event.id)


PUBLISHES = [TicketRouted.TYPE, TicketAssigned.TYPE]
