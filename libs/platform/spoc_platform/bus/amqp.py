"""RabbitMQ transport on aio-pika: quorum queues, dead-lettering and confirmed publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, DeliveryError

from spoc_platform.bus.port import (
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PoisonMessage,
    PublishError,
    QueueSpec,
    retry_delay,
)

log = logging.getLogger(__name__)


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """Arguments are fixed at creation: changing them later fails with PRECONDITION_FAILED."""
    return {
        "x-queue-type": "quorum",
        # RabbitMQ 3.x quorum queues have no default limit; 4.x defaults to 20. Be explicit.
        "x-delivery-limit": spec.delivery_limit,
        "x-dead-letter-exchange": DEAD_EXCHANGE,
        "x-dead-letter-routing-key": spec.service,
        # at-least-once dead-lettering needs reject-publish overflow; nothing dies unseen.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


class _AmqpSubscription:
    def __init__(
        self,
        channel: AbstractChannel,
        queue: AbstractQueue,
        tag: str,
        in_flight: set[asyncio.Task[Any]],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._tag = tag
        self._in_flight = in_flight

    async def cancel(self) -> None:
        try:
            await self._queue.cancel(self._tag)
            # Let running handlers finish and ack, as the memory bus does: closing the channel
            # under them would interrupt them and requeue their messages, spending a delivery.
            # One turn of the loop first, so a delivery read just before CancelOk has started.
            await asyncio.sleep(0)
            while self._in_flight:
                await asyncio.wait(set(self._in_flight))
        finally:
            await self._channel.close()


class AmqpBus:
    def __init__(self, url: str, *, publish_timeout: float = 5.0) -> None:
        self._url = url
        self._publish_timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def connect(self) -> None:
        # Heartbeat and reconnect interval travel in the URL (aio-pika's robust connection).
        self._connection = await aio_pika.connect_robust(self._url)
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._declare_exchanges(self._publish_channel)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._publish_channel = self._exchange = None

    def is_healthy(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._publish_channel is not None
            and not self._publish_channel.is_closed
        )

    @staticmethod
    async def _declare_exchanges(channel: AbstractChannel) -> AbstractExchange:
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await channel.declare_exchange(DEAD_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        return exchange

    async def _declare_on(self, channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
        await self._declare_exchanges(channel)
        dead = await channel.declare_queue(
            spec.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(DEAD_EXCHANGE, routing_key=spec.service)
        queue = await channel.declare_queue(
            spec.queue, durable=True, arguments=queue_arguments(spec)
        )
        for binding in spec.bindings:
            await queue.bind(EVENTS_EXCHANGE, routing_key=binding)
        return queue

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("AmqpBus.connect() was not called")
        return self._connection

    async def declare(self, spec: QueueSpec) -> None:
        channel = await self._require_connection().channel()
        try:
            await self._declare_on(channel, spec)
        finally:
            await channel.close()

    async def publish(self, message: OutgoingMessage) -> None:
        if self._exchange is None:
            raise PublishError("not connected to RabbitMQ")
        amqp_message = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type="application/json",
            type=message.routing_key,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._exchange.publish(
                amqp_message,
                routing_key=message.routing_key,
                mandatory=True,
                timeout=self._publish_timeout,
            )
        except DeliveryError as error:
            returned = error.message is not None
            raise PublishError(
                f"{message.routing_key} not confirmed: {error}", unroutable=returned
            ) from error
        except (TimeoutError, AMQPError, ConnectionError, RuntimeError) as error:
            raise PublishError(f"{message.routing_key} not confirmed: {error!r}") from error

    async def consume(self, spec: QueueSpec, handler: MessageHandler) -> _AmqpSubscription:
        channel = await self._require_connection().channel()
        await channel.set_qos(prefetch_count=spec.prefetch)
        queue = await self._declare_on(channel, spec)
        in_flight: set[asyncio.Task[Any]] = set()

        async def on_message(message: AbstractIncomingMessage) -> None:
            # aio-pika runs each delivery as a task of its own; cancel() waits for these.
            task = asyncio.current_task()
            assert task is not None
            in_flight.add(task)
            try:
                await handle(message)
            finally:
                in_flight.discard(task)

        async def handle(message: AbstractIncomingMessage) -> None:
            # Quorum queues add the header from the first redelivery on; absent means first.
            raw_count = message.headers.get("x-delivery-count")
            count = raw_count if isinstance(raw_count, int) else 0
            delivery = Delivery(message.message_id, message.routing_key or "", message.body, count)
            try:
                await handler(delivery)
            except PoisonMessage:
                await message.reject(requeue=False)
            except asyncio.CancelledError:
                # A closed channel requeues by itself; only an open one needs telling.
                with contextlib.suppress(AMQPError, RuntimeError):
                    await message.nack(requeue=True)
                raise
            except Exception:  # noqa: BLE001 - never ack on error: back to the queue
                await asyncio.sleep(retry_delay(count, spec.max_retry_delay))
                await message.nack(requeue=True)
            else:
                await message.ack()

        tag = await queue.consume(on_message)
        return _AmqpSubscription(channel, queue, tag, in_flight)
