"""Notify on the real PostgreSQL: both halves of an acknowledgement arriving at one moment."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from spoc_contracts import Envelope
from spoc_notify import repository
from spoc_notify.handlers import ACKNOWLEDGEMENT
from tests.harness import ServiceUnderTest, envelope, service, ticket_created
from tests.unit.test_notify_acknowledgement import clocks_started

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
TICKETS = 50


async def test_both_halves_handled_at_the_same_moment_owe_exactly_one_acknowledgement(
    postgres_url: str,
) -> None:
    """ticket.created and sla.clock_started of one ticket, each in its own transaction at once:
    whichever commits second must see the first's half (and owe the mail), and neither may fail
    on the other's row. With many tickets released together the race is met every run."""
    async with service("notify", postgres_url) as notify:
        tickets = {uuid.uuid4(): f"SD-{i:06d}" for i in range(1, TICKETS + 1)}
        halves = []
        for ticket_id, number in tickets.items():
            halves += [
                envelope(ticket_created(number=number), ticket_id=ticket_id, source="intake"),
                envelope(
                    clocks_started().model_copy(update={"number": number}),
                    ticket_id=ticket_id,
                    source="sla",
                ),
            ]
        start = asyncio.Event()

        async def deliver_at_the_start(half: Envelope) -> None:
            await start.wait()
            await notify.deliver(half)

        deliveries = [asyncio.create_task(deliver_at_the_start(half)) for half in halves]
        await asyncio.sleep(0)  # every delivery waits at the start line
        start.set()
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)

        failed = [
            f"{h.type} of {h.ticket_id}: {o!r}" for h, o in zip(halves, outcomes, strict=True) if o
        ]
        assert failed == [], f"{len(failed)} of {len(halves)} halves not handled at first go"
        owed = await _acknowledgements_owed(notify)
        missing = sorted(number for ticket_id, number in tickets.items() if not owed[ticket_id])
        doubled = sorted(number for ticket_id, number in tickets.items() if owed[ticket_id] > 1)
        assert (missing, doubled) == ([], []), (
            f"of {TICKETS} tickets, {len(missing)} owe no acknowledgement"
            f" and {len(doubled)} owe more than one"
        )


async def _acknowledgements_owed(notify: ServiceUnderTest) -> Counter[uuid.UUID]:
    table = repository.delivery
    async with notify.runtime.engine.connect() as conn:
        rows = await conn.execute(select(table.c.ticket_id).where(table.c.kind == ACKNOWLEDGEMENT))
        return Counter(rows.scalars())
