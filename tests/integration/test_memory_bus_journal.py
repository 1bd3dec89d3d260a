"""The in-memory bus with a journal keeps a broker's memory across restarts; dead letters an
operator can list, replay and purge, and that do not pile up for ever."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spoc_platform.bus import (
    Delivery,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    RetryLater,
)
from spoc_platform.bus.journal import BusJournal, JournalContents
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
    journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spoc_platform.bus.memory")
    bus = await started(journal_path, dead_letter_retention=timedelta(days=14), dead_letter_limit=3)
    await bus.consume(DESK, Recorder(refuse={f"m-{n}" for n in range(1, 6)}).handler)
    for n in range(1, 4):
        await bus.publish(message(f"m-{n}"))
    await eventually(lambda: _async(bus.depth("desk") == 0))
    # Exactly at the limit: all kept, and nothing said to have been dropped.
    assert [d.message_id for d in await bus.dead_letters("desk")] == ["m-1", "m-2", "m-3"]
    assert dropped_warnings(caplog) == []

    # The limit keeps the newest, like a dead-letter queue's max-length dropping its head:
    # one over it, the oldest goes at once, and the operator is told.
    await bus.publish(message("m-4"))
    await eventually(lambda: _async(bus.depth("desk") == 0))
    assert [d.message_id for d in await bus.dead_letters("desk")] == ["m-2", "m-3", "m-4"]
    assert dropped_warnings(caplog) == [
        "desk.events: more than 3 dead letters; dropped the 1 oldest"
    ]
    await bus.publish(message("m-5"))
    await eventually(lambda: _async(bus.depth("desk") == 0))
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


async def test_a_new_journal_is_created_with_its_directories_and_found_again_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "bus" / "bus.sqlite3"  # neither directory exists yet
    journal = BusJournal(path)
    assert journal.created is True
    bus = MemoryBus(journal)
    await bus.connect()
    await bus.close()

    assert path.exists()
    assert BusJournal(path).created is False  # spoc.embedded re-sends the outboxes only once


async def test_a_confirmed_publish_is_journalled_at_once_so_a_crash_right_after_loses_nothing(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    await bus.publish(message("m-1", "ticket.updated"))

    # No acknowledgement, no stop: the process dies the moment the publish returned.
    kept = kept_after_a_crash(journal_path)
    assert [(h.queue, h.delivery) for h in kept.held] == [
        ("desk.events", Delivery("m-1", "ticket.updated", b'{"id": "m-1"}', 0))
    ]
    assert kept.dead == []
    await bus.close()


async def test_acknowledgements_and_dead_letters_reach_the_journal_soon_without_other_writes(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    recorder = Recorder(refuse={"m-bad"})
    await bus.consume(DESK, recorder.handler)

    # Nothing else is written and nothing stops the bus: an acknowledgement, and then a death,
    # are still committed within moments, so a crash after either re-delivers nothing.
    await bus.publish(message("m-good"))
    await eventually(lambda: _async(recorder.ids() == ["m-good"] and bus.depth("desk") == 0))
    await eventually(
        lambda: _async(kept_after_a_crash(journal_path).held == []),
        message="ack journalled",
        timeout=5,
    )

    await bus.publish(message("m-bad", "ticket.closed"))
    await eventually(
        lambda: _async(len(kept_after_a_crash(journal_path).dead) == 1),
        message="death journalled",
        timeout=5,
    )
    kept = kept_after_a_crash(journal_path)
    assert kept.held == []
    [dead] = kept.dead
    assert (dead.queue, dead.letter.message_id, dead.letter.routing_key, dead.letter.body) == (
        "desk.events",
        "m-bad",
        "ticket.closed",
        b'{"id": "m-bad"}',
    )
    await bus.close()


async def test_a_retried_message_keeps_its_delivery_count_in_the_journal(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    third_try = asyncio.Event()
    finish = asyncio.Event()

    async def failing_twice(delivery: Delivery) -> None:
        if delivery.delivery_count < 2:
            raise RuntimeError("dependency down")
        third_try.set()
        await finish.wait()

    await bus.consume(DESK, failing_twice)
    await bus.publish(message("m-1"))
    await asyncio.wait_for(third_try.wait(), 10)

    # The broker's backstop counts from where it was after a crash, not from zero again.
    def counted() -> list[tuple[str, Delivery]]:
        return [(h.queue, h.delivery) for h in kept_after_a_crash(journal_path).held]

    expected = [("desk.events", Delivery("m-1", "ticket.created", b'{"id": "m-1"}', 2))]
    await eventually(lambda: _async(counted() == expected), message="count journalled", timeout=5)
    finish.set()
    await eventually(lambda: _async(bus.depth("desk") == 0))
    await bus.close()


async def test_messages_kept_from_the_last_run_and_new_ones_are_each_delivered_once(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    await bus.publish(message("m-1"))
    await bus.publish(message("m-2", "ticket.closed"))
    await bus.close()

    again = await started(journal_path)
    await again.declare(AUDIT)
    assert again.queue_names() == ["audit.events", "desk.events"]
    # Desk's queue, kept from the last run, routes nothing until desk declares it again.
    await again.publish(message("m-3"))
    await again.declare(DESK)
    await again.publish(message("m-4", "ticket.updated"))
    desk = Recorder()
    await again.consume(DESK, desk.handler)
    await eventually(lambda: _async(len(desk.got) == 3), message="kept and new delivered")
    await eventually(lambda: _async(again.depth("desk") == 0))
    assert desk.got == [
        Delivery("m-1", "ticket.created", b'{"id": "m-1"}', 0),
        Delivery("m-2", "ticket.closed", b'{"id": "m-2"}', 0),
        Delivery("m-4", "ticket.updated", b'{"id": "m-4"}', 0),
    ]
    assert again.depth("audit") == 1
    await again.close()

    third = await started(journal_path)
    await third.declare(DESK)
    assert third.depth("desk") == 0
    await third.close()


async def test_a_queue_kept_from_the_last_run_takes_the_delivery_limit_its_service_declares(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    await bus.publish(message("m-1"))
    await bus.close()

    again = await started(journal_path)
    strict = QueueSpec("desk", ("ticket.*",), delivery_limit=1, max_retry_delay=0.01)
    counts: list[int] = []

    async def always_failing(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        raise RuntimeError("always broken")

    await again.consume(strict, always_failing)
    await eventually(lambda: again.dead_letters("desk"), message="dead letter")
    assert counts == list(range(strict.backstop_limit + 1))
    await again.close()


async def test_a_dead_letter_kept_from_the_last_run_replays_to_its_queue_before_it_is_declared(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.consume(DESK, Recorder(refuse={"m-bad"}).handler)
    await bus.publish(message("m-bad"))
    dead = await eventually(lambda: bus.dead_letters("desk"), message="dead letter")
    await bus.close()

    # An operator replays while desk is down: the message waits, journalled, in desk's queue.
    again = await started(journal_path)
    assert await again.dead_letters("desk") == dead  # the same letter, to the microsecond
    assert await again.replay_dead_letters("desk") == 1
    await again.close()

    third = await started(journal_path)
    fixed = Recorder()
    await third.consume(DESK, fixed.handler)
    await eventually(lambda: _async(len(fixed.got) == 1), message="replayed message delivered")
    assert fixed.got == [Delivery("m-bad", "ticket.created", b'{"id": "m-bad"}', 0)]
    await third.close()


async def test_a_replayed_dead_letter_once_handled_is_gone_from_the_journal(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    refusing = await bus.consume(DESK, Recorder(refuse={"m-bad"}).handler)
    await bus.publish(message("m-bad", "ticket.updated"))
    await eventually(lambda: bus.dead_letters("desk"), message="dead letter")
    await refusing.cancel()

    fixed = Recorder()
    await bus.consume(DESK, fixed.handler)
    assert await bus.replay_dead_letters("desk") == 1
    await eventually(lambda: _async(len(fixed.got) == 1), message="replayed")
    await eventually(lambda: _async(bus.depth("desk") == 0))
    assert fixed.got == [Delivery("m-bad", "ticket.updated", b'{"id": "m-bad"}', 0)]
    await bus.close()

    kept = kept_after_a_crash(journal_path)
    assert (kept.held, kept.dead) == ([], [])


async def test_pruning_drops_dead_letters_past_retention_in_every_queue_and_keeps_the_rest(
    journal_path: Path,
) -> None:
    retention = timedelta(days=14)
    bus = await started(journal_path, dead_letter_retention=retention)
    await bus.consume(DESK, Recorder(refuse={"m-1"}).handler)
    await bus.consume(AUDIT, Recorder(refuse={"m-1"}).handler)
    await bus.publish(message("m-1"))
    await eventually(lambda: _async_len(bus.dead_letters("desk"), 1), message="desk's")
    await eventually(lambda: _async_len(bus.dead_letters("audit"), 1), message="audit's")
    [desk_dead] = await bus.dead_letters("desk")
    [audit_dead] = await bus.dead_letters("audit")
    assert desk_dead.dead_at is not None and audit_dead.dead_at is not None
    oldest = min(desk_dead.dead_at, audit_dead.dead_at)
    newest = max(desk_dead.dead_at, audit_dead.dead_at)

    assert await bus.prune_dead_letters() == 0  # now: both are fresh
    assert await bus.prune_dead_letters(now=oldest + retention) == 0  # not older yet
    assert await bus.prune_dead_letters(now=newest + retention + timedelta(seconds=1)) == 2
    assert await bus.dead_letters("desk") == await bus.dead_letters("audit") == []
    await bus.close()


async def test_a_service_without_a_queue_has_no_dead_letters_to_list_replay_or_purge() -> None:
    bus = MemoryBus()
    await bus.connect()
    await bus.consume(DESK, Recorder(refuse={"m-1"}).handler)
    await bus.publish(message("m-1"))
    await eventually(lambda: bus.dead_letters("desk"), message="desk's dead letter")

    assert await bus.dead_letters("nobody") == []
    assert await bus.replay_dead_letters("nobody") == 0
    assert await bus.purge_dead_letters("nobody") == 0
    assert len(await bus.dead_letters("desk")) == 1
    await bus.close()


async def test_someone_reading_the_journal_does_not_hold_up_the_bus(journal_path: Path) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    await bus.publish(message("m-1"))
    # A backup or an sqlite3 shell, in the middle of reading the journal.
    reader = sqlite3.connect(journal_path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM held").fetchone() == (1,)

        started_at = time.monotonic()
        await bus.publish(message("m-2"))
        assert time.monotonic() - started_at < 1.0
    finally:
        reader.close()
    assert len(kept_after_a_crash(journal_path).held) == 2
    await bus.close()


async def test_a_journal_write_that_fails_refuses_that_publish_and_spoils_no_later_one(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    # A write the disk refuses, for one message only.
    with sqlite3.connect(journal_path) as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON held WHEN NEW.message_id = 'm-refused'"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    other.close()

    with pytest.raises(PublishError, match=r"^bus journal: disk I/O error$") as refused:
        await asyncio.wait_for(bus.publish(message("m-refused")), 5)
    assert not refused.value.unroutable  # the relay keeps it and tries again later
    await asyncio.wait_for(bus.publish(message("m-next")), 5)

    recorder = Recorder()
    await bus.consume(DESK, recorder.handler)
    await eventually(lambda: _async(recorder.ids() == ["m-next"]), message="m-next delivered")
    await eventually(lambda: _async(bus.depth("desk") == 0))
    await bus.close()
    kept = kept_after_a_crash(journal_path)
    assert (kept.held, kept.dead) == ([], [])


async def test_working_dead_letters_on_a_closed_bus_fails_and_leaves_them_journalled(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.consume(DESK, Recorder(refuse={"m-bad"}).handler)
    await bus.publish(message("m-bad"))
    dead = await eventually(lambda: bus.dead_letters("desk"), message="dead letter")
    await bus.close()

    with pytest.raises(PublishError, match=r"^bus journal: bus journal is closed$"):
        await asyncio.wait_for(bus.purge_dead_letters("desk"), 5)

    again = await started(journal_path)
    assert await again.dead_letters("desk") == dead
    await again.close()


def dropped_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "spoc_platform.bus.memory" and r.levelno == logging.WARNING
    ]


def kept_after_a_crash(path: Path) -> JournalContents:
    """What the next process would find in the journal were this one killed now."""
    survivor = BusJournal(path)
    try:
        return survivor.open()
    finally:
        survivor.close()


async def _async(value: bool) -> bool:
    return value


async def _async_len(letters: object, expected: int) -> bool:
    assert asyncio.iscoroutine(letters)
    return len(await letters) == expected


async def test_the_depth_of_a_service_with_no_queue_is_zero_and_counts_what_waits_and_runs() -> (
    None
):
    """What the embedded default's queue gauge reads (spoc_platform.admin): nothing declared
    is an empty queue, not an error on the scrape."""
    bus = MemoryBus()
    await bus.connect()
    try:
        assert bus.depth("nobody") == 0
        one_at_a_time = QueueSpec("desk", ("ticket.created",), prefetch=1)
        await bus.declare(one_at_a_time)
        await bus.publish(OutgoingMessage("m-1", "ticket.created", b"{}"))
        assert bus.depth("desk") == 1

        release = asyncio.Event()
        running: list[str | None] = []

        async def slow(delivery: Delivery) -> None:
            running.append(delivery.message_id)
            await release.wait()

        for n in (2, 3):
            await bus.publish(OutgoingMessage(f"m-{n}", "ticket.created", b"{}"))
        subscription = await bus.consume(one_at_a_time, slow)
        await eventually(lambda: _async(running == ["m-1"]), message="m-1 running")
        assert bus.depth("desk") == 3  # one being handled (not yet acknowledged), two waiting
        release.set()
        await eventually(lambda: _async(bus.depth("desk") == 0), message="all handled")
        await subscription.cancel()
    finally:
        await bus.close()


async def test_a_memory_bus_not_yet_connected_or_closed_is_unhealthy_and_confirms_nothing() -> None:
    """What the relay writes in an outbox row's last_error is the refusal's own words."""
    bus = MemoryBus()
    await bus.declare(DESK)
    assert not bus.is_healthy()
    with pytest.raises(PublishError, match=r"^memory bus is closed$") as early:
        await bus.publish(message("m-early"))
    assert not early.value.unroutable

    await bus.connect()
    assert bus.is_healthy()
    await bus.publish(message("m-1"))
    await bus.close()

    assert not bus.is_healthy()
    with pytest.raises(PublishError, match=r"^memory bus is closed$") as late:
        await bus.publish(message("m-late"))
    assert not late.value.unroutable
    assert bus.depth("desk") == 1  # m-1 only: a refused publish queued nothing


async def test_a_bus_connected_again_holds_each_journalled_message_once(
    journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spoc_platform.bus.memory")
    bus = await started(journal_path)
    await bus.declare(DESK)
    await bus.publish(message("m-1"))
    await bus.close()
    # The same bus started again in this process: what it holds is already in its queues.
    await bus.connect()
    assert bus.depth("desk") == 1
    desk = Recorder()
    await bus.consume(DESK, desk.handler)
    await eventually(lambda: _async(bus.depth("desk") == 0), message="m-1 handled")
    await asyncio.sleep(0.1)
    assert desk.ids() == ["m-1"]
    await bus.close()
    assert kept(caplog) == []  # nothing was kept from an earlier process

    # A new process finds the journal's messages and dead letters, and says so.
    bus = await started(journal_path)
    await bus.consume(DESK, Recorder(refuse={"m-bad"}).handler)
    await bus.publish(message("m-bad"))
    await eventually(lambda: bus.dead_letters("desk"), message="dead letter")
    await bus.close()
    bus = await started(journal_path)  # one dead letter kept
    await bus.declare(DESK)
    await bus.publish(message("m-2"))
    await bus.close()
    last = await started(journal_path)  # a held message and the dead letter kept
    await last.close()
    assert kept(caplog) == [
        "bus journal: 0 messages and 1 dead letters kept from the last run",
        "bus journal: 1 messages and 1 dead letters kept from the last run",
    ]


def kept(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "spoc_platform.bus.memory" and "kept from the last run" in r.msg
    ]


async def test_a_queue_kept_from_the_last_run_adds_the_bindings_of_each_declaration(
    journal_path: Path,
) -> None:
    bus = await started(journal_path)
    await bus.declare(DESK)
    await bus.publish(message("m-1"))
    await bus.close()

    again = await started(journal_path)
    await again.declare(QueueSpec("desk", ("ticket.created",)))
    await again.declare(QueueSpec("desk", ("ticket.closed",)))  # adds to the first
    await again.publish(message("m-2", "ticket.created"))
    await again.publish(message("m-3", "ticket.closed"))
    desk = Recorder()
    await again.consume(QueueSpec("desk", ("ticket.closed",)), desk.handler)
    await eventually(lambda: _async(again.depth("desk") == 0), message="all delivered")
    assert desk.ids() == ["m-1", "m-2", "m-3"]
    await again.close()


async def test_a_queue_declared_again_adds_bindings_keeps_its_limit_and_takes_the_new_pace() -> (
    None
):
    """Like the broker: bindings add up and the delivery limit stays the queue's first; the
    consumer's prefetch and retry pause are the latest declaration's."""
    bus = MemoryBus()
    await bus.connect()
    first = QueueSpec("desk", ("ticket.created",), delivery_limit=2, max_retry_delay=30.0)
    await bus.declare(first)
    latest = QueueSpec(
        "desk", ("ticket.closed",), delivery_limit=4, prefetch=3, max_retry_delay=0.01
    )
    counts: list[int] = []
    running: list[str | None] = []
    release = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.message_id == "m-doomed":
            counts.append(delivery.delivery_count)
            raise RuntimeError("always broken")
        running.append(delivery.message_id)
        await release.wait()

    subscription = await bus.consume(latest, handler)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await bus.publish(message("m-doomed"))  # routed by the first declaration's binding
    await eventually(lambda: bus.dead_letters("desk"), message="dead letter", timeout=5)
    # Deliveries 0..10: the backstop of the first limit (2 x 5), not of the latest (4 x 5);
    # ten pauses of at most 0.01 s, not a back-off growing towards 30 s (or 2 s).
    assert counts == list(range(first.backstop_limit + 1))
    assert loop.time() - began < 3.0

    try:
        for n in range(5):
            await bus.publish(message(f"m-{n}", "ticket.closed"))
        await eventually(lambda: _async(len(running) == 3), message="three handlers running")
        await asyncio.sleep(0.2)  # a moment in which a fourth could have started
        assert len(running) == 3
    finally:
        release.set()
    await eventually(lambda: _async(len(running) == 5 and bus.depth("desk") == 0))
    await subscription.cancel()
    await bus.close()


async def test_a_message_given_back_until_the_backstop_dies_with_the_consumer_s_reason() -> None:
    bus = MemoryBus()
    await bus.connect()
    spec = QueueSpec("desk", ("ticket.*",), delivery_limit=1)

    async def holding_back(delivery: Delivery) -> None:
        raise RetryLater("database unreachable", delay=0)

    await bus.consume(spec, holding_back)
    await bus.publish(message("m-1"))
    [dead] = await eventually(lambda: bus.dead_letters("desk"), message="dead letter")
    assert dead.reason == "delivery limit exceeded: database unreachable"
    assert dead.attempts == spec.backstop_limit + 1
    await bus.close()


async def test_dead_letters_are_listed_a_hundred_at_most_unless_asked_for_more() -> None:
    bus = MemoryBus()
    await bus.connect()
    await bus.consume(DESK, Recorder(refuse={f"m-{n:03}" for n in range(101)}).handler)
    for n in range(101):
        await bus.publish(message(f"m-{n:03}"))
    await eventually(lambda: _async_len(bus.dead_letters("desk", limit=1000), 101))

    assert [d.message_id for d in await bus.dead_letters("desk")] == [
        f"m-{n:03}" for n in range(100)
    ]
    await bus.close()


async def test_a_handler_cut_short_by_a_stop_gives_its_message_back_to_the_queue() -> None:
    bus = MemoryBus()
    await bus.connect()
    busy = Recorder(block={"m-1"})
    subscription = await bus.consume(DESK, busy.handler)
    await bus.publish(message("m-1"))
    await eventually(lambda: _async(busy.ids() == ["m-1"]))
    # The stop gives up waiting: the handler is cancelled before it acknowledged.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(subscription.cancel(), 0.1)

    fresh = Recorder()
    await bus.consume(DESK, fresh.handler)
    await eventually(lambda: _async(fresh.ids() == ["m-1"]), message="m-1 delivered again")
    await eventually(lambda: _async(bus.depth("desk") == 0))
    await bus.close()


async def test_a_stop_waits_for_every_running_handler_even_when_one_is_interrupted() -> None:
    """A handler may end with CancelledError of its own (a call it waits on is cancelled
    elsewhere): the stop still waits for the others, raises nothing, and the interrupted
    message goes back to the queue."""
    bus = MemoryBus()
    await bus.connect()
    dependency: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finish = asyncio.Event()
    got: list[str | None] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery.message_id)
        if delivery.message_id == "m-waiting":
            await dependency
        else:
            await finish.wait()

    subscription = await bus.consume(DESK, handler)
    await bus.publish(message("m-waiting"))
    await bus.publish(message("m-slow"))
    await eventually(lambda: _async(len(got) == 2), message="both handlers running")
    stopping = asyncio.create_task(subscription.cancel())
    try:
        await asyncio.sleep(0.05)
        dependency.cancel()
        await asyncio.sleep(0.1)
        assert not stopping.done(), "cancel() returned while m-slow's handler still ran"
    finally:
        finish.set()
    await asyncio.wait_for(stopping, 5)  # raises nothing

    fresh = Recorder()
    await bus.consume(DESK, fresh.handler)
    await eventually(lambda: _async(fresh.ids() == ["m-waiting"]), message="given back")
    await eventually(lambda: _async(bus.depth("desk") == 0))
    await bus.close()


async def test_a_cancelled_subscription_leaves_nothing_running_and_nothing_to_report() -> None:
    """Handling and stopping report no error to the event loop (where an operator would only
    see it in the log), and once cancel() returns nothing of the subscription runs on."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        before = asyncio.all_tasks()
        bus = MemoryBus()
        await bus.connect()
        recorder = Recorder()
        subscription = await bus.consume(DESK, recorder.handler)
        for n in range(3):
            await bus.publish(message(f"m-{n}"))
        await eventually(lambda: _async(len(recorder.got) == 3 and bus.depth("desk") == 0))
        await asyncio.sleep(0)  # the finished handlers' callbacks

        await subscription.cancel()
        assert asyncio.all_tasks() - before == set()
        await bus.close()
        assert reported == []
    finally:
        loop.set_exception_handler(previous)
