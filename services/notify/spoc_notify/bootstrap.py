"""Notify's composition root: settings in, a runtime with handlers and the dispatcher out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from spoc_contracts import RequesterSignInRequested, SlaClockStarted, TicketCreated
from spoc_notify import handlers, repository
from spoc_notify.dispatcher import DeliveryDispatcher
from spoc_notify.mail import MaildirTransport, MailTransport, SmtpTransport
from spoc_notify.models import MESSAGING
from spoc_notify.sealing import NotifySecrets, UnsealingTransport
from spoc_notify.settings import NotifySettings
from spoc_platform.bus import MessageBus
from spoc_platform.consumer import bind_handler
from spoc_platform.db import utc_now
from spoc_platform.runtime import ServiceRuntime, build_runtime

PUBLISHES = ["notification.sent", "notification.failed"]


@dataclass
class NotifyContainer:
    settings: NotifySettings
    runtime: ServiceRuntime
    dispatcher: DeliveryDispatcher
    transport: MailTransport


def mail_transport(settings: NotifySettings) -> MailTransport:
    if settings.maildir is not None:
        return MaildirTransport(settings.maildir)
    return SmtpTransport(
        settings.smtp_url,
        concurrency=settings.send_concurrency,
        allow_insecure_auth=settings.smtp_allow_insecure_auth,
        ca_file=settings.smtp_ca_file,
    )


def bootstrap(
    settings: NotifySettings,
    *,
    bus: MessageBus | None = None,
    transport: MailTransport | None = None,
) -> NotifyContainer:
    secrets = NotifySecrets(settings.access_key_secret, settings.access_key_previous_secrets)
    # Deliveries are stored boxed; the transport opens each right before sending it.
    transport = UnsealingTransport(transport or mail_transport(settings), secrets)
    dispatcher: DeliveryDispatcher | None = None
    runtime: ServiceRuntime

    async def forget_old_deliveries_and_contacts() -> None:
        delivered_before = utc_now() - timedelta(days=settings.delivery_retention_days)
        touched_before = utc_now() - timedelta(days=settings.contact_retention_days)
        for prune, before in (
            (repository.prune_delivery_log, delivered_before),
            (repository.prune_contacts, touched_before),
        ):
            while True:
                async with runtime.engine.begin() as conn:
                    if await prune(conn, before=before) < repository.PRUNE_BATCH:
                        break

    def kick() -> None:
        if dispatcher is not None:
            dispatcher.kick()

    deps = {"settings": settings, "kick": kick, "secrets": secrets}
    runtime = build_runtime(
        settings,
        service="notify",
        tables=MESSAGING,
        handlers={
            TicketCreated.TYPE: bind_handler(handlers.on_ticket_created, **deps),
            SlaClockStarted.TYPE: bind_handler(handlers.on_sla_clock_started, **deps),
            RequesterSignInRequested.TYPE: bind_handler(
                handlers.on_requester_sign_in_requested, **deps
            ),
        },
        publishes=PUBLISHES,
        bus=bus,
        housekeeping=[forget_old_deliveries_and_contacts],
    )
    dispatcher = DeliveryDispatcher(
        unit_of_work=runtime.unit_of_work,
        transport=transport,
        sender=settings.mail_from,
        max_attempts=settings.max_attempts,
        concurrency=settings.send_concurrency,
        lease=settings.send_lease,
        drain_timeout=settings.send_drain_timeout,
    )
    runtime.workers.append(dispatcher)
    return NotifyContainer(
        settings=settings, runtime=runtime, dispatcher=dispatcher, transport=transport
    )
