"""Dead letters on RabbitMQ an operator can work: list them, move them back, drop them.

Each service's `<service>.dead` queue is read with basic.get on a channel of its own. What is
not acknowledged goes back to the queue when that channel closes, in its old place, so listing
removes nothing and a replay or purge by id leaves the others where they were. Every operation
looks at most at the messages the queue held when it began: a replayed message that dies again
at once is not met twice in one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelClosed, DeliveryError

from spoc_platform.bus.port import DeadLetter, PublishError, QueueSpec

# Set on a replayed copy: where it was first published, and how often it has been replayed.
ROUTING_KEY_HEADER = "x-spoc-original-routing-key"
REPLAYS_HEADER = "x-spoc-replays"
# Headers the broker or a consumer put on a dead message; a replayed copy starts without them.
_DEATH_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-reason",
        "x-first-death-queue",
        "x-first-death-exchange",
        "x-last-death-reason",
        "x-last-death-queue",
        "x-last-death-exchange",
        "x-delivery-count",
        "x-spoc-error",
        "x-spoc-attempts",
        "x-spoc-dead-at",
        ROUTING_KEY_HEADER,
    }
)
# How long a pass waits for the messages it left to be back in the queue before returning.
SETTLE_TIMEOUT = 2.0


class DeadLetterQueueMissing(LookupError):
    """The service has no dead-letter queue on this broker (wrong vhost, or never declared)."""


def dead_queue(service: str) -> str:
    return QueueSpec(service, ()).dead_queue


def service_queue(service: str) -> str:
    return QueueSpec(service, ()).queue


async def list_dead_letters(
    connection: AbstractRobustConnection, service: str, limit: int
) -> list[DeadLetter]:
    """The oldest `limit` dead letters of `service`, left in the queue."""
    found: list[DeadLetter] = []
    if limit <= 0:
        return found
    async with _dead_messages(connection, service) as dead:
        async for message in dead.messages():
            found.append(to_dead_letter(message, service))
            if len(found) >= limit:
                break
    return found


async def replay_dead_letters(
    connection: AbstractRobustConnection,
    service: str,
    message_ids: Sequence[str] | None,
    *,
    on_total: Callable[[int], None] | None = None,
    on_replayed: Callable[[str], None] | None = None,
) -> int:
    """Re-publishes dead letters (all, or those ids) to `<service>.events` only, through the
    default exchange, each confirmed by the broker before its dead copy is acknowledged: a
    failure leaves the rest dead, never lost. The consumer's inbox makes replaying handled work
    a no-op, and a replayed id is no longer dead, so repeating a replay does nothing more.

    `on_total` hears how many letters there are to replay at most, `on_replayed` each id
    replayed (a long replay shows its progress)."""
    wanted = None if message_ids is None else set(message_ids)
    replayed = 0
    async with _dead_messages(connection, service, confirms=True) as dead:
        if on_total is not None:
            on_total(dead.present if wanted is None else min(len(wanted), dead.present))
        async for message in dead.messages():
            if wanted is not None and message.message_id not in wanted:
                continue
            try:
                await dead.channel.default_exchange.publish(
                    _replayed_copy(message, service),
                    routing_key=service_queue(service),
                    mandatory=True,
                    timeout=10,
                )
            except DeliveryError as error:
                raise PublishError(
                    f"{service_queue(service)} did not take the replayed message: {error}",
                    unroutable=error.message is not None,
                ) from error
            await dead.take(message)
            replayed += 1
            if on_replayed is not None:
                on_replayed(message.message_id or "")
    return replayed


async def purge_dead_letters(
    connection: AbstractRobustConnection, service: str, message_ids: Sequence[str] | None
) -> int:
    """Drops dead letters: all of them (queue.purge), or only those ids."""
    if message_ids is None:
        channel = await connection.channel()
        try:
            queue = await _passive(channel, service)
            result = await queue.purge()
            return int(result.message_count or 0)
        finally:
            await _close(channel)
    wanted = set(message_ids)
    purged = 0
    async with _dead_messages(connection, service) as dead:
        async for message in dead.messages():
            if message.message_id in wanted:
                await dead.take(message)
                purged += 1
    return purged


def to_dead_letter(message: AbstractIncomingMessage, service: str) -> DeadLetter:
    headers: Mapping[str, Any] = message.headers or {}
    deaths = [d for d in headers.get("x-death") or () if isinstance(d, Mapping)]
    return DeadLetter(
        message_id=message.message_id,
        routing_key=_original_routing_key(message, service, headers, deaths),
        body=message.body,
        reason=_reason(headers, deaths),
        attempts=_attempts(headers, deaths),
        dead_at=_dead_at(message, headers, deaths),
    )


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def _original_routing_key(
    message: AbstractIncomingMessage,
    service: str,
    headers: Mapping[str, Any],
    deaths: list[Mapping[str, Any]],
) -> str:
    # The dead copy's own routing key is the dead-letter key (the service name). The key it was
    # first published with is in the header the consumer or a replay sets, or in x-death: the
    # oldest entry (the list is newest first). A replayed message travels under its queue's
    # name, so that name is never the answer; the message's type and envelope say it too.
    candidates: list[Any] = [headers.get(ROUTING_KEY_HEADER)]
    candidates += [
        keys[0] for d in reversed(deaths) if (keys := d.get("routing-keys")) and len(keys) > 0
    ]
    candidates += [message.type, _envelope(message.body).get("type"), message.routing_key]
    meaningless = {service_queue(service), service}
    return next((t for c in candidates if (t := _text(c)) and t not in meaningless), "")


def _reason(headers: Mapping[str, Any], deaths: list[Mapping[str, Any]]) -> str:
    broker = _text(headers.get("x-first-death-reason")) or (
        _text(deaths[0].get("reason")) if deaths else None
    )
    error = _text(headers.get("x-spoc-error"))
    if broker and error:
        return f"{broker}: {error}"
    return broker or error or "unknown"


def _attempts(headers: Mapping[str, Any], deaths: list[Mapping[str, Any]]) -> int:
    # The consumer records how many deliveries it saw; the broker does not keep the source
    # queue's delivery count on the dead copy, only how often it dead-lettered the message.
    recorded = headers.get("x-spoc-attempts")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded
    return sum(int(d.get("count", 0) or 0) for d in deaths)


def _dead_at(
    message: AbstractIncomingMessage, headers: Mapping[str, Any], deaths: list[Mapping[str, Any]]
) -> datetime | None:
    recorded = headers.get("x-spoc-dead-at")
    candidates = [recorded, deaths[0].get("time") if deaths else None, message.timestamp]
    for candidate in candidates:
        if isinstance(candidate, datetime):
            return candidate if candidate.tzinfo else candidate.replace(tzinfo=UTC)
        if isinstance(candidate, str | bytes):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(_text(candidate) or "")
    return None


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _replayed_copy(message: AbstractIncomingMessage, service: str) -> aio_pika.Message:
    headers: dict[str, Any] = {
        k: v for k, v in (message.headers or {}).items() if k not in _DEATH_HEADERS
    }
    headers[ROUTING_KEY_HEADER] = to_dead_letter(message, service).routing_key
    previous = headers.get(REPLAYS_HEADER)
    headers[REPLAYS_HEADER] = (previous if isinstance(previous, int) else 0) + 1
    return aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type or "application/json",
        type=message.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _passive(channel: AbstractChannel, service: str) -> AbstractQueue:
    try:
        return await channel.declare_queue(dead_queue(service), passive=True)
    except ChannelClosed as error:
        raise DeadLetterQueueMissing(
            f"no queue {dead_queue(service)} on this broker (vhost?)"
        ) from error


class _DeadQueuePass:
    """One look through a dead-letter queue on a channel of its own; what is not taken with
    `take` returns to the queue when the channel closes."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue, present: int) -> None:
        self.channel = channel
        self.queue = queue
        self.present = present
        self.taken = 0

    async def messages(self) -> AsyncIterator[AbstractIncomingMessage]:
        for _ in range(self.present):
            message = await self.queue.get(no_ack=False, fail=False)
            if message is None:
                return
            yield message

    async def take(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self.taken += 1


@contextlib.asynccontextmanager
async def _dead_messages(
    connection: AbstractRobustConnection, service: str, *, confirms: bool = False
) -> AsyncIterator[_DeadQueuePass]:
    channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
    try:
        queue = await _passive(channel, service)
        present = int(queue.declaration_result.message_count or 0)
        dead_pass = _DeadQueuePass(channel, queue, present)
        yield dead_pass
    finally:
        await _close(channel)
    await _settled(connection, service, at_least=present - dead_pass.taken)


async def _settled(connection: AbstractRobustConnection, service: str, at_least: int) -> None:
    """Waits (briefly) until the messages this pass left have returned to the queue: the broker
    puts them back after the channel has closed, and an operator's next look must see them."""
    if at_least <= 0:
        return
    channel = await connection.channel()
    try:
        deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            queue = await _passive(channel, service)
            if int(queue.declaration_result.message_count or 0) >= at_least:
                return
            await asyncio.sleep(0.01)
    finally:
        await _close(channel)


async def _close(channel: AbstractChannel) -> None:
    with contextlib.suppress(Exception):
        await channel.close()
