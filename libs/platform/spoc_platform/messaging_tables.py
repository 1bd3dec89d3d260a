"""The outbox, inbox and per-ticket sequence tables every service keeps in its own database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, Uuid

from spoc_platform.db import BigId, UtcDateTime


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    event_sequence: Table
    delivery_failure: Table


def define_messaging_tables(metadata: MetaData) -> MessagingTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("event_type", String(100), nullable=False),
        Column("ticket_id", Uuid, nullable=True),
        Column("body", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("next_attempt_at", UtcDateTime, nullable=False),
        Column("published_at", UtcDateTime, nullable=True),
        Column("last_error", Text, nullable=True),
    )
    # The relay only ever looks at unpublished rows; keep that index small.
    Index(
        "ix_outbox_pending",
        outbox.c.next_attempt_at,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    Index("ix_outbox_published_at", outbox.c.published_at)
    inbox = Table(
        "inbox",
        metadata,
        Column("event_id", Uuid, primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("handled_at", UtcDateTime, nullable=False, index=True),
    )
    event_sequence = Table(
        "event_sequence",
        metadata,
        Column("ticket_id", Uuid, primary_key=True),
        Column("last_sequence", Integer, nullable=False),
    )
    # Handler failures per event, counted by the consumer itself: the broker's own count also
    # moves on connection losses (and, from RabbitMQ 4.3, not on nacks), so it cannot say how
    # often the handler really failed. Rows go when the event is handled or dead-lettered.
    delivery_failure = Table(
        "delivery_failure",
        metadata,
        Column("event_id", Uuid, primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("failures", Integer, nullable=False),
        Column("last_error", Text, nullable=True),
        Column("first_failed_at", UtcDateTime, nullable=False),
        Column("last_failed_at", UtcDateTime, nullable=False, index=True),
    )
    return MessagingTables(
        outbox=outbox,
        inbox=inbox,
        event_sequence=event_sequence,
        delivery_failure=delivery_failure,
    )
