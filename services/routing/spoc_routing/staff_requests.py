"""Staff's requests about a ticket, which routing decides because it knows the groups, who is
active in them and who has room: an assignment (take it, hand it to a colleague or a group)
and a functional escalation (another group helps; the front-line owner stays, D3)."""

from __future__ import annotations

from typing import Any

from spoc_contracts import (
    Envelope,
    TicketAssigned,
    TicketAssignmentRefused,
    TicketAssignmentRequested,
    TicketAssistAssigned,
    TicketEscalated,
    TicketEscalationRefused,
    TicketEscalationRequested,
    TicketHandBackRefused,
    TicketHandBackRequested,
    TicketHandedBack,
)
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_platform.consumer import PermanentError
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork

# waiting_queue as a module, not its names: it reads this one's group_ref in turn.
from spoc_routing import metrics, repository, waiting_queue
from spoc_routing.assignment import on_duty, pick_owner
from spoc_routing.desk import Group, RoutingDesk


class NotTriagedYet(Exception):
    """A request overtook the ticket's creation in routing's queue: retried (the
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
    current = await _triage(envelope, uow, event.number)
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
    group, owner, why = decision
    await repository.reassign(uow.conn, envelope.ticket_id, group_id=group.id, owner_id=owner.id)
    if current.owner_id is not None and current.owner_id != owner.id:
        # The ticket leaves the previous owner's load (the new owner's was counted).
        await repository.release_ticket(uow.conn, current.owner_id)
        # Room the hand-over made goes to the group's queue first, not to the next newcomer.
        await waiting_queue.give_waiting_work(uow, desk, current.owner_id)
    previous = await agent_ref(uow, current.owner_id)
    await uow.publish(
        TicketAssigned(
            number=event.number,
            owner=owner,
            group=group_ref(group),
            previous_owner=previous,
            reason=_assignment_reason(event, owner, why),
        ),
        ticket_id=envelope.ticket_id,
    )
    metrics.assignments.labels("assigned").inc()


async def _decide_assignment(
    uow: UnitOfWork, event: TicketAssignmentRequested, desk: RoutingDesk, current: Any
) -> tuple[Group, AgentRef, str | None] | str:
    """The group and owner the request leads to (and why the group's strategy picked them),
    or why it cannot be done. A request that
    would change nothing (a repeated click, or one that raced the previous answer) is refused
    before anyone is counted: intake's already_assigned check reads a projection that lags."""
    known = {group.id: group for group in desk.groups}
    if current.active is False:
        return "the ticket is resolved or closed"
    if event.group is not None and event.group not in known:
        return f"there is no group {event.group}"
    if event.agent is None:
        if event.group is None:
            return "the request names neither an agent nor a group"
        if not _may_hand_into(event, event.group):
            return _outside(event, known[event.group])
        same_group = event.group == current.group_id and current.owner_id is not None
        group = known[event.group]
        taken = await pick_owner(
            uow.conn,
            desk,
            group,
            skills=current.skills or (),
            excluding=current.owner_id if same_group else None,
            now=utc_now(),
        )
        if taken is None:
            others = " else" if same_group else ""
            return f"nobody{others} in {group.name} is on duty with room for it now"
        if taken.id == current.owner_id:
            # The owner, picked for another group (after an escalation, or a move of theirs):
            # the ticket is in their load already.
            await repository.release_ticket(uow.conn, taken.id)
        return group, AgentRef(id=taken.id, name=taken.name), taken.why
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
    taking_it = event.requested_by_id == person.id
    # Nobody is handed work while away, off or off shift; an agent may take one themselves.
    if not taking_it and person.availability != "available":
        return f"{person.name} is {person.availability}"
    if not taking_it and not on_duty(person.id, known[person.group_id], desk, utc_now()):
        return f"{person.name} is off shift"
    # Both people's rows in one order: two opposite hand-overs at once wait, never deadlock.
    await repository.lock_agents(uow.conn, {person.id, current.owner_id} - {None})
    # Never hand a full colleague more; an agent may take one more themselves.
    capacity = known[person.group_id].agent_capacity
    if not taking_it and not await repository.has_room(uow.conn, person.id, capacity):
        open_tickets, own = await repository.agent_load(uow.conn, person.id)
        return f"{person.name} has no room ({open_tickets} open, at most {own or capacity})"
    if person.id != current.owner_id:
        await repository.take_ticket(uow.conn, person.id)
    return known[group_id], AgentRef(id=person.id, name=person.name), None


def _may_hand_into(event: TicketAssignmentRequested, group_id: str) -> bool:
    return event.within_groups is None or group_id in event.within_groups


def _outside(event: TicketAssignmentRequested, group: Group) -> str:
    asked_by = event.requested_by or "the agent"
    return (
        f"{group.name} is not a group of {asked_by}'s: ask it for help with an escalation "
        "(the owner stays), or ask a manager"
    )


def _assignment_reason(
    event: TicketAssignmentRequested, owner: AgentRef, picked_because: str | None
) -> str:
    asked_by = event.requested_by or "staff"
    if event.requested_by_id is not None and event.requested_by_id == owner.id:
        said = f"taken by {owner.name}"
    elif picked_because is not None:
        said = f"{asked_by} asked for the group; {picked_because}"
    else:
        said = f"{asked_by} asked for {owner.name}"
    return f"{said}: {event.reason}" if event.reason else said


async def on_escalation_requested(
    event: TicketEscalationRequested,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    desk: RoutingDesk,
) -> None:
    """A functional escalation: the ticket's work goes to the group asked to help, to someone
    there its strategy picks (an assist), and its owner stays the requester's one contact
    (D3); ticket.escalated (and ticket.assist_assigned) say so, or ticket.escalation_refused
    says why not."""
    current = await _triage(envelope, uow, event.number)
    known = {group.id: group for group in desk.groups}
    target = known.get(event.to_group)
    if target is None or target.id == current.group_id:
        await uow.publish(
            TicketEscalationRefused(
                number=event.number,
                to_group=event.to_group,
                reason=f"there is no group {event.to_group}"
                if target is None
                else f"{target.name} has it already",
                requested_by=event.requested_by,
            ),
            ticket_id=envelope.ticket_id,
        )
        metrics.escalations.labels("refused").inc()
        return
    helper = None
    if current.active is not False:
        # Picked before any agent's row is touched here, so the claim may wait (claim()).
        helper = await pick_owner(
            uow.conn,
            desk,
            target,
            skills=current.skills or (),
            excluding=current.owner_id,
            now=utc_now(),
        )
    # Where it was, and who worked it there: a hand-back returns to both.
    path = [*(current.escalation_path or []), {"group": current.group_id, "assignee": None}]
    if current.assignee_id is not None:
        path[-1]["assignee"] = current.assignee_id
        # Helping here ends while the next tier has it (and starts again on the hand-back).
        await repository.release_ticket(uow.conn, current.assignee_id)
    await repository.move_work(
        uow.conn,
        envelope.ticket_id,
        group_id=target.id,
        assignee_id=helper.id if helper else None,
        path=path,
    )
    source = known.get(current.group_id)
    owner = await agent_ref(uow, current.owner_id)
    await uow.publish(
        TicketEscalated(
            number=event.number,
            kind="functional",
            to_group=group_ref(target),
            from_group=group_ref(source) if source is not None else None,
            owner=owner,
            reason=event.reason,
        ),
        ticket_id=envelope.ticket_id,
    )
    if helper is not None:
        await uow.publish(
            TicketAssistAssigned(
                number=event.number,
                group=group_ref(target),
                assignee=AgentRef(id=helper.id, name=helper.name),
                owner=owner,
                reason=helper.why,
            ),
            ticket_id=envelope.ticket_id,
        )
    metrics.escalations.labels("escalated").inc()


async def on_hand_back_requested(
    event: TicketHandBackRequested,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    desk: RoutingDesk,
) -> None:
    """The group that helped is done: the work returns to the group that asked, and to whoever
    worked it there (the owner's group: the owner), one tier at a time; ticket.handed_back says
    so, or ticket.hand_back_refused says why not."""
    current = await _triage(envelope, uow, event.number)
    known = {group.id: group for group in desk.groups}
    path = list(current.escalation_path or [])
    if not path:
        await uow.publish(
            TicketHandBackRefused(
                number=event.number,
                reason="it is not escalated: nobody helps with it to hand it back",
                requested_by=event.requested_by,
            ),
            ticket_id=envelope.ticket_id,
        )
        metrics.hand_backs.labels("refused").inc()
        return
    back = path.pop()
    if current.assignee_id is not None:
        await repository.release_ticket(uow.conn, current.assignee_id)
    # Who worked it there takes it up again, if they still can (room or not: it was theirs);
    # otherwise it waits in that group's queue for someone to help.
    returning = None
    if path and back["assignee"] is not None:
        person = await repository.agent_profile(uow.conn, back["assignee"])
        if person is not None and person.active and person.staff_active:
            returning = AgentRef(id=person.id, name=person.name)
            if current.active is not False:
                await repository.take_ticket(uow.conn, person.id, counted=False)
    await repository.move_work(
        uow.conn,
        envelope.ticket_id,
        group_id=back["group"],
        assignee_id=returning.id if returning else None,
        path=path,
    )
    await uow.publish(
        TicketHandedBack(
            number=event.number,
            from_group=_named(known, current.group_id),
            to_group=_named(known, back["group"]),
            owner=await agent_ref(uow, current.owner_id),
            assignee=returning,
            reason=event.reason,
            requested_by=event.requested_by,
        ),
        ticket_id=envelope.ticket_id,
    )
    metrics.hand_backs.labels("handed_back").inc()


async def _triage(envelope: Envelope, uow: UnitOfWork, number: str) -> Any:
    if envelope.ticket_id is None:
        raise PermanentError(f"{envelope.type} without a ticket_id")
    current = await repository.triage_for_change(uow.conn, envelope.ticket_id)
    if current is None:
        raise NotTriagedYet(f"{number} is not triaged yet")
    return current


def _named(known: dict[str, Group], group_id: str) -> GroupRef:
    """The group as events name it (by its id alone if the desk file no longer has it)."""
    group = known.get(group_id)
    return group_ref(group) if group is not None else GroupRef(id=group_id, name=group_id)


def group_ref(group: Group) -> GroupRef:
    return GroupRef(id=group.id, name=group.name, tier=group.tier)


async def agent_ref(uow: UnitOfWork, agent_id: str | None) -> AgentRef | None:
    """The agent as events name them (their id if routing no longer knows their name)."""
    if agent_id is None:
        return None
    name = await repository.agent_name(uow.conn, agent_id)
    return AgentRef(id=agent_id, name=name or agent_id)


PUBLISHES = [
    TicketAssigned.TYPE,
    TicketAssignmentRefused.TYPE,
    TicketEscalated.TYPE,
    TicketEscalationRefused.TYPE,
    TicketAssistAssigned.TYPE,
    TicketHandedBack.TYPE,
    TicketHandBackRefused.TYPE,
]
