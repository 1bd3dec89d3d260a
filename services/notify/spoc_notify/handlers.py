"""Notify's reactions to events. The acknowledgement needs the requester (ticket.created) and
the targets (sla.clock_started); they arrive in any order, so whichever comes second writes it."""

from __future__ import annotations

import logging
from email.errors import MessageError
from typing import Any

from sqlalchemy import Row

from spoc_contracts import (
    Envelope,
    NotificationFailed,
    RequesterSignInRequested,
    SlaClockStarted,
    TicketCreated,
    TicketCreatedV1,
)
from spoc_notify import repository
from spoc_notify.compose import (
    Acknowledgement,
    SignInLink,
    acknowledgement_message,
    sign_in_message,
)
from spoc_notify.dispatcher import SIGN_IN_LINK
from spoc_notify.sealing import NotifySecrets
from spoc_notify.settings import NotifySettings
from spoc_platform.consumer import PermanentError
from spoc_platform.db import utc_now
from spoc_platform.sealing import SealingError
from spoc_platform.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

ACKNOWLEDGEMENT = "acknowledgement"


async def on_ticket_created(
    event: TicketCreated | TicketCreatedV1,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    settings: NotifySettings,
    kick: Any,
    secrets: NotifySecrets,
) -> None:
    ticket_id = _ticket_id(envelope)
    if isinstance(event, TicketCreatedV1):
        # Published before keys were sealed: from here on it is kept as v2 would carry it.
        sealed_key = secrets.seal_access_key(event.access_key)
        # v1 never said whether the desk knew the address: treated as a stranger's.
        requester_known = False
    else:
        sealed_key = event.access_key_sealed
        requester_known = event.requester_known
    record = await repository.merge_contact(
        uow.conn,
        ticket_id,
        event.number,
        subject=event.subject,
        name=event.requester.name,
        email=event.requester.email,
        locale=event.requester.locale,
        preferred_channel=event.requester.preferred_channel,
        access_key_sealed=sealed_key,
        requester_known=requester_known,
        created_event_id=envelope.id,
    )
    await _acknowledge_when_complete(uow, record, envelope, settings, kick, secrets)


async def on_sla_clock_started(
    event: SlaClockStarted,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    settings: NotifySettings,
    kick: Any,
    secrets: NotifySecrets,
) -> None:
    ticket_id = _ticket_id(envelope)
    due = {clock.metric: clock.due_at for clock in event.clocks}
    record = await repository.merge_contact(
        uow.conn,
        ticket_id,
        event.number,
        priority=event.priority,
        first_response_due_at=due.get("first_response"),
        resolution_due_at=due.get("resolution"),
        clocks_event_id=envelope.id,
    )
    await _acknowledge_when_complete(uow, record, envelope, settings, kick, secrets)


def _ticket_id(envelope: Envelope) -> Any:
    if envelope.ticket_id is None:
        raise PermanentError(f"{envelope.type} without a ticket_id")
    return envelope.ticket_id


async def _acknowledge_when_complete(
    uow: UnitOfWork,
    record: Row[Any],
    envelope: Envelope,
    settings: NotifySettings,
    kick: Any,
    secrets: NotifySecrets,
) -> None:
    if record.created_event_id is None or record.clocks_event_id is None:
        return  # the other half has not arrived yet
    if record.access_key_sealed is not None:
        try:
            access_key = secrets.open_access_key(record.access_key_sealed)
        except SealingError as error:
            # Intake sealed it for another key: dead-letter it, so that once the keys are set
            # right (SPOC_INTAKE_ACCESS_KEY_RECIPIENT) a replay still writes the acknowledgement.
            raise PermanentError(
                f"the access key of {record.number} was not sealed for this notify's key: {error}"
            ) from error
    elif record.access_key is not None:
        access_key = record.access_key  # kept in plaintext before migration 0003
    else:
        return  # already written: the key is cleared once the acknowledgement exists
    targets = {
        metric: due
        for metric, due in (
            ("first_response", record.first_response_due_at),
            ("resolution", record.resolution_due_at),
        )
        if due is not None
    }
    try:
        message = acknowledgement_message(
            Acknowledgement(
                ticket_id=str(record.ticket_id),
                number=record.number,
                subject=record.subject,
                name=record.name,
                email=record.email,
                locale=record.locale,
                priority=record.priority,
                access_key=access_key,
                targets=targets,
                time_zone=settings.time_zone,
                opener_text_in_headers=record.requester_known,
            ),
            sender=settings.mail_from,
            portal_url=settings.portal_url,
        )
        # Rendered here: a header that would smuggle in another (a subject carrying CR LF
        # from a foreign producer) is refused only now, and is as unwritable as the rest.
        rendered = message.as_string()
    except (UnicodeError, ValueError, MessageError) as error:
        # Retrying cannot help a message that cannot be written: record the failure where
        # people see it (intake's internal timeline) instead of dead-lettering in silence.
        await _record_failure(uow, record, envelope, f"cannot compose: {error}")
        return
    owed = await repository.owe_delivery(
        uow.conn,
        ticket_id=record.ticket_id,
        number=record.number,
        kind=ACKNOWLEDGEMENT,
        # Only e-mail exists yet; other agreed channels fall back to it until they do (D14).
        channel="email",
        recipient=record.email,
        # Boxed: the message holds the requester's link until the transport sends it.
        message=secrets.box_message(rendered),
        correlation_id=envelope.correlation_id,
        causation_id=envelope.id,
    )
    await repository.forget_access_key(uow.conn, record.ticket_id)
    if owed:
        uow.after_commit.append(kick)


