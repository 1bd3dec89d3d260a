"""An in-process bus with the broker's semantics: topic routing, ack, redelivery, dead letters."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from spoc_platform.bus.port import (
    DeadLetter,
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    retry_delay,
    topic_matches,
)

log = logging.getLogger(__name__)


@dataclass
class _Queue:
    spec: QueueSpec
    messages: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    dead: list[DeadLetter] = field(default_factory=list)
    unacked: int = 0


class _MemorySubscription:
    def __init__(self, task: asyncio.Task[None], workers: set[asyncio.Task[None]]) -> None:
        self._task = task
        self._workers = workers

    async def cancel(self) -> None:
        self._task.cancel()
        # Messages being handled finish (and are acked) before the subscription is gone.
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        await asyncio.gather(self._task, return_exceptions=True)


class MemoryBus:
    """Shared by every service in one process, like one broker serving several services."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._connected = False

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    def is_healthy(self) -> bool:
        return self._connected

    async def declare(self, spec: QueueSpec) -> None:
        existing = self._queues.get(spec.queue)
        if existing is None:
            self._queues[spec.queue] = _Queue(spec)
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
        for queue in targets:
            queue.messages.put_nowait(
                Delivery(message.message_id, message.routing_key, message.body, 0)
            )

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> _MemorySubscription:
        await self.declare(spec)
        queue = self._queues[spec.queue]
        workers: set[asyncio.Task[None]] = set()
        task = asyncio.create_task(self._dispatch(queue, handler, workers), name=spec.queue)
        return _MemorySubscription(task, workers)

    async def _dispatch(
        self, queue: _Queue, handler: MessageHandler, workers: set[asyncio.Task[None]]
    ) -> None:
        window = asyncio.Semaphore(queue.spec.prefetch)
        while True:
            await window.acquire()
            delivery = await queue.messages.get()
            queue.unacked += 1
            worker = asyncio.create_task(self._deliver(queue, handler, delivery, window))
            workers.add(worker)
            worker.add_done_callback(workers.discard)

    async def _deliver(
        self,
        queue: _Queue,
        handler: MessageHandler,
        delivery: Delivery,
        window: asyncio.Semaphore,
    ) -> None:
        try:
            await handler(delivery)
        except PoisonMessage as error:
            queue.dead.append(self._dead(delivery, f"rejected: {error}"))
        except Exception as error:  # noqa: BLE001 - any handler failure means "try again"
            redelivered = Delivery(
                delivery.message_id,
                delivery.routing_key,
                delivery.body,
                delivery.delivery_count + 1,
            )
            # Same rule as a quorum queue's x-delivery-limit: dead once returns exceed it.
            if redelivered.delivery_count > queue.spec.delivery_limit:
                queue.dead.append(self._dead(delivery, f"delivery limit exceeded: {error}"))
            else:
                await asyncio.sleep(
                    retry_delay(delivery.delivery_count, queue.spec.max_retry_delay)
                )
                queue.messages.put_nowait(redelivered)
        finally:
            queue.unacked -= 1
            window.release()

    @staticmethod
    def _dead(delivery: Delivery, reason: str) -> DeadLetter:
        return DeadLetter(delivery.message_id, delivery.routing_key, delivery.body, reason)

    # Inspection, for the embedded default's operators and for tests.
    def dead_letters(self, service: str) -> list[DeadLetter]:
        queue = self._queues.get(f"{service}.events")
        return list(queue.dead) if queue else []

    def depth(self, service: str) -> int:
        queue = self._queues.get(f"{service}.events")
        return queue.messages.qsize() + queue.unacked if queue else 0

    def queue_names(self) -> list[str]:
        return sorted(self._queues)
