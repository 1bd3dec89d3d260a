"""Notify's tables: what it knows of each ticket's requester, and every delivery it owes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, Uuid, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spoc_platform.db import BigId, UtcDateTime, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables


class Base(DeclarativeBase):
    metadata = new_metadata()


class TicketContact(Base):
    """Pieces from several events, gathered until there is enough to write (any order)."""

    __tablename__ = "ticket_contact"

    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    number: Mapped[str] = mapped_column(String(32))
    # From ticket.created
    subject: Mapped[str | None] = mapped_column(String(300))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str | None] = mapped_column(String(35))
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    # The requester's key for the portal link, sealed to notify's public key: opened only to
    # compose the acknowledgement, cleared once it is written.
    access_key_sealed: Mapped[str | None] = mapped_column(Text)
    # Plaintext, from before keys were sealed (migration 0003): read if still there, never written.
    access_key: Mapped[str | None] = mapped_column(String(128))
    created_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Whether intake had heard from the address before (ticket.created v2 `requester_known`):
    # only then may the acknowledgement's headers carry the opener's subject and name.
    requester_known: Mapped[bool] = mapped_column(default=False, server_default=false())
    # From sla.clock_started
    priority: Mapped[str | None] = mapped_column(String(16))
    first_response_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    clocks_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # When an event last added to the record: the contact retention counts from here.
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class Delivery(Base):
    """A message owed to someone: written in the handler's transaction, sent by the dispatcher."""

    __tablename__ = "delivery"
    __table_args__ = (
        # One acknowledgement per ticket, however often the events come.
        UniqueConstraint("ticket_id", "kind"),
        Index("ix_delivery_pending", "status", "next_attempt_at"),
        # The delivery log's retention prunes by age.
        Index("ix_delivery_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    number: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    # Boxed under notify's key (sealing.py) until sent; emptied once sent or failed for good.
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    causation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


MESSAGING = define_messaging_tables(Base.metadata)
