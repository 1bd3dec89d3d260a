"""SLA's tables: one clock per ticket and metric."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from spoc_platform.db import BigId, UtcDateTime, new_metadata
from spoc_platform.messaging_tables import define_messaging_tables
from spoc_platform.token_projection import define_token_projection


class Base(DeclarativeBase):
    metadata = new_metadata()


class Clock(Base):
    __tablename__ = "clock"
    __table_args__ = (
        UniqueConstraint("ticket_id", "metric"),
        # The scheduler's question: which running clocks fall due next.
        Index("ix_clock_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    number: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(64))
    calendar: Mapped[str] = mapped_column(String(64))
    target_seconds: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)


MESSAGING = define_messaging_tables(Base.metadata)
# What intake's credential.* events say of bearer tokens: for the admin API (token_projection).
TOKENS = define_token_projection(Base.metadata)
