"""Intake's tables: tickets, their timeline, and the answers kept for Idempotency-Key replays."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spoc_platform.db import BigId, UtcDateTime, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = new_metadata()


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (Index("ix_ticket_requester_email", "requester_email"),)

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
    requester_email: Mapped[str] = mapped_column(String(320))
    requester_phone: Mapped[str | None] = mapped_column(String(32))
    requester_locale: Mapped[str | None] = mapped_column(String(35))
    preferred_channel: Mapped[str] = mapped_column(String(16))
    access_key_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    # Projections of other services' facts, for the requester's view.
    priority: Mapped[str | None] = mapped_column(String(16))
    group_name: Mapped[str | None] = mapped_column(String(200))
    group_tier: Mapped[int | None] = mapped_column(Integer)
    owner_name: Mapped[str | None] = mapped_column(String(200))
    first_response_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Last applied sequence per source, so a stale update never overwrites a newer one.
    routing_sequence: Mapped[int] = mapped_column(Integer, default=0)
    sla_sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


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


# Bearer tokens, requesters' sign-in links and sessions (tokens.py, requester_links.py, 0005).


# The conversation and the workflow: comments, owners, status history, feedback (0006).


MESSAGING = define_messaging_tables(Base.metadata)
