"""Envelope → inbox → handler → commit, and what the bus should do with the message after.

The one place that decides a message's fate, for every service and both transports:
- handled, or handled before (inbox), or its effect already exists (AlreadyHandled) → ack;
- can never be handled (not an envelope, invalid payload, PermanentError) → dead-letter now;
- the handler failed → back to the queue after a back-off, counted here, in the service's own
  database; dead-lettered once it has failed `delivery_limit` times. The broker's count is not
  used for this: it also moves when a connection drops, and from RabbitMQ 4.3 not on a nack;
- an event type or version this replica has no handler for (a newer release's, during a rolling
  deploy) → back to the queue after a longer pause for a replica that has one; dead-lettered
  after the same limit, never acknowledged without effect;
- the database is unreachable → the event is held and tried again for as long as the outage
  lasts, spending no delivery; the consumer reports itself paused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import Executable, bindparam, delete

from spoc_contracts import Envelope, Event, InvalidEnvelope, open_envelope
from spoc_contracts.registry import REGISTRY
from spoc_platform import metrics
from spoc_platform.bus import Delivery, PoisonMessage, RetryLater
from spoc_platform.db import insert_for, utc_now
from spoc_platform.logs import log_context
from spoc_platform.retry import HANDLER_RETRY, OUTAGE_RETRY, UNHANDLED_RETRY, through_outages
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]
"""async def on_<event>(event, *, envelope, uow) -> None"""


class PermanentError(Exception):
    """A handler's verdict that retrying cannot help (the message goes to the dead letters)."""


class AlreadyHandled(Exception):
    """A handler's verdict that the effect this event asks for exists already (e.g. the same
    ticket created again under a new event id): acknowledged like a duplicate, nothing done."""


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        unit_of_work: UnitOfWorkFactory,
        handlers: Mapping[str, Handler],
        delivery_limit: int,
    ) -> None:
        self.service = service
        self._unit_of_work = unit_of_work
        self._handlers = dict(handlers)
        self._delivery_limit = delivery_limit
        self._failures = _FailureStatements.for_factory(unit_of_work)
        # While the database is unreachable: since when (monotonic), and how many events wait.
        self.paused_since: float | None = None
        self.held = 0
        # Told True when the consumer pauses (database unreachable), False when it resumes.
        self.pause_listeners: list[Callable[[bool], None]] = []
        self.retry = HANDLER_RETRY
        self.unhandled_retry = UNHANDLED_RETRY
        self.outage_retry = OUTAGE_RETRY

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    async def handle(self, delivery: Delivery) -> None:
        """Return to ack; raise PoisonMessage to dead-letter; raise RetryLater to requeue."""
        try:
            envelope = Envelope.from_bytes(delivery.body)
        except InvalidEnvelope as error:
            metrics.events_consumed.labels(self.service, delivery.routing_key, "dead").inc()
            log.error("dead-lettering %s: %s", delivery.message_id, error)
            raise PoisonMessage(str(error)) from error

        with log_context(
            service=self.service,
            event_id=envelope.id,
            event_type=envelope.type,
            ticket_id=envelope.ticket_id,
            correlation_id=envelope.correlation_id,
        ):
            handler = self._handlers.get(envelope.type)
            if handler is None or (envelope.type, envelope.version) not in REGISTRY:
                await self._not_ours(envelope)
                return
            try:
                event = open_envelope(envelope)
            except InvalidEnvelope as error:
                metrics.events_consumed.labels(self.service, envelope.type, "dead").inc()
                log.error("dead-lettering: %s", error)
                raise PoisonMessage(str(error)) from error
            await self._run(handler, envelope, event, delivery)

    async def _not_ours(self, envelope: Envelope) -> None:
        reason = f"no handler for {envelope.type} v{envelope.version} in this replica"
        failures = await self._count_failure(envelope, reason)
        if failures >= self._delivery_limit:
            metrics.events_consumed.labels(self.service, envelope.type, "dead").inc()
            log.error("%s after %d deliveries; dead-lettering", reason, failures)
            raise PoisonMessage(f"{reason} (after {failures} deliveries)")
        metrics.events_consumed.labels(self.service, envelope.type, "unhandled").inc()
        log.warning("%s; back to the queue for a replica that has one", reason)
        raise RetryLater(reason, delay=self.unhandled_retry.delay(failures))

    async def _run(
        self, handler: Handler, envelope: Envelope, event: Event, delivery: Delivery
    ) -> None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            await self._run_through_outages(handler, envelope, event, delivery)
        except (_Duplicate, AlreadyHandled) as verdict:
            outcome = "duplicate"
            log.info("already handled; acknowledged without effect (%s)", verdict or "inbox")
        except PermanentError as error:
            outcome = "dead"
            log.error("handler refused the event for good: %s", error)
            await self._forget_failures(envelope)
            raise PoisonMessage(str(error)) from error
        except Exception as error:
            failures = await self._count_failure(envelope, f"{type(error).__name__}: {error}")
            last = failures >= self._delivery_limit
            outcome = "dead" if last else "retry"
            log.exception("handler failed (attempt %d of %d)", failures, self._delivery_limit)
            if last:
                await self._forget_failures(envelope)
                raise PoisonMessage(
                    f"handler failed {failures} times; last: {type(error).__name__}: {error}"
                ) from error
            raise RetryLater(str(error), delay=self.retry.delay(failures)) from error
        finally:
            metrics.events_consumed.labels(self.service, envelope.type, outcome).inc()
            metrics.handler_duration.labels(self.service, envelope.type).observe(
                time.perf_counter() - started
            )

    async def _run_through_outages(
        self, handler: Handler, envelope: Envelope, event: Event, delivery: Delivery
    ) -> None:
        """Runs the handler in one transaction; through a database outage of any length."""

        async def attempt() -> None:
            async with self._unit_of_work(causation=envelope) as uow:
                if not await uow.record_handled(envelope):
                    raise _Duplicate
                if delivery.delivery_count:
                    # Redelivered: it may have failed before; a success clears its count.
                    await uow.conn.execute(self._failures.forget, {"event_id": envelope.id})
                await handler(event, envelope=envelope, uow=uow)

        await self._through_outages(attempt)

    async def _through_outages(self, work: Callable[[], Awaitable[None]]) -> None:
        """Runs `work`, holding it while the database is unreachable, however long that is: an
        outage must not use up the delivery limit and send a whole backlog to the dead letters.
        With every prefetched event held, consumption is paused; readiness says so."""
        holding = False

        def hold(error: BaseException, attempts: int) -> None:
            nonlocal holding
            if not holding:
                holding = True
                self.held += 1
            self._pause(error)

        try:
            await through_outages(work, backoff=self.outage_retry, on_outage=hold)
        finally:
            if holding:
                self.held -= 1
        self._resume()

    def _pause(self, error: BaseException) -> None:
        if self.paused_since is None:
            self.paused_since = time.monotonic()
            metrics.consumer_paused.labels(self.service).set(1)
            for listener in self.pause_listeners:
                listener(True)
            log.warning(
                "database unreachable (%s: %s): consumption paused, events held until it is back",
                type(error).__name__,
                error,
            )

    def _resume(self) -> None:
        if self.paused_since is not None:
            paused_for = time.monotonic() - self.paused_since
            self.paused_since = None
            metrics.consumer_paused.labels(self.service).set(0)
            for listener in self.pause_listeners:
                listener(False)
            log.warning("database reachable again after %.1f s: consumption resumed", paused_for)

    async def _count_failure(self, envelope: Envelope, error: str) -> int:
        """Counts one more failed delivery of this event in its own transaction (the handler's
        rolled back); returns the count so far."""
        failures = 0

        async def record() -> None:
            nonlocal failures
            now = utc_now()
            async with self._unit_of_work.engine.begin() as conn:
                result = await conn.execute(
                    self._failures.count,
                    {
                        "event_id": envelope.id,
                        "event_type": envelope.type,
                        "last_error": error[:2000],
                        "first_failed_at": now,
                        "last_failed_at": now,
                    },
                )
                failures = int(result.scalar_one())

        await self._through_outages(record)
        return failures

    async def _forget_failures(self, envelope: Envelope) -> None:
        # A dead letter carries its attempts; if an operator replays it, it starts afresh.
        async def forget() -> None:
            async with self._unit_of_work.engine.begin() as conn:
                await conn.execute(self._failures.forget, {"event_id": envelope.id})

        await self._through_outages(forget)


