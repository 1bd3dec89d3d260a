"""Events published by intake: the ticket record and what requesters and agents do to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spoc_contracts.envelope import Event

TicketType = Literal["incident", "request", "complaint", "suggestion"]
Channel = Literal["portal", "email", "api", "chat", "phone"]
ContactChannel = Literal["email", "sms", "chat", "webhook", "phone", "portal"]
Level = Literal["high", "medium", "low"]
Status = Literal["new", "open", "in_progress", "pending", "resolved", "closed"]
AuthorKind = Literal["requester", "agent", "system"]


class Requester(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    email: str
    phone: str | None = None
    locale: str | None = None
    preferred_channel: ContactChannel = "email"


class _TicketCreatedFacts(Event):
    """What every version of ticket.created says about the new ticket."""

    TYPE = "ticket.created"

    number: str
    subject: str
    description: str
    type: TicketType
    channel: Channel
    requester: Requester
    category: str | None = None
    subcategory: str | None = None
    item: str | None = None
    impact: Level | None = None
    urgency: Level | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class TicketCreatedV1(_TicketCreatedFacts):
    # Superseded by v2; kept so that messages already in flight (outbox, queues, dead letters)
    # still parse. Its plaintext key reached every consumer: intake no longer publishes it.
    model_config = ConfigDict(title="TicketCreated")

    VERSION = 1

    # The requester's secret for the portal link in the acknowledgement (D2), in plaintext.
    access_key: str


class TicketCreated(_TicketCreatedFacts):
    """A ticket was registered. Version 2: the requester's access key travels sealed to notify."""

    VERSION = 2

    # The requester's secret for the portal link, sealed to notify's public key (libsodium
    # sealed box, base64): routing, sla, the broker and any dead letter see only ciphertext.
    access_key_sealed: str
    # Whether the desk had vouched contact from the requester's address before this ticket (an
    # earlier ticket for it from staff, an integration, a trusted network or its signed-in
    # requester; or the address used a sign-in link mailed to it), or this ticket
    # came from one of those. An earlier anonymous ticket alone does not count. False (and
    # absent, from older producers): a stranger may have typed the subject and name, so the
    # acknowledgement keeps them out of its headers.
    requester_known: bool = False
    # A phone call an agent logged (D4): the staff id of the agent who took it, the ticket's
    # owner-of-record for the call. Absent for every other ticket (and from older producers).
    taken_by: str | None = None
    # The agent solved it while the caller was on the line: ticket.commented and
    # ticket.status_changed (to `resolved`) follow at once. False for every other ticket.
    first_contact_resolution: bool = False
    # The tracking number of the ticket this one follows up: the requester wrote again after
    # the earlier one was closed or its reopen window was over.
    follows_up: str | None = None


class TicketUpdated(Event):
    TYPE = "ticket.updated"
    VERSION = 1

    number: str
    changes: dict[str, Any]
    updated_by: str | None = None


class TicketCommented(Event):
    TYPE = "ticket.commented"
    VERSION = 1

    number: str
    comment_id: str
    author_kind: AuthorKind
    author_name: str
    visibility: Literal["public", "internal"]
    body: str


class TicketStatusChanged(Event):
    TYPE = "ticket.status_changed"
    VERSION = 1

    number: str
    from_status: Status
    to_status: Status
    reason: str | None = None
    changed_by: str | None = None


class TicketEscalationRequested(Event):
    TYPE = "ticket.escalation_requested"
    VERSION = 1

    number: str
    to_group: str
    reason: str
    requested_by: str | None = None


class TicketHandBackRequested(Event):
    """Staff of the group helping with an escalated ticket (or its owner) are done: the work
    goes back to the group that asked. Routing answers with ticket.handed_back, or
    ticket.hand_back_refused."""

    TYPE = "ticket.hand_back_requested"
    VERSION = 1

    number: str
    reason: str
    requested_by: str | None = None
    requested_by_id: str | None = None


class TicketAssignmentRequested(Event):
    """Staff asked for the ticket to go to a person (an agent taking it, or handing it to a
    colleague) or to a group. Routing decides, and answers with ticket.assigned or
    ticket.assignment_refused."""

    TYPE = "ticket.assignment_requested"
    VERSION = 1

    number: str
    # The staff id of the person asked for; absent: whoever the group's strategy picks.
    agent: str | None = None
    # The group asked for; absent: the named agent's own group.
    group: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    # The staff id of whoever asked (equal to `agent` when an agent takes the ticket).
    requested_by_id: str | None = None
    # The groups the ticket may be handed into: an agent's own groups (moving it anywhere else
    # is an escalation, and the front-line owner stays, D3). Absent: any group (a manager or an
    # admin asked).
    within_groups: list[str] | None = None


class FeedbackSubmitted(Event):
    TYPE = "feedback.submitted"
    VERSION = 1

    number: str
    rating: int = Field(ge=1, le=5)
    comment: str | None = None
