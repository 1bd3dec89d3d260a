"""Replaying the outbox to a bus that lost what it held: recent rows again, never past the
outbox retention, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert

from spoc_platform.bus import MessageBus, OutgoingMessage, QueueSpec
from spoc_platform.db import utc_now
from tests.harness import service

pytestmark = pytest.mark.integration


def record_publishes(monkeypatch: pytest.MonkeyPatch, bus: MessageBus) -> list[str]:
    """The ids of every message `bus` confirms from now on, in order."""
    sent: list[str] = []
    publish = bus.publish

    async def recording(message: OutgoingMessage) -> None:
        await publish(message)
        sent.append(message.message_id)

    monkeypatch.setattr(bus, "publish", recording)
    return sent


async def test_a_replay_resends_what_was_published_within_its_window_and_never_past_the_retention(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service("sla", database_url, outbox_retention_hours=1) as sla:
        relay = sla.runtime.relay
        await sla.bus.declare(QueueSpec("listener", ("#",)))
        now = utc_now()
        # Published 5 and 50 minutes ago (inside the hour kept), 70 and 120 minutes ago (past
        # it, but not pruned yet: pruning runs in the relay's loop, after a replay).
        ages = {minutes: uuid.uuid4() for minutes in (5, 50, 70, 120)}
        async with sla.runtime.engine.begin() as conn:
            await conn.execute(
                insert(sla.runtime.tables.outbox),
                [
                    {
                        "event_id": event_id,
                        "event_type": "sla.clock_started",
                        "body": "{}",
                        "created_at": now - timedelta(minutes=minutes),
                        "attempts": 1,
                        "next_attempt_at": now - timedelta(minutes=minutes),
                        "published_at": now - timedelta(minutes=minutes),
                    }
                    for minutes, event_id in ages.items()
                ],
            )
        sent = record_publishes(monkeypatch, sla.bus)

        async def replay(within: timedelta | None) -> set[str]:
            sent.clear()
            count = await relay.replay_published(within)
            assert await relay.relay_once() == count
            return set(sent)

        # A window shorter than the retention bounds the replay.
        assert await replay(timedelta(minutes=30)) == {str(ages[5])}
        # By default, everything the outbox still keeps for the retention, and nothing older.
        assert await replay(None) == {str(ages[5]), str(ages[50])}
        # A longer window is capped at the retention: those rows may be half pruned already.
        assert await replay(timedelta(hours=5)) == {str(ages[5]), str(ages[50])}
