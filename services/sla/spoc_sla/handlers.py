"""SLA's reactions to events: plain async functions, wired in bootstrap."""

from __future__ import annotations

import logging

from spoc_contracts import (
    ClockTarget,
    CredentialFeedHeartbeat,
    Envelope,
    SlaClockStarted,
    TicketRouted,
    TokenIssued,
    TokenRevoked,
)
from spoc_platform import token_projection
from spoc_platform.consumer import PermanentError
from spoc_platform.token_projection import TokenProjectionTables
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


# Intake's bearer tokens, kept for the admin API (spoc_platform.token_projection): idempotent
# and order-free, so neither a redelivery nor a revocation overtaking its issue needs care here.


async def on_token_issued(
    event: TokenIssued, *, envelope: Envelope, uow: UnitOfWork, tables: TokenProjectionTables
) -> None:
    await token_projection.record_issued(
        uow.conn,
        tables,
        token_id=event.token_id,
        token_hash=event.token_hash,
        role=event.role,
        subject_id=event.subject_id,
        expires_at=event.expires_at,
    )


async def on_token_revoked(
    event: TokenRevoked, *, envelope: Envelope, uow: UnitOfWork, tables: TokenProjectionTables
) -> None:
    await token_projection.record_revoked(
        uow.conn, tables, token_id=event.token_id, at=event.revoked_at
    )


async def on_credential_heartbeat(
    event: CredentialFeedHeartbeat,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    tables: TokenProjectionTables,
) -> None:
    # Intake's time, not ours: a heartbeat that waited in the queue proves only that moment.
    await token_projection.record_heartbeat(uow.conn, tables, heard_at=event.at)


PUBLISHES = [SlaClockStarted.TYPE]
