"""A group's queue: its active tickets without an owner, because nobody on duty had room when
they came. They go out oldest first: to an agent who frees up (a resolution), to someone placed
in the group or available again (staff.updated), and, every little while, by the group's
strategy to whoever can take them now (a shift that started, a capacity raised in the desk
file, a reopened ticket whose owner left)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from spoc_contracts import TicketAssigned
from spoc_contracts.routing import AgentRef
from spoc_platform.db import utc_now
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from spoc_routing import repository
from spoc_routing.assignment import on_duty, pick_owner
from spoc_routing.desk import RoutingDesk
from spoc_routing.staff_requests import group_ref

log = logging.getLogger(__name__)

# At most this many waiting tickets go out in one transaction (a person placed in a long queue
# fills up over their following events, and a sweep over several transactions).
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
        waiting = await repository.oldest_waiting(uow.conn, group.id)
        if waiting is None:
            return
        await repository.reassign(uow.conn, waiting.ticket_id, group_id=group.id, owner_id=agent_id)
        await repository.take_ticket(uow.conn, agent_id)
        await uow.publish(
            TicketAssigned(
                number=waiting.number,
                owner=AgentRef(id=agent_id, name=person.name),
                group=group_ref(group),
                reason=f"{person.name} has room now: the longest-waiting ticket of {group.name}",
            ),
            ticket_id=waiting.ticket_id,
        )


class WaitingQueueSweeper:
    """Every `interval` seconds, each group's waiting tickets to whoever the group's strategy
    picks among the members who can take them now. Several replicas may sweep at once: a
    ticket one of them is giving out is skipped by the others (oldest_waiting)."""

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        desk: RoutingDesk,
        interval: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._desk = desk
        self._interval = interval
        # Who is on duty is read off it (a test moves it to the start of a shift).
        self.clock = clock
        self._stopped = asyncio.Event()

    async def sweep(self) -> int:
        """One pass over every group; how many tickets went out."""
        given = 0
        for group in self._desk.groups:
            while True:
                given_now = await self._give_out(group.id)
                given += given_now
                if given_now < GIVEN_AT_ONCE:
                    break
        return given

    async def _give_out(self, group_id: str) -> int:
        group = self._desk.group(group_id)
        given = 0
        async with self._unit_of_work() as uow:
            for _ in range(GIVEN_AT_ONCE):
                waiting = await repository.oldest_waiting(uow.conn, group.id)
                if waiting is None:
                    break
                owner = await pick_owner(
                    uow.conn, self._desk, group, skills=waiting.skills or (), now=self.clock()
                )
                if owner is None:
                    # Nobody on duty has room: the rest of the queue waits as well.
                    break
                await repository.reassign(
                    uow.conn, waiting.ticket_id, group_id=group.id, owner_id=owner.id
                )
                await uow.publish(
                    TicketAssigned(
                        number=waiting.number,
                        owner=AgentRef(id=owner.id, name=owner.name),
                        group=group_ref(group),
                        reason=f"{owner.why}; it waited in the queue of {group.name}",
                    ),
                    ticket_id=waiting.ticket_id,
                )
                given += 1
        return given

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
