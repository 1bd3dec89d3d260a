"""The embedded default's one replay: a data directory from a release without the bus journal
gets its recent events sent again, once; a desk with a journal restarts without a replay."""

from __future__ import annotations

import mailbox
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from spoc.embedded import BUS_JOURNAL, EmbeddedDesk, build_desk, running
from spoc_intake.schemas import TicketCreate
from spoc_platform.db import utc_now
from spoc_platform.runtime import ServiceRuntime
from tests.e2e.journey import NEW_TICKET
from tests.integration.test_outbox_replay import record_publishes
from tests.support import eventually

pytestmark = pytest.mark.e2e
PORTAL = "http://desk.example.org"


def mail_count(desk: EmbeddedDesk) -> int:
    return len(mailbox.Maildir(desk.maildir, create=True))


async def published_at(desk: EmbeddedDesk) -> dict[uuid.UUID, datetime | None]:
    """The journey's outbox rows. Intake's token feed (a heartbeat at start and every 20 s)
    is not the journey: it comes and goes with the clock."""
    found: dict[uuid.UUID, datetime | None] = {}
    for runtime in desk.runtimes:
        outbox = runtime.tables.outbox
        async with runtime.engine.connect() as conn:
            rows = await conn.execute(
                select(outbox.c.event_id, outbox.c.published_at).where(
                    outbox.c.event_type.not_like("credential.%")
                )
            )
            found.update({event_id: when for event_id, when in rows})
    return found


async def settled(desk: EmbeddedDesk, events: int | None = None) -> bool:
    """Every outbox row (`events` of them, if given) is published, and no queue holds any."""
    rows = await published_at(desk)
    queued = [desk.bus.depth(service) for service in ("intake", "routing", "sla", "notify")]
    counted = events is None or len(rows) == events
    return counted and all(rows.values()) and not any(queued)


async def published_ago(runtime: ServiceRuntime, minutes: int) -> set[str]:
    """Makes every row of this outbox look published `minutes` ago; returns their ids."""
    outbox = runtime.tables.outbox
    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(outbox).values(published_at=utc_now() - timedelta(minutes=minutes))
        )
        return {str(event_id) for event_id in (await conn.scalars(select(outbox.c.event_id)))}


async def test_a_data_directory_without_a_journal_gets_recent_events_again_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    first = build_desk(data, portal_url=PORTAL)
    async with running(first):
        ticket = TicketCreate.model_validate(NEW_TICKET)
        await first.intake.tickets.create(ticket, idempotency_key=None)
        # ticket.created, ticket.routed, sla.clock_started, notification.sent
        await eventually(lambda: settled(first, 4), timeout=20, message="journey not done")
    assert mail_count(first) == 1
    # As a release before the journal left it: the outboxes, and no bus journal.
    for path in data.glob(f"{BUS_JOURNAL}*"):
        path.unlink()

    upgraded = build_desk(data, portal_url=PORTAL)
    assert upgraded.journal.created
    # Inside the outbox retention (an hour by default), and past it but not pruned yet.
    recent = await published_ago(upgraded.containers.intake.runtime, 50)
    too_old = await published_ago(upgraded.containers.routing.runtime, 70)
    assert recent and too_old
    sent = record_publishes(monkeypatch, upgraded.bus)
    async with running(upgraded):
        await eventually(lambda: settled(upgraded), timeout=20, message="replay not done")
    assert recent <= set(sent)
    assert too_old.isdisjoint(sent)
    assert mail_count(upgraded) == 1  # a replay costs deliveries, never effects

    again = build_desk(data, portal_url=PORTAL)
    assert not again.journal.created
    before = await published_at(again)
    sent = record_publishes(monkeypatch, again.bus)
    async with running(again):
        # A replay would have marked rows to be sent again before the services started.
        assert await published_at(again) == before
    assert not {str(event_id) for event_id in before} & set(sent)
