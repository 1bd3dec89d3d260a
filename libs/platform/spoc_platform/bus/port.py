"""What a transport must do: publish with confirmation, consume with ack/retry/dead-letter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

EVENTS_EXCHANGE = "spoc.events"
DEAD_EXCHANGE = "spoc.dead"


class PoisonMessage(Exception):
    """The message can never be handled: dead-letter it now instead of retrying."""


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
    def queue(self) -> str:
        return f"{self.service}.events"

    @property
    def dead_queue(self) -> str:
        return f"{self.service}.dead"


MessageHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None: ...


class MessageBus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def declare(self, spec: QueueSpec) -> None:
        """Create the queue, its dead-letter queue and bindings; safe to repeat."""

    async def publish(self, message: OutgoingMessage) -> None:
        """Return once the broker has taken responsibility; raise PublishError otherwise."""

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> Subscription:
        """Declare and start consuming: handler returns → ack; PoisonMessage → dead-letter at
        once; any other error → back to the queue until the delivery limit, then dead-letter."""

    def is_healthy(self) -> bool: ...


def retry_delay(delivery_count: int, ceiling: float) -> float:
    """Back-off before requeueing, so a failing dependency is not hammered in a tight loop."""
    return float(min(ceiling, 0.05 * (2**delivery_count)))


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
