"""Moves committed outbox rows to the broker, retrying each until the broker confirms it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_platform import metrics
from spoc_platform.bus import MessageBus, OutgoingMessage, PublishError
from spoc_platform.claims import backoff_seconds, claim_due, database_now, database_time_in
from spoc_platform.db import utc_now
from spoc_platform.messaging_tables import MessagingTables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySettings:
    window: int = 64
    poll_interval: float = 1.0
    # A claimed row is someone's for this long; if its relay dies, another takes it after.
    lease: float = 15.0
    max_backoff: float = 60.0
    retention: float = 3600.0


class OutboxRelay:
    """Claims due rows (never "id > last seen": a late commit is never skipped), publishes up to
    `window` of them at once with confirms, and marks only the confirmed ones published.

    `subscribed` (the desk's topology: every event type some service's queue is bound to), when
    given, lets the relay tell a fact nobody subscribes to from a broken binding. The first is
    marked published to nobody at once, as a topic exchange drops it: facts are published the
    day they exist, and their consumers come in later releases (publishing them would only
    come back unroutable, and retrying those every minute would crowd out live events). A type
    that has subscribers but comes back unroutable is a missing queue: retried until it is
    bound, never dropped."""

    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        tables: MessagingTables,
        bus: MessageBus,
        settings: RelaySettings | None = None,
        subscribed: Collection[str] | None = None,
    ) -> None:
        self.service = service
        self._subscribed = frozenset(subscribed) if subscribed is not None else None
        self._engine = engine
        self._outbox = tables.outbox
        self._bus = bus
        self.settings = settings or RelaySettings()
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_gauge_update = 0.0
        self._last_prune = 0.0
        self._last_claimed = 0

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            try:
                await self.relay_once()
                now = loop.time()
                if now - self._last_gauge_update >= self.settings.poll_interval:
                    self._last_gauge_update = now
                    await self.update_gauges()
                if now - self._last_prune >= 60:
                    self._last_prune = now
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed; trying again")
                self._last_claimed = 0
            # Go straight on only after a full batch (more is surely waiting). Otherwise wait:
            # a commit during the pass has already set _wake, so nothing waits for the poll;
            # an extra empty claim after each pass doubled the commits per event at low load.
            if self._last_claimed >= self.settings.window:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def relay_once(self) -> int:
        """One claim-publish-mark pass; returns how many rows the broker confirmed."""
        rows = await self._claim()
        self._last_claimed = len(rows)
        if not rows:
            return 0
        if self._subscribed is not None:
            unheard = [row for row in rows if row.event_type not in self._subscribed]
            if unheard:
                await self._mark_unheard(unheard)
                rows = [row for row in rows if row.event_type in self._subscribed]
        results = await asyncio.gather(
            *(self._bus.publish(self._message(row)) for row in rows), return_exceptions=True
        )
        confirmed: list[int] = []
        failed: list[tuple[Row[tuple[int, uuid.UUID, str, str, int]], BaseException]] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                failed.append((row, result))
            else:
                confirmed.append(row.id)
                metrics.events_published.labels(self.service, row.event_type, "ok").inc()
        dialect = self._engine.dialect.name
        async with self._engine.begin() as conn:
            if confirmed:
                await conn.execute(
                    update(self._outbox)
                    .where(self._outbox.c.id.in_(confirmed))
                    .values(published_at=database_now(dialect), last_error=None)
                )
            for row, error in failed:
                outcome = "unroutable" if getattr(error, "unroutable", False) else "failed"
                metrics.events_published.labels(self.service, row.event_type, outcome).inc()
                delay = backoff_seconds(row.attempts, self.settings.max_backoff)
                await conn.execute(
                    update(self._outbox)
                    .where(
                        self._outbox.c.id == row.id,
                        # Still ours: once the lease ran out another relay may hold the row, or
                        # have published it; its schedule and outcome are not ours to change.
                        self._outbox.c.attempts == row.attempts,
                        self._outbox.c.published_at.is_(None),
                    )
                    .values(
                        next_attempt_at=database_time_in(dialect, delay),
                        last_error=str(error)[:2000],
                    )
                )
                if not isinstance(error, PublishError):
                    log.error("unexpected publish error for %s", row.event_id, exc_info=error)
        if failed:
            log.warning(
                "%d of %d events not confirmed; retrying with back-off (first: %s)",
                len(failed),
                len(rows),
                failed[0][1],
            )
        return len(confirmed)

    async def _mark_unheard(
        self, rows: Sequence[Row[tuple[int, uuid.UUID, str, str, int]]]
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(self._outbox)
                .where(
                    self._outbox.c.id.in_([row.id for row in rows]),
                    self._outbox.c.published_at.is_(None),
                )
                .values(
                    published_at=database_now(self._engine.dialect.name),
                    last_error="no service subscribes to this event type",
                )
            )
        for row in rows:
            metrics.events_published.labels(self.service, row.event_type, "unsubscribed").inc()

    async def _claim(self) -> Sequence[Row[tuple[int, uuid.UUID, str, str, int]]]:
        t = self._outbox
        async with self._engine.begin() as conn:
            return await claim_due(
                conn,
                t,
                waiting=t.c.published_at.is_(None),
                limit=self.settings.window,
                lease_seconds=self.settings.lease,
                returning=(t.c.id, t.c.event_id, t.c.event_type, t.c.body, t.c.attempts),
            )

    @staticmethod
    def _message(row: Row[tuple[int, uuid.UUID, str, str, int]]) -> OutgoingMessage:
        return OutgoingMessage(
            message_id=str(row.event_id), routing_key=row.event_type, body=row.body.encode()
        )

    async def pending(self) -> tuple[int, float]:
        """How many rows wait to be published, and the oldest one's age in seconds."""
        t = self._outbox
        async with self._engine.connect() as conn:
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
                )
            ).one()
        age = 0.0
        if oldest is not None:
            age = max(0.0, (utc_now() - oldest).total_seconds())
        return int(count), age

    async def update_gauges(self) -> None:
        count, age = await self.pending()
        metrics.outbox_pending.labels(self.service).set(count)
        metrics.outbox_oldest_age.labels(self.service).set(age)

    async def replay_published(self, within: timedelta | None = None) -> int:
        """Sends again every row published in the last `within` (default: all the outbox
        still keeps); returns how many.

        For a bus that lost what it held (the embedded default's, on the first start with a
        journal: until then its in-memory bus forgot everything on exit): the outbox
        remembers. Consumers' inboxes drop what they had already handled, so a replay costs
        deliveries, never effects."""
        t = self._outbox
        retention = timedelta(seconds=self.settings.retention)
        since = utc_now() - (retention if within is None else min(within, retention))
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(t)
                .where(t.c.published_at >= since)
                .values(published_at=None, next_attempt_at=utc_now(), attempts=0)
            )
        return int(result.rowcount or 0)

    async def prune(self) -> None:
        cutoff = utc_now() - timedelta(seconds=self.settings.retention)
        async with self._engine.begin() as conn:
            await conn.execute(delete(self._outbox).where(self._outbox.c.published_at < cutoff))
