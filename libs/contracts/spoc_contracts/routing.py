"""Events published by routing: triage results, ownership and escalation."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spoc_contracts.envelope import Event


class GroupRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str
    tier: int = 1


class AgentRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str


class TicketRouted(Event):
    TYPE = "ticket.routed"
    VERSION = 1

    number: str
    priority: str
    impact: str
    urgency: str
    category: str | None = None
    group: GroupRef
    owner: AgentRef | None
    reason: str
    # When the requester submitted it: SLA clocks run from here, not from routing's turn.
    ticket_created_at: datetime | None = None
    # Where the ticket sits in the desk's category tree (D23) as routing decided it.
    subcategory: str | None = None
    item: str | None = None
    # Routing chose the category from the ticket's words: it came without one.
    auto_classified: bool = False
    tags: list[str] = Field(default_factory=list)
    # The desk's rules that matched, in order (`reason` says what each did).
    rules: list[str] = Field(default_factory=list)
    # Which routing configuration decided: a digest of the desk file's routing section.
    desk_version: str | None = None


class TicketAssigned(Event):
    TYPE = "ticket.assigned"
    VERSION = 1

    number: str
    owner: AgentRef
    group: GroupRef
    previous_owner: AgentRef | None = None
    # Why, for staff: the rule or the request that led here, with the staff member's own words
    # (internal; intake keeps it off the requester's view).
    reason: str | None = None


class TicketEscalated(Event):
    TYPE = "ticket.escalated"
    VERSION = 1

    number: str
    kind: Literal["functional", "hierarchical"]
    to_group: GroupRef
    from_group: GroupRef | None = None
    # The front-line owner keeps the ticket through an escalation (D3).
    owner: AgentRef | None = None
    reason: str
    # Hierarchical: the manager it went up to (the group's, notified), and the steps the desk's
    # escalation policy took: notify_manager, reassign, raise_priority (the reason says which
    # could not be taken and why; staff only).
    manager: AgentRef | None = None
    actions: list[str] = Field(default_factory=list)


class TicketAssistAssigned(Event):
    """Someone in the group helping with an escalated ticket works on it now (an assist): the
    front-line owner stays the requester's one contact (D3) and gets the work back when the
    group hands it back."""

    TYPE = "ticket.assist_assigned"
    VERSION = 1

    number: str
    group: GroupRef
    assignee: AgentRef
    owner: AgentRef | None = None
    # Why this person (the group's strategy), for staff.
    reason: str


class TicketHandedBack(Event):
    """A group that helped with a ticket handed it back to the one that asked (a tier 3 to the
    tier 2 that escalated to it, a tier 2 to the owner's group): the requester sees the team
    that has it now (D8), and the owner is the same."""

    TYPE = "ticket.handed_back"
    VERSION = 1

    number: str
    from_group: GroupRef
    to_group: GroupRef
    owner: AgentRef | None = None
    # Who in to_group works on it again, when that is not the owner's own group.
    assignee: AgentRef | None = None
    reason: str
    requested_by: str | None = None


class TicketHandBackRefused(Event):
    """Routing could not do what a ticket.hand_back_requested asked: the ticket is not
    escalated (it is with the group that asked for help, or never left the owner's)."""

    TYPE = "ticket.hand_back_refused"
    VERSION = 1

    number: str
    reason: str
    requested_by: str | None = None


class TicketAssignmentRefused(Event):
    """Routing could not do what a ticket.assignment_requested asked (an unknown or inactive
    agent, an agent outside the group, nobody in the group able to take it): the ticket stays
    where it was."""

    TYPE = "ticket.assignment_refused"
    VERSION = 1

    number: str
    agent: str | None = None
    group: str | None = None
    reason: str
    requested_by: str | None = None
    requested_by_id: str | None = None


class TicketEscalationRefused(Event):
    """Routing could not do what a ticket.escalation_requested asked (a group this desk does
    not have, or the group that has the ticket already): the ticket stays where it was."""

    TYPE = "ticket.escalation_refused"
    VERSION = 1

    number: str
    to_group: str
    reason: str
    requested_by: str | None = None
