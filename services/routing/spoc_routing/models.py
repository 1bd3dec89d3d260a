"""Routing's tables: the triage of each ticket and the agents it hands tickets to."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, Uuid, false, text, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spoc_platform.db import UtcDateTime, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables
from spoc_platform.token_projection import define_token_projection

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = new_metadata()


class Triage(Base):
    __tablename__ = "triage"
    __table_args__ = (
        # Each group's queue, oldest first (repository.oldest_waiting): read on every
        # resolution and by every sweep, it must not scan every ticket ever triaged (only the
        # active ones, which whatever waits is among).
        Index(
            "ix_triage_waiting",
            "group_id",
            "routed_at",
            postgresql_where=text("active IS true"),
            sqlite_where=text("active IS 1"),
        ),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    number: Mapped[str] = mapped_column(String(32))
    impact: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(100))
    group_id: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str | None] = mapped_column(String(64))
    routed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    subcategory: Mapped[str | None] = mapped_column(String(100))
    item: Mapped[str | None] = mapped_column(String(100))
    auto_classified: Mapped[bool] = mapped_column(default=False, server_default=false())
    tags: Mapped[list[str] | None] = mapped_column(Json)
    # The rules that matched and the desk configuration that decided (triage.py).
    rules: Mapped[list[str] | None] = mapped_column(Json)
    desk_version: Mapped[str | None] = mapped_column(String(64))
    # What the ticket itself says, as routing last heard it (not the defaults it decided), and
    # the desk's keywords its text held: a re-categorisation re-triages from these.
    facts: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Not resolved or closed (ticket.status_changed): counted in its owner's load, and in its
    # group's queue while it has no owner.
    # NULL: triaged before routing kept loads (migration 0007): neither counted nor queued until
    # its next status change says which it is.
    active: Mapped[bool | None] = mapped_column(default=True)
    # The intake sequence of the ticket.status_changed that set `active` (0: none yet): an
    # older one handled after it changes nothing.
    status_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The skills working it takes (triage.py): who gets it when it leaves the group's queue.
    skills: Mapped[list[str] | None] = mapped_column(Json)
    # While another group helps (a functional escalation, D3): who there works on it (NULL:
    # nobody yet, it waits in that group's queue), the groups it came from with who worked
    # it in each, most recent last ({"group": id, "assignee": id or null}: a hand-back returns
    # to the last), and how many (0: with the owner's side, not escalated).
    assignee_id: Mapped[str | None] = mapped_column(String(64))
    escalation_path: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    escalation_depth: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The most urgent priority an SLA escalation raised it to (sla_escalation.py): a later
    # re-triage never sets it below (a re-classification does not undo a breach's raise).
    priority_floor: Mapped[str | None] = mapped_column(String(16))


class Agent(Base):
    __tablename__ = "agent"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    group_id: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer)
    # Placed in a group by the desk file (or by intake's staff.updated, see handlers.py).
    active: Mapped[bool] = mapped_column(default=True)
    assigned_count: Mapped[int] = mapped_column(Integer, default=0)
    # The agent's load: active tickets they own, kept from ticket events (routed, assigned,
    # resolved, closed, reopened), and the most they take at once (NULL: the group's say).
    open_tickets: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    capacity: Mapped[int | None] = mapped_column(Integer)
    # The person's account in intake, as its latest staff.updated said: an inactive account
    # gets no tickets whatever the desk file says. NULL updated_at: intake has said nothing.
    staff_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    staff_groups: Mapped[list[str] | None] = mapped_column(Json)
    staff_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # What the person says of themselves through intake: available (on duty by their shift),
    # away, or off. Only an available person on duty gets tickets from routing.
    availability: Mapped[str] = mapped_column(
        String(16), default="available", server_default="available"
    )
    # When routing last gave them a ticket: round-robin's turn (NULL: never, first in line).
    last_assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class EscalationStage(Base):
    """How far a ticket's target has escalated (sla_escalation.py): a warning, then a breach.
    Each stage acts once per ticket and target, however often sla reports it."""

    __tablename__ = "escalation_stage"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The SLA target: first_response, resolution.
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    # 1: warned; 2: breached.
    stage: Mapped[int] = mapped_column(Integer)
    escalated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DeskVersion(Base):
    """A routing section of the desk configuration set at run time through the admin API
    (desk_versions.py): the newest is in force on every replica; none, the desk file's."""

    __tablename__ = "desk_version"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The section's digest (RoutingDesk.version): what each decision records.
    version: Mapped[str] = mapped_column(String(64))
    # The section as JSON text, not JSONB: its digest depends on its keys' order, which JSONB
    # does not keep.
    section: Mapped[str] = mapped_column(Text)
    # Who set it: the configured admin token, or the staff member whose admin token it was.
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


MESSAGING = define_messaging_tables(Base.metadata)
# What intake's credential.* events say of bearer tokens: for the admin API (token_projection).
TOKENS = define_token_projection(Base.metadata)
