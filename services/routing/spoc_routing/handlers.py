"""Routing's reactions to events: plain async functions, wired by the HANDLERS mapping."""

from __future__ import annotations

import logging

from spoc_contracts import (
    CredentialFeedHeartbeat,
    Envelope,
    StaffUpdated,
    TicketCreated,
    TicketCreatedV1,
    TicketRouted,
    TokenIssued,
    TokenRevoked,
)
from spoc_contracts.routing import AgentRef, GroupRef
from spoc_platform import token_projection
from spoc_platform.consumer import AlreadyHandled, PermanentError
from spoc_platform.db import utc_now
from spoc_platform.token_projection import TokenProjectionTables
from spoc_platform.unit_of_work import UnitOfWork
from spoc_routing import metrics, repository
from spoc_routing.desk import RoutingDesk

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


PUBLISHES = [TicketRouted.TYPE]
