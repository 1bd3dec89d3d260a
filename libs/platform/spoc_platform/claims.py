"""Claiming due work rows with a lease: safe with N replicas, and nothing is left behind."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_platform.db import utc_now


async def claim_due(
    conn: AsyncConnection,
    table: Table,
    *,
    waiting: ColumnElement[bool],
    limit: int,
    lease_seconds: float,
    returning: Sequence[Any],
) -> Sequence[Row[Any]]:
    """Takes up to `limit` rows that are `waiting` and due (`next_attempt_at` <= now), counts an
    attempt on each and pushes their `next_attempt_at` a lease ahead. A worker that dies holding
    them only delays them by the lease; one that finishes sets the row's final state itself.

    Rows are chosen by state, never by "id greater than the last one seen", so a row committed
    late by a slow transaction is still found."""
    now = utc_now()
    due = (
        select(table.c.id)
        .where(waiting, table.c.next_attempt_at <= now)
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
            next_attempt_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(*returning)
    )
    return (await conn.execute(claim)).all()


def backoff_seconds(attempts: int, ceiling: float) -> float:
    """0.5 s, 1 s, 2 s, … up to `ceiling`, by how many attempts were already made."""
    return float(min(ceiling, 0.5 * 2 ** max(0, attempts - 1)))