async def _record_failure(
    uow: UnitOfWork, record: Row[Any], envelope: Envelope, error: str
) -> None:
    recorded = await repository.owe_delivery(
        uow.conn,
        status="failed",
        ticket_id=record.ticket_id,
        number=record.number,
        kind=ACKNOWLEDGEMENT,
        channel="email",
        recipient=record.email,
        message="",
        last_error=error[:2000],
        correlation_id=envelope.correlation_id,
        causation_id=envelope.id,
    )
    await repository.forget_access_key(uow.conn, record.ticket_id)
    if recorded:
        log.error("acknowledgement for %s cannot be sent: %s", record.number, error)
        await uow.publish(
            NotificationFailed(
                number=record.number,
                notification_id=f"{ACKNOWLEDGEMENT}:{record.ticket_id}",
                kind=ACKNOWLEDGEMENT,
                channel="email",
                recipient=record.email,
                attempts=0,
                error=error[:500],
            ),
            ticket_id=record.ticket_id,
        )


async def on_requester_sign_in_requested(
    event: RequesterSignInRequested,
    *,
    envelope: Envelope,
    uow: UnitOfWork,
    settings: NotifySettings,
    kick: Any,
    secrets: NotifySecrets,
) -> None:
    """Mails a requester their one-time sign-in link, once per request."""
    if event.expires_at <= utc_now():
        # Arrived too late (a backlog, a replayed dead letter): the link would not work.
        log.warning("a sign-in link arrived after its expiry; not sent")
        return
    try:
        token = secrets.open_access_key(event.link_token_sealed)
    except SealingError as error:
        # Sealed for another key: dead-letter it; once the keys agree, a replay within the
        # link's lifetime still sends it.
        raise PermanentError(
            f"a sign-in link was not sealed for this notify's key: {error}"
        ) from error
    try:
        rendered = sign_in_message(
            SignInLink(
                request_id=str(envelope.id),
                email=event.email,
                locale=event.locale,
                token=token,
                expires_at=event.expires_at,
                time_zone=settings.time_zone,
            ),
            sender=settings.mail_from,
            portal_url=settings.portal_url,
        ).as_string()
    except (UnicodeError, ValueError, MessageError) as error:
        # As for an acknowledgement: retrying cannot help, so a failed row in the delivery log
        # and an error in the log, not a dead letter. No notification.failed: no ticket's
        # history to put it in.
        recorded = await repository.owe_delivery(
            uow.conn,
            status="failed",
            ticket_id=envelope.id,
            number="",
            kind=SIGN_IN_LINK,
            channel="email",
            recipient=event.email,
            message="",
            last_error=f"cannot compose: {error}"[:2000],
            correlation_id=envelope.correlation_id,
            causation_id=envelope.id,
        )
        if recorded:
            log.error("a sign-in link cannot be sent: cannot compose: %s", error)
        return
    owed = await repository.owe_delivery(
        uow.conn,
        # The link concerns no ticket: the request's event id stands in for one, so the one
        # delivery per (ticket, kind) rule makes it one mail per request, however redelivered.
        ticket_id=envelope.id,
        number="",
        kind=SIGN_IN_LINK,
        channel="email",
        recipient=event.email,
        # Boxed: the message holds the link until the transport sends it.
        message=secrets.box_message(rendered),
        correlation_id=envelope.correlation_id,
        causation_id=envelope.id,
    )
    if owed:
        uow.after_commit.append(kick)
