"""A transaction that carries its events: state change and outbox rows commit together."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spoc_contracts import Envelope, Event
from spoc_platform.db import insert_for, utc_now
from spoc_platform.messaging_tables import MessagingTables


class UnitOfWork:
    """What a use case or handler gets: the open connection and a way to publish events."""

    def __init__(
        self,
        conn: AsyncConnection,
        tables: MessagingTables,
        source: str,
        causation: Envelope | None,
    ) -> None:
        self.conn = conn
        self._tables = tables
        self._source = source
        self._causation = causation
        self.pending: list[Envelope] = []
        self.after_commit: list[Callable[[], None]] = []

    async def publish(
        self,
        event: Event,
        *,
        ticket_id: uuid.UUID | None,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
    ) -> Envelope:
        """Queue `event` for the outbox; it is written in this transaction, sent after commit."""
        sequence = await self._next_sequence(ticket_id) if ticket_id else 0
        cause = self._causation
        envelope = Envelope.wrap(
            event,
            source=self._source,
            ticket_id=ticket_id,
            sequence=sequence,
            correlation_id=correlation_id or (cause.correlation_id if cause else None),
            causation_id=causation_id or (cause.id if cause else None),
        )
        self.pending.append(envelope)
        return envelope

    async def _next_sequence(self, ticket_id: uuid.UUID) -> int:
        table = self._tables.event_sequence
        stmt = (
            insert_for(self.conn.dialect.name, table)
            .values(ticket_id=ticket_id, last_sequence=1)
            .on_conflict_do_update(
                index_elements=[table.c.ticket_id],
                set_={"last_sequence": table.c.last_sequence + 1},
            )
            .returning(table.c.last_sequence)
        )
        return int((await self.conn.execute(stmt)).scalar_one())

    async def record_handled(self, envelope: Envelope) -> bool:
        """Inbox: True the first time this event id is seen, False for a duplicate."""
        table = self._tables.inbox
        stmt = (
            insert_for(self.conn.dialect.name, table)
            .values(event_id=envelope.id, event_type=envelope.type, handled_at=utc_now())
            .on_conflict_do_nothing(index_elements=[table.c.event_id])
            .returning(table.c.event_id)
        )
        return (await self.conn.execute(stmt)).first() is not None

    async def was_handled(self, event_id: uuid.UUID) -> bool:
        table = self._tables.inbox
        found = await self.conn.execute(
            select(table.c.event_id).where(table.c.event_id == event_id)
        )
        return found.first() is not None

    async def _flush_outbox(self) -> None:
        if not self.pending:
            return
        now = utc_now()
        await self.conn.execute(
            insert(self._tables.outbox),
            [
                {
                    "event_id": env.id,
                    "event_type": env.type,
                    "ticket_id": env.ticket_id,
                    "body": env.model_dump_json(),
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for env in self.pending
            ],
        )


class UnitOfWorkFactory:
    def __init__(
        self,
        engine: AsyncEngine,
        tables: MessagingTables,
        source: str,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.tables = tables
        self.source = source
        self._on_commit = on_commit

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._on_commit = callback

    @asynccontextmanager
    async def __call__(self, causation: Envelope | None = None) -> AsyncIterator[UnitOfWork]:
        async with self.engine.begin() as conn:
            uow = UnitOfWork(conn, self.tables, self.source, causation)
            yield uow
            await uow._flush_outbox()
        # Committed: wake the relay so the events leave now, not at its next poll.
        if uow.pending and self._on_commit is not None:
            self._on_commit()
        for callback in uow.after_commit:
            callback()
