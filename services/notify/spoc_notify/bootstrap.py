"""Notify's composition root: settings in, a runtime with handlers and the dispatcher out."""

from __future__ import annotations

from dataclasses import dataclass

from spoc_contracts import SlaClockStarted, TicketCreated
from spoc_notify import handlers
from spoc_notify.dispatcher import DeliveryDispatcher
from spoc_notify.mail import MaildirTransport, MailTransport, SmtpTransport
from spoc_notify.models import MESSAGING
from spoc_notify.settings import NotifySettings
from spoc_platform.bus import MessageBus
from spoc_platform.consumer import bind_handler
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
    return SmtpTransport(settings.smtp_url)


def bootstrap(
    settings: NotifySettings,
    *,
    bus: MessageBus | None = None,
    transport: MailTransport | None = None,
) -> NotifyContainer:
    transport = transport or mail_transport(settings)
    dispatcher: DeliveryDispatcher | None = None

    def kick() -> None:
        if dispatcher is not None:
            dispatcher.kick()

    deps = {"settings": settings, "kick": kick}
    runtime = build_runtime(
        settings,
        service="notify",
        tables=MESSAGING,
        handlers={
            TicketCreated.TYPE: bind_handler(handlers.on_ticket_created, **deps),
            SlaClockStarted.TYPE: bind_handler(handlers.on_sla_clock_started, **deps),
        },
        publishes=PUBLISHES,
        bus=bus,
    )
    dispatcher = DeliveryDispatcher(
        unit_of_work=runtime.unit_of_work,
        transport=transport,
        sender=settings.mail_from,
        max_attempts=settings.max_attempts,
        concurrency=settings.send_concurrency,
    )
    runtime.workers.append(dispatcher)
    return NotifyContainer(
        settings=settings, runtime=runtime, dispatcher=dispatcher, transport=transport
    )
