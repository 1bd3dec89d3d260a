"""A single service, bootstrapped for real on a database and a MemoryBus, driven event by event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from spoc.services import SERVICES, ServiceName
from spoc_contracts import Envelope, Event, Requester, TicketCreated, TicketCreatedV1
from spoc_platform.bus import Delivery
from spoc_platform.bus.memory import MemoryBus
from spoc_platform.migrations import upgrade
from spoc_platform.runtime import ServiceRuntime
from spoc_platform.sealing import DEVELOPMENT_RECIPIENT, seal_for


@dataclass
class ServiceUnderTest:
    container: Any
    bus: MemoryBus

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.container.runtime
        return runtime

    async def deliver(self, envelope: Envelope, *, delivery_count: int = 0) -> None:
        """Hands one message to the service's consumer, as the bus would."""
        await self.runtime.consumer.handle(
            Delivery(str(envelope.id), envelope.type, envelope.to_bytes(), delivery_count)
        )

    async def published(self, event_type: str | None = None) -> list[Envelope]:
        """What the service wrote to its outbox, oldest first."""
        outbox = self.runtime.tables.outbox
        query = select(outbox.c.body).order_by(outbox.c.id)
        if event_type:
            query = query.where(outbox.c.event_type == event_type)
        async with self.runtime.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Envelope.model_validate_json(body) for (body,) in rows]


@asynccontextmanager
async def service(name: str, database_url: str, **settings: Any) -> AsyncIterator[ServiceUnderTest]:
    entry = SERVICES[ServiceName(name)]
    upgrade(entry.migrations, database_url)
    bus = MemoryBus()
    await bus.connect()
    extra = {"transport": settings.pop("transport")} if "transport" in settings else {}
    container = entry.bootstrap(
        entry.settings(database_url=database_url, bus="memory", **settings), bus=bus, **extra
    )
    await container.runtime.prepare()
    try:
        yield ServiceUnderTest(container, bus)
    finally:
        await container.runtime.engine.dispose()


def envelope(
    event: Event,
    *,
    ticket_id: uuid.UUID | None = None,
    source: str = "test",
    sequence: int = 1,
    correlation_id: uuid.UUID | None = None,
) -> Envelope:
    return Envelope.wrap(
        event,
        source=source,
        ticket_id=ticket_id or uuid.uuid4(),
        sequence=sequence,
        correlation_id=correlation_id,
    )


def ticket_created(access_key: str = "secret-key-123", **overrides: Any) -> TicketCreated:
    """A creation as intake publishes it: the key sealed to notify's (development) key."""
    values = _creation(
        access_key_sealed=seal_for(DEVELOPMENT_RECIPIENT, access_key), requester_known=True
    )
    values.update(overrides)
    return TicketCreated(**values)


def ticket_created_v1(access_key: str = "secret-key-123", **overrides: Any) -> TicketCreatedV1:
    """A creation as intake published it before keys were sealed (still in flight somewhere)."""
    values = _creation(access_key=access_key)
    values.update(overrides)
    return TicketCreatedV1(**values)


def _creation(**values: Any) -> dict[str, Any]:
    return {
        "number": "SD-000042",
        "subject": "Laptop will not boot",
        "description": "Black screen after the update.",
        "type": "incident",
        "channel": "portal",
        "requester": Requester(name="Ala Kowalska", email="ala@example.org", locale="pl-PL"),
        "created_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        **values,
    }