class _Duplicate(Exception):
    """Raised inside the unit of work so that it rolls back: the event was handled before."""


class _FailureStatements:
    """The failure count's SQL, built once (see unit_of_work._Statements for why)."""

    def __init__(self, count: Executable, forget: Executable) -> None:
        self.count = count
        self.forget = forget

    @classmethod
    def for_factory(cls, factory: UnitOfWorkFactory) -> _FailureStatements:
        table = factory.tables.delivery_failure
        insert = insert_for(factory.engine.dialect.name, table).values(
            event_id=bindparam("event_id"),
            event_type=bindparam("event_type"),
            failures=1,
            last_error=bindparam("last_error"),
            first_failed_at=bindparam("first_failed_at"),
            last_failed_at=bindparam("last_failed_at"),
        )
        count = insert.on_conflict_do_update(
            index_elements=[table.c.event_id],
            set_={
                "failures": table.c.failures + 1,
                "last_error": insert.excluded.last_error,
                "last_failed_at": insert.excluded.last_failed_at,
            },
        ).returning(table.c.failures)
        forget = delete(table).where(table.c.event_id == bindparam("event_id"))
        return cls(count, forget)


def bind_handler(handler: Handler, **dependencies: Any) -> Handler:
    """A handler with its service-specific dependencies fixed, as the consumer calls it."""

    async def bound(event: Event, *, envelope: Envelope, uow: UnitOfWork) -> None:
        await handler(event, envelope=envelope, uow=uow, **dependencies)

    bound.__name__ = getattr(handler, "__name__", "handler")
    return bound
