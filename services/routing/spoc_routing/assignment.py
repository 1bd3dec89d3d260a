"""Who in a group gets a ticket: the group's strategy over the members who may get one now
(active, available, on duty by their shift, with room), and why, in words for the timeline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_platform.db import utc_now
from spoc_routing import repository
from spoc_routing.desk import Group, RoutingDesk

_NEVER = datetime.min.replace(tzinfo=UTC)
# How often a decision reads the group again after losing every race for its ranking (round-robin
# under many concurrent decisions loses a few: each look, the others take the turns it saw).
_LOOKS = 8


@dataclass(frozen=True)
class Pick:
    id: str
    name: str
    # Why this person, e.g. "Sara Ahmadi is next in turn in Service Desk".
    why: str


def ranked(
    members: Iterable[Any],
    group: Group,
    desk: RoutingDesk,
    *,
    skills: Sequence[str] = (),
    now: datetime,
) -> list[Any]:
    """The members on duty now, best first by the group's strategy. Each member has id,
    open_tickets, capacity, assigned_count, position and last_assigned_at (the agent table's
    columns); all have room already."""
    present = [m for m in members if on_duty(m.id, group, desk, now)]
    if group.strategy == "round_robin":
        # Whoever has waited longest since their last ticket: over a run each takes a turn.
        return sorted(present, key=lambda m: (m.last_assigned_at or _NEVER, m.position, m.id))
    load = _loads(present, group)
    if group.strategy == "skill_match" and skills:
        needed = set(skills)
        return sorted(
            present,
            key=lambda m: (-len(needed & desk.skills_of(m.id)), *load[m.id]),
        )
    return sorted(present, key=lambda m: load[m.id])


def why(member: Any, group: Group, desk: RoutingDesk, *, skills: Sequence[str] = ()) -> str:
    """The strategy's reason for the member it ranked first."""
    name = member.name
    if group.strategy == "round_robin":
        return f"{name} is next in turn in {group.name}"
    if group.strategy == "skill_match" and skills:
        has = [s for s in skills if s in desk.skills_of(member.id)]
        if len(has) == len(skills):
            return f"{name} has the skills it needs ({', '.join(skills)})"
        lacking = ", ".join(s for s in skills if s not in has)
        return (
            f"{name} has {len(has)} of the {len(skills)} skills it needs, the most of anyone "
            f"in {group.name} with room (lacks {lacking})"
        )
    capacity = member.capacity or group.agent_capacity
    of = f" of {capacity}" if capacity else ""
    return f"{name} has the lightest load in {group.name} ({member.open_tickets}{of} open)"


async def pick_owner(
    conn: AsyncConnection,
    desk: RoutingDesk,
    group: Group,
    *,
    skills: Sequence[str] = (),
    excluding: str | None = None,
    now: datetime,
) -> Pick | None:
    """The member the group's strategy picks, now one ticket more; None if nobody on duty and
    available has room. A member another decision filled meanwhile is passed over for the
    next in rank."""
    round_robin = group.strategy == "round_robin"
    for look in range(_LOOKS):
        members = await repository.candidates(
            conn, group.id, capacity=group.agent_capacity, excluding=excluding
        )
        ranking = ranked(members, group, desk, skills=skills, now=now)
        if not ranking:
            return None
        # The last look takes whoever is still free, turn or not: a ticket is not left
        # waiting because its decision lost every race for a turn.
        strict = round_robin and look < _LOOKS - 1
        for member in ranking:
            name = await repository.claim(
                conn,
                member.id,
                capacity=group.agent_capacity,
                turn_seen=member.last_assigned_at if strict else "any",
            )
            if name is not None:
                return Pick(id=member.id, name=name, why=why(member, group, desk, skills=skills))
        # Everyone ranked was taken meanwhile (filled up, or their turn taken): look again.
    return None


async def hand_to_another(
    conn: AsyncConnection, desk: RoutingDesk, group: Group, current: Any
) -> Pick | None:
    """The ticket (its triage row, `current`) to whoever the group's strategy picks other
    than its owner, now its owner and one ticket more for them; None if nobody else can take
    it. The previous owner's load is the caller's to release."""
    picked = await pick_owner(
        conn,
        desk,
        group,
        skills=current.skills or (),
        excluding=current.owner_id,
        now=utc_now(),
    )
    if picked is not None:
        await repository.reassign(conn, current.ticket_id, group_id=group.id, owner_id=picked.id)
    return picked


def on_duty(agent_id: str, group: Group, desk: RoutingDesk, now: datetime) -> bool:
    shift = desk.shift_of(agent_id, group)
    return shift is None or shift.on_duty(now)


def _loads(members: Sequence[Any], group: Group) -> dict[str, tuple[float, int, int, str]]:
    """Each member's load for least-loaded: open tickets against their capacity (or the
    group's); members without any limit are measured against the largest one in the group,
    so that one with 3 of 4 open counts as fuller than one with no limit and 2."""
    limits = [m.capacity or group.agent_capacity for m in members]
    widest = max((limit for limit in limits if limit), default=1)
    return {
        m.id: (
            m.open_tickets / (m.capacity or group.agent_capacity or widest),
            m.assigned_count,
            m.position,
            m.id,
        )
        for m in members
    }
