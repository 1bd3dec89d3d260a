"""The only place routing builds queries (SQLAlchemy Core: this is a hot path)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import (
    Executable,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_platform.db import insert_for, utc_now
from spoc_routing.desk import Agent as AgentConfig
from spoc_routing.desk import RoutingDesk
from spoc_routing.models import Agent, EscalationStage, Triage

# Declarative models type __table__ as FromClause; these are plain Tables.
triage: Table = cast(Table, Triage.__table__)
agent: Table = cast(Table, Agent.__table__)
escalation_stage: Table = cast(Table, EscalationStage.__table__)


async def sync_agents(conn: AsyncConnection, desk: RoutingDesk) -> None:
    """Agents named in the desk file become (or stay) active; the rest are set inactive,
    except those intake placed through staff.updated (their account says who they are)."""
    configured: list[tuple[str, int, AgentConfig]] = [
        (group.id, position, a) for group in desk.groups for position, a in enumerate(group.agents)
    ]
    await conn.execute(update(agent).where(agent.c.staff_updated_at.is_(None)).values(active=False))
    for group_id, position, a in configured:
        stmt = insert_for(conn.dialect.name, agent).values(
            id=a.id,
            name=a.name,
            group_id=group_id,
            position=position,
            active=True,
            assigned_count=0,
            capacity=a.capacity,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[agent.c.id],
            set_={
                "name": a.name,
                "group_id": group_id,
                "position": position,
                "active": True,
                "capacity": a.capacity,
            },
        )
        await conn.execute(stmt)


# An agent with room: fewer open tickets than their capacity, or the group's for members
# without one (b_capacity; NULL: no limit).
_CAPACITY = func.coalesce(agent.c.capacity, bindparam("b_capacity", type_=Integer))
HAS_ROOM = or_(_CAPACITY.is_(None), agent.c.open_tickets < _CAPACITY)


# Built once and executed with parameters: these run for every ticket routed.
_CANDIDATES = select(
    agent.c.id,
    agent.c.name,
    agent.c.open_tickets,
    agent.c.capacity,
    agent.c.assigned_count,
    agent.c.position,
    agent.c.last_assigned_at,
).where(
    agent.c.group_id == bindparam("b_group_id"),
    agent.c.active.is_(True),
    agent.c.staff_active.is_(True),
    agent.c.availability == "available",
    agent.c.id.not_in(bindparam("b_excluding", expanding=True)),
    HAS_ROOM,
)


def _claim(*also: Any) -> Executable:
    return (
        update(agent)
        .where(
            agent.c.id == bindparam("b_agent_id"),
            # Checked again on the row itself: on PostgreSQL a concurrent decision that filled
            # the agent meanwhile makes this one update nothing (and the next candidate is
            # tried), so nobody goes over capacity whatever the number of replicas.
            HAS_ROOM,
            agent.c.availability == "available",
            *also,
        )
        .values(
            assigned_count=agent.c.assigned_count + 1,
            open_tickets=agent.c.open_tickets + 1,
            last_assigned_at=bindparam("b_now"),
        )
        .returning(agent.c.name)
    )


_CLAIM = _claim()
# Round-robin's: only if nobody took the agent's turn since it was read (then the next in turn
# is tried), so that concurrent decisions still go round.
_CLAIM_TURN = _claim(agent.c.last_assigned_at.is_not_distinct_from(bindparam("b_turn_seen")))


async def candidates(
    conn: AsyncConnection,
    group_id: str,
    *,
    capacity: int | None,
    excluding: str | None = None,
) -> Sequence[Any]:
    """The group's members who may get a ticket now as far as the database knows: active,
    available, with room (`capacity`: the group's, for members without their own). Who is on
    duty by their shift is the desk's say (assignment.py)."""
    values = {
        "b_group_id": group_id,
        "b_capacity": capacity,
        "b_excluding": [] if excluding is None else [excluding],
    }
    return (await conn.execute(_CANDIDATES, values)).all()


async def claim(
    conn: AsyncConnection,
    agent_id: str,
    *,
    capacity: int | None,
    turn_seen: datetime | Literal["any"] | None = "any",
) -> str | None:
    """One more ticket for the agent if they still have room and are available (and, given
    `turn_seen`, their last assignment is still that one): their name, or None if another
    decision took their last place, or their turn, meanwhile."""
    # Stamped as it happens, not when the decision began: turns follow the order of claims.
    values = {"b_agent_id": agent_id, "b_capacity": capacity, "b_now": utc_now()}
    statement = _CLAIM
    if turn_seen != "any":
        statement, values["b_turn_seen"] = _CLAIM_TURN, turn_seen
    if conn.dialect.name != "postgresql":
        name: str | None = (await conn.execute(statement, values)).scalar()
        return name
    # On PostgreSQL an update that waited for the row and then found it no longer fits (filled
    # up, or the turn taken) still holds it to the end of the transaction: a decision holding
    # one so while it waits for another's row could deadlock with one doing the opposite. A
    # claim that fails is undone to its savepoint, which lets the row go.
    savepoint = await conn.begin_nested()
    name = (await conn.execute(statement, values)).scalar()
    if name is None:
        await savepoint.rollback()
    else:
        await savepoint.commit()
    return name


@functools.cache
def _save_triage(dialect_name: str) -> Executable:
    return (
        insert_for(dialect_name, triage)
        .on_conflict_do_nothing(index_elements=[triage.c.ticket_id])
        .returning(triage.c.ticket_id)
    )


async def save_triage(conn: AsyncConnection, **values: Any) -> bool:
    """Records the triage; False if the ticket was already triaged (then nothing changes)."""
    return (await conn.execute(_save_triage(conn.dialect.name), values)).first() is not None


async def apply_staff_profile(
    conn: AsyncConnection,
    *,
    agent_id: str,
    name: str,
    groups: list[str],
    active: bool,
    availability: str,
    updated_at: datetime,
    placement: str | None,
    fallback_group: str,
) -> bool:
    """Records what intake says of the person; False if a newer word was already recorded.
    `placement`: a group of this desk among the account's groups, where an agent routing did
    not know yet is placed (an existing agent moves only if its group left their groups)."""
    row = (
        await conn.execute(
            select(agent.c.group_id, agent.c.staff_updated_at).where(agent.c.id == agent_id)
        )
    ).first()
    profile = {
        "name": name,
        "staff_active": active,
        "staff_groups": groups,
        "availability": availability,
    }
    if row is None:
        await conn.execute(
            agent.insert().values(
                id=agent_id,
                group_id=placement or fallback_group,
                position=1_000,  # after the desk file's agents on a tie
                active=placement is not None,
                assigned_count=0,
                staff_updated_at=updated_at,
                **profile,
            )
        )
        return True
    if row.staff_updated_at is not None and row.staff_updated_at >= updated_at:
        return False
    if placement is not None and row.group_id not in groups:
        profile["group_id"] = placement
    await conn.execute(
        update(agent).where(agent.c.id == agent_id).values(staff_updated_at=updated_at, **profile)
    )
    return True


# --- Assignment requests (handlers.on_assignment_requested): rare, so plain queries ----------


async def triage_for_change(conn: AsyncConnection, ticket_id: Any) -> Any:
    """The ticket's triage, locked until the transaction ends (on PostgreSQL), or None if the
    ticket is not triaged yet."""
    query = select(triage).where(triage.c.ticket_id == ticket_id).with_for_update()
    return (await conn.execute(query)).first()


async def agent_profile(conn: AsyncConnection, agent_id: str) -> Any:
    query = select(
        agent.c.id,
        agent.c.name,
        agent.c.group_id,
        agent.c.active,
        agent.c.staff_active,
        agent.c.staff_groups,
        agent.c.availability,
    ).where(agent.c.id == agent_id)
    return (await conn.execute(query)).first()


async def agent_name(conn: AsyncConnection, agent_id: str) -> str | None:
    return (await conn.execute(select(agent.c.name).where(agent.c.id == agent_id))).scalar()


async def take_ticket(conn: AsyncConnection, agent_id: str, *, counted: bool = True) -> None:
    """One more open ticket for the agent (`counted`: and one more assignment in all)."""
    values: dict[str, Any] = {"open_tickets": agent.c.open_tickets + 1}
    if counted:
        # A ticket staff handed them is their turn taken, as much as one routing gave.
        values["assigned_count"] = agent.c.assigned_count + 1
        values["last_assigned_at"] = utc_now()
    await conn.execute(update(agent).where(agent.c.id == agent_id).values(**values))


async def release_ticket(conn: AsyncConnection, agent_id: str) -> None:
    """One open ticket fewer (resolved, closed, or handed to someone else)."""
    await conn.execute(
        update(agent)
        .where(agent.c.id == agent_id)
        .values(open_tickets=case((agent.c.open_tickets > 0, agent.c.open_tickets - 1), else_=0))
    )


async def has_room(conn: AsyncConnection, agent_id: str, capacity: int | None) -> bool:
    """Locks the agent's row (on PostgreSQL) so that a take after this answer cannot race
    another decision's: two hand-overs to one colleague at once are checked one after the other."""
    query = select(agent.c.id).where(agent.c.id == agent_id, HAS_ROOM).with_for_update()
    return (await conn.execute(query, {"b_capacity": capacity})).first() is not None


async def agent_load(conn: AsyncConnection, agent_id: str) -> tuple[int, int | None]:
    row = (
        await conn.execute(
            select(agent.c.open_tickets, agent.c.capacity).where(agent.c.id == agent_id)
        )
    ).one()
    return row.open_tickets, row.capacity


async def set_active(conn: AsyncConnection, ticket_id: Any, active: bool, *, sequence: int) -> None:
    await conn.execute(
        update(triage)
        .where(triage.c.ticket_id == ticket_id)
        .values(active=active, status_sequence=sequence)
    )


async def oldest_waiting(
    conn: AsyncConnection, group_id: str, *, for_agent: str | None = None
) -> Any:
    """The group's active ticket that has waited longest for someone: for an owner, or, sent
    to the group for help, for someone to help (an assist); locked (on PostgreSQL, one another
    decision holds is skipped: it is being given to someone). `for_agent`: not one of theirs
    (nobody assists on their own ticket)."""
    waits = or_(
        triage.c.owner_id.is_(None),
        and_(triage.c.escalation_depth > 0, triage.c.assignee_id.is_(None)),
    )
    query = (
        select(
            triage.c.ticket_id,
            triage.c.number,
            triage.c.skills,
            triage.c.owner_id,
            triage.c.escalation_depth,
        )
        .where(triage.c.group_id == group_id, triage.c.active.is_(True), waits)
        .order_by(triage.c.routed_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if for_agent is not None:
        query = query.where(or_(triage.c.owner_id.is_(None), triage.c.owner_id != for_agent))
    return (await conn.execute(query)).first()


async def reassign(conn: AsyncConnection, ticket_id: Any, *, group_id: str, owner_id: str) -> None:
    await conn.execute(
        update(triage)
        .where(triage.c.ticket_id == ticket_id)
        .values(group_id=group_id, owner_id=owner_id)
    )


async def move_work(
    conn: AsyncConnection,
    ticket_id: Any,
    *,
    group_id: str,
    assignee_id: str | None,
    path: list[dict[str, Any]],
) -> None:
    """The ticket's work to `group_id` (an escalation, or a hand-back), the owner unchanged."""
    await conn.execute(
        update(triage)
        .where(triage.c.ticket_id == ticket_id)
        .values(
            group_id=group_id,
            assignee_id=assignee_id,
            escalation_path=path or None,
            escalation_depth=len(path),
        )
    )


async def set_assignee(conn: AsyncConnection, ticket_id: Any, assignee_id: str) -> None:
    await conn.execute(
        update(triage).where(triage.c.ticket_id == ticket_id).values(assignee_id=assignee_id)
    )


async def retriage(conn: AsyncConnection, ticket_id: Any, **values: Any) -> None:
    await conn.execute(update(triage).where(triage.c.ticket_id == ticket_id).values(**values))


async def lock_agents(conn: AsyncConnection, agent_ids: set[str]) -> None:
    """Locks the agents' rows until the transaction ends, in id order (on PostgreSQL)."""
    query = select(agent.c.id).where(agent.c.id.in_(sorted(agent_ids))).order_by(agent.c.id)
    await conn.execute(query.with_for_update())


async def waiting_counts(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """(group, "owner" or "assist") → active tickets waiting there for one."""
    waiting_for = case((triage.c.owner_id.is_(None), "owner"), else_="assist")
    query = (
        select(triage.c.group_id, waiting_for.label("waiting_for"), func.count())
        .where(
            triage.c.active.is_(True),
            or_(
                triage.c.owner_id.is_(None),
                and_(triage.c.escalation_depth > 0, triage.c.assignee_id.is_(None)),
            ),
        )
        .group_by(triage.c.group_id, waiting_for)
    )
    return {(group, kind): count for group, kind, count in (await conn.execute(query)).all()}


# --- Hierarchical escalation (sla_escalation.py) ---------------------------------------------


async def advance_escalation(
    conn: AsyncConnection, ticket_id: Any, metric: str, stage: int, *, now: datetime
) -> bool:
    """Records that the ticket's target reached `stage` (1 warned, 2 breached); False if it
    had reached it, or a later one, already (then its steps were taken, or passed over).
    Callers hold the ticket's triage row locked (triage_for_change): one decision at a time."""
    reached = (
        await conn.execute(
            select(escalation_stage.c.stage).where(
                escalation_stage.c.ticket_id == ticket_id, escalation_stage.c.metric == metric
            )
        )
    ).scalar()
    if reached is not None and reached >= stage:
        return False
    if reached is None:
        await conn.execute(
            escalation_stage.insert().values(
                ticket_id=ticket_id, metric=metric, stage=stage, escalated_at=now
            )
        )
    else:
        await conn.execute(
            update(escalation_stage)
            .where(escalation_stage.c.ticket_id == ticket_id, escalation_stage.c.metric == metric)
            .values(stage=stage, escalated_at=now)
        )
    return True
