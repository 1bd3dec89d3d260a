"""Every event class by (type, version): how a consumer turns an envelope into a typed event."""

from __future__ import annotations

from pydantic import ValidationError

from spoc_contracts.credentials import CredentialFeedHeartbeat, TokenIssued, TokenRevoked
from spoc_contracts.envelope import Envelope, Event, InvalidEnvelope
from spoc_contracts.notification import NotificationFailed, NotificationSent
from spoc_contracts.requesters import RequesterSignInRequested
from spoc_contracts.routing import (
    TicketAssigned,
    TicketAssignmentRefused,
    TicketAssistAssigned,
    TicketEscalated,
    TicketEscalationRefused,
    TicketHandBackRefused,
    TicketHandedBack,
    TicketRouted,
)
from spoc_contracts.sla import SlaBreached, SlaClockStarted, SlaClockUpdated, SlaMet, SlaWarning
from spoc_contracts.staff import StaffUpdated
from spoc_contracts.tickets import (
    FeedbackSubmitted,
    TicketAssignmentRequested,
    TicketCommented,
    TicketCreated,
    TicketCreatedV1,
    TicketEscalationRequested,
    TicketHandBackRequested,
    TicketStatusChanged,
    TicketUpdated,
)

EVENT_CLASSES: tuple[type[Event], ...] = (
    TicketCreated,
    TicketCreatedV1,
    TicketUpdated,
    TicketCommented,
    TicketStatusChanged,
    TicketEscalationRequested,
    TicketAssignmentRequested,
    TicketHandBackRequested,
    FeedbackSubmitted,
    TicketRouted,
    TicketAssigned,
    TicketAssignmentRefused,
    TicketEscalated,
    TicketEscalationRefused,
    TicketAssistAssigned,
    TicketHandedBack,
    TicketHandBackRefused,
    SlaClockStarted,
    SlaClockUpdated,
    SlaWarning,
    SlaBreached,
    SlaMet,
    NotificationSent,
    NotificationFailed,
    RequesterSignInRequested,
    StaffUpdated,
    TokenIssued,
    TokenRevoked,
    CredentialFeedHeartbeat,
)

REGISTRY: dict[tuple[str, int], type[Event]] = {(c.TYPE, c.VERSION): c for c in EVENT_CLASSES}


def event_class(event_type: str, version: int) -> type[Event]:
    try:
        return REGISTRY[(event_type, version)]
    except KeyError:
        raise InvalidEnvelope(f"unknown event {event_type} v{version}") from None


def open_envelope(envelope: Envelope) -> Event:
    """The typed payload of an envelope; InvalidEnvelope if it can never be handled."""
    cls = event_class(envelope.type, envelope.version)
    try:
        return cls.model_validate(envelope.data)
    except ValidationError as error:
        raise InvalidEnvelope(
            f"{envelope.type} v{envelope.version} payload is invalid: "
            f"{error.errors(include_url=False)}"
        ) from error
