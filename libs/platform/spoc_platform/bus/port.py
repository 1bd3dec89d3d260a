"""What a transport must do: publish with confirmation, consume with ack/retry/dead-letter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from spoc_platform.retry import Backoff

EVENTS_EXCHANGE = "spoc.events"
DEAD_EXCHANGE = "spoc.dead"
# The broker backstops the consumer's own delivery limit at this multiple of it.
BACKSTOP_FACTOR = 5


class PoisonMessage(Exception):
    """The message can never be handled: dead-letter it now instead of retrying."""


class RetryLater(Exception):
    """Give the message back to the queue after `delay` seconds, counting one more delivery.

    The consumer decides this (and when the limit is reached, raises PoisonMessage instead); a
    transport only carries it out. On RabbitMQ that is basic.reject with requeue, which every
    version counts towards x-delivery-limit (from 4.3 a nack no longer does)."""

    def __init__(self, reason: str, *, delay: float) -> None:
        super().__init__(reason)
        self.delay = delay


class PublishError(Exception):
    """The broker did not confirm the message; the outbox will try again later."""

    def __init__(self, message: str, *, unroutable: bool = False) -> None:
        super().__init__(message)
        self.unroutable = unroutable


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    message_id: str
    routing_key: str
    body: bytes
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: str | None
    routing_key: str
    body: bytes
    # How many times this message was handed out before (0 on the first delivery).
    delivery_count: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str | None
    routing_key: str
    body: bytes
    reason: str
    # Deliveries the message had before it died, and when it died (None if the bus cannot tell).
    attempts: int = 0
    dead_at: datetime | None = None


@dataclass(frozen=True)
class QueueSpec:
    """A consuming service's queue: what it is bound to and how hard it retries."""

    service: str
    bindings: tuple[str, ...]
    delivery_limit: int = 10
    prefetch: int = 64
    # Upper bound on the pause before a failed message goes back to the queue.
    max_retry_delay: float = 2.0

    @property
    def backstop_limit(self) -> int:
        """The broker's own delivery limit (a policy on RabbitMQ), above the consumer's: it
        only catches what the consumer cannot count, e.g. a message that kills its process."""
        return self.delivery_limit * BACKSTOP_FACTOR

    @property
    def queue(self) -> str:
        return f"{self.service}.events"

    @property
    def dead_queue(self) -> str:
        return f"{self.service}.dead"


MessageHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None: ...

    async def pause(self) -> None:
        """Takes no more messages; those already handed out stay with their handlers."""

    async def resume(self) -> None: ...


class MessageBus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def declare(self, spec: QueueSpec) -> None:
        """Create the queue, its dead-letter queue and bindings; safe to repeat."""

    async def publish(self, message: OutgoingMessage) -> None:
        """Return once the broker has taken responsibility; raise PublishError otherwise."""

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> Subscription:
        """Declare and start consuming: handler returns → ack; PoisonMessage → dead-letter at
        once; RetryLater → back to the queue after its delay, one more delivery counted; any
        other error → the same with the transport's own back-off. The broker's delivery limit
        is only a backstop: the consumer enforces the limit itself."""

    def is_healthy(self) -> bool: ...

    # Dead letters an operator can work: list, re-send to the service's queue, drop.
    async def dead_letters(self, service: str, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest `limit` dead letters of `service`, without removing them."""

    async def replay_dead_letters(
        self, service: str, message_ids: Sequence[str] | None = None
    ) -> int:
        """Moves dead letters (all, or those ids) back to the service's own queue, and only
        there; returns how many. Consumers' inboxes make a replay of handled work a no-op."""

    async def purge_dead_letters(
        self, service: str, message_ids: Sequence[str] | None = None
    ) -> int:
        """Drops dead letters (all, or those ids); returns how many."""


def retry_delay(delivery_count: int, ceiling: float) -> float:
    """A transport's own back-off before requeueing a message whose handler raised outside
    the consumer's verdicts, so a failing dependency is not hammered in a tight loop."""
    return Backoff(first=0.05, ceiling=ceiling).delay(delivery_count + 1)


@lru_cache(maxsize=4096)
def topic_matches(binding: str, routing_key: str) -> bool:
    """AMQP topic semantics: '*' is exactly one word, '#' is zero or more words."""
    return _match(_words(binding), _words(routing_key))


def _words(key: str) -> tuple[str, ...]:
    # RabbitMQ reads an empty key as zero words (so '*' does not match it), while
    # "".split(".") would give one empty word; "a." is still two words, "a" and "".
    return tuple(key.split(".")) if key else ()


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
