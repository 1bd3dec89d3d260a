"""A group's queue: its active tickets without an owner, because nobody on duty had room when
they came. They go out oldest first: to an agent who frees up (a resolution), to someone placed
in the group or available again (staff.updated), and, every little while, by the group's
strategy to whoever can take them now (a shift that started, a capacity raised in the desk
file)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from spoc_contracts import Event, TicketAssigned, TicketAssistAssigned
from spoc_contracts.routing import AgentRef
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from spoc_routing import metrics, repository, staff_requests
from spoc_routing.assignment import on_duty, pick_owner
from spoc_routing.desk import Group, RoutingDesk

log = logging.getLogger(__name__)

# At most this many waiting tickets go to one person in one event's transaction (a person placed
# in a long queue fills up over their following events and the sweeps).
GIVEN_AT_ONCE = 20


async def give_waiting_work(uow: UnitOfWork, desk: RoutingDesk, agent_id: str) -> None:
    """The agent's group's longest-waiting tickets, while the agent may take them (active,
    available, on duty) and has room."""
    person = await repository.agent_profile(uow.conn, agent_id)
    if person is None or not (person.active and person.staff_active):
        return
    group = next((g for g in desk.groups if g.id == person.group_id), None)
    if group is None or person.availability != "available":
        return
    if not on_duty(agent_id, group, desk, utc_now()):
        return
    for _ in range(GIVEN_AT_ONCE):
        if not await repository.has_room(uow.conn, agent_id, group.agent_capacity):
            return
        waiting = await repository.oldest_waiting(uow.conn, group.id, for_agent=agent_id)
        if waiting is None:
            return
        await repository.take_ticket(uow.conn, agent_id)
        await give(
            uow,
            waiting,
            group,
            AgentRef(id=agent_id, name=person.name),
            f"{person.name} has room now: the longest-waiting ticket of {group.name}",
        )


async def give(uow: UnitOfWork, waiting: Any, group: Group, person: AgentRef, reason: str) -> None:
    """The waiting ticket to `person` (whose load counts it already): as its owner, or, sent
    to the group for help, as the one who helps (the owner stays, D3)."""
    if waiting.owner_id is None:
        await repository.reassign(
            uow.conn, waiting.ticket_id, group_id=group.id, owner_id=person.id
        )
        event: Event = TicketAssigned(
            number=waiting.number,
            owner=person,
            group=staff_requests.group_ref(group),
            reason=reason,
        )
    else:
        await repository.set_assignee(uow.conn, waiting.ticket_id, person.id)
        event = TicketAssistAssigned(
            number=waiting.number,
            group=staff_requests.group_ref(group),
            assignee=person,
            owner=await staff_requests.agent_ref(uow, waiting.owner_id),
            reason=reason,
        )
    await uow.publish(event, ticket_id=waiting.ticket_id)


class WaitingQueueSweeper:
    """Every `interval` seconds, each group's waiting tickets to whoever the group's strategy
    picks among the members who can take them now, one ticket per transaction. Several replicas
    may sweep at once: a ticket one of them is giving out is skipped by the others
    (oldest_waiting)."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        # The desk, or where to read the one in force at each sweep (desk_versions.DeskHolder).
        desk: RoutingDesk | Callable[[], RoutingDesk],
        interval: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._desk = desk if callable(desk) else lambda: desk
        self._interval = interval
        # Who is on duty is read off it (a test moves it to the start of a shift).
        self.clock = clock
        self._stopped = asyncio.Event()

    async def sweep(self) -> int:
        """One pass over every group; how many tickets went out. The queues' lengths after it
        go to the spoc_routing_waiting_tickets gauge."""
        desk = self._desk()
        given = 0
        for group in desk.groups:
            while await self._give_one(desk, group):
                given += 1
        async with self._unit_of_work() as uow:
            waiting = await repository.waiting_counts(uow.conn)
        for group in desk.groups:
            for waiting_for in ("owner", "assist"):
                metrics.waiting_tickets.labels(group.id, waiting_for).set(
                    waiting.get((group.id, waiting_for), 0)
                )
        return given

    async def _give_one(self, desk: RoutingDesk, group: Group) -> bool:
        """The group's longest-waiting ticket to whoever its strategy picks, in a transaction of
        its own: holding one agent's row at a time, a sweep cannot deadlock with another
        replica's (which may rank the members in another order for a ticket needing other
        skills) nor with a hand-over locking two people's rows in id order."""
        async with self._unit_of_work() as uow:
            waiting = await repository.oldest_waiting(uow.conn, group.id)
            if waiting is None:
                return False
            picked = await pick_owner(
                uow.conn,
                desk,
                group,
                skills=waiting.skills or (),
                excluding=waiting.owner_id,
                now=self.clock(),
            )
            if picked is None:
                # Nobody on duty has room: the rest of the queue waits as well (an
                # assist excludes the owner, who may be the only one with room: rare).
                return False
            await give(
                uow,
                waiting,
                group,
                AgentRef(id=picked.id, name=picked.name),
                f"{picked.why}; it waited in the queue of {group.name}",
            )
            return True

    async def run(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval)
            if self._stopped.is_set():
                return
            try:
                given = await self.sweep()
            except Exception:  # the database may be down: the next sweep tries again
                log.exception("waiting queue sweep failed")
                continue
            if given:
                log.info("gave %d waiting tickets to agents who can take them now", given)

    async def stop(self) -> None:
        self._stopped.set()
