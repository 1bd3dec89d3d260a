"""A replayed outbox row starts over: sent again at once, and retried as if never tried before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from spoc_platform.bus import OutgoingMessage, QueueSpec
from spoc_platform.db import utc_now
from tests.harness import ServiceUnderTest, service

pytestmark = pytest.mark.integration

# The event has no consumer among sla's own bindings: only a listener declared here takes it.
EVENT_TYPE = "sla.clock_started"


@pytest.fixture
async def sla(database_url: str) -> AsyncIterator[ServiceUnderTest]:
    async with service("sla", database_url) as running:
        yield running


async def published_just_now(sla: ServiceUnderTest) -> uuid.UUID:
    """A row as a relay leaves it when the broker confirmed it on the fifth attempt a moment
    ago: published, and its due time still a lease ahead."""
    event_id = uuid.uuid4()
    now = utc_now()
    async with sla.runtime.engine.begin() as conn:
        await conn.execute(
            insert(sla.runtime.tables.outbox).values(
                event_id=event_id,
                event_type=EVENT_TYPE,
                body="{}",
                created_at=now - timedelta(minutes=1),
                attempts=5,
                next_attempt_at=now + timedelta(seconds=15),
                published_at=now,
            )
        )
    return event_id


async def test_an_event_replayed_right_after_it_was_published_is_sent_again_at_once(
    sla: ServiceUnderTest,
) -> None:
    relay = sla.runtime.relay
    await sla.bus.declare(QueueSpec("listener", ("#",)))
    assert await relay.replay_published() == 0, "an empty outbox has nothing to replay"

    await published_just_now(sla)
    assert await relay.replay_published() == 1
    assert await relay.relay_once() == 1
    assert sla.bus.depth("listener") == 1


async def test_a_replayed_event_the_broker_refuses_is_retried_after_the_first_back_off_step(
    sla: ServiceUnderTest,
) -> None:
    """Nothing is bound to the event (the broker lost its queues too): the replay's first
    failure waits the first step of the back-off (0.5 s), not the sixth (16 s)."""
    relay = sla.runtime.relay
    event_id = await published_just_now(sla)
    assert await relay.replay_published() == 1

    before = utc_now()
    assert await relay.relay_once() == 0
    after = utc_now()
    outbox = sla.runtime.tables.outbox
    async with sla.runtime.engine.connect() as conn:
        row = (
            await conn.execute(
                select(outbox.c.published_at, outbox.c.next_attempt_at, outbox.c.last_error).where(
                    outbox.c.event_id == event_id
                )
            )
        ).one()
    assert row.published_at is None
    assert row.last_error and "no queue is bound" in row.last_error
    first_step = timedelta(seconds=0.5)
    assert before + first_step <= row.next_attempt_at <= after + first_step


async def test_a_replay_sends_the_history_before_events_written_after_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One event per pass: the replayed one is due from the replay on, so it goes first, as it
    first did; an event written a moment later waits its turn behind it."""
    async with service("sla", database_url, outbox_window=1) as sla:
        relay = sla.runtime.relay
        await sla.bus.declare(QueueSpec("listener", ("#",)))
        sent: list[str] = []
        publish = sla.bus.publish

        async def recording(message: OutgoingMessage) -> None:
            await publish(message)
            sent.append(message.message_id)

        monkeypatch.setattr(sla.bus, "publish", recording)
        replayed = await published_just_now(sla)
        assert await relay.replay_published() == 1
        later = uuid.uuid4()
        async with sla.runtime.engine.begin() as conn:
            await conn.execute(
                insert(sla.runtime.tables.outbox).values(
                    event_id=later,
                    event_type=EVENT_TYPE,
                    body="{}",
                    created_at=utc_now(),
                    attempts=0,
                    next_attempt_at=utc_now(),
                )
            )

        assert await relay.relay_once() == 1
        assert await relay.relay_once() == 1
        assert sent == [str(replayed), str(later)]
