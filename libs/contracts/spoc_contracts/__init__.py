"""Spoc's event contracts: the envelope and every event, the single source of truth for the bus."""

from spoc_contracts.credentials import (
    CredentialFeedHeartbeat,
    TokenIssued,
    TokenRevoked,
    live_token_digest,
)
from spoc_contracts.envelope import Envelope, Event, InvalidEnvelope
from spoc_contracts.notification import NotificationFailed, NotificationSent
from spoc_contracts.registry import REGISTRY, event_class, open_envelope
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
from spoc_contracts.sla import (
    ClockTarget,
    SlaBreached,
    SlaClockStarted,
    SlaClockUpdated,
    SlaMet,
    SlaWarning,
)
from spoc_contracts.staff import StaffUpdated
from spoc_contracts.tickets import (
    FeedbackSubmitted,
    Requester,
    TicketAssignmentRequested,
    TicketCommented,
    TicketCreated,
    TicketCreatedV1,
    TicketEscalationRequested,
    TicketHandBackRequested,
    TicketStatusChanged,
    TicketUpdated,
)

__all__ = [
    "REGISTRY",
    "ClockTarget",
    "CredentialFeedHeartbeat",
    "Envelope",
    "Event",
    "FeedbackSubmitted",
    "InvalidEnvelope",
    "NotificationFailed",
    "NotificationSent",
    "Requester",
    "RequesterSignInRequested",
    "SlaBreached",
    "SlaClockStarted",
    "SlaClockUpdated",
    "SlaMet",
    "SlaWarning",
    "StaffUpdated",
    "TicketAssigned",
    "TicketAssignmentRefused",
    "TicketAssignmentRequested",
    "TicketAssistAssigned",
    "TicketCommented",
    "TicketCreated",
    "TicketCreatedV1",
    "TicketEscalated",
    "TicketEscalationRefused",
    "TicketEscalationRequested",
    "TicketHandBackRefused",
    "TicketHandBackRequested",
    "TicketHandedBack",
    "TicketRouted",
    "TicketStatusChanged",
    "TicketUpdated",
    "TokenIssued",
    "TokenRevoked",
    "event_class",
    "live_token_digest",
    "open_envelope",
]
