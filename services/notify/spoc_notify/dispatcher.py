"""Sends owed deliveries and records each outcome with its event, retrying until it is settled."""

from __future__ import annotations

import asyncio
import logging
import math
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Row

from spoc_contracts import NotificationFailed, NotificationSent
from spoc_notify import metrics, repository
from spoc_notify.mail import MailTransport, OutgoingMail
from spoc_platform.claims import backoff_seconds
from spoc_platform.db import utc_now
from spoc_platform.logs import log_context
from spoc_platform.retry import Backoff, through_outages
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

# After a send, recording it is retried briskly through database blips: the mail is out.
SETTLE_RETRY = Backoff(first=0.1, ceiling=5.0)
# Seconds of lease kept in hand beyond the send limit, for scheduling delays.
_LEASE_MARGIN = 0.2

# A requester's sign-in link concerns no ticket: its delivery is recorded here but announces no
# notification.* event, which intake would have to put on a ticket's timeline.
SIGN_IN_LINK = "sign_in_link"
ABOUT_NO_TICKET = frozenset({SIGN_IN_LINK})


class DeliveryDispatcher:
    """Claims due deliveries with a lease, sends them, then marks each sent (with a
    notification.sent event in the same transaction) or schedules a retry.

    One mail per delivery, with N replicas and a slow mail server: a pass claims only what its
    `concurrency` slots can send in half the lease at a pessimistic time per message; right
    before each send the row is checked to be still ours with its lease unexpired (by the
    database's clock) and given a fresh lease; a send never outlives that lease. The settle
    after a send waits out database blips (losing it would mean a second mail), and stop()
    lets sends in flight finish and settle instead of cancelling them.

    A crash after sending but before marking sends the message again once the lease ends; its
    Message-ID is fixed per ticket and kind, so the copies fold into one for the reader."""

    def __init__(
        self,
        *,
        unit_of_work: UnitOfWorkFactory,
        transport: MailTransport,
        sender: str,
        max_attempts: int,
        concurrency: int = 4,
        batch: int = 64,
        poll_interval: float = 1.0,
        lease: float = 60.0,
        max_backoff: float = 300.0,
        send_estimate: float = 1.0,
        settle_patience: float = 900.0,
        drain_timeout: float = 15.0,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._transport = transport
        # The SMTP envelope's sender: the bare address of the From header.
        self._sender = parseaddr(sender)[1]
        self._max_attempts = max_attempts
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._poll_interval = poll_interval
        self._lease = lease
        # The longest a send may take; the rest of the lease is the margin for settling it.
        self._send_limit = lease / 2
        self._max_backoff = max_backoff
        # Seconds one message may take, pessimistically: the floor of the estimate that sizes
        # a claim. The estimate follows the slowest recent send, so a server that slows down
        # shrinks the next claims before their leases are at risk.
        self._send_floor = send_estimate
        self._send_estimate = send_estimate
        # The mail is out when a settle starts: give the database a long time to come back.
        self._settle_patience = settle_patience
        self._drain_timeout = drain_timeout
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._passes = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def kick(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Takes no new work, lets sends in flight finish and settle (for up to the drain
        timeout), hands back claimed rows not yet started, then closes the transport."""
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), self._drain_timeout)
        except TimeoutError:
            log.warning(
                "%d deliveries still in flight after %.0f s; cancelling them (their leases "
                "hand them to another dispatcher)",
                len(self._in_flight),
                self._drain_timeout,
            )
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._transport.close()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                handled = await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery pass failed; trying again")
                handled = 0
            # Straight on after a full claim; a kick during the pass has set _wake already.
            if handled and handled >= self.claim_size():
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                pass

    def claim_size(self) -> int:
        """As many rows as the slots can send in half a lease at the estimated time each: a
        row waiting its turn must still be ours when its send starts."""
        per_slot = math.floor(self._lease / 2 / self._send_estimate)
        return max(1, min(self._batch, self._concurrency * per_slot))

    async def dispatch_once(self) -> int:
        if self._stopping:
            return 0
        self._passes += 1
        self._idle.clear()
        try:
            # Taken before the claim, so the lease it gives ends no earlier than this + lease.
            claimed_at = asyncio.get_running_loop().time()
            async with self._unit_of_work.engine.begin() as conn:
                rows = await repository.claim_due_deliveries(
                    conn, limit=self.claim_size(), lease_seconds=self._lease
                )
            if not rows:
                return 0
            # Each delivery is settled as soon as it is sent, not after the whole batch, so a
            # slow batch never holds finished rows until the lease runs out.
            tasks = [asyncio.create_task(self._send_and_settle(row, claimed_at)) for row in rows]
            self._in_flight.update(tasks)
            for task in tasks:
                task.add_done_callback(self._in_flight.discard)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, Exception):
                    log.error(
                        "%s %s not sent or not recorded", row.kind, row.number, exc_info=result
                    )
            return len(rows)
        finally:
            self._passes -= 1
            if not self._passes:
                self._idle.set()

    async def _send_and_settle(self, row: Row[Any], claimed_at: float) -> None:
        async with self._slots:
            if self._stopping:
                await self._release(row)
                return
            if not await self._still_ours(row, claimed_at):
                # Our lease ran out before its turn came: another dispatcher may be sending it.
                metrics.deliveries.labels(row.kind, row.channel, "lost_lease").inc()
                log.warning("%s %s: lease lost before sending; not sent", row.kind, row.number)
                return
            error = await self._send(row)
        await self._settle_patiently(row, error)

    async def _still_ours(self, row: Row[Any], claimed_at: float) -> bool:
        """Whether the row may be sent now: no other dispatcher can have it for as long as a
        send may take. While the claim's own lease surely covers that, nothing can have
        changed (only a claim after the lease moves a pending row on) and no round trip is
        needed; otherwise the database says, and renews the lease if it is still ours."""
        elapsed = asyncio.get_running_loop().time() - claimed_at
        if self._lease - elapsed > self._send_limit + _LEASE_MARGIN:
            return True
        async with self._unit_of_work.engine.begin() as conn:
            return await repository.hold_for_sending(
                conn, row.id, claimed_attempts=row.attempts, lease_seconds=self._lease
            )

    async def _release(self, row: Row[Any]) -> None:
        try:
            async with self._unit_of_work.engine.begin() as conn:
                await repository.release(conn, row.id, claimed_attempts=row.attempts)
        except Exception as error:  # noqa: BLE001 - the lease hands the row on anyway
            log.info("%s %s not handed back (%s); its lease will", row.kind, row.number, error)

    async def _send(self, row: Row[Any]) -> str | None:
        mail = OutgoingMail(
            raw=row.message.encode("utf-8"), sender=self._sender, recipients=(row.recipient,)
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # Never past the lease: after it, another dispatcher may send the same mail.
            await asyncio.wait_for(self._transport.send(mail), self._send_limit)
        except Exception as error:  # noqa: BLE001 - every failure is retried or recorded
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        finally:
            took = loop.time() - started
            # Decays towards the floor, jumps up at once: claims shrink as soon as sends slow.
            self._send_estimate = max(self._send_floor, took, self._send_estimate * 0.9)
        return None

    async def _settle_patiently(self, row: Row[Any], error: str | None) -> None:
        """Records the outcome, retrying with back-off while the database is unreachable: the
        mail is out, and an unrecorded send is sent again once the lease ends."""
        retried = False

        async def settle() -> None:
            async with self._unit_of_work() as uow:
                await self._settle(uow, row, error, retried=retried)

        def waiting(failure: BaseException, attempts: int) -> None:
            nonlocal retried
            retried = True
            log.warning(
                "%s %s: cannot record the outcome yet (%s); attempt %d, retrying",
                row.kind,
                row.number,
                failure,
                attempts,
            )

        await through_outages(
            settle, backoff=SETTLE_RETRY, patience=self._settle_patience, on_outage=waiting
        )

    async def _settle(
        self, uow: UnitOfWork, row: Row[Any], error: str | None, *, retried: bool
    ) -> None:
        with log_context(ticket_id=row.ticket_id, correlation_id=row.correlation_id):
            if error is None:
                sent_at = utc_now()
                if not await repository.mark_sent(
                    uow.conn, row.id, claimed_attempts=row.attempts, sent_at=sent_at
                ):
                    if not retried:
                        log.warning(
                            "%s %s was taken over by another dispatcher", row.kind, row.number
                        )
                    # After a retry this may be our own first settle, committed as the
                    # connection broke: either way the outcome is recorded once.
                    return
                if row.kind in ABOUT_NO_TICKET:
                    metrics.deliveries.labels(row.kind, row.channel, "sent").inc()
                    log.info("%s sent to %s", row.kind, row.recipient)
                    return
                await uow.publish(
                    NotificationSent(
                        number=row.number,
                        notification_id=str(row.delivery_id),
                        kind=row.kind,
                        channel=row.channel,
                        recipient=row.recipient,
                        sent_at=sent_at,
                    ),
                    ticket_id=row.ticket_id,
                    correlation_id=row.correlation_id,
                    causation_id=row.causation_id,
                )
                metrics.deliveries.labels(row.kind, row.channel, "sent").inc()
                log.info("%s %s sent to %s", row.kind, row.number, row.recipient)
                return
            if row.attempts < self._max_attempts:
                delay = backoff_seconds(row.attempts, self._max_backoff)
                await repository.mark_failed_attempt(
                    uow.conn, row.id, claimed_attempts=row.attempts, error=error, retry_in=delay
                )
                metrics.deliveries.labels(row.kind, row.channel, "retry").inc()
                log.warning(
                    "%s %s not sent (attempt %d): %s", row.kind, row.number, row.attempts, error
                )
                return
            if not await repository.mark_failed_attempt(
                uow.conn, row.id, claimed_attempts=row.attempts, error=error, retry_in=None
            ):
                return
            if row.kind in ABOUT_NO_TICKET:
                metrics.deliveries.labels(row.kind, row.channel, "failed").inc()
                log.error("%s to %s given up: %s", row.kind, row.recipient, error)
                return
            await uow.publish(
                NotificationFailed(
                    number=row.number,
                    notification_id=str(row.delivery_id),
                    kind=row.kind,
                    channel=row.channel,
                    recipient=row.recipient,
                    attempts=row.attempts,
                    error=error[:500],
                ),
                ticket_id=row.ticket_id,
                correlation_id=row.correlation_id,
                causation_id=row.causation_id,
            )
            metrics.deliveries.labels(row.kind, row.channel, "failed").inc()
            log.error(
                "%s %s given up after %d attempts: %s", row.kind, row.number, row.attempts, error
            )
