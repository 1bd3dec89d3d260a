"""Envelope → inbox → handler → commit, and what the bus should do with the message after."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from spoc_contracts import Envelope, Event, InvalidEnvelope, open_envelope
from spoc_platform import metrics
from spoc_platform.bus import Delivery, PoisonMessage
from spoc_platform.db import is_outage
from spoc_platform.logs import log_context
from spoc_platform.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]
"""async def on_<event>(event, *, envelope, uow) -> None"""


class PermanentError(Exception):
    """A handler's verdict that retrying cannot help (the message goes to the dead letters)."""


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
        # How long one event may wait out a database outage before it counts as a failure.
        self.outage_patience = 300.0

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    async def handle(self, delivery: Delivery) -> None:
        """Return to ack; raise PoisonMessage to dead-letter; raise anything else to retry."""
        try:
            envelope = Envelope.from_bytes(delivery.body)
            event = open_envelope(envelope)
        except InvalidEnvelope as error:
            metrics.events_consumed.labels(self.service, delivery.routing_key, "dead").inc()
            log.error("dead-lettering %s: %s", delivery.message_id, error)
            raise PoisonMessage(str(error)) from error

        handler = self._handlers.get(envelope.type)
        with log_context(
            service=self.service,
            event_id=envelope.id,
            event_type=envelope.type,
            ticket_id=envelope.ticket_id,
            correlation_id=envelope.correlation_id,
        ):
            if handler is None:
                metrics.events_consumed.labels(self.service, envelope.type, "ignored").inc()
                log.warning("no handler for %s; acknowledged without effect", envelope.type)
                return
            await self._run(handler, envelope, event, delivery)

    async def _run(
        self, handler: Handler, envelope: Envelope, event: Event, delivery: Delivery
    ) -> None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            await self._run_through_outages(handler, envelope, event)
        except _Duplicate:
            outcome = "duplicate"
            log.info("duplicate delivery acknowledged without effect")
        except PermanentError as error:
            outcome = "dead"
            log.error("handler refused the event for good: %s", error)
            raise PoisonMessage(str(error)) from error
        except Exception:
            last = delivery.delivery_count >= self._delivery_limit
            outcome = "dead" if last else "retry"
            log.exception(
                "handler failed (delivery %d of %d)",
                delivery.delivery_count + 1,
                self._delivery_limit + 1,
            )
            raise
        finally:
            metrics.events_consumed.labels(self.service, envelope.type, outcome).inc()
            metrics.handler_duration.labels(self.service, envelope.type).observe(
                time.perf_counter() - started
            )

    async def _run_through_outages(
        self, handler: Handler, envelope: Envelope, event: Event
    ) -> None:
        """Runs the handler in one transaction. While the database is unreachable the event is
        held and tried again here, so an outage does not use up the delivery limit and send a
        whole backlog to the dead letters; it only pauses consuming."""
        delay = 0.5
        deadline = time.monotonic() + self.outage_patience
        while True:
            try:
                async with self._unit_of_work(causation=envelope) as uow:
                    if not await uow.record_handled(envelope):
                        raise _Duplicate
                    await handler(event, envelope=envelope, uow=uow)
                return
            except Exception as error:
                if not is_outage(error) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); holding the event %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


class _Duplicate(Exception):
    """Raised inside the unit of work so that it rolls back: the event was handled before."""


def bind_handler(handler: Handler, **dependencies: Any) -> Handler:
    """A handler with its service-specific dependencies fixed, as the consumer calls it."""

    async def bound(event: Event, *, envelope: Envelope, uow: UnitOfWork) -> None:
        await handler(event, envelope=envelope, uow=uow, **dependencies)

    bound.__name__ = getattr(handler, "__name__", "handler")
    return bound
