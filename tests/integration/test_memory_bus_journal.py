"""The in-memory bus with a journal keeps a broker's memory across restarts; dead letters an
operator can list, replay and purge, and that do not pile up for ever."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spoc_platform.bus import Delivery, OutgoingMessage, PoisonMessage, QueueSpec
from spoc_platform.bus.journal import BusJournal
from spoc_platform.bus.memory import MemoryBus
from tests.support import eventually

pytestmark = pytest.mark.integration

DESK = QueueSpec("desk", ("ticket.*",), delivery_limit=3, max_retry_delay=0.01)
AUDIT = QueueSpec("audit", ("ticket.created",))


def message(message_id: str, routing_key: str = "ticket.created") -> OutgoingMessage:
    return OutgoingMessage(message_id, routing_key, f'{{"id": "{message_id}"}}'.encode())


class Recorder:
    """A consumer that records what it got, and refuses or blocks what it is told to."""

    def __init__(self, *, refuse: set[str] | None = None, block: set[str] | None = None) -> None:
        self.got: list[Delivery] = []
        self.refuse = refuse or set()
        self.block = block or set()

    async def handler(self, delivery: Delivery) -> None:
        self.got.append(delivery)
        if delivery.message_id in self.refuse:
            raise PoisonMessage("cannot be handled")
        if delivery.message_id in self.block:
            await asyncio.Event().wait()  # a handler still busy when the stop comes

    def ids(self) -> list[str | None]:
        return [d.message_id for d in self.got]


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "bus.sqlite3"


async def started(path: Path, **options: timedelta | int) -> MemoryBus:
    bus = MemoryBus(BusJournal(path), **options)  # type: ignore[arg-type]
    await bus.connect()
    return bus


async def test_messages_not_acknowledged_before_a_stop_are_delivered_after_the_restart(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    busy = Recorder(block={"m-1"})
    subscription = await bus.consume(DESK, busy.handler)
    for n in range(1, 4):
        await bus.publish(message(f"m-{n}"))
    await eventually(lambda: _async(busy.ids() == ["m-1", "m-2", "m-3"]))
    # The stop gives up on m-1's handler: it is cancelled before acknowledging.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(subscription.cancel(), 0.1)
    await bus.publish(message("m-4"))  # published after the consumer stopped
    await bus.close()

    again = await started(journal_path)
    await again.declare(DESK)
    fresh = Recorder()
    await again.consume(DESK, fresh.handler)

    await eventually(lambda: _async(len(fresh.got) == 2), message="held messages delivered")
    assert sorted(fresh.ids()) == ["m-1", "m-4"]  # m-2 and m-3 were acknowledged
    await eventually(lambda: _async(again.depth("desk") == 0))
    await again.close()


async def test_a_dead_letter_survives_a_restart_and_replays_to_its_own_queue_only(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(AUDIT)
    desk = Recorder(refuse={"m-bad"})
    await bus.consume(DESK, desk.handler)
    await bus.publish(message("m-bad"))
    await eventually(lambda: bus.dead_letters("desk"), message="dead letter")
    await bus.close()

    again = await started(journal_path)
    await again.declare(DESK)
    await again.declare(AUDIT)
    audit = Recorder()
    await again.consume(AUDIT, audit.handler)
    [dead] = await again.dead_letters("desk")
    assert (dead.message_id, dead.routing_key, dead.body) == (
        "m-bad",
        "ticket.created",
        b'{"id": "m-bad"}',
    )
    assert "reject" in dead.reason and dead.attempts == 1
    assert dead.dead_at is not None and datetime.now(UTC) - dead.dead_at < timedelta(minutes=1)
    await eventually(lambda: _async(len(audit.got) == 1))  # audit's copy, not yet acknowledged

    fixed = Recorder()
    await again.consume(DESK, fixed.handler)
    assert await again.replay_dead_letters("desk") == 1
    await eventually(lambda: _async(fixed.ids() == ["m-bad"]), message="replayed")

    assert fixed.got[0].delivery_count == 0  # a fresh start for the consumer's own count
    assert await again.dead_letters("desk") == []
    await eventually(lambda: _async(again.depth("desk") == 0))
    assert audit.ids() == ["m-bad"]  # the replay went to desk's queue only
    await again.close()

    third = await started(journal_path)
    assert await third.dead_letters("desk") == []
    await third.close()


async def test_purged_dead_letters_are_gone_for_good_and_others_stay(journal_path: Path) -> None:
    bus = await started(journal_path)
    await bus.consume(DESK, Recorder(refuse={"m-1", "m-2", "m-3"}).handler)
    for n in range(1, 4):
        await bus.publish(message(f"m-{n}"))
    await eventually(lambda: _async_len(bus.dead_letters("desk"), 3), message="dead letters")

    assert await bus.purge_dead_letters("desk", ["m-2"]) == 1
    assert await bus.purge_dead_letters("desk", ["m-2", "unknown"]) == 0
    await bus.close()
    again = await started(journal_path)

    assert [d.message_id for d in await again.dead_letters("desk")] == ["m-1", "m-3"]
    assert [d.message_id for d in await again.dead_letters("desk", limit=1)] == ["m-1"]
    assert await again.purge_dead_letters("desk") == 2
    assert await again.dead_letters("desk") == []
    await again.close()


async def test_dead_letters_past_their_retention_or_beyond_the_limit_are_dropped(
    journal_path: Path,
) -> None:
    bus = await started(journal_path, dead_letter_retention=timedelta(days=14), dead_letter_limit=3)
    await bus.consume(DESK, Recorder(refuse={f"m-{n}" for n in range(1, 6)}).handler)
    for n in range(1, 6):
        await bus.publish(message(f"m-{n}"))
    await eventually(lambda: _async(bus.depth("desk") == 0))

    # The limit keeps the newest, like a dead-letter queue's max-length dropping its head.
    assert [d.message_id for d in await bus.dead_letters("desk")] == ["m-3", "m-4", "m-5"]
    assert await bus.prune_dead_letters(now=datetime.now(UTC) + timedelta(days=13)) == 0
    assert await bus.prune_dead_letters(now=datetime.now(UTC) + timedelta(days=15)) == 3
    await bus.close()

    again = await started(journal_path)
    assert await again.dead_letters("desk") == []
    await again.close()


async def test_without_a_journal_dead_letters_can_be_replayed_and_purged_in_memory() -> None:
    bus = MemoryBus()
    await bus.connect()
    first = Recorder(refuse={"m-1", "m-2"})
    subscription = await bus.consume(DESK, first.handler)
    await bus.publish(message("m-1"))
    await bus.publish(message("m-2"))
    await eventually(lambda: _async_len(bus.dead_letters("desk"), 2), message="dead letters")
    await subscription.cancel()

    second = Recorder()
    await bus.consume(DESK, second.handler)
    assert await bus.replay_dead_letters("desk", ["m-2"]) == 1
    await eventually(lambda: _async(second.ids() == ["m-2"]))
    assert await bus.purge_dead_letters("desk") == 1
    assert await bus.dead_letters("desk") == []
    await bus.close()


async def _async(value: bool) -> bool:
    return value


async def _async_len(letters: object, expected: int) -> bool:
    assert asyncio.iscoroutine(letters)
    return len(await letters) == expected
