"""Intake's tables: tickets, their timeline, and the answers kept for Idempotency-Key replays."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, Uuid, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spoc_platform.db import BigId, UtcDateTime, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = new_metadata()


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (
        # A requester's tickets, and whether the desk ever had vouched contact from the
        # address (requester_known: one index seek); both look the address up by its key.
        Index("ix_ticket_requester_email_key", "requester_email_key", "requester_vouched"),
        Index("ix_ticket_sla_state_sla_due_at", "sla_state", "sla_due_at"),
        # Reports count a period's tickets by when they came in (reports.py).
        Index("ix_ticket_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The sequence behind the tracking number; the prefix is configuration, not data.
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(100))
    subcategory: Mapped[str | None] = mapped_column(String(100))
    item: Mapped[str | None] = mapped_column(String(100))
    impact: Mapped[str | None] = mapped_column(String(8))
    urgency: Mapped[str | None] = mapped_column(String(8))
    fields: Mapped[dict[str, Any]] = mapped_column(Json)
    requester_name: Mapped[str] = mapped_column(String(200))
    # As given, for display; matched only by its key (schemas.email_key, migration 0009).
    requester_email: Mapped[str] = mapped_column(String(320))
    requester_email_key: Mapped[str] = mapped_column(String(320))
    requester_phone: Mapped[str | None] = mapped_column(String(32))
    requester_locale: Mapped[str | None] = mapped_column(String(35))
    preferred_channel: Mapped[str] = mapped_column(String(16))
    access_key_hash: Mapped[str] = mapped_column(String(64))
    # Vouched contact from the requester's address (0009): the ticket came from staff, an
    # integration, a trusted network or the address's signed-in requester, or the address
    # later proved it reads its mail (it used a sign-in link, which only its mail had). A
    # later ticket for the address is then `requester_known`; an anonymous one alone never.
    requester_vouched: Mapped[bool] = mapped_column(default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16))
    # Projections of other services' facts, for the requester's view.
    priority: Mapped[str | None] = mapped_column(String(16))
    group_name: Mapped[str | None] = mapped_column(String(200))
    group_tier: Mapped[int | None] = mapped_column(Integer)
    owner_name: Mapped[str | None] = mapped_column(String(200))
    # While another group helps (an escalation, D3): who there works on it; staff only. The
    # owner above stays the requester's one contact.
    assignee_id: Mapped[str | None] = mapped_column(String(64))
    assignee_name: Mapped[str | None] = mapped_column(String(200))
    first_response_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Last applied sequence per source, so a stale update never overwrites a newer one.
    routing_sequence: Mapped[int] = mapped_column(Integer, default=0)
    sla_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The conversation and the workflow (0006): routing's ids for who may see the ticket, and
    # the moments the first response and the resolution (which opens the reopen window) came.
    group_id: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[str | None] = mapped_column(String(100))
    first_responded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # SLA state per metric (0007, rules in sla_state.py): running, paused, at_risk, breached,
    # met; each metric's last applied sla sequence, when it was breached or met and the
    # sequence of that fact (a going fact newer than it is sla restarting the clock).
    first_response_state: Mapped[str | None] = mapped_column(String(16))
    first_response_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_response_met_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_response_breached_sequence: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    first_response_met_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resolution_state: Mapped[str | None] = mapped_column(String(16))
    resolution_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_met_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_breached_sequence: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    resolution_met_sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The most urgent of the metrics' states and the nearest due time of a clock not met: the
    # agents' "breached / at risk, soonest first" filter reads one index range.
    sla_state: Mapped[str | None] = mapped_column(String(16))
    sla_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Phone calls and follow-ups (0008): the staff id of the agent who took a logged call,
    # whether it was solved during the call (D4), and the number (the sequence, as `number`)
    # of the earlier ticket this one follows up.
    taken_by: Mapped[str | None] = mapped_column(String(64))
    first_contact_resolution: Mapped[bool] = mapped_column(default=False, server_default=false())
    follows_up: Mapped[int | None] = mapped_column(BigInteger)
    # Routing's triage (0010): it chose the category from the ticket's words (the ticket came
    # without one; an agent re-categorising clears the flag), and the tags its rules gave.
    auto_classified: Mapped[bool] = mapped_column(default=False, server_default=false())
    tags: Mapped[list[str] | None] = mapped_column(Json)
    # What first-contact resolution (D4, reports.py) asks of a ticket's history (0012): the
    # first owner routing named, whether another owner had it since, whether it was ever
    # escalated or reopened, and who resolved it last. Facts that stay once true: events of
    # other services may come in any order, and each only ever adds to what is known.
    first_owner_id: Mapped[str | None] = mapped_column(String(100))
    handed_over: Mapped[bool] = mapped_column(default=False, server_default=false())
    escalated: Mapped[bool] = mapped_column(default=False, server_default=false())
    reopened: Mapped[bool] = mapped_column(default=False, server_default=false())
    resolved_by: Mapped[str | None] = mapped_column(String(64))


class TimelineEntry(Base):
    __tablename__ = "timeline_entry"
    __table_args__ = (Index("ix_timeline_entry_ticket_id_at", "ticket_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The key also answers "does intake know this ticket?" for every projected event.
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ticket.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(50))
    summary: Mapped[str] = mapped_column(Text)
    # Visible to the requester; internal entries are for agents only.
    public: Mapped[bool] = mapped_column(default=True)
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)


class IdempotencyAnswer(Base):
    """The first answer to a request with an Idempotency-Key, replayed as it was (see answers.py:
    sealed under the client's key, which is never stored)."""

    __tablename__ = "idempotency_answer"

    key_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# Staff accounts, their passwords and sign-in sessions (staff_sign_in.py, migration 0004).


class StaffAccount(Base):
    """A person who works tickets (agent, manager, admin), under the id routing knows them by."""

    __tablename__ = "staff_account"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    # The address lower-cased: one account per address however it is typed.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    groups: Mapped[list[str]] = mapped_column(Json)
    active: Mapped[bool] = mapped_column(default=True)
    # available, away or off (staff.py): whether the person is on shift for new work (0011).
    availability: Mapped[str] = mapped_column(
        String(16), default="available", server_default="available"
    )
    # argon2id (PHC string); None until a password is set: such an account cannot sign in.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Consecutive failed sign-ins, and the lock they earned (see staff_sign_in.py).
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StaffSession(Base):
    """A signed-in browser: only a digest of its cookie's random value is kept."""

    __tablename__ = "staff_session"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("staff_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The absolute end, whatever the activity; the idle end follows from last_seen_at.
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# Bearer tokens, requesters' sign-in links and sessions (tokens.py, requester_links.py, 0005).
# Every secret here is 256 random bits kept only as its SHA-256: nothing to brute-force, and
# a copy of the database signs nobody in.


class ApiToken(Base):
    """A bearer token for a script or an integration (`spoc token create`)."""

    __tablename__ = "api_token"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    # The staff account a staff-role token acts as; None for an integration (it is itself).
    subject_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Written at most once a minute per token: a trace of use, not a write per request.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RequesterLink(Base):
    """A one-time sign-in link mailed to a requester's address."""

    __tablename__ = "requester_link"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RequesterSession(Base):
    """A requester signed in by a link: sees all the tickets of their address."""

    __tablename__ = "requester_session"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Ends after idle_seconds without use (last_seen_at is refreshed at most once a minute),
    # and at expires_at whatever happens; both fixed by the settings when it was opened.
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    idle_seconds: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# The conversation and the workflow: comments, owners, status history, feedback (0006).


class Comment(Base):
    """One message of the conversation; `internal` ones are for staff only, on every path."""

    __tablename__ = "comment"
    __table_args__ = (Index("ix_comment_ticket_id_at", "ticket_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ticket.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    author_kind: Mapped[str] = mapped_column(String(16))
    # The staff account's id, or the requester's address.
    author_id: Mapped[str | None] = mapped_column(String(320))
    author_name: Mapped[str] = mapped_column(String(200))
    visibility: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)


class Feedback(Base):
    """The requester's rating of a resolution: one per ticket, so the key is the ticket."""

    __tablename__ = "feedback"

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class Notification(Base):
    """A notification notify reports for a ticket, sent or given up on (0007): staff only."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_ticket_id_at", "ticket_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ticket.id"))
    # One row per event: a redelivered notification.sent adds nothing.
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    notification_id: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(50))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    # "requester" when it went to the ticket's requester, else "other".
    recipient_kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


MESSAGING = define_messaging_tables(Base.metadata)
