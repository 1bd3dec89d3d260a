"""An in-process bus with the broker's semantics: topic routing, ack, redelivery, dead letters.

Given a journal (the embedded default's `bus.sqlite3`), it also keeps the broker's promise across
restarts: a message stays journalled from the publish's confirm until its acknowledgement or
its death, and a dead letter until an operator replays or purges it, or it outlives retention."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from spoc_platform.bus.journal import BusJournal, JournalError
from spoc_platform.bus.port import (
    DeadLetter,
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    RetryLater,
    retry_delay,
    topic_matches,
)

log = logging.getLogger(__name__)

DEAD_LETTER_RETENTION = timedelta(days=14)
# Per service, like a dead-letter queue's length limit: the oldest go first.
DEAD_LETTER_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class _Held:
    """A message a queue holds; `seq` names it in the journal until it is acked or dead."""

    seq: int
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class _Dead:
    seq: int
    letter: DeadLetter


@dataclass
class _Queue:
    spec: QueueSpec
    # False while the queue only holds what the journal kept, until its service declares it.
    declared: bool = True
    messages: asyncio.Queue[_Held] = field(default_factory=asyncio.Queue)
    dead: list[_Dead] = field(default_factory=list)
    unacked: int = 0


class _MemorySubscription:
    def __init__(
        self,
        task: asyncio.Task[None],
        workers: set[asyncio.Task[None]],
        taking: asyncio.Event,
    ) -> None:
        self._task = task
        self._workers = workers
        self._taking = taking

    async def pause(self) -> None:
        self._taking.clear()

    async def resume(self) -> None:
        self._taking.set()

    async def cancel(self) -> None:
        self._task.cancel()
        # Messages being handled finish (and are acked) before the subscription is gone. If
        # the caller gives up waiting, the workers are cancelled and their messages go back
        # to the queue unacknowledged (and stay journalled), as a broker does on channel close.
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        await asyncio.gather(self._task, return_exceptions=True)


class MemoryBus:
    """Shared by every service in one process, like one broker serving several services."""

    def __init__(
        self,
        journal: BusJournal | None = None,
        *,
        dead_letter_retention: timedelta = DEAD_LETTER_RETENTION,
        dead_letter_limit: int = DEAD_LETTER_LIMIT,
    ) -> None:
        self._queues: dict[str, _Queue] = {}
        self._connected = False
        self._journal = journal
        self._loaded = False
        self._seq = 0
        self.dead_letter_retention = dead_letter_retention
        self.dead_letter_limit = dead_letter_limit

    async def connect(self) -> None:
        if self._journal is not None:
            contents = self._journal.open()
            if not self._loaded:
                for held in contents.held:
                    self._queue_named(held.queue).messages.put_nowait(
                        _Held(held.seq, held.delivery)
                    )
                for dead in contents.dead:
                    self._queue_named(dead.queue).dead.append(_Dead(dead.seq, dead.letter))
                if contents.held or contents.dead:
                    log.info(
                        "bus journal: %d messages and %d dead letters kept from the last run",
                        len(contents.held),
                        len(contents.dead),
                    )
        self._loaded = True
        self._connected = True

    async def close(self) -> None:
        self._connected = False
        if self._journal is not None:
            self._journal.close()

    def is_healthy(self) -> bool:
        return self._connected

    async def declare(self, spec: QueueSpec) -> None:
        existing = self._queues.get(spec.queue)
        if existing is None:
            self._queues[spec.queue] = _Queue(spec)
        elif not existing.declared:
            existing.spec = spec
            existing.declared = True
        else:
            # Bindings are additive like the broker's; the limit is fixed at creation.
            merged = tuple(dict.fromkeys(existing.spec.bindings + spec.bindings))
            existing.spec = QueueSpec(
                existing.spec.service,
                merged,
                existing.spec.delivery_limit,
                spec.prefetch,
                spec.max_retry_delay,
            )

    async def publish(self, message: OutgoingMessage) -> None:
        if not self._connected:
            raise PublishError("memory bus is closed")
        targets = [
            q
            for q in self._queues.values()
            if any(topic_matches(b, message.routing_key) for b in q.spec.bindings)
        ]
        if not targets:
            raise PublishError(f"no queue is bound to {message.routing_key}", unroutable=True)
        delivery = Delivery(message.message_id, message.routing_key, message.body, 0)
        held = [(queue, _Held(self._hold(queue, delivery), delivery)) for queue in targets]
        await self._confirm()
        for queue, item in held:
            queue.messages.put_nowait(item)

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> _MemorySubscription:
        await self.declare(spec)
        queue = self._queues[spec.queue]
        workers: set[asyncio.Task[None]] = set()
        taking = asyncio.Event()
        taking.set()
        task = asyncio.create_task(self._dispatch(queue, handler, workers, taking), name=spec.queue)
        return _MemorySubscription(task, workers, taking)

    async def _dispatch(
        self,
        queue: _Queue,
        handler: MessageHandler,
        workers: set[asyncio.Task[None]],
        taking: asyncio.Event,
    ) -> None:
        window = asyncio.Semaphore(queue.spec.prefetch)
        while True:
            await window.acquire()
            await taking.wait()
            held = await queue.messages.get()
            if not taking.is_set():
                # Paused while waiting for a message: it goes back to the queue, behind any
                # that came meanwhile. Nothing is lost; order across a pause is not promised
                # (consumers never rely on it: every handler is idempotent and order-free).
                queue.messages.put_nowait(held)
                window.release()
                continue
            queue.unacked += 1
            worker = asyncio.create_task(self._deliver(queue, handler, held, window))
            workers.add(worker)
            worker.add_done_callback(workers.discard)

    async def _deliver(
        self,
        queue: _Queue,
        handler: MessageHandler,
        held: _Held,
        window: asyncio.Semaphore,
    ) -> None:
        delivery = held.delivery
        try:
            try:
                await handler(delivery)
            except asyncio.CancelledError:
                queue.messages.put_nowait(held)
                raise
            except PoisonMessage as error:
                self._bury(queue, held, f"rejected: {error}")
                return
            except Exception as error:  # noqa: BLE001 - any handler failure means "try again"
                await self._retry(queue, held, error)
                return
            if self._journal is not None:
                self._journal.release(held.seq)
        finally:
            queue.unacked -= 1
            window.release()

    async def _retry(self, queue: _Queue, held: _Held, error: Exception) -> None:
        delivery = held.delivery
        redelivered = _Held(held.seq, replace(delivery, delivery_count=delivery.delivery_count + 1))
        # The broker's backstop, as a quorum queue's x-delivery-limit: dead once returns
        # exceed it. The consumer normally decides earlier (RetryLater / PoisonMessage).
        if redelivered.delivery.delivery_count > queue.spec.backstop_limit:
            self._bury(queue, held, f"delivery limit exceeded: {error}")
            return
        if self._journal is not None:
            self._journal.count_delivery(held.seq, redelivered.delivery.delivery_count)
        delay = (
            error.delay
            if isinstance(error, RetryLater)
            else retry_delay(delivery.delivery_count, queue.spec.max_retry_delay)
        )
        try:
            await asyncio.sleep(delay)
        finally:
            # Also when a stop cancels the wait: the message is the queue's again at once.
            queue.messages.put_nowait(redelivered)

    def _bury(self, queue: _Queue, held: _Held, reason: str) -> None:
        delivery = held.delivery
        letter = DeadLetter(
            delivery.message_id,
            delivery.routing_key,
            delivery.body,
            reason,
            attempts=delivery.delivery_count + 1,
            dead_at=datetime.now(UTC),
        )
        seq = (
            self._journal.bury(held.seq, queue.spec.queue, letter)
            if self._journal is not None
            else self._next_seq()
        )
        queue.dead.append(_Dead(seq, letter))
        overflow = len(queue.dead) - self.dead_letter_limit
        if overflow > 0:
            self._forget(queue, queue.dead[:overflow])
            log.warning(
                "%s: more than %d dead letters; dropped the %d oldest",
                queue.spec.queue,
                self.dead_letter_limit,
                overflow,
            )

    # Dead letters an operator can work (the MessageBus port).
    async def dead_letters(self, service: str, *, limit: int = 100) -> list[DeadLetter]:
        queue = self._queues.get(f"{service}.events")
        return [dead.letter for dead in queue.dead[:limit]] if queue else []

    async def replay_dead_letters(
        self, service: str, message_ids: Sequence[str] | None = None
    ) -> int:
        queue = self._queues.get(f"{service}.events")
        if queue is None:
            return 0
        chosen = self._chosen(queue, message_ids)
        revived: list[_Held] = []
        for dead in chosen:
            letter = dead.letter
            # A fresh start: the consumer counts its attempts from zero again.
            delivery = Delivery(letter.message_id, letter.routing_key, letter.body, 0)
            seq = (
                self._journal.revive(dead.seq, queue.spec.queue, delivery)
                if self._journal is not None
                else self._next_seq()
            )
            revived.append(_Held(seq, delivery))
        await self._confirm()
        self._drop(queue, chosen)
        for held in revived:
            queue.messages.put_nowait(held)
        return len(revived)

    async def purge_dead_letters(
        self, service: str, message_ids: Sequence[str] | None = None
    ) -> int:
        queue = self._queues.get(f"{service}.events")
        if queue is None:
            return 0
        chosen = self._chosen(queue, message_ids)
        self._forget(queue, chosen)
        await self._confirm()
        return len(chosen)

    async def prune_dead_letters(self, now: datetime | None = None) -> int:
        """Drops dead letters older than the retention, in every queue; returns how many."""
        cutoff = (now or datetime.now(UTC)) - self.dead_letter_retention
        pruned = 0
        for queue in self._queues.values():
            expired = [
                d for d in queue.dead if d.letter.dead_at is not None and d.letter.dead_at < cutoff
            ]
            if expired:
                self._forget(queue, expired)
                pruned += len(expired)
        await self._confirm()
        if pruned:
            log.info("dropped %d dead letters older than %s", pruned, self.dead_letter_retention)
        return pruned

    # Inspection, for the embedded default's operators and for tests.
    def depth(self, service: str) -> int:
        queue = self._queues.get(f"{service}.events")
        return queue.messages.qsize() + queue.unacked if queue else 0

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    def _queue_named(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            # Kept from the last run; routes nothing until its service declares it again.
            service = name.removesuffix(".events")
            queue = self._queues[name] = _Queue(QueueSpec(service, ()), declared=False)
        return queue

    @staticmethod
    def _chosen(queue: _Queue, message_ids: Sequence[str] | None) -> list[_Dead]:
        if message_ids is None:
            return list(queue.dead)
        wanted = set(message_ids)
        return [d for d in queue.dead if d.letter.message_id in wanted]

    def _forget(self, queue: _Queue, dead: Sequence[_Dead]) -> None:
        if self._journal is not None:
            self._journal.forget(d.seq for d in dead)
        self._drop(queue, dead)

    @staticmethod
    def _drop(queue: _Queue, dead: Sequence[_Dead]) -> None:
        gone = {id(d) for d in dead}
        queue.dead = [d for d in queue.dead if id(d) not in gone]

    def _hold(self, queue: _Queue, delivery: Delivery) -> int:
        if self._journal is None:
            return self._next_seq()
        return self._journal.hold(queue.spec.queue, delivery)

    async def _confirm(self) -> None:
        if self._journal is None:
            return
        try:
            await self._journal.confirm()
        except JournalError as error:
            raise PublishError(f"bus journal: {error}") from error

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq
