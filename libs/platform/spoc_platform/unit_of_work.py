"""A transaction that carries its events: state change and outbox rows commit together."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import Executable, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spoc_contracts import Envelope, Event
from spoc_platform.db import insert_for, utc_now
from spoc_platform.messaging_tables import MessagingTables


@dataclass(frozen=True)
class _Statements:
    """The unit of work's own SQL, built once per database: these run for every event handled,
    and building SQLAlchemy constructs anew each time cost more than executing them."""

    next_sequence: Executable
    record_handled: Executable
    add_to_outbox: Executable

    @classmethod
    def for_dialect(cls, dialect_name: str, tables: MessagingTables) -> _Statements:
        sequence, inbox = tables.event_sequence, tables.inbox
        return cls(
            next_sequence=insert_for(dialect_name, sequence)
            .values(ticket_id=bindparam("ticket_id"), last_sequence=1)
            .on_conflict_do_update(
                index_elements=[sequence.c.ticket_id],
                set_={"last_sequence": sequence.c.last_sequence + 1},
            )
            .returning(sequence.c.last_sequence),
            record_handled=insert_for(dialect_name, inbox)
            .values(
                event_id=bindparam("event_id"),
                event_type=bindparam("event_type"),
                handled_at=bindparam("handled_at"),
            )
            .on_conflict_do_nothing(index_elements=[inbox.c.event_id])
            .returning(inbox.c.event_id),
            add_to_outbox=insert(tables.outbox),
        )


class UnitOfWork:
    """What a use case or handler gets: the open connection and a way to publish events."""

    def __init__(
        self,
        conn: AsyncConnection,
        statements: _Statements,
        source: str,
        causation: Envelope | None,
    ) -> None:
        self.conn = conn
        self._sql = statements
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
        result = await self.conn.execute(self._sql.next_sequence, {"ticket_id": ticket_id})
        return int(result.scalar_one())

    async def record_handled(self, envelope: Envelope) -> bool:
        """Inbox: True the first time this event id is seen, False for a duplicate."""
        result = await self.conn.execute(
            self._sql.record_handled,
            {"event_id": envelope.id, "event_type": envelope.type, "handled_at": utc_now()},
        )
        return result.first() is not None

    async def _flush_outbox(self) -> None:
        if not self.pending:
            return
        now = utc_now()
        await self.conn.execute(
            self._sql.add_to_outbox,
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
        self._statements = _Statements.for_dialect(engine.dialect.name, tables)

    def on_commit(self, callback: Callable[[], None]) -> None:
        self._on_commit = callback

    @asynccontextmanager
    async def __call__(self, causation: Envelope | None = None) -> AsyncIterator[UnitOfWork]:
        async with self.engine.begin() as conn:
            uow = UnitOfWork(conn, self._statements, self.source, causation)
            yield uow
            await uow._flush_outbox()
        # Committed: wake the relay so the events leave now, not at its next poll.
        if uow.pending and self._on_commit is not None:
            self._on_commit()
        for callback in uow.after_commit:
            callback()
