"""Intake's composition root: settings in, runtime, handlers and use cases out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from spoc_contracts import TicketRouted
from spoc_intake import handlers, repository, staff_repository, tokens
from spoc_intake.desk import IntakeDesk
from spoc_intake.front_door import FrontDoor
from spoc_intake.models import MESSAGING
from spoc_intake.requester_links import RequesterSignIn
from spoc_intake.service import TicketService
from spoc_intake.settings import IntakeSettings
from spoc_intake.staff import StaffService, build_staff
from spoc_intake.staff_sign_in import StaffSignIn
from spoc_intake.work import TicketWork
from spoc_platform.bus import MessageBus
from spoc_platform.consumer import bind_handler
from spoc_platform.db import utc_now
from spoc_platform.desk_config import load_section
from spoc_platform.runtime import ServiceRuntime, build_runtime


@dataclass
class IntakeContainer:
    settings: IntakeSettings
    runtime: ServiceRuntime
    tickets: TicketService
    # Working a ticket: replies, status changes (work.py).
    work: TicketWork
    # Rate limits and the block list for anonymous callers (D19).
    front_door: FrontDoor
    # Staff accounts (admin API, `spoc staff`) and their password sign-in.
    staff: StaffService
    staff_sign_in: StaffSignIn
    # Requesters' one-time sign-in links and their sessions (requester_links.py).
    requester_sign_in: RequesterSignIn
    # Who holds a bearer token: the admin API (spoc_platform.admin) takes an admin's token.
    bearer_tokens: tokens.TokenHolders


def bootstrap(settings: IntakeSettings, *, bus: MessageBus | None = None) -> IntakeContainer:
    runtime: ServiceRuntime
    desk = load_section(settings.desk_config, "intake", IntakeDesk)

    async def forget_old_idempotency_keys() -> None:
        # The replayable answers hold requesters' access keys (sealed under each client's
        # Idempotency-Key): keep them only as long as promised.
        cutoff = utc_now() - timedelta(hours=settings.idempotency_hours)
        async with runtime.engine.begin() as conn:
            await repository.prune_idempotency(conn, cutoff)

    async def forget_ended_staff_sessions() -> None:
        now = utc_now()
        idle_since = now - timedelta(minutes=settings.staff_session_idle_minutes)
        async with runtime.engine.begin() as conn:
            await staff_repository.prune_sessions(conn, now, idle_since)

    async def forget_ended_requester_links_and_sessions() -> None:
        await requester_sign_in.forget_expired()

    async def sync_staff() -> None:
        await staff.sync_desk(desk.staff)

    async def announce_live_tokens() -> None:
        # Routing and sla learn every live token again: a fresh table fills on its own.
        await tokens.announce_live_tokens(runtime.unit_of_work)

    runtime = build_runtime(
        settings,
        service="intake",
        tables=MESSAGING,
        handlers={
            **handlers.HANDLERS,
            TicketRouted.TYPE: bind_handler(handlers.on_ticket_routed, categories=desk.categories),
        },
        publishes=handlers.PUBLISHES,
        bus=bus,
        housekeeping=[
            forget_old_idempotency_keys,
            forget_ended_staff_sessions,
            forget_ended_requester_links_and_sessions,
        ],
        on_start=[sync_staff, announce_live_tokens],
        # The front door keeps taking tickets while the broker is down: the outbox holds them.
        ready_without_bus=True,
    )
    # Without its beat, routing and sla stop honouring any token within a minute (tokens.py).
    runtime.workers.append(tokens.TokenFeedHeartbeat(runtime.unit_of_work))
    staff, sign_in = build_staff(settings, runtime.unit_of_work)
    requester_sign_in = RequesterSignIn(runtime.unit_of_work, settings)
    return IntakeContainer(
        settings=settings,
        runtime=runtime,
        tickets=TicketService(
            runtime.unit_of_work,
            settings,
            desk.categories,
            category_required=desk.category_required,
        ),
        work=TicketWork(runtime.unit_of_work, settings, desk.categories),
        front_door=FrontDoor(settings),
        staff=staff,
        staff_sign_in=sign_in,
        requester_sign_in=requester_sign_in,
        bearer_tokens=tokens.TokenHolders(runtime.engine),
    )
