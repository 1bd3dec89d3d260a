"""Routing's desk section set at run time: each change a version in `desk_version`, the newest
in force on every replica (each refreshes its DeskHolder from the table every little while);
none stored, the desk file's section. Decisions record the version they used (triage rows,
ticket.routed): the holder's `current` as the event's handling began."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from spoc_platform.db import utc_now
from spoc_routing.desk import RoutingDesk
from spoc_routing.models import DeskVersion

log = logging.getLogger(__name__)

desk_version: Table = cast(Table, DeskVersion.__table__)

# How many versions the list shows at most (newest first).
LISTED = 100


class DeskSummary(BaseModel):
    groups: int
    agents: int
    categories: int
    # Every node of the category tree: categories, sub-categories and items.
    category_nodes: int
    rules: int
    shifts: int
    vip_requesters: int


class DeskVersionRead(BaseModel):
    seq: int
    version: str
    changed_by: str
    changed_at: datetime
    # In force now (the newest).
    current: bool


class DeskVersionList(BaseModel):
    # The version in force on this replica, and the desk file's (in force while none is stored).
    current: str
    file_version: str
    versions: list[DeskVersionRead]


def summary(desk: RoutingDesk) -> DeskSummary:
    return DeskSummary(
        groups=len(desk.groups),
        agents=sum(len(g.agents) for g in desk.groups),
        categories=len(desk.categories),
        category_nodes=len(desk.category_nodes()),
        rules=len(desk.rules),
        shifts=len(desk.shifts),
        vip_requesters=len(desk.vip_requesters),
    )


async def stored_versions(conn: AsyncConnection, limit: int = LISTED) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(
            desk_version.c.seq,
            desk_version.c.version,
            desk_version.c.changed_by,
            desk_version.c.changed_at,
        )
        .order_by(desk_version.c.seq.desc())
        .limit(limit)
    )
    return [dict(row._mapping) for row in rows]


async def store(conn: AsyncConnection, desk: RoutingDesk, changed_by: str) -> int:
    """The section as a new version, newest so in force; its seq."""
    inserted = await conn.execute(
        desk_version.insert().values(
            version=desk.version,
            # As validated: re-validated on every replica, it gives the same digest.
            section=desk.model_dump_json(),
            changed_by=changed_by[:200],
            changed_at=utc_now(),
        )
    )
    seq = inserted.inserted_primary_key
    assert seq is not None  # an insert's result always has it
    return int(seq[0])


DeskChanged = Callable[[RoutingDesk], Awaitable[None]]


class DeskHolder:
    """The routing desk in force on this replica: the newest stored version, else the file's.
    Handlers read `current` once per event, so one event's decisions use one version."""

    def __init__(self, from_file: RoutingDesk, on_change: Sequence[DeskChanged] = ()) -> None:
        self.from_file = from_file
        self.current = from_file
        self._on_change = list(on_change)
        # The stored version last seen (None: none yet), so an unchanged table costs one query.
        self._seen: int | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, engine: AsyncEngine, *, force: bool = False) -> bool:
        """The newest stored version (or the file's) made current; whether it changed. On a
        change, and always when `force`d (at start), the on_change hooks run (agents synced,
        metrics series started)."""
        async with self._lock:
            async with engine.connect() as conn:
                newest = (
                    await conn.execute(select(func.max(desk_version.c.seq)))
                ).scalar_one_or_none()
                if newest == self._seen and not force:
                    return False
                desk = self.from_file
                if newest is not None:
                    section = (
                        await conn.execute(
                            select(desk_version.c.section).where(desk_version.c.seq == newest)
                        )
                    ).scalar_one()
                    desk = RoutingDesk.model_validate_json(section)
            self._seen = newest
            changed = desk.version != self.current.version
            if changed:
                log.warning(
                    "routing desk version %s in force (was %s)", desk.version, self.current.version
                )
            self.current = desk
            if changed or force:
                for hook in self._on_change:
                    await hook(desk)
            return changed


class DeskRefresher:
    """Every `interval` seconds, the holder's desk from the table: a change made through another
    replica is in force here at most that late."""

    def __init__(self, holder: DeskHolder, engine: AsyncEngine, interval: float) -> None:
        self._holder = holder
        self._engine = engine
        self._interval = interval
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self._interval)
            if self._stopped.is_set():
                return
            try:
                await self._holder.refresh(self._engine)
            except Exception:  # the database may be down: the next pass tries again
                log.exception("could not refresh the routing desk")

    async def stop(self) -> None:
        self._stopped.set()
