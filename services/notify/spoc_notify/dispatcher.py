"""Sends owed deliveries and records each outcome with its event, retrying until it is settled."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Row

from spoc_contracts import NotificationFailed, NotificationSent
from spoc_notify import metrics, repository
from spoc_notify.mail import MailTransport, OutgoingMail
from spoc_platform.claims import backoff_seconds
from spoc_platform.db import utc_now
from spoc_platform.logs import log_context
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)


class DeliveryDispatcher:
    """Claims due deliveries with a lease, sends them, then marks each sent (with a
    notification.sent event in the same transaction) or schedules a retry.

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
    ) -> None:
        self._unit_of_work = unit_of_work
        self._transport = transport
        # The SMTP envelope's sender: the bare address of the From header.
        self._sender = parseaddr(sender)[1]
        self._max_attempts = max_attempts
        self._slots = asyncio.Semaphore(concurrency)
        self._batch = batch
        self._poll_interval = poll_interval
        self._lease = lease
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._stopping = False

    def kick(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
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
            # Straight on only after a full batch; a kick during the pass has set _wake already.
            if handled >= self._batch:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                pass

    async def dispatch_once(self) -> int:
        async with self._unit_of_work.engine.begin() as conn:
            rows = await repository.claim_due_deliveries(
                conn, limit=self._batch, lease_seconds=self._lease
            )
        if not rows:
            return 0
        # Each delivery is settled as soon as it is sent, not after the whole batch, so a
        # slow batch never holds finished rows until the lease runs out.
        await asyncio.gather(*(self._send_and_settle(row) for row in rows))
        return len(rows)

    async def _send_and_settle(self, row: Row[Any]) -> None:
        error = await self._send(row)
        async with self._unit_of_work() as uow:
            await self._settle(uow, row, error)

    async def _send(self, row: Row[Any]) -> str | None:
        mail = OutgoingMail(
            raw=row.message.encode("utf-8"), sender=self._sender, recipients=(row.recipient,)
        )
        async with self._slots:
            try:
                await self._transport.send(mail)
            except Exception as error:  # noqa: BLE001 - every failure is retried or recorded
                return f"{type(error).__name__}: {error}"
        return None

    async def _settle(self, uow: UnitOfWork, row: Row[Any], error: str | None) -> None:
        with log_context(ticket_id=row.ticket_id, correlation_id=row.correlation_id):
            if error is None:
                sent_at = utc_now()
                if not await repository.mark_sent(
                    uow.conn, row.id, claimed_attempts=row.attempts, sent_at=sent_at
                ):
                    log.warning("%s %s was taken over by another dispatcher", row.kind, row.number)
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
                    uow.conn,
                    row.id,
                    claimed_attempts=row.attempts,
                    error=error,
                    retry_at=utc_now() + timedelta(seconds=delay),
                )
                metrics.deliveries.labels(row.kind, row.channel, "retry").inc()
                log.warning(
                    "%s %s not sent (attempt %d): %s", row.kind, row.number, row.attempts, error
                )
                return
            if not await repository.mark_failed_attempt(
                uow.conn, row.id, claimed_attempts=row.attempts, error=error, retry_at=None
            ):
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
