"""SLA's reactions to events: plain async functions, wired in bootstrap."""

from __future__ import annotations

import logging

from spoc_contracts import (
    ClockTarget,
    Envelope,
    SlaClockStarted,
    TicketRouted,
)
from spoc_platform.consumer import PermanentError
from spoc_platform.unit_of_work import UnitOfWork
from spoc_sla import metrics, repository
from spoc_sla.desk import SlaDesk

log = logging.getLogger(__name__)


async def on_ticket_routed(
    event: TicketRouted, *, envelope: Envelope, uow: UnitOfWork, desk: SlaDesk
) -> None:
    if envelope.ticket_id is None:
        raise PermanentError("ticket.routed without a ticket_id")
    if await repository.has_clocks(uow.conn, envelope.ticket_id):
        # Re-timing on a priority change comes with the SLA engine; the first clocks stand.
        log.info("%s already has clocks; re-routing does not restart them", event.number)
        return
    priority, targets = desk.targets_for(event.priority)
    calendar = desk.calendars[targets.calendar]
    started_at = event.ticket_created_at or envelope.occurred_at
    clocks = [
        repository.NewClock(
            metric=metric,
            target_seconds=minutes * 60,
            due_at=calendar.add_working_time(started_at, minutes * 60),
        )
        for metric, minutes in (
            ("first_response", targets.first_response_minutes),
            ("resolution", targets.resolution_minutes),
        )
    ]
    await repository.start_clocks(
        uow.conn,
        ticket_id=envelope.ticket_id,
        number=event.number,
        priority=priority,
        policy=desk.policy_name,
        calendar=targets.calendar,
        started_at=started_at,
        clocks=clocks,
    )
    await uow.publish(
        SlaClockStarted(
            number=event.number,
            priority=priority,
            policy=desk.policy_name,
            calendar=targets.calendar,
            clocks=[
                ClockTarget(metric=c.metric, due_at=c.due_at, target_seconds=c.target_seconds)
                for c in clocks
            ],
        ),
        ticket_id=envelope.ticket_id,
    )
    metrics.clocks_started.labels(priority).inc(len(clocks))


PUBLISHES = [SlaClockStarted.TYPE]
