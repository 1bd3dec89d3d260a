"""Claiming due work rows with a lease: safe with N replicas, and nothing is left behind."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_platform.db import UtcDateTime, utc_now
from spoc_platform.retry import Backoff


def database_now(dialect_name: str) -> ColumnElement[datetime]:
    """The database's "now", for every lease and due time: replicas whose clocks
    disagree still agree on who holds a row.

    PostgreSQL reads its own clock inside the statement (no extra round trip); its
    statement_timestamp() is one instant for every row a statement touches, so an index on
    the due time still serves the query. SQLite has one process per file, whose clock is the
    database's."""
    if dialect_name == "postgresql":
        return func.statement_timestamp(type_=UtcDateTime())
    return literal(utc_now(), UtcDateTime())


def database_time_in(dialect_name: str, seconds: float) -> ColumnElement[datetime]:
    """The database's "now" plus `seconds`: a lease's end or a retry's due time."""
    if dialect_name == "postgresql":
        return func.statement_timestamp(type_=UtcDateTime()) + func.make_interval(
            0, 0, 0, 0, 0, 0, literal(float(seconds))
        )
    return literal(utc_now() + timedelta(seconds=seconds), UtcDateTime())


async def claim_due(
    conn: AsyncConnection,
    table: Table,
    *,
    waiting: ColumnElement[bool],
    limit: int,
    lease_seconds: float,
    returning: Sequence[Any],
) -> Sequence[Row[Any]]:
    """Takes up to `limit` rows that are `waiting` and due (`next_attempt_at` <= now, or never
    tried yet), counts an attempt on each and pushes their `next_attempt_at` a lease ahead. A
    worker that dies holding them only delays them by the lease; one that finishes sets the
    row's final state itself.

    Rows are chosen by state, never by "id greater than the last one seen", so a row committed
    late by a slow transaction is still found. "Now" is the database's (see database_now)."""
    dialect = conn.dialect.name
    due = (
        select(table.c.id)
        .where(
            waiting,
            # A row never tried is due at once, whatever the clock of the replica that wrote
            # it: a writer whose clock runs ahead must not hold back its own events.
            or_(table.c.attempts == 0, table.c.next_attempt_at <= database_now(dialect)),
        )
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
        # Replicas skip each other's rows instead of queueing behind them (no-op on SQLite).
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(table)
        .where(table.c.id.in_(due.scalar_subquery()))
        .values(
            attempts=table.c.attempts + 1,
            next_attempt_at=database_time_in(dialect, lease_seconds),
        )
        .returning(*returning)
    )
    return (await conn.execute(claim)).all()


def backoff_seconds(attempts: int, ceiling: float) -> float:
    """0.5 s, 1 s, 2 s, … up to `ceiling`, by how many attempts were already made (the one
    back-off of spoc_platform.retry, for claimed rows: the outbox's and notify's)."""
    return Backoff(first=0.5, ceiling=ceiling).delay(attempts)
