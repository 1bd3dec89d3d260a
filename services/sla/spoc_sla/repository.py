"""The only place sla builds queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from spoc_sla.models import Clock

# Declarative models type __table__ as FromClause; these are plain Tables.
clock: Table = cast(Table, Clock.__table__)


@dataclass(frozen=True)
class NewClock:
    metric: str
    target_seconds: int
    due_at: datetime


async def count_overdue(conn: AsyncConnection, now: datetime) -> dict[str, int]:
    """Running clocks past their due time, by metric (first response, resolution)."""
    query = (
        select(clock.c.metric, func.count())
        .where(clock.c.state == "running", clock.c.due_at < now)
        .group_by(clock.c.metric)
    )
    return {metric: int(n) for metric, n in (await conn.execute(query)).all()}


async def has_clocks(conn: AsyncConnection, ticket_id: uuid.UUID) -> bool:
    row = await conn.execute(select(clock.c.id).where(clock.c.ticket_id == ticket_id).limit(1))
    return row.first() is not None


async def start_clocks(
    conn: AsyncConnection,
    *,
    ticket_id: uuid.UUID,
    number: str,
    priority: str,
    policy: str,
    calendar: str,
    started_at: datetime,
    clocks: Sequence[NewClock],
) -> None:
    await conn.execute(
        insert(clock),
        [
            {
                "ticket_id": ticket_id,
                "number": number,
                "metric": c.metric,
                "priority": priority,
                "policy": policy,
                "calendar": calendar,
                "target_seconds": c.target_seconds,
                "started_at": started_at,
                "due_at": c.due_at,
                "state": "running",
                "paused_seconds": 0,
            }
            for c in clocks
        ],
    )
